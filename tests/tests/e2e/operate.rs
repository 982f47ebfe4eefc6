//! Operating the sagas: the list and its filters, the stuck ones found and
//! counted, and the cancel, retry and abort, each also racing sagas that
//! complete on their own.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::HeaderMap;
use e2e::testkit::{eventually, http_get, Identity};
use e2e::{Suite, SETTLE};
use events::saga::{ListSagas, ListStatus, SagaState, SagaSummary, StepStatus};
use events::{subjects, CancelReason, OrderStatus};
use jetsaga_client::{place_body, service_error_code, Client};

fn ids(sagas: &[SagaSummary]) -> Vec<String> {
    sagas.iter().map(|s| s.order_id.to_string()).collect()
}

/// Places `count` orders `<prefix><i>` of one `sku-1` each for `c-1`, all in
/// flight at once.
async fn place_many(client: &Client, prefix: &str, count: usize) -> Vec<String> {
    let mut acks = Vec::new();
    let mut placed = Vec::new();
    for i in 0..count {
        let order_id = format!("{prefix}{i}");
        let body = place_body(&order_id, "c-1", &[("sku-1", 1)]);
        acks.push(
            client
                .send(subjects::PLACE_ORDER, HeaderMap::new(), body)
                .await
                .unwrap(),
        );
        placed.push(order_id);
    }
    for ack in acks {
        ack.await.expect("the place command is stored");
    }
    placed
}

