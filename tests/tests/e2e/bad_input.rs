//! Bad input gets a clear answer, creates nothing, and never blocks or
//! crashes anything.

use async_nats::jetstream::stream::Stream;
use async_nats::HeaderMap;
use e2e::testkit::Identity;
use e2e::{Suite, SETTLE};
use events::subjects::streams;
use events::OrderStatus;
use futures::StreamExt;

#[tokio::test]
async fn every_kind_of_invalid_order_is_rejected_with_all_its_errors() {
    let suite = Suite::start().await;
    let mut rejected = suite
        .client
        .nats()
        .subscribe("orders.evt.rejected")
        .await
        .unwrap();
    suite.client.nats().flush().await.unwrap();
    let many_lines = vec![r#"{"sku":"s","quantity":1}"#; 101].join(",");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            r#"{"order_id":"bad-1","customer_id":"c","items":[]}"#.into(),
            vec!["items: must not be empty"],
        ),
        (
            r#"{"order_id":"bad-2","customer_id":"c","items":[{"sku":"s","quantity":0}]}"#.into(),
            vec!["items[0].quantity"],
        ),
        (
            r#"{"order_id":"bad-3","customer_id":"c","items":[{"sku":"s","quantity":10001}]}"#
                .into(),
            vec!["items[0].quantity"],
        ),
        (
            r#"{"order_id":"o.1","customer_id":"c","items":[{"sku":"s","quantity":1}]}"#.into(),
            vec!["order_id"],
        ),
        (
            r#"{"order_id":"o 1","customer_id":"c","items":[{"sku":"s","quantity":1}]}"#.into(),
            vec!["order_id"],
        ),
        (
            r#"{"order_id":"o*","customer_id":"c","items":[{"sku":"s>","quantity":1}]}"#.into(),
            vec!["order_id", "items[0].sku"],
        ),
        (
            format!(r#"{{"order_id":"bad-4","customer_id":"c","items":[{many_lines}]}}"#),
            vec!["at most 100 lines"],
        ),
        (
            r#"{"order_id":"bad-5","items":[{"sku":"s","quantity":1}]}"#.into(),
            vec!["customer_id: is required"],
        ),
        (
            r#"{"order_id":"bad-6","customer_id":"a b","items":[{"quantity":-1}]}"#.into(),
            vec![
                "customer_id",
                "items[0].sku: is required",
                "items[0].quantity",
            ],
        ),
    ];
    for (body, expected) in &cases {
        suite
            .client
            .command("orders.cmd.place", HeaderMap::new(), body.clone().into())
            .await
            .unwrap();
        let event = tokio::time::timeout(SETTLE, rejected.next())
            .await
            .unwrap()
            .unwrap();
        let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(event["type"], "rejected");
        let errors: Vec<&str> = event["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(errors.len(), expected.len(), "{body}: {errors:?}");
        for needle in expected {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{body}: {needle:?} not in {errors:?}"
            );
        }
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["order_id"], sent["order_id"]);
    }
    for id in ["bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "bad-6"] {
        assert!(
            suite.client.order(id).await.unwrap().is_none(),
            "{id} was created"
        );
    }
    suite.stop().await;
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_next_order_goes_through() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 5, 100)], &[("c-1", 10_000)]).await;

    for poison in ["this is not json", "[1, 2, 3]"] {
        suite
            .client
            .command("orders.cmd.place", HeaderMap::new(), poison.into())
            .await
            .unwrap();
    }
    suite
        .client
        .place("o-after", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    assert_eq!(
        suite.settled("o-after").await.status,
        OrderStatus::Confirmed
    );

    let letters = dead_letters(&suite, "dlq.order-service.orders.cmd.place", 2).await;
    assert_eq!(letters[0].0, "this is not json", "the body is unchanged");
    assert_eq!(letters[1].0, "[1, 2, 3]");
    for (_, headers) in &letters {
        assert!(headers.get("Dlq-Reason").unwrap().as_str().contains("JSON"));
        assert_eq!(
            headers.get("Dlq-Original-Subject").unwrap().as_str(),
            "orders.cmd.place"
        );
        assert_eq!(headers.get("Dlq-Deliveries").unwrap().as_str(), "1");
    }
    suite.stop().await;
}

