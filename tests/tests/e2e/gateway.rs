//! The payment gateway down, or too slow to answer within its timeout: the
//! circuit opens, charges wait instead of being declined, and complete once
//! it is back, or the orders cancel with `payment_unavailable` after their
//! deadline. Money is conserved either way.

use e2e::testkit::{eventually, http_get, metrics};
use e2e::{Suite, SETTLE};
use events::saga::SagaState;
use events::{CancelReason, OrderStatus};

const BROKEN_GATEWAY: [(&str, &str); 3] = [
    ("PAYMENT_GATEWAY_FAILURE_RATE", "1.0"),
    ("PAYMENT_BREAKER_FAILURES", "3"),
    ("PAYMENT_BREAKER_COOLDOWN_MS", "500"),
];

async fn circuit_opens(suite: &Suite) {
    let payment = suite.http_of("payment-service");
    eventually("the gateway's circuit to open", SETTLE, || async move {
        let (_, text) = http_get(payment, "/metrics").await?;
        let state = metrics::value(
            &text,
            "jetsaga_circuit_breaker_state",
            &[("name", "payment-gateway")],
        )?;
        (state != 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn orders_wait_for_a_broken_gateway_and_complete_when_it_is_back() {
    let mut suite = Suite::start_with(&[("SAGA_STEP_TIMEOUT_MS", "60000")]).await;
    suite
        .seed(&[("sku-1", 10, 1000)], &[("c-1", 100_000)])
        .await;
    suite.stop_service("payment-service").await;
    suite
        .start_service_with("payment-service", &BROKEN_GATEWAY)
        .await;

    for i in 0..5 {
        suite
            .client
            .place(&format!("o-{i}"), "c-1", &[("sku-1", 1)])
            .await
            .unwrap();
    }
    circuit_opens(&suite).await;
    // Every order reaches the charge, and waits there: none is declined.
    for i in 0..5 {
        let order_id = format!("o-{i}");
        eventually(
            &format!("{order_id} to wait for its charge"),
            SETTLE,
            || async {
                let saga = suite.client.saga(&order_id).await.ok().flatten()?;
                (saga.state == SagaState::Charging).then_some(())
            },
        )
        .await;
        let order = suite.client.order(&order_id).await.unwrap().unwrap();
        assert_eq!(
            order.status,
            OrderStatus::Pending,
            "{order_id} waits rather than being declined"
        );
    }

    suite.stop_service("payment-service").await;
    suite.start_service("payment-service").await;
    for i in 0..5 {
        assert_eq!(
            suite.settled(&format!("o-{i}")).await.status,
            OrderStatus::Confirmed
        );
    }
    assert_eq!(suite.balance_of("c-1").await, 95_000);
    suite.stop().await;
}

#[tokio::test]
async fn orders_cancel_payment_unavailable_when_the_gateway_stays_down() {
    let mut suite = Suite::start_with(&[
        ("SAGA_STEP_TIMEOUT_MS", "1000"),
        ("SAGA_STEP_MAX_ATTEMPTS", "2"),
    ])
    .await;
    suite
        .seed(&[("sku-1", 10, 1000)], &[("c-1", 100_000)])
        .await;
    suite.stop_service("payment-service").await;
    suite
        .start_service_with("payment-service", &BROKEN_GATEWAY)
        .await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 3)])
        .await
        .unwrap();
    let order = suite.settled("o-1").await;

    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::PaymentUnavailable));
    assert_eq!(suite.balance_of("c-1").await, 100_000);
    assert_eq!(suite.stock_of("sku-1").await, (10, 0));
    suite.stop().await;
}

#[tokio::test]
async fn a_gateway_slower_than_its_timeout_fails_charges_until_it_answers_in_time() {
    let mut suite = Suite::start_with(&[("SAGA_STEP_TIMEOUT_MS", "60000")]).await;
    suite
        .seed(&[("sku-1", 10, 1000)], &[("c-1", 100_000)])
        .await;
    suite.stop_service("payment-service").await;
    suite
        .start_service_with(
            "payment-service",
            &[
                ("PAYMENT_GATEWAY_LATENCY_MS", "2000"),
                ("PAYMENT_GATEWAY_TIMEOUT_MS", "100"),
                ("PAYMENT_BREAKER_FAILURES", "2"),
                ("PAYMENT_BREAKER_COOLDOWN_MS", "500"),
            ],
        )
        .await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    // Every call times out, transiently: the circuit opens, and the charge
    // waits instead of being declined.
    circuit_opens(&suite).await;
    let payment = suite.http_of("payment-service");
    let retried = eventually("the charge to be retried", SETTLE, || async move {
        let (_, text) = http_get(payment, "/metrics").await?;
        let retries = metrics::value(
            &text,
            "jetsaga_messages_handled_total",
            &[("consumer", "payment-saga"), ("outcome", "retry")],
        )?;
        (retries > 0.0).then_some(retries)
    })
    .await;
    assert!(retried > 0.0);
    let order = suite.client.order("o-1").await.unwrap().unwrap();
    assert_eq!(
        order.status,
        OrderStatus::Pending,
        "waits rather than declined"
    );
    assert_eq!(
        suite.balance_of("c-1").await,
        100_000,
        "nothing charged yet"
    );

    // The gateway answers in time again: the charge goes through, once.
    suite.stop_service("payment-service").await;
    suite.start_service("payment-service").await;
    assert_eq!(suite.settled("o-1").await.status, OrderStatus::Confirmed);
    assert_eq!(suite.balance_of("c-1").await, 99_000);
    suite.stop().await;
}
