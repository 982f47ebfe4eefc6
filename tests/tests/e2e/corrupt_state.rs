//! A stored state that cannot be read ends the saga steps it blocks: the
//! participant answers that the step failed, so the saga compensates and
//! the order is cancelled at once, the step is dead-lettered and counted for
//! an operator, and the orders of every other sku or customer go through.

use std::net::SocketAddr;

use async_nats::jetstream::stream::Stream;
use e2e::testkit::{eventually, http_get, metrics, Identity};
use e2e::{Suite, SETTLE};
use events::saga::StepStatus;
use events::subjects::streams;
use events::{CancelReason, OrderStatus};

/// Stores `garbage` as the state on `subject`, as only the identity that
/// owns it may (a bug in that service, or a restore gone wrong).
async fn corrupt(suite: &Suite, subject: &str, garbage: &'static str) {
    let owner = if subject.starts_with("inventory.") {
        Identity::InventoryService
    } else {
        Identity::PaymentService
    };
    let js = async_nats::jetstream::new(suite.connect_as(owner).await.nats().clone());
    js.publish(subject.to_owned(), garbage.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The dead letters on `subject`, by their `Dlq-Reason`.
async fn dead_letter_reasons(suite: &Suite, subject: &str) -> Vec<String> {
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let dlq: Stream = js.get_stream(streams::DLQ).await.unwrap();
    let mut reasons = Vec::new();
    let mut seq = 1;
    while let Ok(message) = dlq.direct_get_next_for_subject(subject, Some(seq)).await {
        seq = message.sequence + 1;
        reasons.push(message.headers.get("Dlq-Reason").unwrap().to_string());
    }
    reasons
}

async fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (_, text) = http_get(addr, "/metrics").await.expect("metrics answer");
    metrics::value(&text, name, labels).unwrap_or(0.0)
}

/// The saga of `order_id` settled on its first answers: nothing timed out,
/// and `step` failed.
async fn failed_without_retries(suite: &Suite, order_id: &str, step: &str) {
    let saga = suite.client.saga(order_id).await.unwrap().unwrap();
    assert!(
        saga.steps
            .iter()
            .any(|s| s.name == step && s.status == StepStatus::Failed),
        "{order_id}: {step} failed in {:?}",
        saga.steps
    );
    assert!(
        saga.steps.iter().all(|s| s.status != StepStatus::TimedOut),
        "{order_id}: nothing waited for a deadline: {:?}",
        saga.steps
    );
}

#[tokio::test]
async fn an_unreadable_sku_cancels_its_orders_at_once_and_holds_up_no_other() {
    let suite = Suite::start().await;
    suite
        .seed(&[("bad", 10, 100), ("good", 10, 100)], &[("c-1", 100_000)])
        .await;
    corrupt(&suite, "inventory.sku.bad", "{not json").await;

    for (order_id, items) in [
        ("o-bad", vec![("bad", 1)]),
        ("o-both", vec![("good", 2), ("bad", 1)]),
        ("o-good", vec![("good", 1)]),
    ] {
        suite.client.place(order_id, "c-1", &items).await.unwrap();
    }

    assert_eq!(suite.settled("o-good").await.status, OrderStatus::Confirmed);
    for order_id in ["o-bad", "o-both"] {
        let order = suite.settled(order_id).await;
        assert_eq!(order.status, OrderStatus::Cancelled, "{order_id}");
        assert_eq!(
            order.reason,
            Some(CancelReason::InventoryUnavailable),
            "{order_id}"
        );
        failed_without_retries(&suite, order_id, "reserve_stock").await;
        let reasons = dead_letter_reasons(
            &suite,
            &format!("dlq.inventory-service.saga.log.{order_id}.reserve_stock"),
        )
        .await;
        assert_eq!(reasons.len(), 1, "{order_id}: one dead letter: {reasons:?}");
        assert!(
            reasons[0].contains("sku bad cannot be read")
                && reasons[0].contains("answered reserve_failed"),
            "{}",
            reasons[0]
        );
    }
    // Nothing of the cancelled orders is held or charged.
    assert_eq!(suite.stock_of("good").await, (9, 0));
    assert_eq!(suite.balance_of("c-1").await, 99_900);

    let inventory = suite.http_of("inventory-service");
    let abandoned = [("step", "reserve_stock"), ("cause", "unreadable_state")];
    let counted = metric(inventory, "jetsaga_saga_steps_abandoned_total", &abandoned).await;
    assert_eq!(counted, 2.0);
    let retried = [("consumer", "inventory-saga"), ("outcome", "retry")];
    let retries = metric(inventory, "jetsaga_messages_handled_total", &retried).await;
    assert_eq!(retries, 0.0, "no step was retried");
    suite.stop().await;
}

#[tokio::test]
async fn an_unreadable_account_declines_its_charges_and_the_stock_is_given_back() {
    let suite = Suite::start().await;
    suite
        .seed(&[("sku-1", 10, 100)], &[("c-bad", 10_000), ("c-1", 10_000)])
        .await;
    corrupt(&suite, "payments.account.c-bad", "[]").await;

    suite
        .client
        .place("o-bad", "c-bad", &[("sku-1", 3)])
        .await
        .unwrap();
    suite
        .client
        .place("o-good", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();

    assert_eq!(suite.settled("o-good").await.status, OrderStatus::Confirmed);
    let order = suite.settled("o-bad").await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::PaymentUnavailable));
    failed_without_retries(&suite, "o-bad", "charge_payment").await;
    let reasons =
        dead_letter_reasons(&suite, "dlq.payment-service.saga.log.o-bad.charge_payment").await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("the account of c-bad cannot be read")
            && reasons[0].contains("answered declined"),
        "{}",
        reasons[0]
    );
    eventually("the stock of o-bad given back", SETTLE, || async {
        (suite.stock_of("sku-1").await == (9, 0)).then_some(())
    })
    .await;
    let payment = suite.http_of("payment-service");
    let abandoned = [("step", "charge_payment"), ("cause", "unreadable_state")];
    let counted = metric(payment, "jetsaga_saga_steps_abandoned_total", &abandoned).await;
    assert_eq!(counted, 1.0);
    suite.stop().await;
}
