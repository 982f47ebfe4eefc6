//! A saga's deadlines and wake-ups, pure: given the clock's `now` and a
//! jitter drawn by the caller, when the step a record asks for is overdue,
//! and what becomes of the saga's wake-up when the record is written
//! ([`WakeUp`]: effects the caller carries out).
//!
//! A wake-up is a JetStream scheduled message on `saga.timer.<order_id>`:
//! one subject holds one schedule, so arming one replaces the saga's
//! previous wake-up, and a saga never has more than one pending. It is
//! armed before the record is written, so no written step is ever without
//! a wake-up. One armed for a record that then lost its write may replace
//! the winner's, at about the same time: whichever fires, the saga's own
//! `deadline` says whether its step is overdue ([`super::decide`]), and a
//! wake-up that comes early is armed again for the deadline.

use std::ops::Range;

use events::inventory::InventoryEvent;
use events::order::OrderEventType;
use events::saga::{SagaRecord, StepTimer};
use runtime::retry::Backoff;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Policy, SagaEvent};

/// The range a deadline's jitter factor is drawn from: sagas started
/// together do not all time out together.
pub const JITTER: Range<f64> = 0.9..1.1;

/// A wake-up to arm: `timer` fires at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arm {
    pub at: OffsetDateTime,
    pub timer: StepTimer,
}

/// What becomes of a saga's wake-up when its next record is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeUp {
    /// Arm this one before the record is written: the saga has none
    /// pending, or only one due after the new deadline.
    Arm(Arm),
    /// The pending one comes no later than the new deadline: keep it.
    Keep,
    /// The saga is finished: cancel its pending wake-up once the record is
    /// stored.
    Cancel,
    /// The saga is finished and has none pending.
    Nothing,
}

/// When the step `record` asks for is overdue: the policy's step timeout,
/// doubling with each attempt up to eight times it, scaled by `jitter` (a
/// factor drawn from [`JITTER`]), and rounded up to the second (the
/// schedules' resolution).
pub fn deadline(
    record: &SagaRecord,
    now: OffsetDateTime,
    jitter: f64,
    policy: Policy,
) -> OffsetDateTime {
    let ceiling = Backoff::ceiling(
        policy.step_timeout,
        policy.step_timeout * 8,
        record.attempt.saturating_sub(1),
    );
    next_second(now + ceiling.mul_f64(jitter))
}

/// The wake-up of the step `record` asks for, at `at`, but never in the
/// past: a clock behind the server's must not spin.
pub fn arm(record: &SagaRecord, at: OffsetDateTime, now: OffsetDateTime) -> Arm {
    Arm {
        at: at.max(next_second(now)),
        timer: StepTimer {
            order_id: record.order_id.clone(),
            command: record.command.name().to_owned(),
            attempt: record.attempt,
        },
    }
}

/// Readies `next`, the record an event yields, for writing: its step's
/// `deadline` and `wake_at` (both absent on a finished saga), and what
/// becomes of the saga's wake-up. `woken`: the event was the saga's
/// wake-up, which is therefore no longer pending.
pub fn schedule(
    mut next: SagaRecord,
    woken: bool,
    now: OffsetDateTime,
    jitter: f64,
    policy: Policy,
) -> (SagaRecord, WakeUp) {
    let pending = next.wake_at.take().filter(|_| !woken);
    next.deadline = None;
    if next.state.is_terminal() {
        let wake_up = match pending {
            Some(_) => WakeUp::Cancel,
            None => WakeUp::Nothing,
        };
        return (next, wake_up);
    }
    let due = deadline(&next, now, jitter, policy);
    next.deadline = Some(rfc3339(due));
    let kept = pending
        .as_deref()
        .and_then(|w| OffsetDateTime::parse(w, &Rfc3339).ok())
        .filter(|w| *w <= due);
    let (wake_at, wake_up) = match kept {
        Some(w) => (w, WakeUp::Keep),
        None => {
            let armed = arm(&next, due, now);
            (armed.at, WakeUp::Arm(armed))
        }
    };
    next.wake_at = Some(rfc3339(wake_at));
    (next, wake_up)
}

/// The wake-up to give back to `saga`, whose own one a write of ours that
/// lost may have replaced: one for its deadline (or now, if it has none
/// that reads), unless it is finished or keeps no deadline.
pub fn rearm(saga: &SagaRecord, now: OffsetDateTime) -> Option<Arm> {
    if saga.state.is_terminal() {
        return None;
    }
    let deadline = saga.deadline.as_deref()?;
    let at = OffsetDateTime::parse(deadline, &Rfc3339).unwrap_or(now);
    Some(arm(saga, at, now))
}

/// Notes in `next` the version of the participant's aggregate that
/// `event` (at `seq` of its stream) announced, for the commands that
/// follow it to decide on without a read.
pub fn heard(next: &mut SagaRecord, event: &SagaEvent, seq: u64) {
    match event {
        SagaEvent::Order(e) if e.kind == OrderEventType::Placed => next.order_seq = Some(seq),
        SagaEvent::Inventory(InventoryEvent::Reserved { .. }) => next.inventory_seq = Some(seq),
        _ => {}
    }
}

/// The first whole second after `t`: schedules have a resolution of one
/// second, so deadlines round up, never down.
pub fn next_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).expect("zero nanoseconds is valid") + time::Duration::SECOND
}

/// `at` as the saga record and the schedules spell it.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("a UTC time formats")
}

#[cfg(test)]
mod tests;
