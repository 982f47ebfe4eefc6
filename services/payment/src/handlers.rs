//! The payment service's message handlers and query: the thin layer between
//! JetStream and [`crate::domain`]. They read, ask the domain, call the
//! gateway, and write.
//!
//! As in the inventory, every change is one atomic batch of the account's
//! new balance (checked against the sequence it was read at) and the order's
//! payment event (checked against the order's previous one): a charge is
//! taken at most once per order, whatever is redelivered or races.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Message;
use events::commands::Deposit;
use events::payment::{Account, AccountReply, PaymentEvent};
use events::query::ByCustomer;
use events::saga::{command, SagaRecord};
use events::subjects;
use events::{Cents, CustomerId, OrderId};
use runtime::aggregate::{guard, Aggregates, Applied, Held, Known, Version};
use runtime::clock::ServerClock;
use runtime::consumer::command_key;
use runtime::metrics::{self, Metrics};
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::store::Conflict;
use runtime::{
    decode, Append, Attempt, HandleError, Handler, Outcome, Store, StoreError, Versioned,
};

use crate::breaker::Breaker;
use crate::domain::{self, Charge, PaymentError, Refunding, Step, Unusable};
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
        let marker = subjects::applied("payments", &command_key(message)?);
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
#[derive(Debug, thiserror::Error)]
enum NotDone {
    /// It can never be done (a bug or corrupt state).
    #[error(transparent)]
    Refused(#[from] PaymentError),
    /// The gateway's circuit is open for this long.
    #[error("payment gateway circuit open for {0:?}")]
    CircuitOpen(Duration),
    /// The gateway failed.
    #[error(transparent)]
    Gateway(#[from] Unavailable),
}

/// The saga's `charge_payment` and `refund_payment`, through the gateway
/// and its circuit breaker.
#[derive(Debug)]
pub struct SagaSteps<G> {
    accounts: Arc<Accounts>,
    gateway: G,
    breaker: Arc<Breaker>,
    metrics: Metrics,
    /// The server's time, which the saga's deadlines are in.
    clock: Arc<ServerClock>,
}

impl<G: Gateway> Handler for SagaSteps<G> {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let record: SagaRecord = decode(message)?;
        let order_id = &record.order_id;
        let outcome = match domain::step(&record.command) {
            Ok(Step::Charge {
                customer_id,
                amount,
            }) => {
                let delivery = message.info().map_or(1, |i| i.delivered);
                let look = domain::may_be_decided(&record, delivery, self.clock.now());
                retry_conflicts(|| self.charge(order_id, customer_id, amount, look)).await?
            }
            Ok(Step::Refund { customer_id }) => {
                retry_conflicts(|| self.refund(order_id, customer_id)).await?
            }
            Err(refused) => Outcome::Refused(refused.into()),
        };
        outcome.handled()
    }

    /// While the gateway's circuit is open, take no new steps: they would
    /// only fail (backpressure rather than declined orders).
    fn paused(&self) -> Option<Duration> {
        self.breaker.open_for()
    }
}

impl<G: Gateway> SagaSteps<G> {
    pub fn new(
        accounts: Arc<Accounts>,
        gateway: G,
        breaker: Arc<Breaker>,
        metrics: Metrics,
        clock: Arc<ServerClock>,
    ) -> Self {
        metrics.declare_steps(&[command::CHARGE_PAYMENT, command::REFUND_PAYMENT]);
        Self {
            accounts,
            gateway,
            breaker,
            metrics,
            clock,
        }
    }

    /// Moves money through the gateway, guarded by the breaker: `Later`
    /// when it cannot now.
    async fn through_gateway<F>(&self, call: F) -> Outcome<(), NotDone>
    where
        F: std::future::Future<Output = Result<(), Unavailable>>,
    {
        let permit = match self.breaker.permit() {
            Ok(permit) => permit,
            Err(wait) => return Outcome::Later(wait, NotDone::CircuitOpen(wait)),
        };
        let outcome = call.await;
        self.breaker.record(permit, outcome.is_ok());
        match outcome {
            Ok(()) => Outcome::Done(()),
            // Come back when the breaker may let a call through: not later,
            // however often this step was tried already.
            Err(e) => Outcome::Later(self.breaker.retry_in(), e.into()),
        }
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
    ) -> Attempt<(), NotDone> {
        // Decided before (or refunded before it was ever charged): the
        // gateway must not be called again for it; say the answer again, in
        // case the saga missed it.
        if look
            && self
                .store()
                .re_emit(&subjects::payment_events(order_id))
                .await?
                .is_some()
        {
            return Ok(Outcome::Done(()));
        }
        let subject = subjects::account(customer_id);
        let turn = self.accounts.hold([subject.as_str()]).await;
        let takes = |current: &Option<Known<Account>>| {
            let current = current.as_ref().map(|v| &v.value);
            let decision = domain::charge(order_id, customer_id, current, amount);
            matches!(decision, Charge::Taken { .. })
        };
        let mut current = self.read(customer_id).await?;
        if !matches!(&current, Ok(known) if takes(known)) {
            // A decline (or giving up) writes no balance, so no sequence
            // check would catch a stale memory: decline only on what the
            // store says now.
            self.accounts.forget(&subject);
            current = self.read(customer_id).await?;
        }
        let current = match current {
            Ok(current) => current,
            Err(why) => {
                let answer = domain::charge_given_up(order_id, customer_id);
                let gave_up = self
                    .give_up(turn, order_id, command::CHARGE_PAYMENT, answer, 0, why)
                    .await;
                return match gave_up {
                    // Decided before: say it again, in case the saga missed it.
                    Err(StoreError::Conflict(why)) => self.decided_before(order_id, why).await,
                    other => other,
                };
            }
        };
        let decision = domain::charge(
            order_id,
            customer_id,
            current.as_ref().map(|v| &v.value),
            amount,
        );
        let version = current.map(|v| v.version);
        let (account, event) = decision.into_change();
        if account.is_some() {
            let called = self
                .through_gateway(self.gateway.charge(order_id, customer_id, amount))
                .await;
            if !called.is_done() {
                return Ok(called);
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
                Ok(Outcome::Done(()))
            }
            Err(StoreError::Conflict(why)) => {
                self.accounts.forget(&subject);
                // Decided before (or refunded before it was charged).
                self.decided_before(order_id, why).await
            }
            Err(e) => Err(e),
        }
    }

