//! The inventory's message handlers and query: the thin layer between
//! JetStream and [`crate::domain`].
//!
//! Every change is one atomic batch: the new level of each sku it touches
//! (each checked against the sequence it was read at) and the order's
//! inventory event (checked against the order's previous one). A second
//! delivery of the same command finds the event and does nothing; a
//! concurrent change to a sku makes the batch fail as a whole, and the
//! handler reads and decides again.

use std::collections::BTreeMap;

use async_nats::jetstream::Message;
use events::commands::Restock;
use events::inventory::{InventoryEvent, StockLevel};
use events::query::BySku;
use events::saga::{SagaCommand, SagaRecord};
use events::subjects;
use events::{LineItem, OrderId, PricedLine, Sku};
use futures::future::try_join_all;
use runtime::consumer::command_key;
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::{decode, Append, HandleError, Handler, Store, StoreError, Versioned};

use crate::domain::{self, Reservation};

/// An attempt's verdict: done, or a command that can never apply.
type Verdict = Result<(), String>;

/// `inventory.cmd.>`: restocks.
#[derive(Debug)]
pub struct Commands {
    store: Store,
}

impl Commands {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

impl Handler for Commands {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        if message.subject.as_str() != subjects::RESTOCK {
            return Err(HandleError::Reject(format!(
                "unknown command {}",
                message.subject
            )));
        }
        let command =
            Restock::parse(&message.payload).map_err(|e| HandleError::Reject(e.to_string()))?;
        let applied = subjects::applied("inventory", &command_key(message));
        let verdict = retry_conflicts(|| async {
            if self.store.last_seq(&applied).await? > 0 {
                return Ok(Ok(()));
            }
            let current: Option<Versioned<StockLevel>> =
                self.store.last(&subjects::stock(&command.sku)).await?;
            let level = match domain::restock(current.as_ref().map(|v| &v.value), &command) {
                Ok(level) => level,
                Err(e) => return Ok(Err(e.to_string())),
            };
            self.store
                .commit(vec![
                    Append::json(subjects::stock(&command.sku), &level)
                        .expect_last(current.map_or(0, |v| v.seq)),
                    Append::raw(applied.clone(), message.payload.clone()).expect_last(0),
                ])
                .await?;
            tracing::info!(sku = %level.sku, available = level.available, "restocked");
            Ok(Ok(()))
        })
        .await?;
        verdict.map_err(HandleError::Reject)
    }
}

/// The saga's `reserve_stock`, `commit_stock` and `release_stock`.
#[derive(Debug)]
pub struct SagaSteps {
    store: Store,
}

impl Handler for SagaSteps {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let record: SagaRecord = decode(message)?;
        let order_id = &record.order_id;
        let verdict = match &record.command {
            SagaCommand::ReserveStock { items } => {
                retry_conflicts(|| self.reserve(order_id, items)).await?
            }
            SagaCommand::CommitStock => {
                retry_conflicts(|| self.settle(order_id, Settle::Commit)).await?
            }
            SagaCommand::ReleaseStock => {
                retry_conflicts(|| self.settle(order_id, Settle::Release)).await?
            }
            other => Err(format!("not an inventory command: {}", other.name())),
        };
        verdict.map_err(HandleError::Reject)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Commit,
    Release,
}

impl SagaSteps {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn reserve(&self, order_id: &OrderId, items: &[LineItem]) -> Result<Verdict, StoreError> {
        let events = subjects::inventory_events(order_id);
        if self.store.last_seq(&events).await? > 0 {
            // Decided before (or released before it was ever held).
            return Ok(Ok(()));
        }
        let (stock, seqs) = self.levels(items.iter().map(|l| &l.sku)).await?;
        let (levels, event) = match domain::reserve(order_id, items, &stock) {
            Reservation::Held { levels, event } => (levels, event),
            Reservation::Refused(event) => (vec![], event),
        };
        self.write(order_id, &levels, &seqs, &event, 0).await?;
        tracing::info!(%order_id, outcome = event.type_name(), "reservation decided");
        Ok(Ok(()))
    }

