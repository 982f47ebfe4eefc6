use std::time::Duration;

use events::order::OrderEvent;
use events::saga::{command, SagaCommand, SagaState};
use events::{Cents, CustomerId, Order, OrderId, PricedLine, Quantity, Sku};

use super::*;

const POLICY: Policy = Policy {
    max_attempts: 3,
    step_timeout: Duration::from_secs(10),
};

/// No jitter at all: the middle of [`JITTER`].
const EXACT: f64 = 1.0;

fn at(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
}

/// Half a second past noon.
fn now() -> OffsetDateTime {
    at("2026-11-26T12:00:00.5Z")
}

fn order_id() -> OrderId {
    OrderId::parse("o-1").unwrap()
}

fn customer() -> CustomerId {
    CustomerId::parse("c-1").unwrap()
}

/// A saga in `state`, asking for `command`, at `attempt`.
fn saga(state: SagaState, command: SagaCommand, attempt: u32) -> SagaRecord {
    SagaRecord {
        order_id: order_id(),
        customer_id: customer(),
        state,
        items: vec![],
        lines: None,
        total_cents: None,
        reason: None,
        steps: vec![],
        command,
        attempt,
        deadline: None,
        wake_at: None,
        order_seq: None,
        inventory_seq: None,
        retried_seq: None,
    }
}

fn charging(attempt: u32) -> SagaRecord {
    let charge = SagaCommand::ChargePayment {
        customer_id: customer(),
        amount_cents: Cents(1000),
    };
    saga(SagaState::Charging, charge, attempt)
}

fn confirmed() -> SagaRecord {
    saga(SagaState::Confirmed, SagaCommand::Finish, 1)
}

fn pending_wake_up(mut record: SagaRecord, at: &str) -> SagaRecord {
    record.wake_at = Some(at.to_owned());
    record
}

fn charge_timer(attempt: u32) -> StepTimer {
    StepTimer {
        order_id: order_id(),
        command: command::CHARGE_PAYMENT.to_owned(),
        attempt,
    }
}

#[test]
fn a_first_attempt_is_due_one_step_timeout_later_rounded_up_to_the_second() {
    let due = deadline(&charging(1), now(), EXACT, POLICY);
    assert_eq!(due, at("2026-11-26T12:00:11Z"));
}

#[test]
fn each_attempt_doubles_the_wait_up_to_eight_step_timeouts() {
    let due = |attempt| deadline(&charging(attempt), now(), EXACT, POLICY);
    assert_eq!(due(2), at("2026-11-26T12:00:21Z"));
    assert_eq!(due(3), at("2026-11-26T12:00:41Z"));
    assert_eq!(due(4), at("2026-11-26T12:01:21Z"));
    assert_eq!(due(9), at("2026-11-26T12:01:21Z"));
}

#[test]
fn the_jitter_scales_the_wait() {
    let due = |jitter| deadline(&charging(1), now(), jitter, POLICY);
    assert_eq!(due(JITTER.start), at("2026-11-26T12:00:10Z"));
    assert_eq!(due(1.04), at("2026-11-26T12:00:11Z"));
}

#[test]
fn a_step_written_without_a_pending_wake_up_arms_one_for_its_deadline() {
    let (next, wake_up) = schedule(charging(1), false, now(), EXACT, POLICY);
    assert_eq!(next.deadline.as_deref(), Some("2026-11-26T12:00:11Z"));
    assert_eq!(next.wake_at.as_deref(), Some("2026-11-26T12:00:11Z"));
    assert_eq!(
        wake_up,
        WakeUp::Arm(Arm {
            at: at("2026-11-26T12:00:11Z"),
            timer: charge_timer(1),
        })
    );
}

#[test]
fn a_pending_wake_up_due_no_later_than_the_new_deadline_is_kept() {
    let record = pending_wake_up(charging(2), "2026-11-26T12:00:11Z");
    let (next, wake_up) = schedule(record, false, now(), EXACT, POLICY);
    assert_eq!(wake_up, WakeUp::Keep);
    assert_eq!(next.deadline.as_deref(), Some("2026-11-26T12:00:21Z"));
    assert_eq!(next.wake_at.as_deref(), Some("2026-11-26T12:00:11Z"));
}

