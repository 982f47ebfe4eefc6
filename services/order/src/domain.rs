//! The order's decisions, pure: given the order as stored and a command,
//! which event (if any) to append.

use events::order::{OrderEvent, OrderEventType};
use events::saga::{SagaCommand, SagaRecord};
use events::{CancelReason, Cents, CustomerId, LineItem, Order, OrderId, OrderStatus, PricedLine};

/// A command the order's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} does not exist")]
    Unknown(OrderId),
    #[error("order {order_id} is {status:?} and cannot become {wanted:?}")]
    Final {
        order_id: OrderId,
        status: OrderStatus,
        wanted: OrderStatus,
    },
    #[error("not an order command: {0}")]
    NotAnOrderCommand(&'static str),
}

/// The order id of a place command that did not name one: derived from the
/// message, so a redelivery (same stream sequence) or a republish with the
/// same `Nats-Msg-Id` places the same order again, which creates nothing.
pub fn derive_order_id(msg_id: Option<&str>, stream_seq: u64) -> OrderId {
    let raw = match msg_id {
        Some(id) => format!("o-m{:016x}", fnv1a(id.as_bytes())),
        None => format!("o-s{stream_seq}"),
    };
    OrderId::parse(raw).expect("derived ids use the id alphabet")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The event that places an order: pending, as the customer asked.
pub fn placed(order_id: OrderId, customer_id: CustomerId, items: &[LineItem]) -> OrderEvent {
    OrderEvent {
        kind: OrderEventType::Placed,
        order: Order::placed(order_id, customer_id, items),
    }
}

/// The order as the saga of `record` heard it placed, and the sequence of
/// that event: unless something came after it, the order as it stands.
pub fn heard_placed(record: &SagaRecord) -> Option<(u64, OrderEvent)> {
    let seq = record.order_seq?;
    let placed = placed(
        record.order_id.clone(),
        record.customer_id.clone(),
        &record.items,
    );
    Some((seq, placed))
}

/// The saga's command to the order (`record.command`), decided on the
/// order as it stands: the event to append, or `None` when the order is
/// that way already.
pub fn decide(
    record: &SagaRecord,
    current: Option<&Order>,
) -> Result<Option<OrderEvent>, OrderError> {
    let order_id = &record.order_id;
    match &record.command {
        SagaCommand::ConfirmOrder { lines, total_cents } => {
            confirm(current, order_id, lines, *total_cents)
        }
        SagaCommand::CancelOrder { reason } => {
            let priced = record.lines.as_deref().zip(record.total_cents);
            cancel(current, order_id, *reason, priced)
        }
        other => Err(OrderError::NotAnOrderCommand(other.name())),
    }
}

/// Confirms a pending order with the saga's prices. `None`: it already is.
pub fn confirm(
    current: Option<&Order>,
    order_id: &OrderId,
    lines: &[PricedLine],
    total: Cents,
) -> Result<Option<OrderEvent>, OrderError> {
    let order = current.ok_or_else(|| OrderError::Unknown(order_id.clone()))?;
    match order.status {
        OrderStatus::Confirmed => Ok(None),
        OrderStatus::Cancelled => Err(final_error(order, OrderStatus::Confirmed)),
        OrderStatus::Pending => Ok(Some(OrderEvent {
            kind: OrderEventType::Confirmed,
            order: Order {
                status: OrderStatus::Confirmed,
                ..order.clone().with_prices(lines, total)
            },
        })),
    }
}

/// Cancels a pending order. Prices the saga learned stay on the lines.
/// `None`: it already is cancelled.
pub fn cancel(
    current: Option<&Order>,
    order_id: &OrderId,
    reason: CancelReason,
    priced: Option<(&[PricedLine], Cents)>,
) -> Result<Option<OrderEvent>, OrderError> {
    let order = current.ok_or_else(|| OrderError::Unknown(order_id.clone()))?;
    match order.status {
        OrderStatus::Cancelled => Ok(None),
        OrderStatus::Confirmed => Err(final_error(order, OrderStatus::Cancelled)),
        OrderStatus::Pending => {
            let order = match priced {
                Some((lines, total)) => order.clone().with_prices(lines, total),
                None => order.clone(),
            };
            Ok(Some(OrderEvent {
                kind: OrderEventType::Cancelled,
                order: Order {
                    status: OrderStatus::Cancelled,
                    reason: Some(reason),
                    ..order
                },
            }))
        }
    }
}

fn final_error(order: &Order, wanted: OrderStatus) -> OrderError {
    OrderError::Final {
        order_id: order.order_id.clone(),
        status: order.status,
        wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{CustomerId, LineItem, Quantity, Sku};

    fn pending() -> Order {
        Order::placed(
            OrderId::parse("o-1").unwrap(),
            CustomerId::parse("c-1").unwrap(),
            &[LineItem {
                sku: Sku::parse("s-1").unwrap(),
                quantity: Quantity::new(2).unwrap(),
            }],
        )
    }

    fn priced() -> Vec<PricedLine> {
        vec![PricedLine {
            sku: Sku::parse("s-1").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            unit_price_cents: Cents(150),
        }]
    }

    #[test]
    fn confirming_a_pending_order_prices_it() {
        let id = pending().order_id;
        let event = confirm(Some(&pending()), &id, &priced(), Cents(300))
            .unwrap()
            .unwrap();
        assert_eq!(event.kind, OrderEventType::Confirmed);
        assert_eq!(event.order.status, OrderStatus::Confirmed);
        assert_eq!(event.order.total_cents, Some(Cents(300)));
        assert_eq!(event.order.items[0].unit_price_cents, Some(Cents(150)));
    }

    #[test]
    fn confirming_twice_changes_nothing() {
        let id = pending().order_id;
        let confirmed = confirm(Some(&pending()), &id, &priced(), Cents(300))
            .unwrap()
            .unwrap()
            .order;
        assert_eq!(
            confirm(Some(&confirmed), &id, &priced(), Cents(300)),
            Ok(None)
        );
    }

    #[test]
    fn a_cancelled_order_is_never_confirmed() {
        let id = pending().order_id;
        let cancelled = cancel(Some(&pending()), &id, CancelReason::OutOfStock, None)
            .unwrap()
            .unwrap()
            .order;
        assert_eq!(cancelled.reason, Some(CancelReason::OutOfStock));
        assert_eq!(cancelled.total_cents, None);
        assert!(confirm(Some(&cancelled), &id, &priced(), Cents(300)).is_err());
        assert_eq!(
            cancel(Some(&cancelled), &id, CancelReason::OutOfStock, None),
            Ok(None)
        );
    }

    #[test]
    fn an_unknown_order_cannot_change() {
        let id = OrderId::parse("nope").unwrap();
        assert_eq!(
            confirm(None, &id, &priced(), Cents(1)),
            Err(OrderError::Unknown(id))
        );
    }

    fn saga(command: SagaCommand, order_seq: Option<u64>) -> SagaRecord {
        let order = pending();
        SagaRecord {
            order_id: order.order_id,
            customer_id: order.customer_id,
            state: events::saga::SagaState::Cancelling,
            items: vec![LineItem {
                sku: Sku::parse("s-1").unwrap(),
                quantity: Quantity::new(2).unwrap(),
            }],
            lines: Some(priced()),
            total_cents: Some(Cents(300)),
            reason: None,
            steps: vec![],
            command,
            attempt: 1,
            deadline: None,
            wake_at: None,
            order_seq,
            inventory_seq: None,
        }
    }

    #[test]
    fn a_saga_that_heard_the_order_placed_knows_it_pending_at_that_sequence() {
        let record = saga(SagaCommand::CommitStock, Some(42));
        let (seq, event) = heard_placed(&record).unwrap();
        assert_eq!(seq, 42);
        assert_eq!(
            event,
            placed(pending().order_id, pending().customer_id, &record.items)
        );
        assert_eq!(event.order, pending());
    }

    #[test]
    fn a_saga_that_did_not_note_the_placed_sequence_knows_nothing() {
        assert_eq!(heard_placed(&saga(SagaCommand::CommitStock, None)), None);
    }

    #[test]
    fn a_cancel_from_the_saga_keeps_the_prices_it_learned() {
        let record = saga(
            SagaCommand::CancelOrder {
                reason: CancelReason::InsufficientFunds,
            },
            None,
        );
        let event = decide(&record, Some(&pending())).unwrap().unwrap();
        assert_eq!(event.kind, OrderEventType::Cancelled);
        assert_eq!(event.order.reason, Some(CancelReason::InsufficientFunds));
        assert_eq!(event.order.total_cents, Some(Cents(300)));
    }

    #[test]
    fn a_confirm_from_the_saga_confirms_with_its_prices() {
        let record = saga(
            SagaCommand::ConfirmOrder {
                lines: priced(),
                total_cents: Cents(300),
            },
            None,
        );
        let event = decide(&record, Some(&pending())).unwrap().unwrap();
        assert_eq!(event.order.status, OrderStatus::Confirmed);
        assert_eq!(event.order.total_cents, Some(Cents(300)));
    }

    #[test]
    fn a_step_for_another_service_is_refused_by_name() {
        let record = saga(SagaCommand::CommitStock, None);
        assert_eq!(
            decide(&record, Some(&pending())),
            Err(OrderError::NotAnOrderCommand("commit_stock"))
        );
    }

    #[test]
    fn derived_ids_are_stable_per_message() {
        assert_eq!(derive_order_id(None, 42).as_str(), "o-s42");
        assert_eq!(
            derive_order_id(Some("abc"), 1),
            derive_order_id(Some("abc"), 2)
        );
        assert_ne!(
            derive_order_id(Some("abc"), 1),
            derive_order_id(Some("abd"), 1)
        );
    }
}
