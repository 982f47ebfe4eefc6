//! Bounded storage: once the retention window has passed, a finished
//! saga leaves one stored message, its order's final state; aggregates
//! keep their last state alone, and handled commands are gone.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use e2e::testkit::{eventually, within};
use e2e::Suite;
use events::subjects::{self, streams};
use events::{CancelReason, OrderStatus};
use futures::StreamExt;
use jetsaga_client::service_error_code;

/// Every subject stored in `stream`, with how many messages it holds.
async fn stored(suite: &Suite, stream: &str) -> BTreeMap<String, usize> {
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let stream = js.get_stream(stream).await.expect("the stream is there");
    let mut subjects = stream.info_with_subjects(">").await.expect("stream info");
    let mut held = BTreeMap::new();
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry.expect("a subject");
        held.insert(subject, count);
    }
    held
}

#[tokio::test]
async fn after_the_window_a_finished_saga_leaves_only_its_orders_final_state() {
    const WINDOW_SECONDS: u64 = 16;
    let suite = Suite::start_with(&[
        ("SAGA_HISTORY_RETENTION_SECONDS", "16"),
        ("SAGA_STEP_TIMEOUT_MS", "1000"),
    ])
    .await;
    suite.seed(&[("sku-1", 3, 100)], &[("c-1", 10_000)]).await;
    // One after the other: a sku changed twice in one batch keeps both
    // states until its next change.
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    suite.settled("o-1").await;
    suite
        .client
        .place("o-2", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    suite
        .client
        .command(
            subjects::PLACE_ORDER,
            HeaderMap::new(),
            r#"{"customer_id": "c-1", "items": []}"#.into(),
        )
        .await
        .unwrap();
    let one = suite.settled("o-1").await;
    let two = suite.settled("o-2").await;
    assert_eq!(one.status, OrderStatus::Confirmed);
    assert_eq!(two.reason, Some(CancelReason::OutOfStock));
    let finished = std::time::Instant::now();

    // Within the window: the history is there; the aggregates already keep
    // one state each, and no handled command is left.
    assert!(suite.client.saga("o-1").await.unwrap().is_some());
    let inventory = stored(&suite, streams::INVENTORY).await;
    assert_eq!(
        inventory.get("inventory.sku.sku-1"),
        Some(&1),
        "{inventory:?}"
    );
    assert!(
        !inventory.keys().any(|s| s.starts_with("inventory.cmd.")),
        "{inventory:?}"
    );
    let payments = stored(&suite, streams::PAYMENTS).await;
    assert_eq!(
        payments.get("payments.account.c-1"),
        Some(&1),
        "{payments:?}"
    );
    let orders = stored(&suite, streams::ORDERS).await;
    assert!(!orders.contains_key(subjects::PLACE_ORDER), "{orders:?}");
    assert!(orders.contains_key("orders.evt.o-1.placed"), "{orders:?}");

    // After it: the saga is gone, the order answers from its final state.
    let client = &suite.client;
    eventually(
        "the history of o-1 to expire",
        std::time::Duration::from_secs(3 * WINDOW_SECONDS),
        || async move {
            let answer = client
                .request(subjects::GET_SAGA, r#"{"order_id":"o-1"}"#.into())
                .await
                .ok()?;
            (service_error_code(&answer) == Some(404)).then_some(())
        },
    )
    .await;
    assert!(finished.elapsed().as_secs() >= WINDOW_SECONDS - 1);
    let suite = &suite;
    let left = || async move {
        let left: BTreeMap<&str, BTreeMap<String, usize>> = [
            (streams::ORDERS, stored(suite, streams::ORDERS).await),
            (streams::SAGA, stored(suite, streams::SAGA).await),
            (streams::INVENTORY, stored(suite, streams::INVENTORY).await),
            (streams::PAYMENTS, stored(suite, streams::PAYMENTS).await),
        ]
        .into();
        left
    };
    let wanted: BTreeMap<&str, BTreeMap<String, usize>> = [
        (
            streams::ORDERS,
            [
                ("orders.evt.o-1.confirmed".to_owned(), 1),
                ("orders.evt.o-2.cancelled".to_owned(), 1),
            ]
            .into(),
        ),
        (streams::SAGA, BTreeMap::new()),
        (
            streams::INVENTORY,
            [("inventory.sku.sku-1".to_owned(), 1)].into(),
        ),
        (
            streams::PAYMENTS,
            [("payments.account.c-1".to_owned(), 1)].into(),
        ),
    ]
    .into();
    let wanted = &wanted;
    let expired = within(
        std::time::Duration::from_secs(WINDOW_SECONDS),
        || async move { (left().await == *wanted).then_some(()) },
    )
    .await;
    if expired.is_none() {
        assert_eq!(left().await, *wanted, "what is left after the window");
    }
    assert_eq!(suite.client.order("o-1").await.unwrap().unwrap(), one);
    assert_eq!(suite.client.order("o-2").await.unwrap().unwrap(), two);
    assert_eq!(suite.stock_of("sku-1").await, (1, 0));
    assert_eq!(suite.balance_of("c-1").await, 10_000 - 200);
    let listed = suite.client.all_sagas(None).await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}