#[tokio::test]
async fn an_unusable_restock_or_deposit_is_dead_lettered_with_its_reason() {
    let suite = Suite::start().await;
    let bad = [
        (
            "inventory.cmd.restock",
            r#"{"sku": "new-sku", "quantity": 5}"#,
            "needs a unit_price_cents",
        ),
        (
            "inventory.cmd.restock",
            r#"{"sku": "s", "quantity": 0, "unit_price_cents": 1}"#,
            "quantity",
        ),
        (
            "payments.cmd.deposit",
            r#"{"customer_id": "c.1", "amount_cents": 5}"#,
            "A-Z a-z 0-9",
        ),
        (
            "payments.cmd.deposit",
            r#"{"customer_id": "c-1", "amount_cents": -5}"#,
            "amount_cents",
        ),
    ];
    for (subject, body, _) in &bad {
        suite
            .client
            .command(subject, HeaderMap::new(), (*body).into())
            .await
            .unwrap();
    }
    let restocks = dead_letters(&suite, "dlq.inventory-service.inventory.cmd.restock", 2).await;
    let deposits = dead_letters(&suite, "dlq.payment-service.payments.cmd.deposit", 2).await;
    let letters: Vec<_> = restocks.iter().chain(&deposits).collect();
    for (_, sent, reason) in &bad {
        // Handled concurrently: find each by its unchanged body.
        let (_, headers) = letters
            .iter()
            .find(|(body, _)| body == sent)
            .expect("dead-lettered");
        let why = headers.get("Dlq-Reason").unwrap().as_str();
        assert!(why.contains(reason), "{why:?} should mention {reason:?}");
    }
    assert!(suite.client.stock("new-sku").await.unwrap().is_none());
    assert!(suite.client.account("c-1").await.unwrap().is_none());
    suite.stop().await;
}

#[tokio::test]
async fn a_huge_message_id_is_refused_before_it_reaches_a_subject_and_nothing_else_stalls() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 5, 100)], &[("c-1", 10_000)]).await;
    let mut rejected = suite
        .client
        .nats()
        .subscribe("orders.evt.rejected")
        .await
        .unwrap();
    suite.client.nats().flush().await.unwrap();
    let mut huge = HeaderMap::new();
    huge.insert("Nats-Msg-Id", "x".repeat(5_000).as_str());
    let send = |subject: &'static str, body: &'static str| {
        let headers = huge.clone();
        let client = &suite.client;
        async move {
            client
                .command(subject, headers, body.into())
                .await
                .expect("stored")
        }
    };
    send(
        "orders.cmd.place",
        r#"{"customer_id":"c-1","items":[{"sku":"sku-1","quantity":1}]}"#,
    )
    .await;
    send("inventory.cmd.restock", r#"{"sku":"sku-1","quantity":50}"#).await;
    send(
        "payments.cmd.deposit",
        r#"{"customer_id":"c-1","amount_cents":50000}"#,
    )
    .await;
    // Right behind them, commands with ordinary ids.
    suite
        .client
        .place("o-after", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite.client.restock("sku-1", 1, None).await.unwrap();
    suite.client.deposit("c-1", 1).await.unwrap();

    let event = tokio::time::timeout(SETTLE, rejected.next())
        .await
        .expect("the place command is rejected")
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["type"], "rejected");
    assert_eq!(event["order_id"], serde_json::Value::Null);
    assert_eq!(
        event["errors"],
        serde_json::json!(["Nats-Msg-Id: must be at most 256 bytes, got 5000"])
    );
    assert_eq!(
        suite.settled("o-after").await.status,
        OrderStatus::Confirmed
    );
    let restocks = dead_letters(&suite, "dlq.inventory-service.inventory.cmd.restock", 1).await;
    let deposits = dead_letters(&suite, "dlq.payment-service.payments.cmd.deposit", 1).await;
    for (_, headers) in restocks.iter().chain(&deposits) {
        let why = headers.get("Dlq-Reason").unwrap().as_str();
        assert_eq!(why, "Nats-Msg-Id: must be at most 256 bytes, got 5000");
    }
    // Only the ordinary commands applied: 5 - 1 + 1 units, 10000 - 100 + 1 cents.
    e2e::testkit::eventually("the ordinary restock and deposit", SETTLE, || async {
        let stock = suite.stock_of("sku-1").await;
        let balance = suite.balance_of("c-1").await;
        (stock == (5, 0) && balance == 9_901).then_some(())
    })
    .await;
    suite.stop().await;
}

/// A place command without an id, in JSON.
const NO_ID: &str = r#"{"customer_id":"c-1","items":[{"sku":"sku-1","quantity":1}]}"#;

