//! The payment service's message handlers and query: the thin layer between
//! JetStream and [`crate::domain`].
//!
//! As in the inventory, every change is one atomic batch of the account's
//! new balance (checked against the sequence it was read at) and the order's
//! payment event (checked against the order's previous one): a charge is
//! taken at most once per order, whatever is redelivered or races.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Message;
use events::commands::Deposit;
use events::payment::{Account, PaymentEvent};
use events::query::ByCustomer;
use events::saga::{SagaCommand, SagaRecord};
use events::subjects;
use events::{Cents, CustomerId, OrderId};
use runtime::aggregate::{guard, Aggregates, Applied, Held, Version};
use runtime::consumer::command_key;
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::{decode, Append, HandleError, Handler, Store, StoreError, Versioned};
use time::OffsetDateTime;

use crate::breaker::Breaker;
use crate::domain::{self, Charge};
use crate::gateway::{Gateway, Unavailable};

/// The customers' accounts, held and remembered by this process.
pub type Accounts = Aggregates<Account>;

/// `payments.cmd.>`: deposits.
#[derive(Debug)]
pub struct Commands {
    accounts: Arc<Accounts>,
}

impl Commands {
    pub fn new(accounts: Arc<Accounts>) -> Self {
        Self { accounts }
    }
}

impl Handler for Commands {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        if message.subject.as_str() != subjects::DEPOSIT {
            return Err(HandleError::Reject(format!(
                "unknown command {}",
                message.subject
            )));
        }
        let command =
            Deposit::parse(&message.payload).map_err(|e| HandleError::Reject(e.to_string()))?;
        let marker = subjects::applied("payments", &command_key(message));
        let subject = subjects::account(&command.customer_id);
        let applied = retry_conflicts(|| {
            self.accounts
                .apply_once(&subject, &marker, &message.payload, |current| {
                    domain::deposit(current, &command)
                })
        })
        .await?
        .handled()?;
        if let Applied::Now(account) = applied {
            tracing::info!(customer_id = %account.customer_id, balance = account.balance_cents.0, "deposited");
        }
        Ok(())
    }
}

/// Why a saga step was not done this time.
#[derive(Debug)]
enum NotDone {
    /// It can never be done (a bug or corrupt state): dead-letter it.
    Never(String),
    /// The gateway failed or its circuit is open: try again after this long.
    Later(Duration, String),
}

/// An attempt's outcome: done, or why not.
type Attempt = Result<(), NotDone>;

/// The saga's `charge_payment` and `refund_payment`, through the gateway
/// and its circuit breaker.
#[derive(Debug)]
pub struct SagaSteps<G> {
    accounts: Arc<Accounts>,
    gateway: G,
    breaker: Arc<Breaker>,
}

impl<G: Gateway> Handler for SagaSteps<G> {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let record: SagaRecord = decode(message)?;
        let order_id = &record.order_id;
        let attempt = match &record.command {
            SagaCommand::ChargePayment {
                customer_id,
                amount_cents,
            } => {
                let delivery = message.info().map_or(1, |i| i.delivered);
                let look = domain::may_be_decided(&record, delivery, OffsetDateTime::now_utc());
                retry_conflicts(|| self.charge(order_id, customer_id, *amount_cents, look)).await?
            }
            SagaCommand::RefundPayment { customer_id } => {
                retry_conflicts(|| self.refund(order_id, customer_id)).await?
            }
            other => Err(NotDone::Never(format!(
                "not a payment command: {}",
                other.name()
            ))),
        };
        attempt.map_err(|not_done| match not_done {
            NotDone::Never(why) => HandleError::Reject(why),
            NotDone::Later(after, why) => HandleError::RetryAfter(after, why),
        })
    }

    /// While the gateway's circuit is open, take no new steps: they would
    /// only fail (backpressure rather than declined orders).
    fn paused(&self) -> Option<Duration> {
        self.breaker.open_for()
    }
}

impl<G: Gateway> SagaSteps<G> {
    pub fn new(accounts: Arc<Accounts>, gateway: G, breaker: Arc<Breaker>) -> Self {
        Self {
            accounts,
            gateway,
            breaker,
        }
    }

    /// Moves money through the gateway, guarded by the breaker.
    async fn through_gateway<F>(&self, call: F) -> Attempt
    where
        F: std::future::Future<Output = Result<(), Unavailable>>,
    {
        let permit = self.breaker.permit().map_err(|wait| {
            NotDone::Later(wait, format!("payment gateway circuit open for {wait:?}"))
        })?;
        let outcome = call.await;
        self.breaker.record(permit, outcome.is_ok());
        // Come back when the breaker may let a call through: not later,
        // however often this step was tried already.
        outcome.map_err(|e| NotDone::Later(self.breaker.retry_in(), e.to_string()))
    }

    fn store(&self) -> &Store {
        self.accounts.store()
    }

