//! The order aggregate as the world sees it, and the events the order
//! service publishes under `orders.evt.>`.
//!
//! Every order event carries the whole order after the change, so the last
//! event of an order *is* its current state: `orders.query.get` is one read.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, CustomerId, OrderId, Quantity, Sku};

/// `PENDING` → `CONFIRMED` or `CANCELLED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Cancelled,
}

/// Why an order was cancelled (docs/contract.md 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    OutOfStock,
    UnknownSku,
    InsufficientFunds,
    PaymentUnavailable,
    InventoryUnavailable,
    /// `orders.cmd.cancel`.
    CancelledByRequest,
    /// `saga.cmd.abort`.
    AbortedByOperator,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::UnknownSku => "unknown_sku",
            Self::InsufficientFunds => "insufficient_funds",
            Self::PaymentUnavailable => "payment_unavailable",
            Self::InventoryUnavailable => "inventory_unavailable",
            Self::CancelledByRequest => "cancelled_by_request",
            Self::AbortedByOperator => "aborted_by_operator",
        }
    }
}

/// One line as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// One line once the inventory has priced it from its catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price_cents: Cents,
}

/// A line of an order as `orders.query.get` shows it: priced once the saga
/// has priced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price_cents: Option<Cents>,
}

/// The order: the reply of `orders.query.get` and the body of every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub items: Vec<OrderLine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<Cents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
}

/// The kind of an order state change; the last token of its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEventType {
    Placed,
    Confirmed,
    Cancelled,
}

impl OrderEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// `orders.evt.<order_id>.<type>`: one order state change, with the whole
/// order after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    #[serde(rename = "type")]
    pub kind: OrderEventType,
    #[serde(flatten)]
    pub order: Order,
}

/// `orders.evt.rejected`: a well-formed command that was invalid. Nothing
/// was created; `errors` lists every problem found, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEvent {
    #[serde(rename = "type")]
    pub kind: RejectedTag,
    /// The `order_id` the client sent, verbatim, when it was a string;
    /// `null` otherwise (every order event carries the field).
    #[serde(default)]
    pub order_id: Option<String>,
    pub errors: Vec<String>,
}

/// The constant `"rejected"` tag of a [`RejectedEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectedTag {
    Rejected,
}

impl Order {
    /// A new order as placed: pending, not yet priced.
    pub fn placed(order_id: OrderId, customer_id: CustomerId, items: &[LineItem]) -> Self {
        Self {
            order_id,
            customer_id,
            status: OrderStatus::Pending,
            items: items
                .iter()
                .map(|l| OrderLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price_cents: None,
                })
                .collect(),
            total_cents: None,
            reason: None,
        }
    }

    /// Copies the saga's prices onto the lines, when it has them.
    pub fn with_prices(mut self, priced: &[PricedLine], total: Cents) -> Self {
        self.items = priced
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price_cents: Some(l.unit_price_cents),
            })
            .collect();
        self.total_cents = Some(total);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_event_is_flat_json_with_type_status_and_reason() {
        let order = Order {
            reason: Some(CancelReason::OutOfStock),
            status: OrderStatus::Cancelled,
            ..Order::placed(
                OrderId::parse("o-1").unwrap(),
                CustomerId::parse("c-1").unwrap(),
                &[LineItem {
                    sku: Sku::parse("s").unwrap(),
                    quantity: Quantity::new(2).unwrap(),
                }],
            )
        };
        let json = serde_json::to_value(OrderEvent {
            kind: OrderEventType::Cancelled,
            order,
        })
        .unwrap();
        assert_eq!(json["type"], "cancelled");
        assert_eq!(json["order_id"], "o-1");
        assert_eq!(json["status"], "CANCELLED");
        assert_eq!(json["reason"], "out_of_stock");
        assert_eq!(json["items"][0]["quantity"], 2);
        assert!(json.get("total_cents").is_none());
    }
}
