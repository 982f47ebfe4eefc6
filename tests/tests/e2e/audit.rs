//! `sagactl audit` (guarantee 8): the books add up after a run and while
//! sagas run, and a violation planted by the `admin` identity is named.

use async_nats::HeaderMap;
use e2e::testkit::Identity;
use e2e::{audit, Suite};
use events::subjects::{self, streams};
use events::OrderStatus;
use jetsaga_client::place_body;

async fn audit_of(suite: &Suite) -> (bool, serde_json::Value) {
    let run = suite.sagactl(&["audit"]).await;
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    (run.status.success(), report)
}

#[tokio::test]
async fn the_books_add_up_while_sagas_run_and_after() {
    let suite = Suite::start().await;
    // Short of stock and of money both: some orders are cancelled.
    suite
        .seed(
            &[("sku-1", 40, 100), ("sku-2", 25, 250)],
            &[("c-1", 5_000), ("c-2", 2_000), ("c-3", 60_000)],
        )
        .await;
    let mut acks = Vec::new();
    for i in 0..300 {
        let customer = ["c-1", "c-2", "c-3"][i % 3];
        let items: &[(&str, u32)] = if i % 2 == 0 {
            &[("sku-1", 1)]
        } else {
            &[("sku-1", 1), ("sku-2", 2)]
        };
        let body = place_body(&format!("o-{i}"), customer, items);
        acks.push(
            suite
                .client
                .send(subjects::PLACE_ORDER, HeaderMap::new(), body)
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    // While the sagas run: each read is consistent, so the books add up.
    let mut audits_while_running = 0;
    loop {
        let (ok, report) = audit_of(&suite).await;
        assert!(ok && report["ok"] == true, "while sagas run: {report:#}");
        audits_while_running += 1;
        let settled = suite
            .client
            .all_sagas(Some(events::saga::ListStatus::Finished))
            .await
            .unwrap();
        if settled.len() == 300 {
            break;
        }
    }
    let mut confirmed = 0;
    for i in 0..300 {
        if suite.settled(&format!("o-{i}")).await.status == OrderStatus::Confirmed {
            confirmed += 1;
        }
    }
    assert!(
        (1..300).contains(&confirmed),
        "{confirmed} of 300 confirmed"
    );
    let report = audit(&suite.nats.url(), suite.nats.security()).await;
    assert_eq!(report["orders"], 300);
    assert_eq!(report["skus"], 2);
    assert_eq!(report["accounts"], 3);
    eprintln!("{audits_while_running} audits while sagas ran; {confirmed} of 300 confirmed");
    suite.stop().await;
}

#[tokio::test]
async fn states_deleted_by_admin_are_named_by_what_no_longer_adds_up() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 10, 100)], &[("c-1", 10_000)]).await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 3)])
        .await
        .unwrap();
    suite
        .client
        .place("o-2", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    assert_eq!(suite.settled("o-1").await.status, OrderStatus::Confirmed);
    assert_eq!(suite.settled("o-2").await.status, OrderStatus::Confirmed);
    audit(&suite.nats.url(), suite.nats.security()).await;

    // Only admin may delete a stored message: it removes the sku's state
    // and the customer's account.
    let admin = suite.connect_as(Identity::Admin).await;
    let js = async_nats::jetstream::new(admin.nats().clone());
    for (stream, subject) in [
        (streams::INVENTORY, "inventory.sku.sku-1"),
        (streams::PAYMENTS, "payments.account.c-1"),
    ] {
        let stream = js.get_stream(stream).await.unwrap();
        let state = stream
            .get_last_raw_message_by_subject(subject)
            .await
            .unwrap();
        stream.delete_message(state.sequence).await.unwrap();
    }

    let (ok, report) = audit_of(&suite).await;
    assert!(!ok && report["ok"] == false, "{report:#}");
    let named: Vec<String> = report["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let field = |name: &str| v[name].as_str().unwrap().to_owned();
            format!("{} {}: {}", field("kind"), field("id"), field("message"))
        })
        .collect();
    // Each names the aggregate whose state is gone, and nothing else. An
    // aggregate changed twice in one batch keeps the older of the two
    // states (a batch rolls a subject up at its first change alone): the
    // delete then leaves that one, which no longer adds up, instead of
    // none. Which changes share a batch is the committer's timing.
    let of = |prefix: &str| -> Vec<&str> {
        named
            .iter()
            .map(String::as_str)
            .filter(|n| n.starts_with(prefix))
            .collect()
    };
    let (sku, account) = (of("sku sku-1: "), of("account c-1: "));
    assert_eq!(sku.len() + account.len(), named.len(), "{named:?}");
    let gone_or_stale = |findings: &[&str], gone: &str| {
        findings == [gone]
            || (!findings.is_empty() && findings.iter().all(|f| *f != gone && f.contains(", but ")))
    };
    assert!(
        gone_or_stale(
            &sku,
            "sku sku-1: orders hold or took it, but it is not stocked"
        ),
        "{named:?}"
    );
    assert!(
        gone_or_stale(
            &account,
            "account c-1: its orders were paid, but it has no account"
        ),
        "{named:?}"
    );
    suite.stop().await;
}
