//! The order service's message handlers and query: the thin layer between
//! JetStream and [`crate::domain`].

use std::time::Duration;

use async_nats::jetstream::Message;
use events::commands::{check_msg_id, PlaceError, PlaceOrder};
use events::order::{OrderEvent, RejectedEvent, RejectedTag};
use events::query::ByOrder;
use events::saga::SagaRecord;
use events::subjects;
use events::OrderId;
use runtime::consumer::{header, key_of, stream_sequence};
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::{
    decode, Append, Attempt, HandleError, Handler, Outcome, Store, StoreError, Versioned,
};

use crate::domain::{self, OrderError};

/// `orders.cmd.place`.
#[derive(Debug)]
pub struct Place {
    store: Store,
    /// How long a `placed` or `rejected` event is kept: an order's final
    /// event supersedes its `placed`, and a rejection is only news.
    retention: Duration,
}

impl Place {
    pub fn new(store: Store, retention: Duration) -> Self {
        Self { store, retention }
    }

    async fn reject(&self, message: &Message, rejected: RejectedEvent) -> Result<(), HandleError> {
        tracing::info!(errors = ?rejected.errors, "order rejected");
        // Deduplicated by the stream if this delivery is handled twice.
        let msg_id = format!("rejected:{}", stream_sequence(message));
        let append = Append::json(subjects::ORDER_REJECTED, &rejected)
            .header("Nats-Msg-Id", &msg_id)
            .expires_after(self.retention);
        self.store.commit(vec![append]).await?;
        Ok(())
    }
}

