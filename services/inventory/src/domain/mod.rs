//! The inventory's decisions, pure: given the stock levels as stored and a
//! command, the new levels and the event that announces them.
//!
//! A reservation holds every line of an order or none: an order for two
//! skus never holds one of them alone. What a saga step comes to, given
//! what the order holds already, is the `steps` module.

mod steps;

pub use steps::{heard_reservation, settlement, step, Settle, Settlement, Step};

use std::collections::BTreeMap;

use events::commands::Restock;
use events::inventory::{InventoryEvent, StockLevel};
use events::{CancelReason, Cents, LineItem, OrderId, PricedLine, Sku};

/// A command that cannot be applied to the stock as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("sku {0} is stocked for the first time and needs a unit_price_cents")]
    PriceRequired(Sku),
    #[error("sku {sku}: {what} would overflow")]
    Overflow { sku: Sku, what: &'static str },
    #[error("sku {sku} cannot be read: {error}")]
    Unreadable { sku: Sku, error: String },
    #[error("sku {sku} holds {reserved} reserved, fewer than the {wanted} the order holds")]
    Inconsistent {
        sku: Sku,
        reserved: u64,
        wanted: u64,
    },
    #[error("not an inventory command: {0}")]
    NotAnInventoryCommand(&'static str),
    #[error("order {0}: committed stock cannot be released")]
    ReleaseAfterCommit(OrderId),
    #[error("order {order_id}: cannot commit, found {found}")]
    NothingToCommit {
        order_id: OrderId,
        /// The order's last inventory event, or `nothing`.
        found: &'static str,
    },
    /// A step given up for good: the saga was answered `answer`.
    #[error("{step} given up, answered {answer}: {cause}")]
    GaveUp {
        step: &'static str,
        answer: &'static str,
        cause: Box<InventoryError>,
    },
}

/// What a sku's state did to a step that can never be done as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Unreadable,
    Inconsistent,
    Overflow,
}

impl InventoryError {
    /// Whether, and how, the stored stock makes the step impossible for
    /// good: no retry can do it, so the saga must hear that it failed.
    pub fn unusable(&self) -> Option<(&Sku, Unusable)> {
        match self {
            Self::Unreadable { sku, .. } => Some((sku, Unusable::Unreadable)),
            Self::Inconsistent { sku, .. } => Some((sku, Unusable::Inconsistent)),
            Self::Overflow { sku, .. } => Some((sku, Unusable::Overflow)),
            _ => None,
        }
    }
}

/// Applies a restock: adds the quantity and, when given, sets the price.
pub fn restock(
    current: Option<&StockLevel>,
    command: &Restock,
) -> Result<StockLevel, InventoryError> {
    let sku = command.sku.clone();
    let level = match current {
        Some(level) => level.clone(),
        None => StockLevel {
            sku: sku.clone(),
            available: 0,
            reserved: 0,
            unit_price_cents: command
                .unit_price_cents
                .ok_or_else(|| InventoryError::PriceRequired(sku.clone()))?,
            restocked: 0,
            committed: 0,
        },
    };
    let overflow = |what| InventoryError::Overflow {
        sku: sku.clone(),
        what,
    };
    Ok(StockLevel {
        available: level
            .available
            .checked_add(command.quantity)
            .ok_or_else(|| overflow("its available stock"))?,
        restocked: level
            .restocked
            .checked_add(command.quantity)
            .ok_or_else(|| overflow("its total restocked"))?,
        unit_price_cents: command.unit_price_cents.unwrap_or(level.unit_price_cents),
        ..level
    })
}

/// The quantity an order asks of each sku (lines naming one sku add up).
pub fn quantities<'a>(lines: impl IntoIterator<Item = (&'a Sku, u32)>) -> BTreeMap<Sku, u64> {
    let mut wanted = BTreeMap::new();
    for (sku, quantity) in lines {
        *wanted.entry(sku.clone()).or_insert(0u64) += u64::from(quantity);
    }
    wanted
}

/// What a reservation comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line held: the new levels of the skus, and `reserved`.
    Held {
        levels: Vec<StockLevel>,
        event: InventoryEvent,
    },
    /// Nothing held: `reserve_failed`.
    Refused(InventoryEvent),
}

