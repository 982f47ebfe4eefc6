//! The inventory's message handlers and query: the thin layer between
//! JetStream and [`crate::domain`]. They read, ask the domain, and write.
//!
//! Every change is one atomic batch: the new level of each sku it touches
//! (each checked against the sequence it was read at) and the order's
//! inventory event (checked against the order's previous one). A second
//! delivery of the same command finds the event and does nothing; a
//! concurrent change to a sku makes the batch fail as a whole, and the
//! handler reads and decides again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_nats::jetstream::Message;
use events::commands::Restock;
use events::inventory::{InventoryEvent, StockLevel};
use events::query::BySku;
use events::saga::{command, SagaRecord};
use events::subjects;
use events::{LineItem, OrderId, Sku};
use futures::future::try_join_all;
use runtime::aggregate::{guard, Aggregates, Applied, Held, Version};
use runtime::consumer::command_key;
use runtime::memory::Memory;
use runtime::metrics::{self, Metrics};
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::turns::Turns;
use runtime::{
    decode, Append, Attempt, HandleError, Handler, Outcome, Store, StoreError, Versioned,
};

use crate::domain::{self, InventoryError, Reservation, Settle, Settlement, Step, Unusable};

/// The skus' levels, held and remembered by this process.
pub type Stock = Aggregates<StockLevel>;

/// `inventory.cmd.>`: restocks.
#[derive(Debug)]
pub struct Commands {
    stock: Arc<Stock>,
}

impl Commands {
    pub fn new(stock: Arc<Stock>) -> Self {
        Self { stock }
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
        let marker = subjects::applied("inventory", &command_key(message)?);
        let subject = subjects::stock(&command.sku);
        let applied = retry_conflicts(|| {
            self.stock
                .apply_once(&subject, &marker, &message.payload, |current| {
                    domain::restock(current, &command)
                })
        })
        .await?
        .handled()?;
        if let Applied::Now(level) = applied {
            tracing::info!(sku = %level.sku, available = level.available, "restocked");
        }
        Ok(())
    }
}

/// The saga's `reserve_stock`, `commit_stock` and `release_stock`.
#[derive(Debug)]
pub struct SagaSteps {
    stock: Arc<Stock>,
    metrics: Metrics,
    /// One flight per order: the copies of an order's step (a redelivery,
    /// the saga asking again) go one after the other, so that a copy finds
    /// what the one before it stored instead of racing it.
    flights: Turns,
    /// The sequence of the last inventory event this process stored for
    /// each order (the most recent orders). Copies of a step can reach
    /// the flight out of order (after a freeze, the saga's second asking
    /// before the first delivery): a copy that finds its order decided
    /// here since is handled as asked again, not decided on what the
    /// saga heard. Its write would be refused by the order's check, and
    /// take down with it the changes of other orders built on its skus.
    decided: Memory<()>,
}

/// Orders whose last inventory event is remembered.
const DECIDED_ORDERS: usize = 16_384;

/// Flight stripes: orders in flight at once (the consumer's concurrency)
/// share one rarely.
const FLIGHT_STRIPES: usize = 4096;

impl Handler for SagaSteps {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        let record: SagaRecord = decode(message)?;
        let order_id = &record.order_id;
        let _flight = self.flights.hold([order_id.as_str()]).await;
        // A step asked before may be done already: the order's own event
        // says so, and then it is only announced again. Deciding on the
        // stock instead would make the copy a second change of the same
        // skus, refused only once it is in a batch with others.
        let again = record.attempt > 1 || delivered(message) > 1 || self.decided_since(&record);
        // A copy is decided on the stored state, not on changes of ours
        // still in flight: those may be the first copy's, or fail in
        // chains after a fault. A first try builds on them (that keeps a
        // hot sku fast), and so does a retry after losing a race to
        // another replica: waiting for our own changes to settle first
        // held the skus' turns through every race.
        let read = if again { Read::Stored } else { Read::Known };
        let outcome = match domain::step(&record.command) {
            Ok(Step::Reserve(items)) => {
                if again && self.announce_again(order_id).await? {
                    tracing::info!("reservation decided before: announced again");
                    Outcome::Done(())
                } else {
                    retry_conflicts(|| self.reserve(order_id, items, read)).await?
                }
            }
            Ok(Step::Settle(settle)) => {
                retry_conflicts(|| self.settle(&record, settle, read)).await?
            }
            Err(refused) => Outcome::Refused(refused),
        };
        outcome.handled()
    }
}