#[tokio::test]
async fn stuck_sagas_are_found_counted_and_retried_and_listed_alike_by_every_replica() {
    // Charges are asked again every second or two, and given up on only
    // after many attempts: with the payment service down, they are stuck.
    let mut suite = Suite::start_with(&[
        ("SAGA_STEP_TIMEOUT_MS", "1000"),
        ("SAGA_STEP_MAX_ATTEMPTS", "50"),
    ])
    .await;
    suite
        .seed(&[("sku-1", 100, 100)], &[("c-1", 100_000)])
        .await;
    suite.stop_service("payment-service").await;
    let stuck = place_many(&suite.client, "o-stuck-", 3).await;

    let client = suite.client.clone();
    let client = &client;
    let listed = eventually("three stuck sagas", SETTLE, || async move {
        let sagas = client.all_sagas(Some(ListStatus::Stuck)).await.ok()?;
        (sagas.len() == 3).then_some(sagas)
    })
    .await;
    assert_eq!(
        ids(&listed).into_iter().collect::<BTreeSet<_>>(),
        stuck.iter().cloned().collect()
    );
    for saga in &listed {
        assert_eq!(saga.state, SagaState::Charging);
        assert_eq!(saga.waiting_on.as_deref(), Some("charge_payment"));
        assert!(saga.attempt > 1, "{saga:?}");
        assert!(saga.started_at <= saga.updated_at, "{saga:?}");
    }
    assert_eq!(
        client
            .all_sagas(Some(ListStatus::Running))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(client
        .all_sagas(Some(ListStatus::Finished))
        .await
        .unwrap()
        .is_empty());

    let orchestrator = suite.http_of("saga-orchestrator");
    eventually("the stuck sagas counted", SETTLE, || async move {
        let (_, text) = http_get(orchestrator, "/metrics").await?;
        text.contains("jetsaga_sagas_stuck 3").then_some(())
    })
    .await;

    // What an operator types (the harness's sagactl prints JSON; the
    // table is sagactl's own test).
    let json = suite.sagactl(&["sagas", "--stuck"]).await;
    assert!(json.status.success(), "{json:?}");
    let from_json: Vec<SagaSummary> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(ids(&from_json).len(), 3);
    let json = suite.sagactl(&["sagas", "--status", "compensating"]).await;
    assert_eq!(
        serde_json::from_slice::<Vec<SagaSummary>>(&json.stdout).unwrap(),
        []
    );

    // Whichever orchestrator answers, restarted or not, one of two
    // replicas or the other, the list is the same, and so is the count.
    suite.stop_service("saga-orchestrator").await;
    suite.start_service("saga-orchestrator").await;
    let second = suite.start_replica("saga-orchestrator").await;
    for _ in 0..10 {
        let again = client.all_sagas(Some(ListStatus::Stuck)).await.unwrap();
        assert_eq!(
            ids(&again).into_iter().collect::<BTreeSet<_>>(),
            stuck.iter().cloned().collect()
        );
    }
    for replica in [orchestrator, second] {
        eventually(
            "each replica counts the stuck sagas",
            SETTLE,
            || async move {
                let (_, text) = http_get(replica, "/metrics").await?;
                text.contains("jetsaga_sagas_stuck 3").then_some(())
            },
        )
        .await;
    }

    // A retry asks at once, recorded with who asked.
    let before = client.saga(&stuck[0]).await.unwrap().unwrap();
    let retried = suite.sagactl(&["saga", "retry", &stuck[0]]).await;
    assert!(retried.status.success(), "{retried:?}");
    let order_id = stuck[0].as_str();
    let after = eventually("the retry recorded", SETTLE, || async move {
        let saga = client.saga(order_id).await.ok().flatten()?;
        saga.steps.iter().any(|s| s.name == "retry").then_some(saga)
    })
    .await;
    assert!(after.attempt > before.attempt, "{before:?} then {after:?}");
    let retry = after.steps.iter().find(|s| s.name == "retry").unwrap();
    assert_eq!(
        (retry.status, retry.by.as_deref()),
        (StepStatus::Requested, Some("operator"))
    );
    eventually("the retry counted", SETTLE, || async move {
        let (_, text) = http_get(orchestrator, "/metrics").await?;
        text.contains("jetsaga_saga_operator_actions_total{action=\"retry\"} 1")
            .then_some(())
    })
    .await;

    // Once the payment is back, every saga finishes and none is stuck.
    suite.start_service("payment-service").await;
    for order_id in &stuck {
        assert_eq!(suite.settled(order_id).await.status, OrderStatus::Confirmed);
    }
    eventually("no saga stuck", SETTLE, || async move {
        let stuck = client.all_sagas(Some(ListStatus::Stuck)).await.ok()?;
        let finished = client.all_sagas(Some(ListStatus::Finished)).await.ok()?;
        (stuck.is_empty() && finished.len() == 3).then_some(())
    })
    .await;
    eventually("the count back to 0", SETTLE, || async move {
        let (_, text) = http_get(orchestrator, "/metrics").await?;
        text.contains("jetsaga_sagas_stuck 0").then_some(())
    })
    .await;
    suite.stop().await;
}

#[tokio::test]
async fn a_client_cancels_its_pending_order_and_a_confirmed_one_stays_confirmed() {
    let mut suite = Suite::start().await;
    suite.seed(&[("sku-1", 10, 100)], &[("c-1", 10_000)]).await;
    let client = suite.connect_as(Identity::Client).await;

    // Held, not yet paid: the cancel releases the stock.
    suite.stop_service("payment-service").await;
    client.place("o-1", "c-1", &[("sku-1", 3)]).await.unwrap();
    suite.saga_reaches("o-1", SagaState::Charging).await;
    client.ask(subjects::CANCEL_ORDER, "o-1").await.unwrap();
    // Delivered twice: changes nothing more.
    client.ask(subjects::CANCEL_ORDER, "o-1").await.unwrap();
    suite.start_service("payment-service").await;
    let order = suite.settled("o-1").await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::CancelledByRequest));
    assert_eq!(suite.stock_of("sku-1").await, (10, 0));
    assert_eq!(suite.balance_of("c-1").await, 10_000);
    let saga = suite.client.saga("o-1").await.unwrap().unwrap();
    let asked: Vec<_> = saga.steps.iter().filter(|s| s.name == "cancel").collect();
    assert_eq!(asked.len(), 1, "{:?}", saga.steps);
    assert_eq!(asked[0].by.as_deref(), Some("client"));
    assert!(saga
        .steps
        .iter()
        .any(|s| s.name == "charge_payment" && s.status == StepStatus::Abandoned));

    // Confirmed first: the cancel loses, and nothing changes.
    client.place("o-2", "c-1", &[("sku-1", 2)]).await.unwrap();
    assert_eq!(suite.settled("o-2").await.status, OrderStatus::Confirmed);
    let before = suite.client.saga("o-2").await.unwrap().unwrap();
    let cancel = suite.sagactl(&["cancel", "o-2"]).await;
    assert!(cancel.status.success(), "{cancel:?}");
    let shown: serde_json::Value = serde_json::from_slice(&cancel.stdout).unwrap();
    assert_eq!(shown["status"], "CONFIRMED", "{shown}");
    client.ask(subjects::CANCEL_ORDER, "o-2").await.unwrap();
    // The cancel of a third order, placed after it, is handled after it.
    client.place("o-3", "c-1", &[("sku-1", 1)]).await.unwrap();
    client.ask(subjects::CANCEL_ORDER, "o-3").await.unwrap();
    suite.settled("o-3").await;
    assert_eq!(suite.settled("o-2").await.status, OrderStatus::Confirmed);
    assert_eq!(suite.client.saga("o-2").await.unwrap().unwrap(), before);
    assert_eq!(
        suite.balance_of("c-1").await,
        10_000 - 200 - charged(&suite, "o-3").await
    );
    assert_eq!(
        suite.sagactl(&["cancel", "o-nope"]).await.status.code(),
        Some(3)
    );
    suite.stop().await;
}