    /// After a charge lost its write: if the order has a payment event, the
    /// charge was decided before (or refunded before it was taken), and
    /// its answer is announced again; otherwise the conflict stands.
    async fn decided_before(&self, order_id: &OrderId, why: Conflict) -> Attempt<(), NotDone> {
        if self
            .store()
            .re_emit(&subjects::payment_events(order_id))
            .await?
            .is_some()
        {
            return Ok(Outcome::Done(()));
        }
        Err(StoreError::Conflict(why))
    }

    /// The customer's account, as remembered or read; an account whose
    /// stored state cannot be read is the step's refusal.
    async fn read(
        &self,
        customer_id: &CustomerId,
    ) -> Result<Result<Option<Known<Account>>, PaymentError>, StoreError> {
        match self.accounts.read(&subjects::account(customer_id)).await {
            Err(StoreError::Corrupt { source, .. }) => Ok(Err(PaymentError::Unreadable {
                customer_id: customer_id.clone(),
                error: source.to_string(),
            })),
            read => read.map(Ok),
        }
    }

    /// Gives up for good on a step that the account as it stands makes
    /// impossible (`why`): answers the saga with the failure `answer`
    /// (guarded by `after`, the order's last payment event), so the saga
    /// compensates or ends instead of asking again and again, and refuses
    /// the step, which dead-letters it for an operator. The gateway is
    /// not called: no money moves that the ledger cannot record.
    async fn give_up(
        &self,
        turn: Held,
        order_id: &OrderId,
        step: &'static str,
        answer: PaymentEvent,
        after: u64,
        why: PaymentError,
    ) -> Attempt<(), NotDone> {
        let cause = match why.unusable() {
            Some(Unusable::Unreadable) => metrics::Unusable::UnreadableState,
            Some(Unusable::Inconsistent) => metrics::Unusable::InconsistentState,
            Some(Unusable::Overflow) => metrics::Unusable::Overflow,
            None => return Ok(Outcome::Refused(why.into())),
        };
        self.write(turn, order_id, None, &answer, after).await?;
        self.metrics.step_abandoned(step, cause);
        tracing::error!(step, answer = answer.type_name(), error = %why, "saga step given up: the account as stored makes it impossible");
        Ok(Outcome::Refused(
            PaymentError::GaveUp {
                step,
                answer: answer.type_name(),
                cause: Box::new(why),
            }
            .into(),
        ))
    }

    async fn refund(&self, order_id: &OrderId, customer_id: &CustomerId) -> Attempt<(), NotDone> {
        let last: Option<Versioned<PaymentEvent>> = self
            .store()
            .last(&subjects::payment_events(order_id))
            .await?;
        let after = last.as_ref().map_or(0, |v| v.seq);
        let last = last.as_ref().map(|v| &v.value);
        let (give_back, event) = match domain::refunding(order_id, customer_id, last) {
            Refunding::Repeat => {
                self.store()
                    .re_emit(&subjects::payment_events(order_id))
                    .await?;
                return Ok(Outcome::Done(()));
            }
            Refunding::Refund { give_back, event } => (give_back, event),
        };
        let subject = subjects::account(customer_id);
        let turn = self.accounts.hold([subject.as_str()]).await;
        let account = match give_back {
            None => None,
            Some(amount) => {
                let refund_to = |current: Result<Option<Known<Account>>, PaymentError>| {
                    current.and_then(|current| {
                        let value = current.as_ref().map(|c| &c.value);
                        let account = domain::refund_to(order_id, customer_id, value, amount)?;
                        Ok((account, current))
                    })
                };
                let mut refunded = refund_to(self.read(customer_id).await?);
                if refunded.is_err() {
                    // Give up only on what the store says now.
                    self.accounts.forget(&subject);
                    refunded = refund_to(self.read(customer_id).await?);
                }
                let (account, current) = match refunded {
                    Ok(refunded) => refunded,
                    Err(why) => {
                        let answer = domain::refund_given_up(order_id, customer_id, amount, &why);
                        return self
                            .give_up(turn, order_id, command::REFUND_PAYMENT, answer, after, why)
                            .await;
                    }
                };
                let called = self
                    .through_gateway(self.gateway.refund(order_id, customer_id, amount))
                    .await;
                if !called.is_done() {
                    return Ok(called);
                }
                Some((account, current.map(|c| c.version)))
            }
        };
        let amount = give_back.unwrap_or(Cents::ZERO);
        match self.write(turn, order_id, account, &event, after).await {
            Ok(()) => {
                tracing::info!(%customer_id, amount = amount.0, "refunded");
                Ok(Outcome::Done(()))
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
            self.accounts.expiring(
                Append::json(subjects::payment_event(order_id, event.type_name()), event)
                    .expect_last_on(&subjects::payment_events(order_id), after),
            ),
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
                found.map(|v| AccountReply::from(v.value)).ok_or_else(|| {
                    QueryError::NotFound(format!("no account for customer {}", request.customer_id))
                })
            }
        },
    )
}