#[test]
fn a_pending_wake_up_due_after_the_new_deadline_is_replaced() {
    let record = pending_wake_up(charging(1), "2026-11-26T12:05:00Z");
    let (next, wake_up) = schedule(record, false, now(), EXACT, POLICY);
    assert!(matches!(wake_up, WakeUp::Arm(ref arm) if arm.at == at("2026-11-26T12:00:11Z")));
    assert_eq!(next.wake_at.as_deref(), Some("2026-11-26T12:00:11Z"));
}

#[test]
fn a_saga_woken_by_its_wake_up_arms_the_next_one() {
    let record = pending_wake_up(charging(2), "2026-11-26T12:00:00Z");
    let (_, wake_up) = schedule(record, true, now(), EXACT, POLICY);
    assert_eq!(
        wake_up,
        WakeUp::Arm(Arm {
            at: at("2026-11-26T12:00:21Z"),
            timer: charge_timer(2),
        })
    );
}

#[test]
fn a_finished_saga_cancels_its_pending_wake_up_and_keeps_no_deadline() {
    let record = pending_wake_up(confirmed(), "2026-11-26T12:00:11Z");
    let (next, wake_up) = schedule(record, false, now(), EXACT, POLICY);
    assert_eq!(wake_up, WakeUp::Cancel);
    assert_eq!((next.deadline, next.wake_at), (None, None));
}

#[test]
fn a_finished_saga_without_a_pending_wake_up_has_nothing_to_cancel() {
    let (_, woken) = schedule(
        pending_wake_up(confirmed(), "2026-11-26T12:00:11Z"),
        true,
        now(),
        EXACT,
        POLICY,
    );
    assert_eq!(woken, WakeUp::Nothing);
    let (_, none) = schedule(confirmed(), false, now(), EXACT, POLICY);
    assert_eq!(none, WakeUp::Nothing);
}

#[test]
fn a_wake_up_is_never_armed_in_the_past() {
    let armed = arm(&charging(1), at("2026-11-26T11:00:00Z"), now());
    assert_eq!(armed.at, at("2026-11-26T12:00:01Z"));
    let later = arm(&charging(1), at("2026-11-26T12:00:30Z"), now());
    assert_eq!(later.at, at("2026-11-26T12:00:30Z"));
}

#[test]
fn a_saga_whose_wake_up_a_lost_write_replaced_gets_one_for_its_deadline() {
    let record = SagaRecord {
        deadline: Some("2026-11-26T12:00:30Z".to_owned()),
        ..charging(1)
    };
    assert_eq!(
        rearm(&record, now()),
        Some(Arm {
            at: at("2026-11-26T12:00:30Z"),
            timer: charge_timer(1),
        })
    );
}

#[test]
fn a_saga_with_an_unreadable_deadline_gets_a_wake_up_at_once() {
    let record = SagaRecord {
        deadline: Some("soon".to_owned()),
        ..charging(1)
    };
    let armed = rearm(&record, now()).unwrap();
    assert_eq!(armed.at, at("2026-11-26T12:00:01Z"));
}

#[test]
fn a_finished_saga_or_one_without_a_deadline_gets_no_wake_up_back() {
    let finished = SagaRecord {
        deadline: Some("2026-11-26T12:00:30Z".to_owned()),
        ..confirmed()
    };
    assert_eq!(rearm(&finished, now()), None);
    assert_eq!(rearm(&charging(1), now()), None);
}

#[test]
fn the_saga_notes_the_sequences_of_the_placed_order_and_the_reservation() {
    let mut next = charging(1);
    let order = Order::placed(order_id(), customer(), &[]);
    let placed = SagaEvent::Order(OrderEvent {
        kind: OrderEventType::Placed,
        order,
    });
    heard(&mut next, &placed, 3);
    let reserved = SagaEvent::Inventory(InventoryEvent::Reserved {
        order_id: order_id(),
        lines: vec![PricedLine {
            sku: Sku::parse("s-1").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            unit_price_cents: Cents(1000),
        }],
        total_cents: Cents(1000),
    });
    heard(&mut next, &reserved, 9);
    assert_eq!((next.order_seq, next.inventory_seq), (Some(3), Some(9)));
    let timeout = SagaEvent::Timeout(charge_timer(1));
    heard(&mut next, &timeout, 12);
    assert_eq!((next.order_seq, next.inventory_seq), (Some(3), Some(9)));
}