/// With the order service stopped, so that nothing else is stored in
/// between: publishes `first` (given the sequence the place command without
/// an id will be stored at), then that command, and returns the id derived
/// for it. Then starts the order service.
async fn before_an_order_without_id<F, Fut>(suite: &mut Suite, first: F) -> String
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    suite.stop_service("order-service").await;
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let mut orders: Stream = js.get_stream(streams::ORDERS).await.unwrap();
    let next = orders.info().await.unwrap().state.last_sequence + 1;
    first(next + 1).await;
    let ack = suite
        .client
        .command("orders.cmd.place", HeaderMap::new(), NO_ID.into())
        .await
        .unwrap();
    assert_eq!(ack.sequence, next + 1, "nothing stored in between");
    suite.start_service("order-service").await;
    format!("o-s{}", ack.sequence)
}

/// A suite with stock, a customer `c-1` and a would-be claimant `c-claim`,
/// and a subscription to the rejections.
async fn a_customer_and_a_claimant() -> (Suite, async_nats::Subscriber) {
    let suite = Suite::start().await;
    suite
        .seed(
            &[("sku-1", 10, 100)],
            &[("c-1", 10_000), ("c-claim", 10_000)],
        )
        .await;
    let rejected = suite
        .client
        .nats()
        .subscribe("orders.evt.rejected")
        .await
        .unwrap();
    suite.client.nats().flush().await.unwrap();
    (suite, rejected)
}

#[tokio::test]
async fn a_client_cannot_claim_the_id_a_later_order_without_one_will_get() {
    let (mut suite, mut rejected) = a_customer_and_a_claimant().await;
    let client = suite.client.clone();
    let derived = before_an_order_without_id(&mut suite, |seq| async move {
        client
            .place(&format!("o-s{seq}"), "c-claim", &[("sku-1", 5)])
            .await
            .unwrap();
    })
    .await;

    let event = tokio::time::timeout(SETTLE, rejected.next())
        .await
        .expect("the claim is rejected")
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["order_id"], derived.as_str());
    let errors = event["errors"].to_string();
    assert!(errors.contains("is reserved"), "{errors}");
    // The id is the later order's, as placed by its own customer.
    let order = suite.settled(&derived).await;
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.customer_id.as_str(), "c-1");
    assert_eq!(order.items[0].quantity.get(), 1);
    assert_eq!(suite.balance_of("c-1").await, 9_900);
    assert_eq!(suite.balance_of("c-claim").await, 10_000);
    suite.stop().await;
}

#[tokio::test]
async fn an_order_whose_derived_id_is_taken_already_is_rejected_not_merged() {
    let (mut suite, mut rejected) = a_customer_and_a_claimant().await;
    // An order placed under the id before such ids were reserved: its
    // `placed` event, stored before the command the id names (as only the
    // order service may write it).
    let client = suite.connect_as(Identity::OrderService).await;
    let derived = before_an_order_without_id(&mut suite, |seq| async move {
        let claim = serde_json::json!({
            "type": "placed",
            "order_id": format!("o-s{seq}"),
            "customer_id": "c-claim",
            "status": "PENDING",
            "items": [{"sku": "sku-1", "quantity": 5}],
        });
        client
            .command(
                &format!("orders.evt.o-s{seq}.placed"),
                HeaderMap::new(),
                claim.to_string().into(),
            )
            .await
            .unwrap();
    })
    .await;

    let event = tokio::time::timeout(SETTLE, rejected.next())
        .await
        .expect("the later order is rejected")
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["order_id"], serde_json::Value::Null);
    let errors = event["errors"].to_string();
    assert!(
        errors.contains(&derived) && errors.contains("belongs to another order"),
        "{errors}"
    );
    // The order under the id stays the one placed first, and only it is
    // charged.
    let order = suite.settled(&derived).await;
    assert_eq!(order.customer_id.as_str(), "c-claim");
    assert_eq!(order.items[0].quantity.get(), 5);
    assert_eq!(suite.balance_of("c-1").await, 10_000);
    suite.stop().await;
}

/// Waits for `count` dead letters on `subject` and returns their bodies and
/// headers, oldest first.
async fn dead_letters(suite: &Suite, subject: &str, count: usize) -> Vec<(String, HeaderMap)> {
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let dlq: Stream = js.get_stream(streams::DLQ).await.unwrap();
    e2e::testkit::eventually(
        &format!("{count} dead letters on {subject}"),
        SETTLE,
        || {
            let dlq = dlq.clone();
            async move {
                let mut found = Vec::new();
                let mut seq = 1;
                while let Ok(message) = dlq.direct_get_next_for_subject(subject, Some(seq)).await {
                    seq = message.sequence + 1;
                    found.push((
                        String::from_utf8(message.payload.to_vec()).unwrap(),
                        message.headers,
                    ));
                }
                (found.len() >= count).then_some(found)
            }
        },
    )
    .await
}
