//! The request-reply queries (docs/contract.md 4.3): requests, and the error body
//! every query answers with when it cannot.

use serde::{Deserialize, Serialize};

use crate::ids::{CustomerId, OrderId, Sku};

/// `orders.query.get` and `saga.query.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByOrder {
    pub order_id: OrderId,
}

/// `inventory.query.stock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BySku {
    pub sku: Sku,
}

/// `payments.query.account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByCustomer {
    pub customer_id: CustomerId,
}

/// `{"error": {"code": "not_found", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}
