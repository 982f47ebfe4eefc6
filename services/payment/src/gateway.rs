//! The payment gateway: where a charge is actually taken or given back.
//!
//! The ledger (balances in JetStream) decides *whether* a customer can pay;
//! the gateway is the outside system that moves the money and can be slow
//! or down. [`Simulator`] is the default: it fails a share of its calls
//! transiently and adds latency, as `PAYMENT_GATEWAY_FAILURE_RATE` and
//! `PAYMENT_GATEWAY_LATENCY_MS` say. Calls carry the order id as their
//! idempotency key, so a retried call never moves money twice.

use std::future::Future;
use std::time::Duration;

use events::{Cents, CustomerId, OrderId};
use rand::Rng;

/// A gateway call that failed but may succeed later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment gateway unavailable: {0}")]
pub struct Unavailable(pub String);

/// What the payment service needs of a gateway.
pub trait Gateway: Send + Sync + 'static {
    /// Takes `amount` from the customer, for `order_id` (the idempotency key).
    fn charge(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
        amount: Cents,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send;

    /// Gives `amount` back, for `order_id`.
    fn refund(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
        amount: Cents,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send;
}

/// A gateway that answers after `latency` and fails `failure_rate` of its
/// calls (0.0 to 1.0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulator {
    pub failure_rate: f64,
    pub latency: Duration,
}

impl Simulator {
    async fn call(&self) -> Result<(), Unavailable> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.failure_rate > 0.0 && rand::rng().random_bool(self.failure_rate.min(1.0)) {
            return Err(Unavailable("simulated transient failure".to_owned()));
        }
        Ok(())
    }
}

impl Gateway for Simulator {
    async fn charge(&self, _: &OrderId, _: &CustomerId, _: Cents) -> Result<(), Unavailable> {
        self.call().await
    }

    async fn refund(&self, _: &OrderId, _: &CustomerId, _: Cents) -> Result<(), Unavailable> {
        self.call().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (OrderId, CustomerId) {
        (
            OrderId::parse("o").unwrap(),
            CustomerId::parse("c").unwrap(),
        )
    }

    #[tokio::test]
    async fn a_healthy_simulator_always_answers() {
        let (o, c) = ids();
        let gateway = Simulator {
            failure_rate: 0.0,
            latency: Duration::ZERO,
        };
        for _ in 0..100 {
            assert_eq!(gateway.charge(&o, &c, Cents(1)).await, Ok(()));
        }
    }

    #[tokio::test]
    async fn a_broken_simulator_always_fails() {
        let (o, c) = ids();
        let gateway = Simulator {
            failure_rate: 1.0,
            latency: Duration::ZERO,
        };
        for _ in 0..100 {
            assert!(gateway.refund(&o, &c, Cents(1)).await.is_err());
        }
    }
}