/// What the order cost its customer: its total if it was confirmed.
async fn charged(suite: &Suite, order_id: &str) -> u64 {
    let order = suite.settled(order_id).await;
    match order.status {
        OrderStatus::Confirmed => order.total_cents.unwrap().0,
        _ => 0,
    }
}

#[tokio::test]
async fn an_operator_aborts_a_saga_and_the_order_ends_aborted() {
    let mut suite = Suite::start().await;
    suite.seed(&[("sku-1", 10, 100)], &[("c-1", 10_000)]).await;
    suite.stop_service("inventory-service").await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 4)])
        .await
        .unwrap();
    suite.saga_reaches("o-1", SagaState::Reserving).await;

    let abort = suite.sagactl(&["saga", "abort", "o-1"]).await;
    assert!(abort.status.success(), "{abort:?}");
    suite.saga_reaches("o-1", SagaState::Releasing).await;
    // The inventory comes back to the reservation and its release: the
    // late reservation holds nothing.
    suite.start_service("inventory-service").await;
    let order = suite.settled("o-1").await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::AbortedByOperator));
    assert_eq!(suite.stock_of("sku-1").await, (10, 0));
    assert_eq!(suite.balance_of("c-1").await, 10_000);
    let saga = suite.client.saga("o-1").await.unwrap().unwrap();
    let abort = saga.steps.iter().find(|s| s.name == "abort").unwrap();
    assert_eq!(abort.by.as_deref(), Some("operator"));

    // A finished saga is left as it is; an unknown one is not found.
    let again = suite.sagactl(&["saga", "abort", "o-1"]).await;
    assert!(again.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(shown["state"], "CANCELLED", "{shown}");
    assert_eq!(
        suite
            .sagactl(&["saga", "retry", "o-nope"])
            .await
            .status
            .code(),
        Some(3)
    );

    // Only the operator may: the server refuses a client's abort.
    let client = suite.connect_as(Identity::Client).await;
    assert!(client.ask(subjects::ABORT_SAGA, "o-1").await.is_err());
    suite.stop().await;
}

#[tokio::test]
async fn cancels_aborts_and_retries_racing_sagas_that_complete_keep_the_books() {
    let suite = Suite::start().await;
    suite
        .seed(&[("sku-1", 1_000, 100)], &[("c-1", 1_000_000)])
        .await;
    let orders = place_many(&suite.client, "o-race-", 300).await;
    let subject = |i: usize| match i % 3 {
        0 => subjects::CANCEL_ORDER,
        1 => subjects::ABORT_SAGA,
        _ => subjects::RETRY_SAGA,
    };
    for (i, order_id) in orders.iter().enumerate() {
        suite.client.ask(subject(i), order_id).await.unwrap();
    }
    let mut confirmed = 0u64;
    let mut won = 0;
    for (i, order_id) in orders.iter().enumerate() {
        let order = suite.settled(order_id).await;
        let reason = match subject(i) {
            subjects::CANCEL_ORDER => Some(CancelReason::CancelledByRequest),
            subjects::ABORT_SAGA => Some(CancelReason::AbortedByOperator),
            // A retry asks a step again, whose answer it was racing: the
            // saga goes on as if it had not been asked twice.
            _ => None,
        };
        match (order.status, reason) {
            (OrderStatus::Confirmed, reason) => {
                confirmed += 1;
                won += usize::from(reason.is_some());
            }
            (_, Some(reason)) => assert_eq!(order.reason, Some(reason), "{order:?}"),
            (_, None) => panic!("a retry cancelled its order: {order:?}"),
        }
    }
    eprintln!(
        "{won} of {} confirmed before their cancel or abort",
        orders.len() * 2 / 3
    );
    // Whichever won, nobody paid for a cancelled order and no stock is held.
    assert_eq!(suite.stock_of("sku-1").await, (1_000 - confirmed, 0));
    assert_eq!(suite.balance_of("c-1").await, 1_000_000 - 100 * confirmed);
    let client = &suite.client;
    eventually("every saga finished", SETTLE, || async move {
        let finished = client.all_sagas(Some(ListStatus::Finished)).await.ok()?;
        let open = client.all_sagas(None).await.ok()?;
        (finished.len() == 300 && open.len() == 300).then_some(())
    })
    .await;
    suite.stop().await;
}

