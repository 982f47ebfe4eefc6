use super::*;
use events::order::OrderEventType;
use events::saga::command;
use events::{CancelReason, Cents, CustomerId, LineItem, PricedLine, Quantity, Sku};
use proptest::prelude::*;

const NOW: &str = "2026-11-26T12:00:00Z";
const POLICY: Policy = Policy {
    max_attempts: 3,
    step_timeout: Duration::from_secs(10),
};

fn order_id() -> OrderId {
    OrderId::parse("o-1").unwrap()
}

fn customer() -> CustomerId {
    CustomerId::parse("c-1").unwrap()
}

fn order(status: OrderStatus, kind: OrderEventType) -> SagaEvent {
    let placed = Order::placed(
        order_id(),
        customer(),
        &[LineItem {
            sku: Sku::parse("s-1").unwrap(),
            quantity: Quantity::new(2).unwrap(),
        }],
    );
    SagaEvent::Order(OrderEvent {
        kind,
        order: Order { status, ..placed },
    })
}

fn lines() -> Vec<PricedLine> {
    vec![PricedLine {
        sku: Sku::parse("s-1").unwrap(),
        quantity: Quantity::new(2).unwrap(),
        unit_price_cents: Cents(500),
    }]
}

fn placed() -> SagaEvent {
    order(OrderStatus::Pending, OrderEventType::Placed)
}
fn confirmed() -> SagaEvent {
    order(OrderStatus::Confirmed, OrderEventType::Confirmed)
}
fn cancelled() -> SagaEvent {
    order(OrderStatus::Cancelled, OrderEventType::Cancelled)
}
fn reserved() -> SagaEvent {
    SagaEvent::Inventory(InventoryEvent::Reserved {
        order_id: order_id(),
        lines: lines(),
        total_cents: Cents(1000),
    })
}
fn reserve_failed() -> SagaEvent {
    SagaEvent::Inventory(InventoryEvent::ReserveFailed {
        order_id: order_id(),
        reason: CancelReason::OutOfStock,
        sku: Sku::parse("s-1").unwrap(),
    })
}
fn committed() -> SagaEvent {
    SagaEvent::Inventory(InventoryEvent::Committed {
        order_id: order_id(),
        lines: lines(),
    })
}
fn released() -> SagaEvent {
    SagaEvent::Inventory(InventoryEvent::Released {
        order_id: order_id(),
        lines: lines(),
    })
}
fn charged() -> SagaEvent {
    SagaEvent::Payment(PaymentEvent::Charged {
        order_id: order_id(),
        customer_id: customer(),
        amount_cents: Cents(1000),
    })
}
fn declined() -> SagaEvent {
    SagaEvent::Payment(PaymentEvent::Declined {
        order_id: order_id(),
        customer_id: customer(),
        reason: CancelReason::InsufficientFunds,
    })
}
fn refunded() -> SagaEvent {
    SagaEvent::Payment(PaymentEvent::Refunded {
        order_id: order_id(),
        customer_id: customer(),
        amount_cents: Cents(1000),
    })
}

fn commit_failed() -> SagaEvent {
    SagaEvent::Inventory(InventoryEvent::CommitFailed {
        order_id: order_id(),
        lines: lines(),
        error: "sku s-1 cannot be read".to_owned(),
    })
}
fn release_failed() -> SagaEvent {
    SagaEvent::Inventory(InventoryEvent::ReleaseFailed {
        order_id: order_id(),
        lines: lines(),
        error: "sku s-1 cannot be read".to_owned(),
    })
}
fn refund_failed() -> SagaEvent {
    SagaEvent::Payment(PaymentEvent::RefundFailed {
        order_id: order_id(),
        customer_id: customer(),
        amount_cents: Cents(1000),
        error: "the balance of c-1 would overflow".to_owned(),
    })
}

fn timeout(command: &str, attempt: u32) -> SagaEvent {
    SagaEvent::Timeout(StepTimer {
        order_id: order_id(),
        command: command.to_owned(),
        attempt,
    })
}

