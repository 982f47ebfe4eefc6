//! The saga's steps for the inventory, decided on what the order holds
//! already: its last inventory event, or what the saga heard of it.
//!
//! Every step may come again (a redelivery, a retry, a step the saga asked
//! again after its deadline), so each one is decided against the order's
//! last event: a step done before is only announced again, and a release
//! that finds nothing held still records the release, so that a
//! reservation arriving late holds nothing.

use events::inventory::InventoryEvent;
use events::saga::{SagaCommand, SagaRecord};
use events::{LineItem, OrderId, PricedLine};

use super::InventoryError;

/// Which way the stock an order holds leaves the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Sold: it leaves the stock for good.
    Commit,
    /// Given back: it is available again.
    Release,
}

/// A saga step the inventory takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Reserve(&'a [LineItem]),
    Settle(Settle),
}

/// The inventory's step that `command` asks for.
pub fn step(command: &SagaCommand) -> Result<Step<'_>, InventoryError> {
    match command {
        SagaCommand::ReserveStock { items } => Ok(Step::Reserve(items)),
        SagaCommand::CommitStock => Ok(Step::Settle(Settle::Commit)),
        SagaCommand::ReleaseStock => Ok(Step::Settle(Settle::Release)),
        other => Err(InventoryError::NotAnInventoryCommand(other.name())),
    }
}

/// The reservation the saga of `record` heard for its order, and the
/// sequence it was announced at: unless something came after it, what the
/// order holds now.
pub fn heard_reservation(record: &SagaRecord) -> Option<(u64, InventoryEvent)> {
    let seq = record.inventory_seq?;
    let reserved = InventoryEvent::Reserved {
        order_id: record.order_id.clone(),
        lines: record.lines.clone()?,
        total_cents: record.total_cents?,
    };
    Some((seq, reserved))
}

/// What settling an order's stock comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Settle the stock of `lines` (none, when nothing is held) and
    /// announce `event`.
    Change {
        lines: Vec<PricedLine>,
        event: InventoryEvent,
    },
    /// Done before: announce it again, in case the saga missed it.
    Repeat,
}

