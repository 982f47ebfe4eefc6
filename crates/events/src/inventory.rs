//! The inventory's records: a sku's stock level, and what the inventory
//! decided for one order.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, OrderId, Sku};
use crate::order::{CancelReason, PricedLine};

/// `inventory.sku.<sku>`: a sku's state after a change; the last one is the
/// current stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: Sku,
    pub available: u64,
    pub reserved: u64,
    pub unit_price_cents: Cents,
    /// Every unit ever restocked, and every unit ever committed to an
    /// order: kept in the same write as the change, so that
    /// `restocked = available + reserved + committed` holds in every state
    /// (`sagactl audit`).
    #[serde(default)]
    pub restocked: u64,
    #[serde(default)]
    pub committed: u64,
}

/// The reply of `inventory.query.stock` (docs/contract.md 4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReply {
    pub sku: Sku,
    pub available: u64,
    pub reserved: u64,
    pub unit_price_cents: Cents,
}

impl From<StockLevel> for StockReply {
    fn from(level: StockLevel) -> Self {
        Self {
            sku: level.sku,
            available: level.available,
            reserved: level.reserved,
            unit_price_cents: level.unit_price_cents,
        }
    }
}

/// `inventory.evt.<order_id>.<type>`: the inventory's answer to a saga step.
/// At most one event of each type exists for an order, and a reservation
/// can only be made while the order has no inventory event at all: the
/// subject is the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InventoryEvent {
    /// Every line is held and priced.
    Reserved {
        order_id: OrderId,
        lines: Vec<PricedLine>,
        total_cents: Cents,
    },
    /// Nothing was held.
    ReserveFailed {
        order_id: OrderId,
        reason: CancelReason,
        sku: Sku,
    },
    /// The held stock left the warehouse for good.
    Committed {
        order_id: OrderId,
        lines: Vec<PricedLine>,
    },
    /// The held stock is available again. With no lines, nothing was held:
    /// the release stands as a tombstone so a late reservation does nothing.
    Released {
        order_id: OrderId,
        lines: Vec<PricedLine>,
    },
    /// The held stock cannot be committed, and never will be as the skus
    /// stand (one cannot be read, or its levels do not add up): the saga
    /// compensates. The lines stay held until released; `error` says why.
    CommitFailed {
        order_id: OrderId,
        lines: Vec<PricedLine>,
        error: String,
    },
    /// The held stock cannot be released as the skus stand: the lines stay
    /// held, the step is dead-lettered for an operator to repair the sku,
    /// and the saga ends all the same. A release asked again tries again.
    ReleaseFailed {
        order_id: OrderId,
        lines: Vec<PricedLine>,
        error: String,
    },
}

impl InventoryEvent {
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Reserved { order_id, .. }
            | Self::ReserveFailed { order_id, .. }
            | Self::Committed { order_id, .. }
            | Self::Released { order_id, .. }
            | Self::CommitFailed { order_id, .. }
            | Self::ReleaseFailed { order_id, .. } => order_id,
        }
    }

    /// The last token of the event's subject.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Reserved { .. } => "reserved",
            Self::ReserveFailed { .. } => "reserve_failed",
            Self::Committed { .. } => "committed",
            Self::Released { .. } => "released",
            Self::CommitFailed { .. } => "commit_failed",
            Self::ReleaseFailed { .. } => "release_failed",
        }
    }
}