fn all_events() -> Vec<SagaEvent> {
    vec![
        placed(),
        reserved(),
        reserve_failed(),
        charged(),
        declined(),
        committed(),
        released(),
        refunded(),
        commit_failed(),
        release_failed(),
        refund_failed(),
        confirmed(),
        cancelled(),
        timeout(command::RESERVE_STOCK, 1),
        timeout(command::RESERVE_STOCK, 3),
        timeout(command::CHARGE_PAYMENT, 1),
        timeout(command::CHARGE_PAYMENT, 3),
        timeout(command::RELEASE_STOCK, 1),
        timeout(command::COMMIT_STOCK, 1),
        asked(OperatorAction::Cancel, 1),
        asked(OperatorAction::Abort, 2),
        asked(OperatorAction::Retry, 3),
    ]
}

/// Folds the events, returning the final record and every command issued.
fn run(events: &[SagaEvent]) -> (Option<SagaRecord>, Vec<&'static str>) {
    let mut saga: Option<SagaRecord> = None;
    let mut commands = Vec::new();
    for event in events {
        if let Some(next) = on_event(saga.as_ref(), event, NOW, POLICY) {
            commands.push(next.command.name());
            saga = Some(next);
        }
    }
    (saga, commands)
}

#[test]
fn the_happy_path_reserves_charges_commits_and_confirms() {
    let (saga, commands) = run(&[placed(), reserved(), charged(), committed(), confirmed()]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Confirmed);
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::CHARGE_PAYMENT,
            command::COMMIT_STOCK,
            command::CONFIRM_ORDER,
            command::FINISH
        ]
    );
    assert_eq!(saga.total_cents, Some(Cents(1000)));
    let history: Vec<_> = saga
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.status))
        .collect();
    assert_eq!(
        history.first(),
        Some(&("reserve_stock", StepStatus::Requested))
    );
    assert_eq!(
        history.last(),
        Some(&("confirm_order", StepStatus::Succeeded))
    );
}

#[test]
fn the_charge_asks_for_the_total_the_inventory_priced() {
    let (saga, _) = run(&[placed(), reserved()]);
    assert_eq!(
        saga.unwrap().command,
        SagaCommand::ChargePayment {
            customer_id: customer(),
            amount_cents: Cents(1000)
        }
    );
}

#[test]
fn no_stock_cancels_with_nothing_to_compensate() {
    let (saga, commands) = run(&[placed(), reserve_failed(), cancelled()]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::OutOfStock));
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
}

#[test]
fn a_declined_payment_releases_the_stock_then_cancels() {
    let (saga, commands) = run(&[placed(), reserved(), declined(), released(), cancelled()]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::InsufficientFunds));
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::CHARGE_PAYMENT,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
}

#[test]
fn an_unanswered_reservation_is_asked_again_then_compensated() {
    let (saga, commands) = run(&[
        placed(),
        timeout(command::RESERVE_STOCK, 1),
        timeout(command::RESERVE_STOCK, 2),
        timeout(command::RESERVE_STOCK, 3),
        released(),
        cancelled(),
    ]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::InventoryUnavailable));
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::RESERVE_STOCK,
            command::RESERVE_STOCK,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
    let timed_out = saga
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::TimedOut)
        .count();
    assert_eq!(timed_out, 3);
}

