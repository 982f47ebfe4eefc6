//! The saga as a pure state machine: `on_event(saga, event) -> next record`.
//!
//! ```text
//! placed ─► Reserving ─reserved─► Charging ─charged─► Committing ─committed─► Confirming ─confirmed─► Confirmed
//!              │                     │                      │
//!        reserve_failed           declined             commit_failed
//!              │                     │                      ▼
//!              │                     │                  Refunding ─refunded / refund_failed─┐
//!              │                     ▼                                                     │
//!              │                 Releasing ◄───────────────────────────────────────────────┘
//!              │                     │
//!              │             released / release_failed
//!              │                     ▼
//!              └───────────────► Cancelling ─cancelled─► Cancelled
//! ```
//!
//! Each transition yields the whole next [`SagaRecord`], carrying the one
//! command it issues. An event the current state does not wait for (a
//! duplicate, a late or out-of-order one) yields nothing: redeliveries are
//! harmless by construction.
//!
//! A step unanswered past its deadline is asked again. Reserving and
//! charging give up after [`Policy::max_attempts`] and compensate
//! (`inventory_unavailable`: release whatever a late reservation held;
//! `payment_unavailable`: refund whatever a late charge took, then
//! release); every other step, compensations included, is asked again until
//! it is answered. A participant that finds a step impossible for good (its
//! state unreadable, or an amount that would overflow) answers that it
//! failed: a forward step is then compensated, and a compensation is
//! recorded as failed (its dead letter is the operator's) and the saga goes
//! on to its end.
//!
//! An operator may ask the saga's current step again at once (`retry`),
//! and an operator or a client may stop it going forward (`abort`,
//! `cancel`): while the saga reserves or charges, it then compensates as
//! if that step had failed (releasing what a late reservation held,
//! refunding what a late charge took). Once the stock is being committed
//! the saga is past its point of no return (committed stock cannot be
//! released): a cancel or abort changes nothing, and the saga confirms.
//! A finished saga changes no more.
//!
//! When a step is overdue, and what becomes of the saga's wake-up as each
//! record is written, is the `wake` module's part: the handler passes in
//! the clock and a jitter, and carries out the wake-ups it returns.

mod wake;

pub use wake::{arm, heard, rearm, rfc3339, schedule, Arm, WakeUp, JITTER};

use std::time::Duration;

use events::inventory::InventoryEvent;
use events::order::OrderEvent;
use events::payment::PaymentEvent;
use events::saga::{
    OperatorAction, SagaCommand, SagaRecord, SagaState, Step, StepStatus, StepTimer,
};
use events::{CancelReason, Order, OrderId, OrderStatus};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What the orchestrator hears from the participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaEvent {
    Order(OrderEvent),
    Inventory(InventoryEvent),
    Payment(PaymentEvent),
    /// A step's deadline passed.
    Timeout(StepTimer),
    /// Someone asked for a cancel, a retry or an abort.
    Operator(Request),
}

/// A cancel, retry or abort of a saga, and who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub order_id: OrderId,
    pub action: OperatorAction,
    /// The NATS identity of the publisher.
    pub by: String,
    /// The request's sequence in its stream: a retry is applied once.
    pub seq: u64,
}

impl SagaEvent {
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Order(e) => &e.order.order_id,
            Self::Inventory(e) => e.order_id(),
            Self::Payment(e) => e.order_id(),
            Self::Timeout(t) => &t.order_id,
            Self::Operator(r) => &r.order_id,
        }
    }
}

/// How the saga treats an unanswered step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts at reserving or charging before the saga compensates.
    pub max_attempts: u32,
    /// How long a first attempt at a step waits for its answer; each
    /// attempt after it waits twice as long, up to eight times this.
    pub step_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            step_timeout: Duration::from_secs(10),
        }
    }
}

/// What an event does to a saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write this record (with its command).
    Advance(Box<SagaRecord>),
    /// A wake-up came before the step's deadline: wake up again then.
    WakeAt(OffsetDateTime),
    Nothing,
}

