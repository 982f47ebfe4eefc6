//! The payment service's records: a customer's account, and what the payment
//! service decided for one order.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, CustomerId, OrderId};
use crate::order::CancelReason;

/// `payments.account.<customer_id>`: the account after a change; the last
/// one is the current balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub customer_id: CustomerId,
    pub balance_cents: Cents,
    /// Every cent ever deposited, charged and refunded: kept in the same
    /// write as the change, so that
    /// `balance = deposited - charged + refunded` holds in every state
    /// (`sagactl audit`).
    #[serde(default)]
    pub deposited_cents: Cents,
    #[serde(default)]
    pub charged_cents: Cents,
    #[serde(default)]
    pub refunded_cents: Cents,
}

/// The reply of `payments.query.account` (docs/contract.md 4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountReply {
    pub customer_id: CustomerId,
    pub balance_cents: Cents,
}

impl From<Account> for AccountReply {
    fn from(account: Account) -> Self {
        Self {
            customer_id: account.customer_id,
            balance_cents: account.balance_cents,
        }
    }
}

/// `payments.evt.<order_id>.<type>`: the payment service's answer to a saga
/// step. As for the inventory, the subject is the idempotency key: a charge
/// is only taken while the order has no payment event at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaymentEvent {
    Charged {
        order_id: OrderId,
        customer_id: CustomerId,
        amount_cents: Cents,
    },
    Declined {
        order_id: OrderId,
        customer_id: CustomerId,
        reason: CancelReason,
    },
    /// The charge was given back. With 0 cents nothing had been taken: the
    /// refund stands as a tombstone so a late charge takes nothing.
    Refunded {
        order_id: OrderId,
        customer_id: CustomerId,
        amount_cents: Cents,
    },
    /// The charge cannot be given back as the account stands (it cannot be
    /// read, or the balance would overflow): `amount_cents` is still owed
    /// to the customer, the step is dead-lettered for an operator, and the
    /// saga ends all the same. A refund asked again tries again.
    RefundFailed {
        order_id: OrderId,
        customer_id: CustomerId,
        amount_cents: Cents,
        error: String,
    },
}

impl PaymentEvent {
    pub fn order_id(&self) -> &OrderId {
        match self {
            Self::Charged { order_id, .. }
            | Self::Declined { order_id, .. }
            | Self::Refunded { order_id, .. }
            | Self::RefundFailed { order_id, .. } => order_id,
        }
    }

    /// The last token of the event's subject.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Charged { .. } => "charged",
            Self::Declined { .. } => "declined",
            Self::Refunded { .. } => "refunded",
            Self::RefundFailed { .. } => "refund_failed",
        }
    }
}
