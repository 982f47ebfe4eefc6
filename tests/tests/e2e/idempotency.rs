//! Nothing happens twice: not a place command sent twice, not a command
//! with a `Nats-Msg-Id` sent again, not a saga command delivered again.

use async_nats::HeaderMap;
use e2e::testkit::{eventually, Identity};
use e2e::{Suite, SETTLE};
use events::subjects::streams;
use events::OrderStatus;

#[tokio::test]
async fn placing_the_same_order_id_twice_creates_one_order() {
    let suite = Suite::start().await;
    suite
        .seed(&[("sku-1", 10, 1000)], &[("c-1", 100_000)])
        .await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite.settled("o-1").await;
    // Again, even with other lines: the order exists, nothing new is made.
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 5)])
        .await
        .unwrap();
    suite
        .client
        .place("o-2", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite.settled("o-2").await;

    let order = suite.client.order("o-1").await.unwrap().unwrap();
    assert_eq!(order.items[0].quantity.get(), 1);
    let stock = suite.client.stock("sku-1").await.unwrap().unwrap();
    assert_eq!(stock.available, 8);
    assert_eq!(suite.balance_of("c-1").await, 98_000);
    suite.stop().await;
}

#[tokio::test]
async fn a_command_sent_again_with_its_msg_id_is_applied_once() {
    let suite = Suite::start().await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "restock-2026-11-26-a");
    let restock = r#"{"sku": "sku-1", "quantity": 5, "unit_price_cents": 100}"#;
    let mut deposit_headers = HeaderMap::new();
    deposit_headers.insert("Nats-Msg-Id", "deposit-42");
    let deposit = r#"{"customer_id": "c-1", "amount_cents": 700}"#;
    for _ in 0..3 {
        suite
            .client
            .command("inventory.cmd.restock", headers.clone(), restock.into())
            .await
            .unwrap();
        suite
            .client
            .command(
                "payments.cmd.deposit",
                deposit_headers.clone(),
                deposit.into(),
            )
            .await
            .unwrap();
    }
    // A marker command behind them: once it is applied, so are they.
    suite.seed(&[("marker", 1, 1)], &[("marker", 1)]).await;

    assert_eq!(
        suite
            .client
            .stock("sku-1")
            .await
            .unwrap()
            .unwrap()
            .available,
        5
    );
    assert_eq!(suite.balance_of("c-1").await, 700);
    suite.stop().await;
}

/// Copies every saga command of a finished order back onto its subject, as
/// a redelivery would present it, and checks that nobody acts on it again.
#[tokio::test]
async fn saga_commands_delivered_again_change_nothing() {
    let suite = Suite::start().await;
    suite
        .seed(&[("sku-1", 10, 1000)], &[("c-1", 100_000), ("c-2", 500)])
        .await;
    suite
        .client
        .place("o-ok", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    suite
        .client
        .place("o-declined", "c-2", &[("sku-1", 2)])
        .await
        .unwrap();
    assert_eq!(suite.settled("o-ok").await.status, OrderStatus::Confirmed);
    assert_eq!(
        suite.settled("o-declined").await.status,
        OrderStatus::Cancelled
    );

    // Read as the operator may, write as the orchestrator (the only
    // identity allowed to), look at the consumers as admin.
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let orchestrator = async_nats::jetstream::new(
        suite
            .connect_as(Identity::SagaOrchestrator)
            .await
            .nats()
            .clone(),
    );
    let admin = async_nats::jetstream::new(suite.connect_as(Identity::Admin).await.nats().clone());
    let saga = js.get_stream(streams::SAGA).await.unwrap();
    let consumers = admin.get_stream(streams::SAGA).await.unwrap();
    let last = saga.cached_info().state.last_sequence;
    for seq in 1..=last {
        // Only the saga's records: its timers and deadlines are its own.
        let Ok(record) = saga.get_raw_message(seq).await else {
            continue; // a deadline that fired and was purged
        };
        if !record.subject.starts_with("saga.log.") {
            continue;
        }
        orchestrator
            .publish(record.subject.to_string(), record.payload)
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for consumer in ["inventory-saga", "payment-saga", "order-saga"] {
        eventually(&format!("{consumer} to handle the copies"), SETTLE, || {
            let consumers = consumers.clone();
            async move {
                let mut c = consumers
                    .get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer)
                    .await
                    .ok()?;
                let info = c.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;
    }

    assert_eq!(suite.stock_of("sku-1").await, (8, 0));
    assert_eq!(suite.balance_of("c-1").await, 98_000);
    assert_eq!(suite.balance_of("c-2").await, 500);
    assert_eq!(
        suite.client.order("o-ok").await.unwrap().unwrap().status,
        OrderStatus::Confirmed
    );
    assert_eq!(
        suite
            .client
            .order("o-declined")
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::Cancelled
    );
    // Nothing was dead-lettered either: duplicates are normal traffic.
    let dlq = js.get_stream(streams::DLQ).await.unwrap();
    assert_eq!(dlq.cached_info().state.messages, 0);
    // Asked again, the participants said their answer again (for a saga
    // that missed it), unchanged: the payment service its charge.
    let payments = js.get_stream(streams::PAYMENTS).await.unwrap();
    let mut answers = Vec::new();
    let mut next = 1;
    while let Ok(m) = payments
        .direct_get_next_for_subject("payments.evt.o-ok.>", Some(next))
        .await
    {
        next = m.sequence + 1;
        answers.push((m.subject.to_string(), m.payload));
    }
    assert!(
        answers.len() >= 2,
        "the charge was announced again: {answers:?}"
    );
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "the same answer each time"
    );
    suite.stop().await;
}