    /// Charges `amount` for `order_id`, once. `look`: the order may be
    /// decided already ([`domain::may_be_decided`]), so look first.
    async fn charge(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
        amount: Cents,
        look: bool,
    ) -> Result<Attempt, StoreError> {
        // Decided before (or refunded before it was ever charged): the
        // gateway must not be called again for it; say the answer again, in
        // case the saga missed it.
        if look
            && self
                .store()
                .re_emit(&subjects::payment_events(order_id))
                .await?
        {
            return Ok(Ok(()));
        }
        let subject = subjects::account(customer_id);
        let turn = self.accounts.hold([subject.as_str()]).await;
        let mut current = self.accounts.read(&subject).await?;
        let mut decision = domain::charge(
            order_id,
            customer_id,
            current.as_ref().map(|v| &v.value),
            amount,
        );
        if matches!(decision, Charge::Declined(_)) {
            // A decline writes no balance, so no sequence check would catch
            // a stale memory: decline only on what the store says now.
            self.accounts.forget(&subject);
            current = self.accounts.read(&subject).await?;
            decision = domain::charge(
                order_id,
                customer_id,
                current.as_ref().map(|v| &v.value),
                amount,
            );
        }
        let version = current.map(|v| v.version);
        let (account, event) = match decision {
            Charge::Taken { account, event } => (Some(account), event),
            Charge::Declined(event) => (None, event),
        };
        if account.is_some() {
            if let Err(not_done) = self
                .through_gateway(self.gateway.charge(order_id, customer_id, amount))
                .await
            {
                return Ok(Err(not_done));
            }
        }
        // Expecting no payment event for the order yet makes a repeated
        // charge fail as a whole: no read needed to be idempotent.
        match self
            .write(turn, order_id, account.map(|a| (a, version)), &event, 0)
            .await
        {
            Ok(()) => {
                tracing::info!(%customer_id, outcome = event.type_name(), amount = amount.0, "charge decided");
                Ok(Ok(()))
            }
            Err(StoreError::Conflict(why)) => {
                self.accounts.forget(&subject);
                // Decided before (or refunded before it was charged).
                if self
                    .store()
                    .re_emit(&subjects::payment_events(order_id))
                    .await?
                {
                    return Ok(Ok(()));
                }
                Err(StoreError::Conflict(why))
            }
            Err(e) => Err(e),
        }
    }

    async fn refund(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
    ) -> Result<Attempt, StoreError> {
        let last: Option<Versioned<PaymentEvent>> = self
            .store()
            .last(&subjects::payment_events(order_id))
            .await?;
        let (after, charged) = match &last {
            Some(Versioned {
                value: PaymentEvent::Refunded { .. },
                ..
            }) => {
                // Done before: say so again, in case the saga missed it.
                self.store()
                    .re_emit(&subjects::payment_events(order_id))
                    .await?;
                return Ok(Ok(()));
            }
            Some(Versioned {
                seq,
                value: PaymentEvent::Charged { amount_cents, .. },
                ..
            }) => (*seq, *amount_cents),
            // Nothing was taken: record the refund anyway, so that the saga
            // hears back and a charge arriving late takes nothing.
            Some(Versioned { seq, .. }) => (*seq, Cents::ZERO),
            None => (0, Cents::ZERO),
        };
        let event = PaymentEvent::Refunded {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            amount_cents: charged,
        };
        let subject = subjects::account(customer_id);
        let turn = self.accounts.hold([subject.as_str()]).await;
        let account = if charged == Cents::ZERO {
            None
        } else {
            let Some(current) = self.accounts.read(&subject).await? else {
                return Ok(Err(NotDone::Never(format!(
                    "order {order_id}: charged customer {customer_id} has no account"
                ))));
            };
            let account = match domain::refund(&current.value, charged) {
                Ok(account) => account,
                Err(e) => return Ok(Err(NotDone::Never(e.to_string()))),
            };
            if let Err(not_done) = self
                .through_gateway(self.gateway.refund(order_id, customer_id, charged))
                .await
            {
                return Ok(Err(not_done));
            }
            Some((account, Some(current.version)))
        };
        match self.write(turn, order_id, account, &event, after).await {
            Ok(()) => {
                tracing::info!(%customer_id, amount = charged.0, "refunded");
                Ok(Ok(()))
            }
            Err(e) => {
                self.accounts.forget(&subject);
                Err(e)
            }
        }
    }

    /// One atomic batch: the account (when it changes), checked against the
    /// version it was read at, and the order's event, checked against
    /// `after`. The turn on the account lasts until the change is queued
    /// ([`Aggregates::write`]).
    async fn write(
        &self,
        turn: Held,
        order_id: &OrderId,
        account: Option<(Account, Option<Version>)>,
        event: &PaymentEvent,
        after: u64,
    ) -> Result<(), StoreError> {
        let mut appends = Vec::with_capacity(2);
        let mut changed = Vec::with_capacity(1);
        if let Some((account, version)) = account {
            let subject = subjects::account(&account.customer_id);
            appends.push(guard(
                Append::json(subject.clone(), &account),
                version.as_ref(),
            ));
            changed.push((subject, account));
        }
        appends.push(
            Append::json(subjects::payment_event(order_id, event.type_name()), event)
                .expect_last_on(&subjects::payment_events(order_id), after),
        );
        self.accounts
            .write(turn, changed, appends)
            .await
            .map(|_| ())
    }
}

/// `payments.query.account`.
pub fn get_account_query(store: Store) -> Query {
    Query::json(
        "account",
        subjects::GET_ACCOUNT,
        move |request: ByCustomer| {
            let store = store.clone();
            async move {
                let found: Option<Versioned<Account>> =
                    store.last(&subjects::account(&request.customer_id)).await?;
                found.map(|v| v.value).ok_or_else(|| {
                    QueryError::NotFound(format!("no account for customer {}", request.customer_id))
                })
            }
        },
    )
}
