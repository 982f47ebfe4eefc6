//! Each way an order can go, through the whole saga.

use async_nats::HeaderMap;
use e2e::{Suite, SETTLE};
use events::saga::{SagaState, StepStatus};
use events::{CancelReason, Cents, OrderStatus};
use futures::StreamExt;

#[tokio::test]
async fn an_order_with_stock_and_funds_is_confirmed_and_charged_once() {
    let suite = Suite::start().await;
    suite
        .seed(
            &[("sku-1", 10, 1299), ("sku-2", 5, 500)],
            &[("c-7", 100_000)],
        )
        .await;

    suite
        .client
        .place("o-1001", "c-7", &[("sku-1", 2), ("sku-2", 1)])
        .await
        .unwrap();
    let order = suite.settled("o-1001").await;

    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(order.total_cents, Some(Cents(2 * 1299 + 500)));
    assert_eq!(order.items[0].unit_price_cents, Some(Cents(1299)));
    assert_eq!(suite.stock_of("sku-1").await, (8, 0));
    assert_eq!(suite.stock_of("sku-2").await, (4, 0));
    assert_eq!(suite.balance_of("c-7").await, 100_000 - 3098);

    let saga = suite.client.saga("o-1001").await.unwrap().unwrap();
    assert_eq!(saga.state, SagaState::Confirmed);
    let history: Vec<_> = saga
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        history,
        [
            ("reserve_stock", StepStatus::Requested),
            ("reserve_stock", StepStatus::Succeeded),
            ("charge_payment", StepStatus::Requested),
            ("charge_payment", StepStatus::Succeeded),
            ("commit_stock", StepStatus::Requested),
            ("commit_stock", StepStatus::Succeeded),
            ("confirm_order", StepStatus::Requested),
            ("confirm_order", StepStatus::Succeeded),
        ]
    );
    suite.stop().await;
}

#[tokio::test]
async fn an_order_for_more_than_the_stock_is_cancelled_out_of_stock() {
    let suite = Suite::start().await;
    suite
        .seed(
            &[("sku-1", 3, 1000), ("sku-2", 10, 100)],
            &[("c-1", 100_000)],
        )
        .await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-2", 1), ("sku-1", 4)])
        .await
        .unwrap();
    let order = suite.settled("o-1").await;

    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::OutOfStock));
    // Nothing was held, not even the line that was in stock.
    assert_eq!(suite.stock_of("sku-2").await, (10, 0));
    assert_eq!(suite.balance_of("c-1").await, 100_000);
    suite.stop().await;
}

#[tokio::test]
async fn an_order_for_an_unknown_sku_is_cancelled_unknown_sku() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 3, 1000)], &[("c-1", 100_000)]).await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1), ("no-such-sku", 1)])
        .await
        .unwrap();
    let order = suite.settled("o-1").await;

    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::UnknownSku));
    assert_eq!(suite.stock_of("sku-1").await, (3, 0));
    suite.stop().await;
}

#[tokio::test]
async fn a_declined_payment_releases_the_stock_and_cancels() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 3, 1000)], &[("poor", 1999)]).await;

    suite
        .client
        .place("o-1", "poor", &[("sku-1", 2)])
        .await
        .unwrap();
    suite
        .client
        .place("o-2", "nobody", &[("sku-1", 1)])
        .await
        .unwrap();
    let declined = suite.settled("o-1").await;
    let no_account = suite.settled("o-2").await;

    for order in [&declined, &no_account] {
        assert_eq!(order.status, OrderStatus::Cancelled);
        assert_eq!(order.reason, Some(CancelReason::InsufficientFunds));
    }
    // Priced before the payment failed, so the cancelled order shows prices.
    assert_eq!(declined.total_cents, Some(Cents(2000)));
    assert_eq!(suite.stock_of("sku-1").await, (3, 0));
    assert_eq!(suite.balance_of("poor").await, 1999);

    let saga = suite.client.saga("o-1").await.unwrap().unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    let names: Vec<_> = saga
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert!(names.contains(&("charge_payment", StepStatus::Failed)));
    assert!(names.contains(&("release_stock", StepStatus::Succeeded)));
    suite.stop().await;
}

#[tokio::test]
async fn every_state_change_is_announced_on_orders_evt() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 3, 1000)], &[("c-1", 100_000)]).await;
    let mut events = suite.client.nats().subscribe("orders.evt.>").await.unwrap();
    suite.client.nats().flush().await.unwrap();

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite
        .client
        .place("o-2", "c-1", &[("sku-1", 5)])
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 4 {
        let message = tokio::time::timeout(SETTLE, events.next())
            .await
            .unwrap()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        assert_eq!(
            message.subject.as_str(),
            format!(
                "orders.evt.{}.{}",
                body["order_id"].as_str().unwrap(),
                body["type"].as_str().unwrap()
            )
        );
        seen.push((
            body["order_id"].as_str().unwrap().to_owned(),
            body["type"].as_str().unwrap().to_owned(),
            body["status"].as_str().unwrap().to_owned(),
            body["reason"].as_str().map(str::to_owned),
        ));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("o-1".into(), "confirmed".into(), "CONFIRMED".into(), None),
            ("o-1".into(), "placed".into(), "PENDING".into(), None),
            (
                "o-2".into(),
                "cancelled".into(),
                "CANCELLED".into(),
                Some("out_of_stock".into())
            ),
            ("o-2".into(), "placed".into(), "PENDING".into(), None),
        ]
    );
    suite.stop().await;
}

#[tokio::test]
async fn an_order_without_an_id_gets_one_that_survives_a_republish() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 3, 1000)], &[("c-1", 100_000)]).await;
    let mut placed = suite
        .client
        .nats()
        .subscribe("orders.evt.*.placed")
        .await
        .unwrap();
    suite.client.nats().flush().await.unwrap();

    let body = r#"{"customer_id": "c-1", "items": [{"sku": "sku-1", "quantity": 1}]}"#;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "client-request-17");
    for _ in 0..2 {
        suite
            .client
            .command("orders.cmd.place", headers.clone(), body.into())
            .await
            .unwrap();
    }
    let message = tokio::time::timeout(SETTLE, placed.next())
        .await
        .unwrap()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    let order_id = body["order_id"].as_str().unwrap().to_owned();
    assert!(order_id.starts_with("o-"), "derived id {order_id}");

    let order = suite.settled(&order_id).await;
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert_eq!(
        suite.balance_of("c-1").await,
        100_000 - 1000,
        "charged once"
    );
    suite.stop().await;
}