impl Handler for Place {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let msg_id = header(message, "Nats-Msg-Id");
        // Checked before anything is built from it: a huge id must never
        // reach a subject, a header or the order's derived id.
        let bad_msg_id = check_msg_id(msg_id).err().map(|e| e.to_string());
        let command = match PlaceOrder::parse(&message.payload) {
            Ok(command) if bad_msg_id.is_none() => command,
            Ok(command) => {
                let rejected = RejectedEvent {
                    kind: RejectedTag::Rejected,
                    order_id: command.order_id.map(String::from),
                    errors: bad_msg_id.into_iter().collect(),
                };
                return self.reject(message, rejected).await;
            }
            Err(PlaceError::Unreadable(e)) => return Err(HandleError::Reject(e.to_string())),
            Err(PlaceError::Invalid(invalid)) => {
                let rejected = RejectedEvent {
                    kind: RejectedTag::Rejected,
                    order_id: invalid.order_id,
                    errors: bad_msg_id.into_iter().chain(invalid.errors).collect(),
                };
                return self.reject(message, rejected).await;
            }
        };
        let seq = stream_sequence(message);
        let Some(order_id) = command.order_id.clone() else {
            let key = key_of(msg_id, seq).expect("the message id was checked");
            let order_id = domain::derive_order_id(msg_id, seq);
            return self.place_derived(message, &command, order_id, &key).await;
        };
        runtime::telemetry::record_order_id(order_id.as_str());
        let placed = domain::placed(order_id.clone(), command.customer_id, &command.items);
        let append = placement(&order_id, &placed, self.retention);
        match self.store.commit(vec![append]).await {
            Ok(_) => {
                tracing::info!("order placed");
                Ok(())
            }
            // The order exists already: placing it again creates nothing.
            Err(StoreError::Conflict(_)) => {
                tracing::info!("order already placed");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Place {
    /// Places an order under the id derived for its command (`key`),
    /// recording the key, so that a command deriving the same id for
    /// another order is rejected rather than merged into this one.
    async fn place_derived(
        &self,
        message: &Message,
        command: &PlaceOrder,
        order_id: OrderId,
        key: &str,
    ) -> Result<(), HandleError> {
        runtime::telemetry::record_order_id(order_id.as_str());
        let placed = domain::placed(
            order_id.clone(),
            command.customer_id.clone(),
            &command.items,
        );
        let append = placement(&order_id, &placed, self.retention).header(domain::PLACED_BY, key);
        match self.store.commit(vec![append]).await {
            Ok(_) => {
                tracing::info!("order placed");
                return Ok(());
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let found = self
            .store
            .last_message(&subjects::order_event(&order_id, "placed"))
            .await?;
        let found = found.as_ref().map(|m| domain::Found {
            seq: m.sequence,
            placed_by: m.headers.get(domain::PLACED_BY).map(|v| v.as_str()),
        });
        if domain::placed_by_same_command(key, stream_sequence(message), found) {
            tracing::info!("order already placed");
            return Ok(());
        }
        tracing::warn!(%order_id, "the derived order id belongs to another order: rejected");
        let rejected = RejectedEvent {
            kind: RejectedTag::Rejected,
            order_id: None,
            errors: vec![format!(
                "order_id: {order_id}, the id derived for this command, belongs to another \
                 order; place it again with an order_id, or with another Nats-Msg-Id"
            )],
        };
        self.reject(message, rejected).await
    }
}

/// The `placed` event of a new order: stored only if the order has no
/// event yet, and kept for `retention` (its final event supersedes it).
fn placement(order_id: &OrderId, placed: &OrderEvent, retention: Duration) -> Append {
    Append::json(subjects::order_event(order_id, "placed"), placed)
        .expect_last_on(&subjects::order_events(order_id), 0)
        .expires_after(retention)
}

/// The saga's `confirm_order` and `cancel_order`.
#[derive(Debug)]
pub struct SagaSteps {
    store: Store,
}

impl SagaSteps {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn load(&self, order_id: &OrderId) -> Result<Option<Versioned<OrderEvent>>, StoreError> {
        self.store.last(&subjects::order_events(order_id)).await
    }

    async fn apply(&self, record: &SagaRecord) -> Result<(), HandleError> {
        retry_conflicts(|| async {
            // The saga heard the order placed at `order_seq`: unless
            // something came after it (which the write's check tells), that
            // is the order now, and no read is needed.
            if let Some((seq, placed)) = domain::heard_placed(record) {
                let placed = Versioned {
                    seq,
                    subject: subjects::order_event(&record.order_id, "placed"),
                    value: placed,
                };
                // A pending order always changes, so `Done` means written.
                match self.apply_to(record, Some(placed)).await {
                    Err(StoreError::Conflict(_)) | Ok(Outcome::Refused(_)) => {}
                    done => return done,
                }
            }
            let current = self.load(&record.order_id).await?;
            self.apply_to(record, current).await
        })
        .await?
        .handled()
    }

    /// Decides the saga's command on the order as it stands at `current`,
    /// and writes the outcome guarded by that version.
    async fn apply_to(
        &self,
        record: &SagaRecord,
        current: Option<Versioned<OrderEvent>>,
    ) -> Attempt<(), OrderError> {
        let order_id = &record.order_id;
        let order = current.as_ref().map(|v| &v.value.order);
        let event = match domain::decide(record, order) {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(Outcome::Done(())),
            Err(e) => return Ok(Outcome::Refused(e)),
        };
        let seq = current.map_or(0, |v| v.seq);
        let append = Append::json(subjects::order_event(order_id, event.kind.as_str()), &event)
            .expect_last_on(&subjects::order_events(order_id), seq);
        self.store.commit(vec![append]).await?;
        tracing::info!(status = ?event.order.status, "order updated");
        Ok(Outcome::Done(()))
    }
}

impl Handler for SagaSteps {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let record: SagaRecord = decode(message)?;
        self.apply(&record).await
    }
}

/// `orders.query.get`.
pub fn get_order_query(store: Store) -> Query {
    Query::json("get", subjects::GET_ORDER, move |request: ByOrder| {
        let store = store.clone();
        async move {
            let found: Option<Versioned<OrderEvent>> = store
                .last(&subjects::order_events(&request.order_id))
                .await?;
            found
                .map(|v| v.value.order)
                .ok_or_else(|| QueryError::NotFound(format!("no order {}", request.order_id)))
        }
    })
}