impl Reservation {
    /// What the reservation writes: the new levels (none when refused), and
    /// the order's event.
    pub fn into_change(self) -> (Vec<StockLevel>, InventoryEvent) {
        match self {
            Self::Held { levels, event } => (levels, event),
            Self::Refused(event) => (vec![], event),
        }
    }
}

/// Holds every line of the order, priced from the catalogue, or none.
/// `stock` has the current level of each sku the order names that exists.
/// An error when a sku's levels or the order's total would overflow: the
/// reservation can never be made as the stock stands.
pub fn reserve(
    order_id: &OrderId,
    items: &[LineItem],
    stock: &BTreeMap<Sku, StockLevel>,
) -> Result<Reservation, InventoryError> {
    let wanted = quantities(items.iter().map(|l| (&l.sku, l.quantity.get())));
    let refuse = |reason, sku: &Sku| {
        Ok(Reservation::Refused(InventoryEvent::ReserveFailed {
            order_id: order_id.clone(),
            reason,
            sku: sku.clone(),
        }))
    };
    let overflow = |sku: &Sku, what| InventoryError::Overflow {
        sku: sku.clone(),
        what,
    };
    let mut levels = Vec::with_capacity(wanted.len());
    for (sku, quantity) in &wanted {
        let Some(level) = stock.get(sku) else {
            return refuse(CancelReason::UnknownSku, sku);
        };
        if level.available < *quantity {
            return refuse(CancelReason::OutOfStock, sku);
        }
        levels.push(StockLevel {
            available: level.available - quantity,
            reserved: level
                .reserved
                .checked_add(*quantity)
                .ok_or_else(|| overflow(sku, "its reserved stock"))?,
            ..level.clone()
        });
    }
    let lines: Vec<PricedLine> = items
        .iter()
        .map(|l| PricedLine {
            sku: l.sku.clone(),
            quantity: l.quantity,
            unit_price_cents: stock[&l.sku].unit_price_cents,
        })
        .collect();
    let mut total_cents = Cents::ZERO;
    for line in &lines {
        total_cents = line
            .unit_price_cents
            .checked_mul(line.quantity)
            .and_then(|cost| total_cents.checked_add(cost))
            .ok_or_else(|| overflow(&line.sku, "the order's total at its price"))?;
    }
    Ok(Reservation::Held {
        levels,
        event: InventoryEvent::Reserved {
            order_id: order_id.clone(),
            lines,
            total_cents,
        },
    })
}

/// The answer to a reservation given up for good because of `sku`: the
/// order is cancelled `inventory_unavailable`.
pub fn reserve_given_up(order_id: &OrderId, sku: &Sku) -> InventoryEvent {
    InventoryEvent::ReserveFailed {
        order_id: order_id.clone(),
        reason: CancelReason::InventoryUnavailable,
        sku: sku.clone(),
    }
}

/// The answer to a commit or release of `lines` given up for good
/// (`error`): the saga compensates, or ends, and the lines stay held.
pub fn settle_given_up(
    order_id: &OrderId,
    settle: Settle,
    lines: &[PricedLine],
    error: &InventoryError,
) -> InventoryEvent {
    let (order_id, lines, error) = (order_id.clone(), lines.to_vec(), error.to_string());
    match settle {
        Settle::Commit => InventoryEvent::CommitFailed {
            order_id,
            lines,
            error,
        },
        Settle::Release => InventoryEvent::ReleaseFailed {
            order_id,
            lines,
            error,
        },
    }
}

/// Settles the held `lines` on `stock` one way or the other.
pub fn settle_lines(
    settle: Settle,
    lines: &[PricedLine],
    stock: &BTreeMap<Sku, StockLevel>,
) -> Result<Vec<StockLevel>, InventoryError> {
    match settle {
        Settle::Commit => commit(lines, stock),
        Settle::Release => release(lines, stock),
    }
}

/// The held stock leaves for good: `reserved` goes down.
pub fn commit(
    lines: &[PricedLine],
    stock: &BTreeMap<Sku, StockLevel>,
) -> Result<Vec<StockLevel>, InventoryError> {
    settle(lines, stock, false)
}

/// The held stock is available again.
pub fn release(
    lines: &[PricedLine],
    stock: &BTreeMap<Sku, StockLevel>,
) -> Result<Vec<StockLevel>, InventoryError> {
    settle(lines, stock, true)
}