    async fn settle(&self, order_id: &OrderId, settle: Settle) -> Result<Verdict, StoreError> {
        let events = subjects::inventory_events(order_id);
        let last: Option<Versioned<InventoryEvent>> = self.store.last(&events).await?;
        let (seq, last) = match last {
            Some(v) => (v.seq, Some(v.value)),
            None => (0, None),
        };
        let released = |lines: Vec<PricedLine>| InventoryEvent::Released {
            order_id: order_id.clone(),
            lines,
        };
        let (lines, event) = match (settle, last) {
            (Settle::Commit, Some(InventoryEvent::Reserved { lines, .. })) => (
                lines.clone(),
                InventoryEvent::Committed {
                    order_id: order_id.clone(),
                    lines,
                },
            ),
            (Settle::Release, Some(InventoryEvent::Reserved { lines, .. })) => {
                (lines.clone(), released(lines))
            }
            (Settle::Commit, Some(InventoryEvent::Committed { .. }))
            | (Settle::Release, Some(InventoryEvent::Released { .. })) => return Ok(Ok(())),
            // Nothing is held: record the release anyway, so that the saga
            // hears back and a reservation arriving late holds nothing.
            (Settle::Release, None | Some(InventoryEvent::ReserveFailed { .. })) => {
                (vec![], released(vec![]))
            }
            (Settle::Release, Some(InventoryEvent::Committed { .. })) => {
                return Ok(Err(format!(
                    "order {order_id}: committed stock cannot be released"
                )))
            }
            (Settle::Commit, other) => {
                let found = other.map_or("nothing", |e| e.type_name());
                return Ok(Err(format!(
                    "order {order_id}: cannot commit, found {found}"
                )));
            }
        };
        let (stock, seqs) = self.levels(lines.iter().map(|l| &l.sku)).await?;
        let levels = match settle {
            Settle::Commit => domain::commit(&lines, &stock),
            Settle::Release => domain::release(&lines, &stock),
        };
        let levels = match levels {
            Ok(levels) => levels,
            Err(e) => return Ok(Err(e.to_string())),
        };
        self.write(order_id, &levels, &seqs, &event, seq).await?;
        tracing::info!(%order_id, outcome = event.type_name(), "reservation settled");
        Ok(Ok(()))
    }

    /// The current level of each sku, with the sequence it was read at.
    async fn levels<'a>(
        &self,
        skus: impl Iterator<Item = &'a Sku>,
    ) -> Result<(BTreeMap<Sku, StockLevel>, BTreeMap<Sku, u64>), StoreError> {
        let distinct: std::collections::BTreeSet<&Sku> = skus.collect();
        let read = try_join_all(distinct.into_iter().map(|sku| async move {
            let level: Option<Versioned<StockLevel>> =
                self.store.last(&subjects::stock(sku)).await?;
            Ok::<_, StoreError>(level)
        }))
        .await?;
        let mut stock = BTreeMap::new();
        let mut seqs = BTreeMap::new();
        for level in read.into_iter().flatten() {
            seqs.insert(level.value.sku.clone(), level.seq);
            stock.insert(level.value.sku.clone(), level.value);
        }
        Ok((stock, seqs))
    }

    /// One atomic batch: the sku levels, each checked against the sequence
    /// it was read at, and the order's event, checked against `after`.
    async fn write(
        &self,
        order_id: &OrderId,
        levels: &[StockLevel],
        seqs: &BTreeMap<Sku, u64>,
        event: &InventoryEvent,
        after: u64,
    ) -> Result<(), StoreError> {
        let mut appends: Vec<Append> = levels
            .iter()
            .map(|level| {
                Append::json(subjects::stock(&level.sku), level)
                    .expect_last(seqs.get(&level.sku).copied().unwrap_or(0))
            })
            .collect();
        appends.push(
            Append::json(
                subjects::inventory_event(order_id, event.type_name()),
                event,
            )
            .expect_last_on(&subjects::inventory_events(order_id), after),
        );
        self.store.commit(appends).await
    }
}

/// `inventory.query.stock`.
pub fn get_stock_query(store: Store) -> Query {
    Query::json("stock", subjects::GET_STOCK, move |request: BySku| {
        let store = store.clone();
        async move {
            let found: Option<Versioned<StockLevel>> =
                store.last(&subjects::stock(&request.sku)).await?;
            found
                .map(|v| v.value)
                .ok_or_else(|| QueryError::NotFound(format!("no sku {}", request.sku)))
        }
    })
}