/// How many times the message was delivered, this time included.
fn delivered(message: &Message) -> i64 {
    message.info().map_or(1, |i| i.delivered)
}

/// The levels of some skus, with the versions they were read at.
#[derive(Debug, Default)]
struct Levels {
    stock: BTreeMap<Sku, StockLevel>,
    versions: BTreeMap<Sku, Version>,
}

/// Reading the levels either fails (the store: try again) or finds a sku
/// whose stored level cannot be read (for good).
type Levelled = Result<Result<Levels, InventoryError>, StoreError>;

/// Which state of the skus a decision is made on.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// As this process knows it: remembered, or written by a change still
    /// being stored. A write's checks confirm it.
    Known,
    /// As the store holds it once our changes in flight are settled: for a
    /// refusal, which no check confirms.
    Stored,
}

impl SagaSteps {
    pub fn new(stock: Arc<Stock>, metrics: Metrics) -> Self {
        metrics.declare_steps(&[
            command::RESERVE_STOCK,
            command::COMMIT_STOCK,
            command::RELEASE_STOCK,
        ]);
        Self {
            stock,
            metrics,
            flights: Turns::new(FLIGHT_STRIPES),
            decided: Memory::new(DECIDED_ORDERS),
        }
    }

    /// Whether this process stored an inventory event for the record's
    /// order after the one the saga heard (any, if it heard none).
    fn decided_since(&self, record: &SagaRecord) -> bool {
        let heard = domain::heard_reservation(record).map_or(0, |(seq, _)| seq);
        self.decided
            .get(record.order_id.as_str())
            .is_some_and(|last| last.seq > heard)
    }

    /// Announces again the order's last inventory event, if it has one:
    /// `true` when a step was decided for it before. The repeat is the
    /// order's last event now, remembered like the events it stores.
    async fn announce_again(&self, order_id: &OrderId) -> Result<bool, StoreError> {
        let filter = subjects::inventory_events(order_id);
        let Some(seq) = self.store().re_emit(&filter).await? else {
            return Ok(false);
        };
        self.decided.remember(
            order_id.as_str(),
            Versioned {
                seq,
                subject: filter,
                value: (),
            },
        );
        Ok(true)
    }

    fn store(&self) -> &Store {
        self.stock.store()
    }

    async fn reserve(
        &self,
        order_id: &OrderId,
        items: &[LineItem],
        read: Read,
    ) -> Attempt<(), InventoryError> {
        let skus: BTreeSet<&Sku> = items.iter().map(|l| &l.sku).collect();
        let subjects: Vec<String> = skus.iter().map(|s| subjects::stock(s)).collect();
        let turn = self.stock.hold(subjects.iter().map(String::as_str)).await;
        let decide = |levels: Result<Levels, InventoryError>| {
            levels.and_then(|levels| {
                let decision = domain::reserve(order_id, items, &levels.stock)?;
                Ok((levels, decision))
            })
        };
        let mut decided = decide(self.levels(&skus, read).await?);
        if matches!(read, Read::Known) && !matches!(decided, Ok((_, Reservation::Held { .. }))) {
            // A refusal writes no sku, so no sequence check would catch a
            // stale state: refuse, or give up, only on what the store
            // says now.
            decided = decide(self.levels(&skus, Read::Stored).await?);
        }
        let written = match decided {
            Ok((levels, decision)) => {
                let (changed, event) = decision.into_change();
                // Expecting no inventory event for the order yet makes a
                // repeated reservation fail as a whole: no read needed to
                // be idempotent.
                self.write(turn, order_id, &changed, &levels.versions, &event, 0)
                    .await
                    .map(|()| {
                        tracing::info!(outcome = event.type_name(), "reservation decided");
                        Outcome::Done(())
                    })
            }
            Err(why) => match why.unusable() {
                Some((sku, _)) => {
                    let answer = domain::reserve_given_up(order_id, sku);
                    self.give_up(turn, order_id, command::RESERVE_STOCK, answer, 0, why)
                        .await
                }
                None => Ok(Outcome::Refused(why)),
            },
        };
        match written {
            Err(StoreError::Conflict(why)) => {
                // Decided before (or released before it was held): say so
                // again, in case the saga missed it.
                if self.announce_again(order_id).await? {
                    return Ok(Outcome::Done(()));
                }
                Err(StoreError::Conflict(why))
            }
            other => other,
        }
    }

