//! Steps left unanswered: asked again, then compensated; late answers keep
//! nothing; deadlines survive an orchestrator restart.

use e2e::testkit::eventually;
use e2e::{Suite, SETTLE};
use events::saga::{SagaState, StepStatus};
use events::{CancelReason, Cents, OrderStatus};

const FAST_DEADLINES: [(&str, &str); 2] = [
    ("SAGA_STEP_TIMEOUT_MS", "1000"),
    ("SAGA_STEP_MAX_ATTEMPTS", "2"),
];

#[tokio::test]
async fn an_unanswered_charge_is_compensated_and_a_late_charge_given_back() {
    let mut suite = Suite::start_with(&FAST_DEADLINES).await;
    suite.seed(&[("sku-1", 5, 1000)], &[("c-1", 10_000)]).await;
    suite.stop_service("payment-service").await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    suite.saga_reaches("o-1", SagaState::Refunding).await;
    // The payment service comes back to two charges and a refund waiting:
    // whatever it takes, it gives back.
    suite.start_service("payment-service").await;
    let order = suite.settled("o-1").await;

    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::PaymentUnavailable));
    assert_eq!(suite.balance_of("c-1").await, 10_000);
    assert_eq!(suite.stock_of("sku-1").await, (5, 0));
    let saga = suite.client.saga("o-1").await.unwrap().unwrap();
    let timeouts = saga
        .steps
        .iter()
        .filter(|s| s.name == "charge_payment" && s.status == StepStatus::TimedOut)
        .count();
    assert_eq!(timeouts, 2, "{:?}", saga.steps);
    suite.stop().await;
}

#[tokio::test]
async fn an_unanswered_reservation_is_compensated_and_a_late_hold_released() {
    let mut suite = Suite::start_with(&FAST_DEADLINES).await;
    suite.seed(&[("sku-1", 5, 1000)], &[("c-1", 10_000)]).await;
    suite.stop_service("inventory-service").await;

    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    suite.saga_reaches("o-1", SagaState::Releasing).await;
    suite.start_service("inventory-service").await;
    let order = suite.settled("o-1").await;

    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::InventoryUnavailable));
    assert_eq!(suite.stock_of("sku-1").await, (5, 0));
    assert_eq!(suite.balance_of("c-1").await, 10_000);
    suite.stop().await;
}

#[tokio::test]
async fn deadlines_fire_while_the_orchestrator_is_down() {
    let mut suite = Suite::start_with(&FAST_DEADLINES).await;
    suite.seed(&[("sku-1", 5, 1000)], &[("c-1", 10_000)]).await;
    suite.stop_service("payment-service").await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite.saga_reaches("o-1", SagaState::Charging).await;

    suite.stop_service("saga-orchestrator").await;
    // The deadline is a scheduled message in the stream: it fires with no
    // orchestrator running.
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let saga_stream = js.get_stream("SAGA").await.unwrap();
    eventually("the charge's deadline to fire", SETTLE, || {
        let saga_stream = saga_stream.clone();
        async move {
            saga_stream
                .direct_get_last_for_subject("saga.timeout.o-1")
                .await
                .ok()
        }
    })
    .await;
    suite.start_service("saga-orchestrator").await;
    eventually("the orchestrator to act on it", SETTLE, || async {
        let saga = suite.client.saga("o-1").await.ok().flatten()?;
        (saga.attempt >= 2 || saga.state != SagaState::Charging).then_some(())
    })
    .await;
    suite.start_service("payment-service").await;
    let order = suite.settled("o-1").await;

    let balance = suite
        .client
        .account("c-1")
        .await
        .unwrap()
        .unwrap()
        .balance_cents;
    match order.status {
        OrderStatus::Confirmed => assert_eq!(balance, Cents(9_000)),
        _ => assert_eq!(balance, Cents(10_000)),
    }
    let stock = suite.client.stock("sku-1").await.unwrap().unwrap();
    assert_eq!(stock.reserved, 0);
    suite.stop().await;
}

#[tokio::test]
async fn a_finished_saga_leaves_no_wake_up_behind() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 5, 1000)], &[("c-1", 10_000)]).await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    assert_eq!(suite.settled("o-1").await.status, OrderStatus::Confirmed);
    suite.saga_reaches("o-1", SagaState::Confirmed).await;
    // The saga armed a wake-up when it started; once it is finished, the
    // last message on its timer subject is one without a schedule, which
    // cancels it (sent without waiting for an acknowledgement, so it may
    // trail the record).
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let saga = js.get_stream("SAGA").await.expect("the saga stream");
    eventually("the wake-up to be cancelled", SETTLE, || async {
        let timer = saga
            .get_last_raw_message_by_subject("saga.timer.o-1")
            .await
            .ok()?;
        let scheduled = timer.headers.get("Nats-Schedule").is_some();
        (!scheduled && timer.payload.is_empty()).then_some(())
    })
    .await;
    suite.stop().await;
}

/// The orchestrator handles a step's last deadline before the answer that
/// came in time (it was paused, or behind on that participant's events):
/// it finds the answer in the participant's stream and moves the saga on,
/// instead of giving up on a step that was done.
#[tokio::test]
async fn a_step_answered_in_time_is_not_given_up_when_its_answer_is_heard_late() {
    use events::subjects::consumers::SAGA_PAYMENTS;
    use time::OffsetDateTime;

    // The second attempt's deadline (6 s, jittered) leaves the payment
    // service time to start and answer.
    let mut suite = Suite::start_with(&[
        ("SAGA_STEP_TIMEOUT_MS", "3000"),
        ("SAGA_STEP_MAX_ATTEMPTS", "2"),
    ])
    .await;
    suite.seed(&[("sku-1", 5, 1000)], &[("c-1", 10_000)]).await;
    suite.stop_service("payment-service").await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    eventually("the charge asked a second time", SETTLE, || async {
        let saga = suite.client.saga("o-1").await.ok().flatten()?;
        (saga.state == SagaState::Charging && saga.attempt == 2).then_some(())
    })
    .await;
    // The orchestrator stops hearing payment events; the charge is then
    // answered, in time, and its last deadline passes unheard.
    let admin = async_nats::jetstream::new(
        suite
            .connect_as(e2e::testkit::Identity::Admin)
            .await
            .nats()
            .clone(),
    );
    let payments = admin.get_stream(SAGA_PAYMENTS.0).await.unwrap();
    let until = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    payments
        .pause_consumer(SAGA_PAYMENTS.1, until)
        .await
        .unwrap();
    suite.start_service("payment-service").await;
    eventually("the charge to be stored", SETTLE, || async {
        (suite.balance_of("c-1").await == 8_000).then_some(())
    })
    .await;
    let order = suite.settled("o-1").await;
    payments.resume_consumer(SAGA_PAYMENTS.1).await.unwrap();

    assert_eq!(order.status, OrderStatus::Confirmed, "{order:?}");
    assert_eq!(suite.balance_of("c-1").await, 8_000, "charged once");
    assert_eq!(suite.stock_of("sku-1").await, (3, 0));
    let saga = suite.client.saga("o-1").await.unwrap().unwrap();
    let timeouts = saga
        .steps
        .iter()
        .filter(|s| s.name == "charge_payment" && s.status == StepStatus::TimedOut)
        .count();
    assert_eq!(
        timeouts, 1,
        "only the first attempt timed out: {:?}",
        saga.steps
    );
    suite.stop().await;
}