#[test]
fn an_unanswered_charge_is_refunded_then_the_stock_released() {
    let (saga, commands) = run(&[
        placed(),
        reserved(),
        timeout(command::CHARGE_PAYMENT, 1),
        timeout(command::CHARGE_PAYMENT, 2),
        timeout(command::CHARGE_PAYMENT, 3),
        refunded(),
        released(),
        cancelled(),
    ]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::PaymentUnavailable));
    assert_eq!(
        &commands[4..],
        [
            command::REFUND_PAYMENT,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
}

#[test]
fn a_late_answer_after_a_deadline_still_counts_while_the_step_waits() {
    let (saga, _) = run(&[placed(), timeout(command::RESERVE_STOCK, 1), reserved()]);
    assert_eq!(saga.unwrap().state, SagaState::Charging);
}

#[test]
fn a_deadline_of_an_answered_step_changes_nothing() {
    let (saga, _) = run(&[placed(), reserved()]);
    let saga = saga.unwrap();
    assert!(on_event(
        Some(&saga),
        &timeout(command::RESERVE_STOCK, 1),
        NOW,
        POLICY
    )
    .is_none());
    assert!(on_event(
        Some(&saga),
        &timeout(command::CHARGE_PAYMENT, 2),
        NOW,
        POLICY
    )
    .is_none());
}

fn at(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
}

/// A saga waiting on its charge, due at 12:00:10.
fn charging_due_at_ten_past() -> SagaRecord {
    let (saga, _) = run(&[placed(), reserved()]);
    SagaRecord {
        deadline: Some("2026-11-26T12:00:10Z".to_owned()),
        ..saga.unwrap()
    }
}

#[test]
fn an_overdue_step_times_out_whichever_step_the_wake_up_was_armed_for() {
    let saga = charging_due_at_ten_past();
    // A wake-up armed by a writer that lost its race names another step.
    let stale = timeout(command::RESERVE_STOCK, 1);
    let (applied, decision) = decide(Some(&saga), &stale, at("2026-11-26T12:00:11Z"), POLICY);
    assert_eq!(applied, timeout(command::CHARGE_PAYMENT, 1));
    let Decision::Advance(next) = decision else {
        panic!("the overdue charge is asked again, got {decision:?}");
    };
    assert_eq!((next.state, next.attempt), (SagaState::Charging, 2));
    assert_eq!(next.steps.last().unwrap().name, command::CHARGE_PAYMENT);
}

#[test]
fn a_wake_up_before_the_deadline_waits_for_it() {
    let saga = charging_due_at_ten_past();
    let (_, decision) = decide(
        Some(&saga),
        &timeout(command::CHARGE_PAYMENT, 1),
        at("2026-11-26T12:00:09Z"),
        POLICY,
    );
    assert_eq!(decision, Decision::WakeAt(at("2026-11-26T12:00:10Z")));
}

#[test]
fn a_wake_up_changes_nothing_once_the_saga_is_finished() {
    let (saga, _) = run(&[placed(), reserve_failed(), cancelled()]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    let (_, decision) = decide(
        Some(&saga),
        &timeout(command::CANCEL_ORDER, 1),
        at("2030-01-01T00:00:00Z"),
        POLICY,
    );
    assert_eq!(decision, Decision::Nothing);
}

#[test]
fn a_record_without_a_deadline_times_out_only_on_its_own_wake_up() {
    let (saga, _) = run(&[placed(), reserved()]);
    let saga = saga.unwrap();
    assert!(saga.deadline.is_none());
    let later = at("2030-01-01T00:00:00Z");
    let (_, other) = decide(
        Some(&saga),
        &timeout(command::RESERVE_STOCK, 1),
        later,
        POLICY,
    );
    assert_eq!(other, Decision::Nothing);
    let (_, own) = decide(
        Some(&saga),
        &timeout(command::CHARGE_PAYMENT, 1),
        later,
        POLICY,
    );
    assert!(matches!(own, Decision::Advance(next) if next.attempt == 2));
}

#[test]
fn compensations_are_asked_again_without_limit() {
    let mut events = vec![placed(), reserved(), declined()];
    events.extend((1..=10).map(|attempt| timeout(command::RELEASE_STOCK, attempt)));
    let (saga, _) = run(&events);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Releasing);
    assert_eq!(saga.attempt, 11);
}

#[test]
fn a_commit_that_can_never_be_done_refunds_releases_and_cancels() {
    let (saga, commands) = run(&[
        placed(),
        reserved(),
        charged(),
        commit_failed(),
        refunded(),
        released(),
        cancelled(),
    ]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::InventoryUnavailable));
    assert_eq!(
        &commands[3..],
        [
            command::REFUND_PAYMENT,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
}

#[test]
fn a_compensation_that_can_never_be_done_is_recorded_failed_and_the_saga_ends() {
    let (saga, commands) = run(&[
        placed(),
        reserved(),
        charged(),
        commit_failed(),
        refund_failed(),
        release_failed(),
        cancelled(),
    ]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::InventoryUnavailable));
    assert_eq!(
        &commands[3..],
        [
            command::REFUND_PAYMENT,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
    let failed: Vec<&str> = saga
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            command::COMMIT_STOCK,
            command::REFUND_PAYMENT,
            command::RELEASE_STOCK
        ]
    );
}

#[test]
fn a_release_that_can_never_be_done_still_cancels_with_the_reason_of_the_saga() {
    let (saga, commands) = run(&[placed(), reserved(), declined(), release_failed()]);
    let saga = saga.unwrap();
    assert_eq!(saga.state, SagaState::Cancelling);
    assert_eq!(
        saga.command,
        SagaCommand::CancelOrder {
            reason: CancelReason::InsufficientFunds
        }
    );
    assert_eq!(commands.last(), Some(&command::CANCEL_ORDER));
}

#[test]
fn a_saga_starts_only_from_a_pending_order() {
    assert!(on_event(None, &confirmed(), NOW, POLICY).is_none());
    assert!(on_event(None, &reserved(), NOW, POLICY).is_none());
}

proptest! {
    /// Any event delivered twice in a row changes nothing the second time.
    #[test]
    fn every_event_is_idempotent(prefix in proptest::collection::vec(0..all_events().len(), 0..12), last in 0..all_events().len()) {
        let pool = all_events();
        let events: Vec<SagaEvent> = prefix.iter().map(|i| pool[*i].clone()).collect();
        let (saga, _) = run(&events);
        if let Some(once) = on_event(saga.as_ref(), &pool[last], NOW, POLICY) {
            prop_assert!(on_event(Some(&once), &pool[last], NOW, POLICY).is_none());
        }
    }

    /// Whatever arrives, in any order and any number of times: the saga
    /// never both confirms and compensates, never charges without a hold,
    /// and never leaves a final state.
    #[test]
    fn no_order_of_events_breaks_the_saga(picks in proptest::collection::vec(0..all_events().len(), 0..40)) {
        let pool = all_events();
        let events: Vec<SagaEvent> = picks.iter().map(|i| pool[*i].clone()).collect();
        let mut saga: Option<SagaRecord> = None;
        let mut issued = Vec::new();
        for event in &events {
            if let Some(next) = on_event(saga.as_ref(), event, NOW, POLICY) {
                if let Some(previous) = &saga {
                    prop_assert!(!previous.state.is_terminal(), "left a final state");
                }
                issued.push((next.command.name(), next.attempt));
                saga = Some(next);
            }
        }
        let issued: Vec<(&str, u32)> = issued;
        let names: Vec<&str> = issued.iter().map(|(c, _)| *c).collect();
        let confirms = names.contains(&command::CONFIRM_ORDER);
        let compensates = names.contains(&command::RELEASE_STOCK) || names.contains(&command::CANCEL_ORDER);
        prop_assert!(!(confirms && compensates), "confirmed and compensated: {issued:?}");
        if let Some(charge) = names.iter().position(|c| *c == command::CHARGE_PAYMENT) {
            prop_assert_eq!(names[0], command::RESERVE_STOCK);
            prop_assert!(charge > 0);
        }
        let mut unique = issued.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), issued.len(), "a command issued twice: {:?}", issued);
    }

    /// The happy path survives duplicates injected anywhere.
    #[test]
    fn duplicates_do_not_derail_the_happy_path(dups in proptest::collection::vec(0..5usize, 0..10)) {
        let path = [placed(), reserved(), charged(), committed(), confirmed()];
        let mut events = Vec::new();
        for (i, event) in path.iter().enumerate() {
            events.push(event.clone());
            for d in &dups {
                if *d <= i {
                    events.push(path[*d].clone());
                }
            }
        }
        let (saga, commands) = run(&events);
        prop_assert_eq!(saga.unwrap().state, SagaState::Confirmed);
        prop_assert_eq!(commands.len(), 5);
    }
}