/// [`on_event`], with the saga's wake-ups read against its deadline: a
/// wake-up times out the step the saga waits on, whichever step it was
/// armed for, once that step's `deadline` has passed, and asks for another
/// wake-up when it comes early. Returns the event as it was applied.
pub fn decide(
    saga: Option<&SagaRecord>,
    event: &SagaEvent,
    now: OffsetDateTime,
    policy: Policy,
) -> (SagaEvent, Decision) {
    let event = match (saga, event) {
        (Some(saga), SagaEvent::Timeout(_)) if !saga.state.is_terminal() => {
            let deadline = saga
                .deadline
                .as_deref()
                .and_then(|d| OffsetDateTime::parse(d, &Rfc3339).ok());
            match deadline {
                Some(at) if now < at => return (event.clone(), Decision::WakeAt(at)),
                Some(_) => SagaEvent::Timeout(StepTimer {
                    order_id: saga.order_id.clone(),
                    command: saga.command.name().to_owned(),
                    attempt: saga.attempt,
                }),
                // A record from before deadlines were kept in it: its
                // wake-up names the step it is for.
                None => event.clone(),
            }
        }
        _ => event.clone(),
    };
    let stamp = now.format(&Rfc3339).expect("a UTC time formats");
    let decision = match on_event(saga, &event, &stamp, policy) {
        Some(next) => Decision::Advance(Box::new(next)),
        None => Decision::Nothing,
    };
    (event, decision)
}

/// The next record of the saga, or `None` when the event changes nothing.
/// `now` stamps the history (RFC 3339).
pub fn on_event(
    saga: Option<&SagaRecord>,
    event: &SagaEvent,
    now: &str,
    policy: Policy,
) -> Option<SagaRecord> {
    match (saga, event) {
        (None, SagaEvent::Order(e)) if e.order.status == OrderStatus::Pending => {
            Some(start(&e.order, now))
        }
        (None, _) => None,
        (Some(saga), SagaEvent::Timeout(timer)) => timeout(saga, timer, now, policy),
        (Some(saga), SagaEvent::Operator(request)) => operate(saga, request, now),
        (Some(saga), event) => advance(saga, event, now),
    }
}

/// The current step's deadline passed: ask again, or give up and compensate.
fn timeout(saga: &SagaRecord, timer: &StepTimer, now: &str, policy: Policy) -> Option<SagaRecord> {
    let current = saga.command.name();
    if saga.state.is_terminal() || timer.command != current || timer.attempt != saga.attempt {
        return None; // the deadline of a step already answered
    }
    let mut next = saga.clone();
    next.steps.push(step(current, StepStatus::TimedOut, now));
    let give_up = saga.attempt >= policy.max_attempts;
    let (state, reason, command) = match saga.state {
        SagaState::Reserving if give_up => (
            SagaState::Releasing,
            CancelReason::InventoryUnavailable,
            SagaCommand::ReleaseStock,
        ),
        SagaState::Charging if give_up => (
            SagaState::Refunding,
            CancelReason::PaymentUnavailable,
            SagaCommand::RefundPayment {
                customer_id: saga.customer_id.clone(),
            },
        ),
        _ => {
            next.attempt += 1;
            next.steps.push(step(current, StepStatus::Requested, now));
            return Some(next);
        }
    };
    next.state = state;
    next.reason = Some(reason);
    next.steps
        .push(step(command.name(), StepStatus::Requested, now));
    next.command = command;
    next.attempt = 1;
    Some(next)
}

/// A cancel, retry or abort: what it makes of an unfinished saga, with
/// the request in the history; `None` when it changes nothing (the saga
/// is finished, already compensating, or past its point of no return).
fn operate(saga: &SagaRecord, request: &Request, now: &str) -> Option<SagaRecord> {
    if saga.state.is_terminal() {
        return None;
    }
    let current = saga.command.name();
    let asked = Step {
        by: Some(request.by.clone()),
        ..step(request.action.name(), StepStatus::Requested, now)
    };
    let mut next = saga.clone();
    if request.action == OperatorAction::Retry {
        if saga.retried_seq.is_some_and(|seq| seq >= request.seq) {
            return None; // this retry, again
        }
        next.retried_seq = Some(request.seq);
        next.steps.push(asked);
        next.attempt += 1;
        next.steps.push(step(current, StepStatus::Requested, now));
        return Some(next);
    }
    let reason = match request.action {
        OperatorAction::Abort => CancelReason::AbortedByOperator,
        _ => CancelReason::CancelledByRequest,
    };
    let (state, command) = match saga.state {
        SagaState::Reserving => (SagaState::Releasing, SagaCommand::ReleaseStock),
        SagaState::Charging => (
            SagaState::Refunding,
            SagaCommand::RefundPayment {
                customer_id: saga.customer_id.clone(),
            },
        ),
        _ => return None,
    };
    next.steps.push(asked);
    next.steps.push(step(current, StepStatus::Abandoned, now));
    next.steps
        .push(step(command.name(), StepStatus::Requested, now));
    next.state = state;
    next.reason = Some(reason);
    next.command = command;
    next.attempt = 1;
    Some(next)
}

