//! The orchestrator's message handlers and query: every participant event
//! goes through [`crate::domain::on_event`], and the record it yields is
//! appended to the saga's subject, guarded by the sequence of the record
//! it was computed from. The record carries the next command, so the saga's
//! new state and its command are one write.

use std::time::Duration;

use async_nats::jetstream::Message;
use events::inventory::InventoryEvent;
use events::order::OrderEvent;
use events::payment::PaymentEvent;
use events::query::ByOrder;
use events::saga::{SagaRecord, SagaState, SagaView, StepTimer};
use events::subjects;
use rand::Rng;
use runtime::query::{Query, QueryError};
use runtime::retry::Backoff;
use runtime::store::retry_conflicts;
use runtime::{decode, Append, HandleError, Handler, Store, StoreError, Versioned};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{self, Policy, SagaEvent};
use crate::metrics::SagaMetrics;

/// Which participant's events a consumer carries.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Orders,
    Inventory,
    Payments,
    /// The orchestrator's own step deadlines, fired by JetStream.
    Timeouts,
}

/// Advances sagas on the events of one participant.
#[derive(Debug)]
pub struct Events {
    source: Source,
    saga: Saga,
}

impl Events {
    pub fn new(source: Source, saga: Saga) -> Self {
        Self { source, saga }
    }
}

impl Handler for Events {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let event = match self.source {
            Source::Orders => SagaEvent::Order(decode::<OrderEvent>(message)?),
            Source::Inventory => SagaEvent::Inventory(decode::<InventoryEvent>(message)?),
            Source::Payments => SagaEvent::Payment(decode::<PaymentEvent>(message)?),
            Source::Timeouts => SagaEvent::Timeout(decode::<StepTimer>(message)?),
        };
        self.saga.advance(&event).await
    }
}

/// The saga log, its deadlines, and what is measured about it.
#[derive(Debug, Clone)]
pub struct Saga {
    store: Store,
    metrics: SagaMetrics,
    policy: Policy,
    step_timeout: Duration,
}

impl Saga {
    pub fn new(store: Store, metrics: SagaMetrics, policy: Policy, step_timeout: Duration) -> Self {
        Self {
            store,
            metrics,
            policy,
            step_timeout,
        }
    }

    /// Arms the deadline of the step `record` waits on, as a JetStream
    /// scheduled message: it fires `saga.timeout.<order_id>` even if every
    /// orchestrator is down meanwhile. Armed before the record is written,
    /// so no written step is ever without one; a deadline armed for a
    /// record that lost its write fires, finds the saga elsewhere, and is
    /// ignored. Deadlines grow with each attempt (doubling, up to eight
    /// times `SAGA_STEP_TIMEOUT_MS`, jittered).
    async fn arm_deadline(&self, record: &SagaRecord) -> Result<(), StoreError> {
        if record.state.is_terminal() {
            return Ok(());
        }
        let ceiling = Backoff::ceiling(
            self.step_timeout,
            self.step_timeout * 8,
            record.attempt.saturating_sub(1),
        );
        let delay = ceiling.mul_f64(rand::rng().random_range(0.9..1.1));
        // Schedules have a resolution of one second: round up, never down.
        let at = (OffsetDateTime::now_utc() + delay)
            .replace_nanosecond(0)
            .expect("zero nanoseconds is valid")
            + time::Duration::SECOND;
        let schedule = format!("@at {}", at.format(&Rfc3339).expect("formats"));
        let timer = StepTimer {
            order_id: record.order_id.clone(),
            command: record.command.name().to_owned(),
            attempt: record.attempt,
        };
        let target = subjects::step_timeout(&record.order_id);
        let append = Append::json(
            subjects::step_timer(&record.order_id, &timer.command, timer.attempt),
            &timer,
        )
        .header("Nats-Schedule", &schedule)
        .header("Nats-Schedule-Target", &target);
        self.store.commit(vec![append]).await.map(|_| ())
    }

    async fn advance(&self, event: &SagaEvent) -> Result<(), HandleError> {
        let order_id = event.order_id();
        let records = subjects::saga_records(order_id);
        let transition = retry_conflicts(|| async {
            let current: Option<Versioned<SagaRecord>> = self.store.last(&records).await?;
            let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("formats");
            let Some(next) =
                domain::on_event(current.as_ref().map(|v| &v.value), event, &now, self.policy)
            else {
                return Ok(None);
            };
            self.arm_deadline(&next).await?;
            let append = Append::json(subjects::saga_record(order_id, next.command.name()), &next)
                .expect_last_on(&records, current.as_ref().map_or(0, |v| v.seq));
            self.store.commit(vec![append]).await?;
            Ok(Some((current.is_none(), next)))
        })
        .await?;
        if let Some((started, next)) = transition {
            tracing::info!(state = ?next.state, command = next.command.name(), attempt = next.attempt, "saga advanced");
            if let SagaEvent::Timeout(timer) = event {
                self.metrics.step_timed_out(&timer.command);
            }
            self.observe(started, &next);
        }
        Ok(())
    }

    fn observe(&self, started: bool, record: &SagaRecord) {
        if started {
            self.metrics.saga_started();
        }
        let outcome = match record.state {
            SagaState::Confirmed => "confirmed",
            SagaState::Cancelled => "cancelled",
            _ => return,
        };
        let seconds = record
            .steps
            .first()
            .and_then(|s| OffsetDateTime::parse(&s.at, &Rfc3339).ok())
            .map(|start| (OffsetDateTime::now_utc() - start).as_seconds_f64());
        self.metrics.saga_completed(outcome, seconds);
    }
}

/// `saga.query.get`.
pub fn get_saga_query(store: Store) -> Query {
    Query::json("get", subjects::GET_SAGA, move |request: ByOrder| {
        let store = store.clone();
        async move {
            let found: Option<Versioned<SagaRecord>> = store
                .last(&subjects::saga_records(&request.order_id))
                .await?;
            found.map(|v| SagaView::from(v.value)).ok_or_else(|| {
                QueryError::NotFound(format!("no saga for order {}", request.order_id))
            })
        }
    })
}
