//! The saga as a pure state machine: `on_event(saga, event) -> next record`.
//!
//! ```text
//! placed ─► Reserving ─reserved─► Charging ─charged─► Committing ─committed─► Confirming ─confirmed─► Confirmed
//!              │                     │
//!        reserve_failed           declined
//!              │                     ▼
//!              │                 Releasing ─released─► Cancelling ─cancelled─► Cancelled
//!              └───────────────────────────────────────────▲
//! ```
//!
//! Each transition yields the whole next [`SagaRecord`], carrying the one
//! command it issues. An event the current state does not wait for (a
//! duplicate, a late or out-of-order one) yields nothing: redeliveries are
//! harmless by construction.

use events::inventory::InventoryEvent;
use events::order::OrderEvent;
use events::payment::PaymentEvent;
use events::saga::{SagaCommand, SagaRecord, SagaState, Step, StepStatus};
use events::{Order, OrderId, OrderStatus};

/// What the orchestrator hears from the participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaEvent {
    Order(OrderEvent),
    Inventory(InventoryEvent),
    Payment(PaymentEvent),
}

impl SagaEvent {
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Order(e) => &e.order.order_id,
            Self::Inventory(e) => e.order_id(),
            Self::Payment(e) => e.order_id(),
        }
    }
}

/// The next record of the saga, or `None` when the event changes nothing.
/// `now` stamps the history (RFC 3339).
pub fn on_event(saga: Option<&SagaRecord>, event: &SagaEvent, now: &str) -> Option<SagaRecord> {
    match (saga, event) {
        (None, SagaEvent::Order(e)) if e.order.status == OrderStatus::Pending => {
            Some(start(&e.order, now))
        }
        (None, _) => None,
        (Some(saga), event) => advance(saga, event, now),
    }
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
        (Releasing, Inventory(InventoryEvent::Released { .. })) => {
            let reason = saga.reason?;
            (
                StepStatus::Succeeded,
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
    Some(next)
}

fn step(name: &str, status: StepStatus, at: &str) -> Step {
    Step {
        name: name.to_owned(),
        status,
        at: at.to_owned(),
    }
}

#[cfg(test)]
mod tests;