    /// Commits or releases what the order holds. The saga heard the
    /// reservation at `inventory_seq`: unless something came after it
    /// (which the write's check tells), that is what the order holds now,
    /// and no read is needed.
    /// Asked again, or deciding again ([`Read::Stored`]), the order's last
    /// event is read first: the step may be done already.
    async fn settle(
        &self,
        record: &SagaRecord,
        settle: Settle,
        read: Read,
    ) -> Attempt<(), InventoryError> {
        let order_id = &record.order_id;
        let heard = domain::heard_reservation(record).filter(|_| matches!(read, Read::Known));
        if let Some((seq, reserved)) = heard {
            let reserved = Versioned {
                seq,
                subject: subjects::inventory_event(order_id, "reserved"),
                value: reserved,
            };
            // A reservation always changes, so `Done` means written, and
            // so does giving up.
            match self
                .settle_after(order_id, settle, Some(reserved), read)
                .await
            {
                Err(StoreError::Conflict(_)) => {}
                Ok(Outcome::Refused(e)) if !matches!(e, InventoryError::GaveUp { .. }) => {}
                done => return done,
            }
        }
        let last: Option<Versioned<InventoryEvent>> = self
            .store()
            .last(&subjects::inventory_events(order_id))
            .await?;
        self.settle_after(order_id, settle, last, read).await
    }

    /// Settles on the order's inventory event `last`, guarded by its
    /// sequence, deciding on the skus' levels as `read` says.
    async fn settle_after(
        &self,
        order_id: &OrderId,
        settle: Settle,
        last: Option<Versioned<InventoryEvent>>,
        read: Read,
    ) -> Attempt<(), InventoryError> {
        let after = last.as_ref().map_or(0, |v| v.seq);
        let settlement = domain::settlement(order_id, settle, last.as_ref().map(|v| &v.value));
        let (lines, event) = match settlement {
            Ok(Settlement::Change { lines, event }) => (lines, event),
            Ok(Settlement::Repeat) => {
                self.announce_again(order_id).await?;
                return Ok(Outcome::Done(()));
            }
            Err(refused) => return Ok(Outcome::Refused(refused)),
        };
        let skus: BTreeSet<&Sku> = lines.iter().map(|l| &l.sku).collect();
        let subjects: Vec<String> = skus.iter().map(|s| subjects::stock(s)).collect();
        let turn = self.stock.hold(subjects.iter().map(String::as_str)).await;
        let decide = |levels: Result<Levels, InventoryError>| {
            levels.and_then(|levels| {
                let changed = domain::settle_lines(settle, &lines, &levels.stock)?;
                Ok((levels, changed))
            })
        };
        let mut decided = decide(self.levels(&skus, read).await?);
        if matches!(read, Read::Known) && decided.is_err() {
            // Perhaps only what this process knew was stale, or queued to
            // fail.
            decided = decide(self.levels(&skus, Read::Stored).await?);
        }
        let (levels, changed) = match decided {
            Ok(decided) => decided,
            Err(why) if why.unusable().is_some() => {
                let step = match settle {
                    Settle::Commit => command::COMMIT_STOCK,
                    Settle::Release => command::RELEASE_STOCK,
                };
                let answer = domain::settle_given_up(order_id, settle, &lines, &why);
                return self.give_up(turn, order_id, step, answer, after, why).await;
            }
            Err(refused) => return Ok(Outcome::Refused(refused)),
        };
        self.write(turn, order_id, &changed, &levels.versions, &event, after)
            .await?;
        tracing::info!(outcome = event.type_name(), "reservation settled");
        Ok(Outcome::Done(()))
    }