fn asked(action: OperatorAction, seq: u64) -> SagaEvent {
    SagaEvent::Operator(Request {
        order_id: order_id(),
        action,
        by: "operator".to_owned(),
        seq,
    })
}

fn history(saga: &SagaRecord) -> Vec<(&str, StepStatus, Option<&str>)> {
    saga.steps
        .iter()
        .map(|s| (s.name.as_str(), s.status, s.by.as_deref()))
        .collect()
}

#[test]
fn a_cancel_while_reserving_releases_whatever_a_late_reservation_held() {
    let (saga, commands) = run(&[
        placed(),
        asked(OperatorAction::Cancel, 7),
        released(),
        cancelled(),
    ]);
    let saga = saga.unwrap();
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
    assert_eq!(saga.state, SagaState::Cancelled);
    assert_eq!(saga.reason, Some(CancelReason::CancelledByRequest));
    assert_eq!(
        &history(&saga)[..4],
        [
            ("reserve_stock", StepStatus::Requested, None),
            ("cancel", StepStatus::Requested, Some("operator")),
            ("reserve_stock", StepStatus::Abandoned, None),
            ("release_stock", StepStatus::Requested, None),
        ]
    );
}

#[test]
fn an_abort_while_charging_refunds_whatever_a_late_charge_took_then_releases() {
    let (saga, commands) = run(&[
        placed(),
        reserved(),
        asked(OperatorAction::Abort, 7),
        charged(),
        refunded(),
        released(),
        cancelled(),
    ]);
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::CHARGE_PAYMENT,
            command::REFUND_PAYMENT,
            command::RELEASE_STOCK,
            command::CANCEL_ORDER,
            command::FINISH
        ]
    );
    assert_eq!(saga.unwrap().reason, Some(CancelReason::AbortedByOperator));
}