#[tokio::test]
async fn the_list_pages_through_thousands_of_sagas_finished_first_then_oldest_started() {
    let mut suite = Suite::start().await;
    suite
        .seed(&[("sku-1", 10_000, 100)], &[("c-1", 10_000_000)])
        .await;
    let finished = place_many(&suite.client, "o-done-", 1_500).await;
    let client = suite.client.clone();
    let client = &client;
    // Beside the other tests, on a small machine, 1,500 sagas take a while.
    eventually(
        "1,500 sagas finished",
        Duration::from_secs(180),
        || async move {
            let done = client.all_sagas(Some(ListStatus::Finished)).await.ok()?;
            (done.len() == 1_500).then_some(())
        },
    )
    .await;
    suite.stop_service("payment-service").await;
    let open = place_many(&suite.client, "o-open-", 300).await;
    eventually(
        "300 sagas charging",
        Duration::from_secs(120),
        || async move {
            let running = client.all_sagas(Some(ListStatus::Running)).await.ok()?;
            running
                .iter()
                .filter(|s| s.state == SagaState::Charging)
                .count()
                .eq(&300)
                .then_some(())
        },
    )
    .await;

    let mut pages = 0;
    let mut seen = Vec::new();
    let mut request = ListSagas {
        limit: Some(250),
        ..ListSagas::default()
    };
    loop {
        let page = client.list_sagas(&request).await.unwrap();
        assert!(page.sagas.len() <= 250);
        pages += 1;
        seen.extend(page.sagas);
        match page.next {
            Some(next) => request.after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    let listed = ids(&seen);
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>().len(),
        1_800,
        "no saga twice"
    );
    assert_eq!(
        listed[..1_500].iter().collect::<BTreeSet<_>>(),
        finished.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        listed[1_500..].iter().collect::<BTreeSet<_>>(),
        open.iter().collect::<BTreeSet<_>>()
    );
    let started: Vec<&str> = seen[1_500..]
        .iter()
        .map(|s| s.started_at.as_str())
        .collect();
    let mut sorted = seen[1_500..].to_vec();
    sorted.sort_by_key(|s| {
        time::OffsetDateTime::parse(
            &s.started_at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    });
    assert_eq!(
        started,
        sorted
            .iter()
            .map(|s| s.started_at.as_str())
            .collect::<Vec<_>>()
    );
    assert!(seen[..1_500]
        .iter()
        .all(|s| s.state.is_terminal() && s.waiting_on.is_none()));
    suite.start_service("payment-service").await;
    suite.stop().await;
}

#[tokio::test]
async fn a_list_request_out_of_bounds_is_a_400_naming_what_is_wrong() {
    let suite = Suite::start_only(&["saga-orchestrator"], &[]).await;
    for (request, says) in [
        (r#"{"limit": 0}"#, "limit"),
        (r#"{"limit": 1001}"#, "limit"),
        (r#"{"status": "sleeping"}"#, "unknown variant"),
        (r#"{"after": "nonsense"}"#, "cursor"),
        (r#"{"status": "finished", "after": "o"}"#, "cursor"),
        (r#"{"colour": "red"}"#, "colour"),
    ] {
        let answer = suite
            .client
            .request(subjects::LIST_SAGAS, request.into())
            .await
            .unwrap();
        assert_eq!(service_error_code(&answer), Some(400), "{request}");
        let body: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{request}: {message}");
    }
    let empty = suite
        .client
        .list_sagas(&ListSagas::default())
        .await
        .unwrap();
    assert!(empty.sagas.is_empty() && empty.next.is_none());
    suite.stop().await;
}