fn start(order: &Order, now: &str) -> SagaRecord {
    let items = order
        .items
        .iter()
        .map(|l| events::LineItem {
            sku: l.sku.clone(),
            quantity: l.quantity,
        })
        .collect::<Vec<_>>();
    let command = SagaCommand::ReserveStock {
        items: items.clone(),
    };
    SagaRecord {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        state: SagaState::Reserving,
        items,
        lines: None,
        total_cents: None,
        reason: None,
        steps: vec![step(command.name(), StepStatus::Requested, now)],
        command,
        attempt: 1,
        deadline: None,
        wake_at: None,
        order_seq: None,
        inventory_seq: None,
        retried_seq: None,
    }
}

fn advance(saga: &SagaRecord, event: &SagaEvent, now: &str) -> Option<SagaRecord> {
    use SagaEvent::{Inventory, Order, Payment};
    use SagaState::*;
    let mut next = saga.clone();
    let (outcome, state, command) = match (saga.state, event) {
        (
            Reserving,
            Inventory(InventoryEvent::Reserved {
                lines, total_cents, ..
            }),
        ) => {
            next.lines = Some(lines.clone());
            next.total_cents = Some(*total_cents);
            let charge = SagaCommand::ChargePayment {
                customer_id: saga.customer_id.clone(),
                amount_cents: *total_cents,
            };
            (StepStatus::Succeeded, Charging, charge)
        }
        (Reserving, Inventory(InventoryEvent::ReserveFailed { reason, .. })) => {
            next.reason = Some(*reason);
            (
                StepStatus::Failed,
                Cancelling,
                SagaCommand::CancelOrder { reason: *reason },
            )
        }
        (Charging, Payment(PaymentEvent::Charged { .. })) => {
            (StepStatus::Succeeded, Committing, SagaCommand::CommitStock)
        }
        (Charging, Payment(PaymentEvent::Declined { reason, .. })) => {
            next.reason = Some(*reason);
            (StepStatus::Failed, Releasing, SagaCommand::ReleaseStock)
        }
        // The stock cannot be committed, ever: give the payment back and
        // release what is held.
        (Committing, Inventory(InventoryEvent::CommitFailed { .. })) => {
            next.reason = Some(CancelReason::InventoryUnavailable);
            let refund = SagaCommand::RefundPayment {
                customer_id: saga.customer_id.clone(),
            };
            (StepStatus::Failed, Refunding, refund)
        }
        (Committing, Inventory(InventoryEvent::Committed { .. })) => {
            let (lines, total_cents) = (saga.lines.clone()?, saga.total_cents?);
            (
                StepStatus::Succeeded,
                Confirming,
                SagaCommand::ConfirmOrder { lines, total_cents },
            )
        }
        (Refunding, Payment(PaymentEvent::Refunded { .. })) => {
            (StepStatus::Succeeded, Releasing, SagaCommand::ReleaseStock)
        }
        // A compensation that can never be done, as the participant's state
        // stands: asking again would change nothing. The participant
        // dead-lettered it for an operator; the saga goes on compensating
        // and ends, and its history says which step failed.
        (Refunding, Payment(PaymentEvent::RefundFailed { .. })) => {
            (StepStatus::Failed, Releasing, SagaCommand::ReleaseStock)
        }
        (Releasing, Inventory(InventoryEvent::Released { .. })) => {
            let reason = saga.reason?;
            (
                StepStatus::Succeeded,
                Cancelling,
                SagaCommand::CancelOrder { reason },
            )
        }
        (Releasing, Inventory(InventoryEvent::ReleaseFailed { .. })) => {
            let reason = saga.reason?;
            (
                StepStatus::Failed,
                Cancelling,
                SagaCommand::CancelOrder { reason },
            )
        }
        (Confirming, Order(e)) if e.order.status == OrderStatus::Confirmed => {
            (StepStatus::Succeeded, Confirmed, SagaCommand::Finish)
        }
        (Cancelling, Order(e)) if e.order.status == OrderStatus::Cancelled => {
            (StepStatus::Succeeded, Cancelled, SagaCommand::Finish)
        }
        _ => return None,
    };
    next.steps.push(step(saga.command.name(), outcome, now));
    if command != SagaCommand::Finish {
        next.steps
            .push(step(command.name(), StepStatus::Requested, now));
    }
    next.state = state;
    next.command = command;
    next.attempt = 1;
    Some(next)
}

fn step(name: &str, status: StepStatus, at: &str) -> Step {
    Step::new(name, status, at)
}

#[cfg(test)]
mod tests;