    /// Gives up for good on a step that the stock as it stands makes
    /// impossible (`why`): answers the saga with the failure `answer`
    /// (guarded by `after`, the order's last inventory event), so the saga
    /// compensates or ends instead of asking again and again, and refuses
    /// the step, which dead-letters it for an operator.
    async fn give_up(
        &self,
        turn: Held,
        order_id: &OrderId,
        step: &'static str,
        answer: InventoryEvent,
        after: u64,
        why: InventoryError,
    ) -> Attempt<(), InventoryError> {
        let cause = match why.unusable() {
            Some((_, Unusable::Unreadable)) => metrics::Unusable::UnreadableState,
            Some((_, Unusable::Inconsistent)) => metrics::Unusable::InconsistentState,
            Some((_, Unusable::Overflow)) => metrics::Unusable::Overflow,
            None => return Ok(Outcome::Refused(why)),
        };
        self.write(turn, order_id, &[], &BTreeMap::new(), &answer, after)
            .await?;
        self.metrics.step_abandoned(step, cause);
        tracing::error!(step, answer = answer.type_name(), error = %why, "saga step given up: the stock as stored makes it impossible");
        Ok(Outcome::Refused(InventoryError::GaveUp {
            step,
            answer: answer.type_name(),
            cause: Box::new(why),
        }))
    }

    /// The current level of each sku, as this process knows it or as the
    /// store holds it.
    async fn levels(&self, skus: &BTreeSet<&Sku>, how: Read) -> Levelled {
        let read = try_join_all(skus.iter().map(|sku| async move {
            let subject = subjects::stock(sku);
            let level = match how {
                Read::Known => self.stock.read_owned(subject).await,
                Read::Stored => self.stock.read_stored(subject).await,
            };
            match level {
                Err(StoreError::Corrupt { source, .. }) => Ok(Err(InventoryError::Unreadable {
                    sku: (*sku).clone(),
                    error: source.to_string(),
                })),
                read => read.map(Ok),
            }
        }))
        .await?;
        let mut levels = Levels::default();
        for level in read {
            let level = match level {
                Ok(level) => level,
                Err(unreadable) => return Ok(Err(unreadable)),
            };
            if let Some(level) = level {
                levels
                    .versions
                    .insert(level.value.sku.clone(), level.version);
                levels.stock.insert(level.value.sku.clone(), level.value);
            }
        }
        Ok(Ok(levels))
    }

    /// One atomic batch: the sku levels, each checked against the version
    /// it was read at, and the order's event, checked against `after`. The
    /// turn on the skus lasts until the change is queued
    /// ([`Aggregates::write`]), so changes of a hot sku share a batch
    /// instead of waiting a batch each.
    async fn write(
        &self,
        turn: Held,
        order_id: &OrderId,
        changed: &[StockLevel],
        versions: &BTreeMap<Sku, Version>,
        event: &InventoryEvent,
        after: u64,
    ) -> Result<(), StoreError> {
        let changed: Vec<(String, StockLevel)> = changed
            .iter()
            .map(|level| (subjects::stock(&level.sku), level.clone()))
            .collect();
        let mut appends: Vec<Append> = changed
            .iter()
            .map(|(subject, level)| {
                guard(
                    Append::json(subject.clone(), level),
                    versions.get(&level.sku),
                )
            })
            .collect();
        appends.push(
            self.stock.expiring(
                Append::json(
                    subjects::inventory_event(order_id, event.type_name()),
                    event,
                )
                .expect_last_on(&subjects::inventory_events(order_id), after),
            ),
        );
        let seqs = self.stock.write(turn, changed, appends).await?;
        if let Some(&seq) = seqs.last() {
            self.decided.remember(
                order_id.as_str(),
                Versioned {
                    seq,
                    subject: subjects::inventory_events(order_id),
                    value: (),
                },
            );
        }
        Ok(())
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
                .map(|v| events::inventory::StockReply::from(v.value))
                .ok_or_else(|| QueryError::NotFound(format!("no sku {}", request.sku)))
        }
    })
}
