//! The saga console, page by page, against the suite: what it shows, what
//! it refuses, and what an operator does with it (docs/contract.md
//! section 8). The same in a real browser: tests/tests/console_browser.rs.

use e2e::console::{Visitor, TOKEN};
use e2e::testkit::{eventually, Identity};
use e2e::{Suite, SETTLE};
use events::{CancelReason, OrderStatus};
use reqwest::StatusCode;

#[tokio::test]
async fn the_console_shows_orders_live_and_every_saga_with_its_timeline() {
    let mut suite = Suite::start().await;
    suite
        .seed(&[("sku-1", 100, 250)], &[("c-1", 100_000)])
        .await;
    let console = suite
        .start_console(
            Identity::Client,
            &[(
                "CONSOLE_TRACE_URL",
                "http://tracing.test/search?order={order_id}",
            )],
        )
        .await;
    let visitor = Visitor::new(console);

    // An order placed while a browser watches appears and finishes on the
    // live stream, timed.
    let watching = tokio::spawn({
        let visitor = visitor.clone();
        async move {
            visitor
                .live_until(SETTLE, |s| {
                    s["recent"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|o| o["order_id"] == "o-c1" && o["status"] == "CONFIRMED")
                })
                .await
        }
    });
    suite
        .client
        .place("o-c1", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    let snapshot = watching.await.unwrap();
    assert_eq!(snapshot["placed"], 1, "{snapshot}");
    assert_eq!(snapshot["confirmed"], 1, "{snapshot}");
    assert_eq!(snapshot["latency"]["count"], 1, "{snapshot}");

    // The overview is whole without its script.
    let overview = visitor.get("/").await;
    assert_eq!(overview.status, StatusCode::OK);
    assert!(
        overview.body.contains("data-order=\"o-c1\""),
        "{}",
        overview.body
    );
    let csp = overview.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // Order ids stay here; the console's own forms keep their Origin.
    assert_eq!(overview.headers["referrer-policy"], "same-origin");

    // The list, its filters, and the search by order id.
    for id in ["o-c2", "o-c3", "o-c4"] {
        suite
            .client
            .place(id, "c-1", &[("sku-1", 1)])
            .await
            .unwrap();
        suite.settled(id).await;
    }
    let all = visitor.get("/sagas").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.order_links(), ["o-c1", "o-c2", "o-c3", "o-c4"]);
    let finished = visitor.get("/sagas?status=finished").await;
    assert_eq!(finished.order_links().len(), 4);
    assert!(visitor
        .get("/sagas?status=stuck")
        .await
        .order_links()
        .is_empty());
    let search = visitor.get("/sagas?q=o-c3").await;
    assert_eq!(search.status, StatusCode::SEE_OTHER);
    assert_eq!(search.location(), "/sagas/o-c3");

    // Paged: every saga once, by following "Next page".
    let mut seen = Vec::new();
    let mut page = visitor.get("/sagas?limit=3").await;
    loop {
        seen.extend(page.order_links());
        let next = "href=\"/sagas?limit=3&amp;after=";
        let Some(start) = page.body.find(next) else {
            break;
        };
        let href: String = page.body[start + "href=\"".len()..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        page = visitor.get(&href.replace("&amp;", "&")).await;
    }
    assert_eq!(seen, ["o-c1", "o-c2", "o-c3", "o-c4"]);

    // One saga: its state, its lines, the picture, the history, the trace.
    let saga = visitor.get("/sagas/o-c1").await;
    assert_eq!(saga.status, StatusCode::OK);
    for shown in [
        "CONFIRMED",
        "<svg class=\"timeline\"",
        "reserve_stock",
        "charge_payment",
        "confirm_order",
        "sku-1",
        "5.00",
        "http://tracing.test/search?order=o-c1",
    ] {
        assert!(saga.body.contains(shown), "{shown} not on the page");
    }
    assert_eq!(saga.body.matches("<rect").count(), 4, "one bar a step");
    assert!(
        !saga.body.contains("Abort"),
        "a client's console only shows"
    );

    // Bad input is told, and nothing is asked of the suite for it.
    let bad = visitor.get("/sagas?status=lost").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("unknown status"), "{}", bad.body);
    assert_eq!(
        visitor.get("/sagas?limit=1001").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        visitor.get("/sagas?q=not%20an%20id").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        visitor.get("/sagas/o-nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(visitor.get("/nowhere").await.status, StatusCode::NOT_FOUND);

    // Read-only: no sign-in, no action, no dead letters for a client.
    assert_eq!(visitor.get("/sign-in").await.status, StatusCode::NOT_FOUND);
    let refused = visitor
        .post("/sagas/o-c1/abort", &[("csrf", "x")], &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let letters = visitor.get("/dead-letters").await;
    assert_eq!(letters.status, StatusCode::FORBIDDEN);
    assert!(
        letters.body.contains("operator identity"),
        "{}",
        letters.body
    );

    // Measured like the services.
    let metrics = visitor.get("/metrics").await.body;
    assert!(
        metrics
            .contains("jetsaga_console_requests_total{code=\"200\",route=\"/sagas/{order_id}\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jetsaga_console_render_seconds_count{page=\"saga\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jetsaga_console_order_events_total{type=\"confirmed\"} 4"),
        "{metrics}"
    );
    suite.stop().await;
}

#[tokio::test]
async fn an_operator_signs_in_and_aborts_a_stuck_saga_and_nobody_else_can() {
    // Charges are asked again every second, and given up on only after
    // many attempts: with the payment service down, the saga is stuck.
    let mut suite = Suite::start_with(&[
        ("SAGA_STEP_TIMEOUT_MS", "1000"),
        ("SAGA_STEP_MAX_ATTEMPTS", "50"),
    ])
    .await;
    suite.seed(&[("sku-1", 10, 100)], &[("c-1", 10_000)]).await;
    suite.stop_service("payment-service").await;
    suite
        .client
        .place("o-stuck", "c-1", &[("sku-1", 4)])
        .await
        .unwrap();
    suite.stuck(1).await;
    let console = suite
        .start_console(Identity::Operator, &[("CONSOLE_OPERATOR_TOKEN", TOKEN)])
        .await;
    let mut visitor = Visitor::new(console);
    assert_eq!(
        visitor.get("/sagas?status=stuck").await.order_links(),
        ["o-stuck"]
    );

    // Not signed in: offered a sign-in, refused an action.
    let page = visitor.get("/sagas/o-stuck").await;
    assert!(page.body.contains("Sign in as operator"), "{}", page.body);
    assert!(!page.body.contains("/sagas/o-stuck/abort"));
    let confirm = visitor.get("/sagas/o-stuck/abort").await;
    assert_eq!(confirm.status, StatusCode::SEE_OTHER);
    assert!(
        confirm.location().starts_with("/sign-in?next="),
        "{}",
        confirm.location()
    );
    let forged = visitor
        .post("/sagas/o-stuck/abort", &[("csrf", "x")], &[])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // A wrong token, or the right one from another site, signs nobody in.
    let wrong = visitor
        .sign_in("not-the-operator-token", "/sagas/o-stuck")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("not the operator token"));
    let from_afar = visitor
        .post(
            "/sign-in",
            &[("token", TOKEN), ("next", "/")],
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(from_afar.status, StatusCode::FORBIDDEN);
    assert!(!from_afar.headers.contains_key("set-cookie"));

    let signed_in = visitor.sign_in(TOKEN, "/sagas/o-stuck").await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_in.location(), "/sagas/o-stuck");
    let cookie = signed_in.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the token never leaves the form");

    // Asked to confirm; the form's token is the session's.
    let confirm = visitor.get("/sagas/o-stuck/abort").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains("aborted_by_operator"),
        "{}",
        confirm.body
    );
    let csrf = confirm.hidden("csrf").expect("a CSRF token");
    for (form, headers) in [
        (vec![("csrf", "0123")], vec![]),
        (vec![], vec![]),
        (
            vec![("csrf", csrf.as_str())],
            vec![("origin", "http://evil.example")],
        ),
        (
            vec![("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ] {
        let refused = visitor.post("/sagas/o-stuck/abort", &form, &headers).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{form:?} {headers:?}"
        );
    }
    let saga = suite.client.saga("o-stuck").await.unwrap().unwrap();
    assert!(
        saga.steps.iter().all(|s| s.name != "abort"),
        "nothing was sent"
    );

    let done = visitor
        .post(
            "/sagas/o-stuck/abort",
            &[("csrf", &csrf)],
            &[
                ("origin", &visitor.url("")),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(
        done.location()
            .starts_with("/sagas/o-stuck?done=abort&seq="),
        "{}",
        done.location()
    );
    assert!(visitor
        .get(done.location())
        .await
        .body
        .contains("Abort sent"));

    suite.start_service("payment-service").await;
    let order = suite.settled("o-stuck").await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::AbortedByOperator));
    let saga = suite.client.saga("o-stuck").await.unwrap().unwrap();
    let abort = saga.steps.iter().find(|s| s.name == "abort").unwrap();
    assert_eq!(abort.by.as_deref(), Some("operator"));
    assert_eq!(suite.stock_of("sku-1").await, (10, 0));
    assert_eq!(suite.balance_of("c-1").await, 10_000);

    // A finished saga offers nothing more to do; signing out ends it all.
    let page = visitor.get("/sagas/o-stuck").await;
    assert!(!page.body.contains("/sagas/o-stuck/abort"));
    let csrf = page.hidden("csrf").expect("the sign-out form");
    let out = visitor.post("/sign-out", &[("csrf", &csrf)], &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let metrics = visitor.get("/metrics").await.body;
    assert!(
        metrics.contains(
            "jetsaga_console_operator_actions_total{action=\"abort\",outcome=\"sent\"} 1"
        ),
        "{metrics}"
    );
    suite.stop().await;
}

#[tokio::test]
async fn an_operator_reads_a_dead_letter_and_replays_it_once_its_cause_is_fixed() {
    let mut suite = Suite::start().await;
    // A first restock needs a price: this one is dead-lettered.
    suite.client.restock("sku-x", 5, None).await.unwrap();
    let seq = eventually("the dead letter", SETTLE, || async {
        let letters = suite.client.dead_letters("dlq.>").await.ok()?;
        letters.first().map(|l| l.seq)
    })
    .await;
    let console = suite
        .start_console(Identity::Operator, &[("CONSOLE_OPERATOR_TOKEN", TOKEN)])
        .await;
    let mut visitor = Visitor::new(console);

    let list = visitor.get("/dead-letters").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("inventory.cmd.restock"), "{}", list.body);
    assert!(list.body.contains(&format!("href=\"/dead-letters/{seq}\"")));
    let letter = visitor.get(&format!("/dead-letters/{seq}")).await;
    assert_eq!(letter.status, StatusCode::OK);
    for shown in [
        "Dlq-Reason",
        "unit_price_cents",
        "sku-x",
        "Sign in as operator",
    ] {
        assert!(letter.body.contains(shown), "{shown} not on the page");
    }
    assert_eq!(
        visitor.get("/dead-letters/abc").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        visitor.get("/dead-letters/99999").await.status,
        StatusCode::NOT_FOUND
    );

    // The cause fixed, the letter replayed through the console: applied
    // once, and gone.
    suite.seed(&[("sku-x", 1, 100)], &[]).await;
    visitor.sign_in(TOKEN, "/").await;
    let confirm = visitor.get(&format!("/dead-letters/{seq}/replay")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    let csrf = confirm.hidden("csrf").unwrap();
    let done = visitor
        .post(
            &format!("/dead-letters/{seq}/replay"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(done
        .location()
        .starts_with(&format!("/dead-letters?replayed={seq}&to=")));
    eventually("the replayed restock to apply", SETTLE, || async {
        let level = suite.client.stock("sku-x").await.ok()??;
        (level.available == 6).then_some(())
    })
    .await;
    assert!(visitor
        .get("/dead-letters")
        .await
        .body
        .contains("No dead letter."));
    assert_eq!(
        visitor.get(&format!("/dead-letters/{seq}")).await.status,
        StatusCode::NOT_FOUND
    );
    let again = visitor
        .post(
            &format!("/dead-letters/{seq}/replay"),
            &[("csrf", &csrf)],
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "replayed once");
    suite.stop().await;
}
