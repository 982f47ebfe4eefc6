//! The orchestrator's message handlers and query: every participant event
//! goes through [`crate::domain::on_event`], and the record it yields is
//! appended to the saga's subject, guarded by the sequence of the record
//! it was computed from. The record carries the next command, so the saga's
//! new state and its command are one write.

use async_nats::jetstream::Message;
use events::inventory::InventoryEvent;
use events::order::OrderEvent;
use events::payment::PaymentEvent;
use events::query::ByOrder;
use events::saga::{SagaRecord, SagaState, SagaView};
use events::subjects;
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::{decode, Append, HandleError, Handler, Store, Versioned};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{self, SagaEvent};
use crate::metrics::SagaMetrics;

/// Which participant's events a consumer carries.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Orders,
    Inventory,
    Payments,
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
        };
        self.saga.advance(&event).await
    }
}

/// The saga log and what is measured about it.
#[derive(Debug, Clone)]
pub struct Saga {
    store: Store,
    metrics: SagaMetrics,
}

impl Saga {
    pub fn new(store: Store, metrics: SagaMetrics) -> Self {
        Self { store, metrics }
    }

    async fn advance(&self, event: &SagaEvent) -> Result<(), HandleError> {
        let order_id = event.order_id();
        let records = subjects::saga_records(order_id);
        let transition = retry_conflicts(|| async {
            let current: Option<Versioned<SagaRecord>> = self.store.last(&records).await?;
            let now = OffsetDateTime::now_utc().format(&Rfc3339).expect("formats");
            let Some(next) = domain::on_event(current.as_ref().map(|v| &v.value), event, &now)
            else {
                return Ok(None);
            };
            let append = Append::json(subjects::saga_record(order_id, next.command.name()), &next)
                .expect_last_on(&records, current.as_ref().map_or(0, |v| v.seq));
            self.store.commit(vec![append]).await?;
            Ok(Some((current.is_none(), next)))
        })
        .await?;
        if let Some((started, next)) = transition {
            tracing::info!(%order_id, state = ?next.state, command = next.command.name(), "saga advanced");
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