/// Settles the stock of `order_id` given its last inventory event `last`.
pub fn settlement(
    order_id: &OrderId,
    settle: Settle,
    last: Option<&InventoryEvent>,
) -> Result<Settlement, InventoryError> {
    let released = |lines: &[PricedLine]| Settlement::Change {
        lines: lines.to_vec(),
        event: InventoryEvent::Released {
            order_id: order_id.clone(),
            lines: lines.to_vec(),
        },
    };
    match (settle, last) {
        (Settle::Commit, Some(InventoryEvent::Reserved { lines, .. })) => Ok(Settlement::Change {
            lines: lines.clone(),
            event: InventoryEvent::Committed {
                order_id: order_id.clone(),
                lines: lines.clone(),
            },
        }),
        (Settle::Release, Some(InventoryEvent::Reserved { lines, .. })) => Ok(released(lines)),
        (Settle::Commit, Some(InventoryEvent::Committed { .. }))
        | (Settle::Release, Some(InventoryEvent::Released { .. })) => Ok(Settlement::Repeat),
        // A commit given up stays given up: the saga compensates on it, and
        // a commit now would contradict that.
        (Settle::Commit, Some(InventoryEvent::CommitFailed { .. })) => Ok(Settlement::Repeat),
        // Still held: a release tries again (the sku may be repaired).
        (
            Settle::Release,
            Some(
                InventoryEvent::CommitFailed { lines, .. }
                | InventoryEvent::ReleaseFailed { lines, .. },
            ),
        ) => Ok(released(lines)),
        // Nothing is held: record the release anyway, so that the saga
        // hears back and a reservation arriving late holds nothing.
        (Settle::Release, None | Some(InventoryEvent::ReserveFailed { .. })) => Ok(released(&[])),
        (Settle::Release, Some(InventoryEvent::Committed { .. })) => {
            Err(InventoryError::ReleaseAfterCommit(order_id.clone()))
        }
        (Settle::Commit, other) => Err(InventoryError::NothingToCommit {
            order_id: order_id.clone(),
            found: other.map_or("nothing", InventoryEvent::type_name),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::saga::SagaState;
    use events::{CancelReason, Cents, CustomerId, Quantity, Sku};

    fn order() -> OrderId {
        OrderId::parse("o-1").unwrap()
    }

    fn lines() -> Vec<PricedLine> {
        vec![PricedLine {
            sku: Sku::parse("a").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            unit_price_cents: Cents(100),
        }]
    }

    fn reserved() -> InventoryEvent {
        InventoryEvent::Reserved {
            order_id: order(),
            lines: lines(),
            total_cents: Cents(200),
        }
    }

    fn committed() -> InventoryEvent {
        InventoryEvent::Committed {
            order_id: order(),
            lines: lines(),
        }
    }

    fn released(lines: Vec<PricedLine>) -> InventoryEvent {
        InventoryEvent::Released {
            order_id: order(),
            lines,
        }
    }

    fn reserve_failed() -> InventoryEvent {
        InventoryEvent::ReserveFailed {
            order_id: order(),
            reason: CancelReason::OutOfStock,
            sku: Sku::parse("a").unwrap(),
        }
    }

    fn record(command: SagaCommand, heard: Option<u64>) -> SagaRecord {
        SagaRecord {
            order_id: order(),
            customer_id: CustomerId::parse("c-1").unwrap(),
            state: SagaState::Committing,
            items: vec![],
            lines: Some(lines()),
            total_cents: Some(Cents(200)),
            reason: None,
            steps: vec![],
            command,
            attempt: 1,
            deadline: None,
            wake_at: None,
            order_seq: None,
            inventory_seq: heard,
            retried_seq: None,
        }
    }

    #[test]
    fn the_saga_commands_map_to_the_inventory_steps() {
        let items = vec![LineItem {
            sku: Sku::parse("a").unwrap(),
            quantity: Quantity::new(1).unwrap(),
        }];
        let reserve = SagaCommand::ReserveStock {
            items: items.clone(),
        };
        assert_eq!(step(&reserve), Ok(Step::Reserve(&items)));
        assert_eq!(
            step(&SagaCommand::CommitStock),
            Ok(Step::Settle(Settle::Commit))
        );
        assert_eq!(
            step(&SagaCommand::ReleaseStock),
            Ok(Step::Settle(Settle::Release))
        );
    }

    #[test]
    fn a_step_for_another_service_is_refused_by_name() {
        assert_eq!(
            step(&SagaCommand::Finish),
            Err(InventoryError::NotAnInventoryCommand("finish"))
        );
    }

    #[test]
    fn a_saga_that_heard_the_reservation_knows_what_the_order_holds() {
        let heard = heard_reservation(&record(SagaCommand::CommitStock, Some(7)));
        assert_eq!(heard, Some((7, reserved())));
    }

    #[test]
    fn a_saga_that_heard_no_reservation_knows_nothing() {
        assert_eq!(
            heard_reservation(&record(SagaCommand::CommitStock, None)),
            None
        );
        let unpriced = SagaRecord {
            lines: None,
            ..record(SagaCommand::CommitStock, Some(7))
        };
        assert_eq!(heard_reservation(&unpriced), None);
    }

    #[test]
    fn a_commit_after_the_reservation_commits_its_lines() {
        assert_eq!(
            settlement(&order(), Settle::Commit, Some(&reserved())),
            Ok(Settlement::Change {
                lines: lines(),
                event: committed(),
            })
        );
    }

    #[test]
    fn a_release_after_the_reservation_releases_its_lines() {
        assert_eq!(
            settlement(&order(), Settle::Release, Some(&reserved())),
            Ok(Settlement::Change {
                lines: lines(),
                event: released(lines()),
            })
        );
    }

    #[test]
    fn a_redelivered_commit_after_the_commit_only_repeats_it() {
        assert_eq!(
            settlement(&order(), Settle::Commit, Some(&committed())),
            Ok(Settlement::Repeat)
        );
    }

    #[test]
    fn a_redelivered_release_after_the_release_only_repeats_it() {
        assert_eq!(
            settlement(&order(), Settle::Release, Some(&released(lines()))),
            Ok(Settlement::Repeat)
        );
    }

    #[test]
    fn a_release_with_nothing_held_records_an_empty_release() {
        for last in [None, Some(reserve_failed())] {
            assert_eq!(
                settlement(&order(), Settle::Release, last.as_ref()),
                Ok(Settlement::Change {
                    lines: vec![],
                    event: released(vec![]),
                })
            );
        }
    }

    fn failed(settle: Settle) -> InventoryEvent {
        crate::domain::settle_given_up(
            &order(),
            settle,
            &lines(),
            &crate::domain::InventoryError::Unreadable {
                sku: Sku::parse("a").unwrap(),
                error: "expected value".to_owned(),
            },
        )
    }

    #[test]
    fn a_commit_given_up_is_only_repeated_never_tried_again() {
        assert_eq!(
            settlement(&order(), Settle::Commit, Some(&failed(Settle::Commit))),
            Ok(Settlement::Repeat)
        );
    }

    #[test]
    fn what_a_failed_commit_or_release_left_held_is_released_when_asked_again() {
        for last in [failed(Settle::Commit), failed(Settle::Release)] {
            assert_eq!(
                settlement(&order(), Settle::Release, Some(&last)),
                Ok(Settlement::Change {
                    lines: lines(),
                    event: released(lines()),
                })
            );
        }
    }

    #[test]
    fn a_release_after_the_commit_is_refused() {
        assert_eq!(
            settlement(&order(), Settle::Release, Some(&committed())),
            Err(InventoryError::ReleaseAfterCommit(order()))
        );
    }

    #[test]
    fn a_commit_without_a_reservation_is_refused_naming_what_it_found() {
        let found = |last: Option<InventoryEvent>| match settlement(
            &order(),
            Settle::Commit,
            last.as_ref(),
        ) {
            Err(InventoryError::NothingToCommit { found, .. }) => found,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(found(None), "nothing");
        assert_eq!(found(Some(reserve_failed())), "reserve_failed");
        assert_eq!(found(Some(released(vec![]))), "released");
    }
}