#[test]
fn past_the_commit_a_cancel_or_an_abort_changes_nothing_and_the_saga_confirms() {
    for action in [OperatorAction::Cancel, OperatorAction::Abort] {
        let (saga, _) = run(&[placed(), reserved(), charged()]);
        let committing = saga.unwrap();
        assert!(on_event(Some(&committing), &asked(action, 7), NOW, POLICY).is_none());
        let (saga, _) = run(&[
            placed(),
            reserved(),
            charged(),
            asked(action, 7),
            committed(),
            confirmed(),
        ]);
        assert_eq!(saga.unwrap().state, SagaState::Confirmed);
    }
}

#[test]
fn a_compensating_or_finished_saga_is_left_as_it_is() {
    for done in [
        vec![placed(), reserve_failed()],
        vec![placed(), reserved(), declined()],
        vec![placed(), reserve_failed(), cancelled()],
        vec![placed(), reserved(), charged(), committed(), confirmed()],
    ] {
        let (saga, _) = run(&done);
        let saga = saga.unwrap();
        for action in [OperatorAction::Cancel, OperatorAction::Abort] {
            assert!(
                on_event(Some(&saga), &asked(action, 7), NOW, POLICY).is_none(),
                "{action:?} on {:?}",
                saga.state
            );
        }
        if saga.state.is_terminal() {
            assert!(on_event(Some(&saga), &asked(OperatorAction::Retry, 7), NOW, POLICY).is_none());
        }
    }
}

#[test]
fn a_retry_asks_the_current_step_again_once_per_request() {
    let (saga, commands) = run(&[
        placed(),
        reserved(),
        asked(OperatorAction::Retry, 7),
        asked(OperatorAction::Retry, 7),
    ]);
    let saga = saga.unwrap();
    assert_eq!(
        commands,
        [
            command::RESERVE_STOCK,
            command::CHARGE_PAYMENT,
            command::CHARGE_PAYMENT
        ]
    );
    assert_eq!(saga.attempt, 2);
    assert_eq!(
        &history(&saga)[3..],
        [
            ("retry", StepStatus::Requested, Some("operator")),
            ("charge_payment", StepStatus::Requested, None),
        ]
    );
    let again = on_event(Some(&saga), &asked(OperatorAction::Retry, 8), NOW, POLICY).unwrap();
    assert_eq!(again.attempt, 3);
    // The retried step still counts towards giving up.
    let gave_up = on_event(
        Some(&again),
        &timeout(command::CHARGE_PAYMENT, 3),
        NOW,
        POLICY,
    )
    .unwrap();
    assert_eq!(gave_up.state, SagaState::Refunding);
}
