//! The payment gateway: where a charge is actually taken or given back.
//!
//! The ledger (balances in JetStream) decides *whether* a customer can pay;
//! the gateway is the outside system that moves the money and can be slow
//! or down. [`Simulator`] is the default: it fails a share of its calls
//! transiently and adds latency, as `PAYMENT_GATEWAY_FAILURE_RATE` and
//! `PAYMENT_GATEWAY_LATENCY_MS` say. Calls carry the order id as their
//! idempotency key, so a retried call never moves money twice. Whatever the
//! gateway, [`WithTimeout`] bounds each call.

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

/// A gateway whose calls fail, transiently, when they take longer than
/// `timeout` (`PAYMENT_GATEWAY_TIMEOUT_MS`): a gateway that hangs would
/// otherwise hold its saga step, and its consumer's permit, for as long as
/// it hangs. A call cut short may still have moved the money: the retry,
/// keyed by the same order, does not move it twice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WithTimeout<G> {
    pub gateway: G,
    pub timeout: Duration,
}

impl<G: Gateway> WithTimeout<G> {
    async fn bounded(
        &self,
        call: impl Future<Output = Result<(), Unavailable>>,
    ) -> Result<(), Unavailable> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or_else(|_| {
                Err(Unavailable(format!(
                    "no answer within {} ms",
                    self.timeout.as_millis()
                )))
            })
    }
}

impl<G: Gateway> Gateway for WithTimeout<G> {
    async fn charge(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
        amount: Cents,
    ) -> Result<(), Unavailable> {
        self.bounded(self.gateway.charge(order_id, customer_id, amount))
            .await
    }

    async fn refund(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
        amount: Cents,
    ) -> Result<(), Unavailable> {
        self.bounded(self.gateway.refund(order_id, customer_id, amount))
            .await
    }
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
    async fn a_call_that_outlasts_the_timeout_fails_transiently_when_it_expires() {
        let (o, c) = ids();
        let hanging = WithTimeout {
            gateway: Simulator {
                failure_rate: 0.0,
                latency: Duration::from_secs(3600),
            },
            timeout: Duration::from_millis(20),
        };
        let started = std::time::Instant::now();
        assert_eq!(
            hanging.charge(&o, &c, Cents(1)).await,
            Err(Unavailable("no answer within 20 ms".to_owned()))
        );
        assert!(hanging.refund(&o, &c, Cents(1)).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_call_within_the_timeout_goes_through() {
        let (o, c) = ids();
        let prompt = WithTimeout {
            gateway: Simulator {
                failure_rate: 0.0,
                latency: Duration::from_millis(1),
            },
            timeout: Duration::from_secs(10),
        };
        assert_eq!(prompt.charge(&o, &c, Cents(1)).await, Ok(()));
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