fn settle(
    lines: &[PricedLine],
    stock: &BTreeMap<Sku, StockLevel>,
    back_to_available: bool,
) -> Result<Vec<StockLevel>, InventoryError> {
    quantities(lines.iter().map(|l| (&l.sku, l.quantity.get())))
        .into_iter()
        .map(|(sku, quantity)| {
            let level = stock.get(&sku);
            let reserved = level.map_or(0, |l| l.reserved);
            let overflow = |what| InventoryError::Overflow {
                sku: sku.clone(),
                what,
            };
            match level {
                Some(level) if reserved >= quantity => {
                    let (available, committed) = if back_to_available {
                        let available = level.available.checked_add(quantity);
                        (
                            available.ok_or_else(|| overflow("its available stock"))?,
                            level.committed,
                        )
                    } else {
                        let committed = level.committed.checked_add(quantity);
                        (
                            level.available,
                            committed.ok_or_else(|| overflow("its total committed"))?,
                        )
                    };
                    Ok(StockLevel {
                        reserved: reserved - quantity,
                        available,
                        committed,
                        ..level.clone()
                    })
                }
                _ => Err(InventoryError::Inconsistent {
                    sku,
                    reserved,
                    wanted: quantity,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::Quantity;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn line(s: &str, q: u64) -> LineItem {
        LineItem {
            sku: sku(s),
            quantity: Quantity::new(q).unwrap(),
        }
    }

    fn level(s: &str, available: u64, price: u64) -> StockLevel {
        StockLevel {
            sku: sku(s),
            available,
            reserved: 0,
            unit_price_cents: Cents(price),
            restocked: available,
            committed: 0,
        }
    }

    /// What every state must satisfy, and `sagactl audit` checks.
    fn adds_up(level: &StockLevel) -> bool {
        level.restocked == level.available + level.reserved + level.committed
    }

    #[test]
    fn every_change_keeps_the_totals_adding_up() {
        let restock = |quantity, price| Restock {
            sku: sku("a"),
            quantity,
            unit_price_cents: price,
        };
        let first = super::restock(None, &restock(10, Some(Cents(100)))).unwrap();
        let more = super::restock(Some(&first), &restock(5, None)).unwrap();
        assert_eq!((more.available, more.restocked), (15, 15));
        let Reservation::Held { levels, event } =
            reserve(&order(), &[line("a", 4)], &stock(&[more])).unwrap()
        else {
            panic!("held")
        };
        let InventoryEvent::Reserved { lines, .. } = event else {
            panic!("reserved")
        };
        let committed = commit(&lines, &stock(&levels)).unwrap();
        assert_eq!(
            (
                committed[0].available,
                committed[0].reserved,
                committed[0].committed
            ),
            (11, 0, 4)
        );
        let held = reserve(&order(), &[line("a", 2)], &stock(&committed)).unwrap();
        let (held, _) = held.into_change();
        let two = vec![PricedLine {
            quantity: Quantity::new(2).unwrap(),
            ..lines[0].clone()
        }];
        let released = release(&two, &stock(&held)).unwrap();
        for level in [&first, &levels[0], &committed[0], &held[0], &released[0]] {
            assert!(adds_up(level), "{level:?}");
        }
        assert_eq!(
            (
                released[0].available,
                released[0].committed,
                released[0].restocked
            ),
            (11, 4, 15)
        );
    }

    fn stock(levels: &[StockLevel]) -> BTreeMap<Sku, StockLevel> {
        levels.iter().map(|l| (l.sku.clone(), l.clone())).collect()
    }

    fn order() -> OrderId {
        OrderId::parse("o-1").unwrap()
    }

    #[test]
    fn a_first_restock_needs_a_price() {
        let cmd = Restock {
            sku: sku("a"),
            quantity: 5,
            unit_price_cents: None,
        };
        assert_eq!(
            restock(None, &cmd),
            Err(InventoryError::PriceRequired(sku("a")))
        );
        let priced = Restock {
            unit_price_cents: Some(Cents(250)),
            ..cmd.clone()
        };
        let level = restock(None, &priced).unwrap();
        assert_eq!((level.available, level.unit_price_cents), (5, Cents(250)));
        let again = restock(Some(&level), &cmd).unwrap();
        assert_eq!((again.available, again.unit_price_cents), (10, Cents(250)));
    }

    #[test]
    fn a_reservation_holds_and_prices_every_line() {
        let stock = stock(&[level("a", 5, 100), level("b", 1, 250)]);
        let Ok(Reservation::Held { levels, event }) = reserve(
            &order(),
            &[line("a", 2), line("b", 1), line("a", 1)],
            &stock,
        ) else {
            panic!("expected the stock to be held");
        };
        assert_eq!(levels[0].available, 2);
        assert_eq!(levels[0].reserved, 3);
        assert_eq!(levels[1].available, 0);
        let InventoryEvent::Reserved {
            lines, total_cents, ..
        } = event
        else {
            panic!("expected reserved");
        };
        assert_eq!(lines.len(), 3);
        assert_eq!(total_cents, Cents(2 * 100 + 250 + 100));
    }

    #[test]
    fn one_short_line_holds_nothing() {
        let stock = stock(&[level("a", 5, 100), level("b", 1, 250)]);
        let refused = reserve(&order(), &[line("a", 2), line("b", 2)], &stock);
        assert!(matches!(
            refused,
            Ok(Reservation::Refused(InventoryEvent::ReserveFailed { reason: CancelReason::OutOfStock, ref sku, .. })) if sku.as_str() == "b"
        ));
    }

    #[test]
    fn an_unknown_sku_is_refused_as_such() {
        let refused = reserve(&order(), &[line("zzz", 1)], &stock(&[]));
        assert!(matches!(
            refused,
            Ok(Reservation::Refused(InventoryEvent::ReserveFailed {
                reason: CancelReason::UnknownSku,
                ..
            }))
        ));
    }

    #[test]
    fn commit_and_release_undo_the_hold_differently() {
        let start = stock(&[level("a", 5, 100)]);
        let Ok(Reservation::Held {
            levels,
            event: InventoryEvent::Reserved { lines, .. },
        }) = reserve(&order(), &[line("a", 2)], &start)
        else {
            panic!()
        };
        let held = stock(&levels);
        let committed = commit(&lines, &held).unwrap();
        assert_eq!((committed[0].available, committed[0].reserved), (3, 0));
        let released = release(&lines, &held).unwrap();
        assert_eq!((released[0].available, released[0].reserved), (5, 0));
        assert!(commit(&lines, &stock(&committed)).is_err());
    }

    #[test]
    fn a_reservation_that_would_overflow_the_reserved_stock_is_impossible() {
        let full = StockLevel {
            reserved: u64::MAX - 1,
            ..level("a", 5, 100)
        };
        assert_eq!(
            reserve(&order(), &[line("a", 2)], &stock(&[full])),
            Err(InventoryError::Overflow {
                sku: sku("a"),
                what: "its reserved stock",
            })
        );
    }

    #[test]
    fn a_reservation_whose_total_would_overflow_is_impossible() {
        let pricey = level("b", 10, u64::MAX / 2);
        let impossible = reserve(&order(), &[line("b", 3)], &stock(&[pricey]));
        assert_eq!(
            impossible.unwrap_err().unusable(),
            Some((&sku("b"), Unusable::Overflow))
        );
    }

    #[test]
    fn a_release_that_would_overflow_the_available_stock_is_impossible() {
        let held = StockLevel {
            available: u64::MAX,
            reserved: 2,
            ..level("a", 0, 100)
        };
        let lines = vec![PricedLine {
            sku: sku("a"),
            quantity: Quantity::new(2).unwrap(),
            unit_price_cents: Cents(100),
        }];
        let impossible = release(&lines, &stock(&[held])).unwrap_err();
        assert_eq!(impossible.unusable(), Some((&sku("a"), Unusable::Overflow)));
    }

    #[test]
    fn a_step_given_up_is_answered_as_failed() {
        assert_eq!(
            reserve_given_up(&order(), &sku("bad")),
            InventoryEvent::ReserveFailed {
                order_id: order(),
                reason: CancelReason::InventoryUnavailable,
                sku: sku("bad"),
            }
        );
        let why = InventoryError::Unreadable {
            sku: sku("bad"),
            error: "expected value".to_owned(),
        };
        let InventoryEvent::ReleaseFailed { error, lines, .. } =
            settle_given_up(&order(), Settle::Release, &[], &why)
        else {
            panic!("expected release_failed");
        };
        assert_eq!(error, "sku bad cannot be read: expected value");
        assert!(lines.is_empty());
        assert!(matches!(
            settle_given_up(&order(), Settle::Commit, &[], &why),
            InventoryEvent::CommitFailed { .. }
        ));
    }
}
