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
/// Its form is reserved: no client may give one ([`OrderId::is_derived`]).
pub fn derive_order_id(msg_id: Option<&str>, stream_seq: u64) -> OrderId {
    match msg_id {
        Some(id) => OrderId::derived_from_msg_id(fnv1a(id.as_bytes())),
        None => OrderId::derived_from_sequence(stream_seq),
    }
}

/// The header of a `placed` event with a derived id that names the place
/// command it was derived from: its key (`m<hex of its Nats-Msg-Id>` or
/// `s<stream sequence>`).
pub const PLACED_BY: &str = "Jetsaga-Placed-By";

/// The `placed` event found under the id a place command derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found<'a> {
    /// Its stream sequence.
    pub seq: u64,
    /// Its [`PLACED_BY`] header: absent on orders placed before it was
    /// written, and on orders a client named.
    pub placed_by: Option<&'a str>,
}

/// Whether the order `found` under a derived id was placed by this same
/// command (`key`, stored at `stream_seq`): a redelivery or a republish,
/// which creates nothing. Otherwise another command holds the id, and
/// this one must not be merged into its order.
///
/// No client can hold a derived id ([`OrderId::is_derived`]), and a stream
/// sequence is one message's, so only two commands whose message ids share
/// a 64-bit digest (by chance, or crafted: FNV-1a is no cryptographic hash)
/// derive the same id, and their keys differ. An order placed before keys
/// were recorded was placed by an `o-s<seq>` command only if it was stored
/// after that command; of an `o-m` one nothing can be told, and it is taken
/// to be the same command, as it always was.
pub fn placed_by_same_command(key: &str, stream_seq: u64, found: Option<Found<'_>>) -> bool {
    match found {
        Some(Found {
            placed_by: Some(by),
            ..
        }) => by == key,
        Some(Found {
            seq,
            placed_by: None,
        }) => !key.starts_with('s') || seq > stream_seq,
        // Events of the order, but no `placed`: whatever wrote them, not
        // this command.
        None => false,
    }
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
            retried_seq: None,
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
    fn derived_ids_are_of_the_form_no_client_may_give() {
        for msg_id in [None, Some(""), Some("abc"), Some("a.b c*>")] {
            for seq in [0, 1, 42, u64::MAX] {
                let id = derive_order_id(msg_id, seq);
                assert!(OrderId::is_derived(id.as_str()), "{id}");
                assert!(events::subjects::is_token(id.as_str()), "{id}");
            }
        }
    }

    #[test]
    fn an_order_placed_by_the_same_command_is_a_repeat() {
        let found = |placed_by| Some(Found { seq: 50, placed_by });
        assert!(placed_by_same_command("s42", 42, found(Some("s42"))));
        assert!(placed_by_same_command("m6162", 99, found(Some("m6162"))));
    }

    #[test]
    fn an_order_placed_by_another_command_under_the_same_derived_id_is_not_merged() {
        // Two message ids with one digest.
        let other = Some(Found {
            seq: 50,
            placed_by: Some("m6162"),
        });
        assert!(!placed_by_same_command("m6163", 99, other));
        // Events of the order without its `placed`.
        assert!(!placed_by_same_command("s42", 42, None));
    }

    #[test]
    fn an_order_stored_before_the_message_its_sequence_id_names_was_placed_by_another() {
        // Placed (by a client, before such ids were reserved) at 41: not
        // derived from the message at 42.
        let claimed = Some(Found {
            seq: 41,
            placed_by: None,
        });
        assert!(!placed_by_same_command("s42", 42, claimed));
        let derived = Some(Found {
            seq: 43,
            placed_by: None,
        });
        assert!(placed_by_same_command("s42", 42, derived));
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
