//! The orchestrator's message handlers and query: every participant event
//! goes through [`crate::domain::decide`], and the record it yields is
//! appended to the saga's subject, guarded by the sequence of the record
//! it was computed from. The record carries the next command, so the saga's
//! new state and its command are one write. The handler reads the clock and
//! draws the deadlines' jitter; the domain decides with them, and returns
//! the wake-ups to arm or cancel, which the handler carries out.

use std::sync::Arc;

use async_nats::jetstream::Message;
use bytes::Bytes;
use events::inventory::InventoryEvent;
use events::order::{OrderEvent, OrderEventType};
use events::payment::PaymentEvent;
use events::query::ByOrder;
use events::saga::{OperatorAction, SagaCommand, SagaRecord, SagaState, SagaView, StepTimer};
use events::subjects;
use events::OrderId;
use rand::Rng;
use runtime::clock::ServerClock;
use runtime::consumer::stream_sequence;
use runtime::memory::Memory;
use runtime::query::{Query, QueryError};
use runtime::store::retry_conflicts;
use runtime::turns::Turns;
use runtime::{decode, Append, HandleError, Handler, Store, StoreError, Versioned};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{self, Arm, Decision, Policy, Request, SagaEvent, WakeUp};
use crate::metrics::SagaMetrics;

/// Which participant's events a consumer carries.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Orders,
    Inventory,
    Payments,
    /// The orchestrator's own step deadlines, fired by JetStream.
    Timeouts,
    /// The requests about sagas: `orders.cmd.cancel`, from a client or an
    /// operator, and `saga.cmd.retry` and `saga.cmd.abort`, from an
    /// operator.
    Requests,
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
            Source::Requests => {
                let request = request(message)?;
                return self.saga.operate(request, stream_sequence(message)).await;
            }
        };
        self.saga.advance(&event, stream_sequence(message)).await?;
        Ok(())
    }
}

/// A cancel, retry or abort, as published: the action is the subject's,
/// and who asked is the one identity the server lets publish it
/// (docs/security.md): `operator` for a retry or an abort; for a cancel,
/// `client` (whose rights `operator` has too).
fn request(message: &Message) -> Result<Request, HandleError> {
    let (action, by) = match message.subject.as_str() {
        subjects::CANCEL_ORDER => (OperatorAction::Cancel, "client"),
        subjects::RETRY_SAGA => (OperatorAction::Retry, "operator"),
        subjects::ABORT_SAGA => (OperatorAction::Abort, "operator"),
        other => return Err(HandleError::Reject(format!("not a saga command: {other}"))),
    };
    let ByOrder { order_id } = decode::<ByOrder>(message)?;
    Ok(Request {
        order_id,
        action,
        by: by.to_owned(),
        seq: stream_sequence(message),
    })
}

/// How many sagas the orchestrator remembers: every saga in flight at
/// saturation, and then some. A record with its history is a couple of
/// kilobytes in memory: about 10 MiB. (16,384 took the orchestrator's peak
/// RSS to 52 MiB.)
const REMEMBERED_SAGAS: usize = 4_096;

/// Turn stripes: sagas advanced at once (four consumers' handlers) share
/// one rarely.
const SAGA_STRIPES: usize = 4_096;

/// Where the participants store their answers: read, one event at a
/// time, only for a step that is overdue.
#[derive(Debug, Clone)]
pub struct Answers {
    pub orders: Store,
    pub inventory: Store,
    pub payments: Store,
}

impl Answers {
    /// The last event of the participant that `saga`'s step asks, for its
    /// order, with its sequence in that participant's stream.
    async fn last(&self, saga: &SagaRecord) -> Result<Option<Versioned<SagaEvent>>, StoreError> {
        let order_id = &saga.order_id;
        Ok(match saga.command {
            SagaCommand::ReserveStock { .. }
            | SagaCommand::CommitStock
            | SagaCommand::ReleaseStock => self
                .inventory
                .last::<InventoryEvent>(&subjects::inventory_events(order_id))
                .await?
                .map(|v| v.map(SagaEvent::Inventory)),
            SagaCommand::ChargePayment { .. } | SagaCommand::RefundPayment { .. } => self
                .payments
                .last::<PaymentEvent>(&subjects::payment_events(order_id))
                .await?
                .map(|v| v.map(SagaEvent::Payment)),
            SagaCommand::ConfirmOrder { .. } | SagaCommand::CancelOrder { .. } => self
                .orders
                .last::<OrderEvent>(&subjects::order_events(order_id))
                .await?
                .map(|v| v.map(SagaEvent::Order)),
            SagaCommand::Finish => None,
        })
    }
}

/// The saga log, its deadlines, and what is measured about it.
#[derive(Debug, Clone)]
pub struct Saga {
    store: Store,
    answers: Answers,
    /// The last record this process wrote or read of each saga, by order
    /// id: a guess that the record's expected-sequence check confirms.
    /// Shared, not copied: a record with its history is a few dozen
    /// allocations.
    memory: Arc<Memory<Arc<SagaRecord>>>,
    /// One event of a saga at a time: the next one decides on the record
    /// the last one wrote, once it is stored and remembered.
    turns: Arc<Turns>,
    metrics: SagaMetrics,
    policy: Policy,
    /// The server's time: the wake-ups fire by it.
    clock: Arc<ServerClock>,
    /// How long a record is kept (`SAGA_HISTORY_RETENTION_SECONDS`), and
    /// with it a fired wake-up.
    retention: std::time::Duration,
}

/// A saga's last record, and whether it was read from the store just now
/// or only remembered (or presumed absent).
struct Known {
    record: Option<Versioned<Arc<SagaRecord>>>,
    fresh: bool,
}

impl Saga {
    pub fn new(
        store: Store,
        answers: Answers,
        metrics: SagaMetrics,
        policy: Policy,
        clock: Arc<ServerClock>,
        retention: std::time::Duration,
    ) -> Self {
        Self {
            clock,
            retention,
            store,
            answers,
            memory: Arc::new(Memory::new(REMEMBERED_SAGAS)),
            turns: Arc::new(Turns::new(SAGA_STRIPES)),
            metrics,
            policy,
        }
    }

    /// Applies `event`, the message at `seq` of its participant's stream.
    ///
    /// Under the saga's turn: a participant can answer a command before
    /// the write that sent it has come back to this process, and without
    /// the turn its answer would find the saga's previous record
    /// remembered, change nothing, and cost a read.
    ///
    /// Returns whether the saga moved.
    async fn advance(&self, event: &SagaEvent, seq: u64) -> Result<bool, HandleError> {
        let turn = self.turns.hold([event.order_id().as_str()]).await;
        let transition = retry_conflicts(|| self.try_advance(event, seq)).await;
        drop(turn);
        let Some((started, next, event)) = transition? else {
            return Ok(false);
        };
        tracing::info!(state = ?next.state, command = next.command.name(), attempt = next.attempt, "saga advanced");
        match &event {
            SagaEvent::Timeout(timer) => self.metrics.step_timed_out(&timer.command),
            SagaEvent::Operator(request) => self.metrics.operator_action(request.action.name()),
            _ => {}
        }
        self.observe(started, &next);
        Ok(true)
    }

    /// Applies a cancel, retry or abort (the message at `seq` of its
    /// stream). One about a saga that is not there is asked again later:
    /// its order may not have reached the orchestrator yet; it is
    /// dead-lettered once its deliveries run out.
    async fn operate(&self, request: Request, seq: u64) -> Result<(), HandleError> {
        let (order_id, action, by) = (request.order_id.clone(), request.action, request.by.clone());
        let moved = self.advance(&SagaEvent::Operator(request), seq).await?;
        if !moved
            && self.memory.get(order_id.as_str()).is_none()
            && self
                .store
                .last_seq(&subjects::saga_records(&order_id))
                .await?
                == 0
        {
            return Err(HandleError::Retry(format!(
                "no saga for order {order_id}: not placed, or not started yet"
            )));
        }
        tracing::info!(%order_id, action = action.name(), %by, applied = moved, "saga {} asked", action.name());
        Ok(())
    }

    /// One decide-and-write, on what this process remembers of the saga.
    /// A guess that changes nothing, or loses its write, is checked
    /// against a fresh read before anything is concluded: only a refusal
    /// on a fresh read is a real conflict, retried after a pause.
    async fn try_advance(
        &self,
        event: &SagaEvent,
        seq: u64,
    ) -> Result<Option<(bool, Arc<SagaRecord>, SagaEvent)>, StoreError> {
        let order_id = event.order_id();
        let woken = matches!(event, SagaEvent::Timeout(_));
        let mut known = self.recall(event).await?;
        // Whether a write of ours lost after arming a wake-up, which may
        // have replaced the saga's own.
        let mut lost = false;
        loop {
            let now = self.clock.now();
            let current = known.record.as_ref().map(|v| v.value.as_ref());
            let (mut event, mut decision) = domain::decide(current, event, now, self.policy);
            let mut seq = seq;
            if let (SagaEvent::Timeout(_), Decision::Advance(_), Some(saga)) =
                (&event, &decision, current)
            {
                // Overdue, as the clock says; but the answer may be stored
                // already, unheard because this process was paused or
                // behind. Then it is the answer that moves the saga on,
                // not the deadline.
                if let Some(answer) = self.answers.last(saga).await? {
                    if let (applied, Decision::Advance(next)) =
                        domain::decide(current, &answer.value, now, self.policy)
                    {
                        tracing::info!(
                            "the overdue step was answered before its deadline was handled"
                        );
                        (event, decision, seq) = (applied, Decision::Advance(next), answer.seq);
                    }
                }
            }
            let mut next = match decision {
                Decision::Advance(next) => *next,
                // A finished saga changes no more: remembering it is enough.
                _ if !known.fresh && !current.is_some_and(|r| r.state.is_terminal()) => {
                    known = self.read(order_id).await?;
                    continue;
                }
                Decision::WakeAt(at) => {
                    let record = current.expect("only a known saga has a deadline");
                    self.arm(&domain::arm(record, at, now)).await?;
                    return Ok(None);
                }
                Decision::Nothing => {
                    // A duplicate `placed` presumed a new saga and armed a
                    // wake-up for it: give the saga back one for its own
                    // deadline.
                    let rearm = current.filter(|_| lost).and_then(|s| domain::rearm(s, now));
                    if let Some(arm) = rearm {
                        self.arm(&arm).await?;
                    }
                    return Ok(None);
                }
            };
            domain::heard(&mut next, &event, seq);
            let after = known.record.as_ref().map_or(0, |v| v.seq);
            match self.write(next, after, now, woken).await {
                Ok(next) => return Ok(Some((after == 0, next, event))),
                Err(StoreError::Conflict(_)) if !known.fresh => {
                    lost = true;
                    known = self.read(order_id).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What this process remembers of the saga `event` is about; a saga
    /// that an order's first event would start is presumed new (its
    /// write expects no record, which the store checks).
    async fn recall(&self, event: &SagaEvent) -> Result<Known, StoreError> {
        let order_id = event.order_id();
        if let Some(record) = self.memory.get(order_id.as_str()) {
            return Ok(Known {
                record: Some(record),
                fresh: false,
            });
        }
        match event {
            SagaEvent::Order(e) if e.kind == OrderEventType::Placed => Ok(Known {
                record: None,
                fresh: false,
            }),
            _ => self.read(order_id).await,
        }
    }

    async fn read(&self, order_id: &OrderId) -> Result<Known, StoreError> {
        self.memory.forget(order_id.as_str());
        let record: Option<Versioned<SagaRecord>> =
            self.store.last(&subjects::saga_records(order_id)).await?;
        let record = record.map(|v| Versioned {
            seq: v.seq,
            subject: v.subject,
            value: Arc::new(v.value),
        });
        if let Some(record) = &record {
            self.memory.remember(order_id.as_str(), record.clone());
        }
        Ok(Known {
            record,
            fresh: true,
        })
    }

    /// Writes `next` (decided on the record at `after`), guarded by that
    /// sequence, with its step's deadline ([`domain::schedule`]): a wake-up
    /// the domain asks for is armed before the record is written, and a
    /// finished saga's is cancelled once the record is stored. A saga woken
    /// by its wake-up (`woken`) has none left.
    async fn write(
        &self,
        next: SagaRecord,
        after: u64,
        now: OffsetDateTime,
        woken: bool,
    ) -> Result<Arc<SagaRecord>, StoreError> {
        let jitter = rand::rng().random_range(domain::JITTER);
        let (next, wake_up) = domain::schedule(next, woken, now, jitter, self.policy);
        if let WakeUp::Arm(arm) = &wake_up {
            self.arm(arm).await?;
        }
        let order_id = next.order_id.clone();
        let subject = subjects::saga_record(&order_id, next.command.name());
        let append = Append::json(subject.clone(), &next)
            .expect_last_on(&subjects::saga_records(&order_id), after)
            .expires_after(self.retention);
        match self.store.commit(vec![append]).await {
            Ok(seqs) => {
                self.list(&next).await;
                let next = Arc::new(next);
                self.memory.remember(
                    order_id.as_str(),
                    Versioned {
                        seq: seqs[0],
                        subject,
                        value: next.clone(),
                    },
                );
                if wake_up == WakeUp::Cancel {
                    self.disarm(&order_id).await;
                }
                Ok(next)
            }
            Err(e) => {
                // Refused, or perhaps written: either way, read it next.
                self.memory.forget(order_id.as_str());
                Err(e)
            }
        }
    }

    /// Writes the saga's entry in the list of sagas (`crate::list`), once
    /// its record `saga` is stored: its summary while it is unfinished,
    /// kept for [`Saga::entry_kept`]; once finished, an empty entry that
    /// expires at once. Each rolls up the entry before it, so a saga has
    /// one at most. Not acknowledged, and not in the record's write: an
    /// entry lost with a crash is put right by the saga's next record,
    /// which comes within eight step timeouts while it is unfinished, or
    /// expires on its own.
    async fn list(&self, saga: &SagaRecord) {
        let subject = subjects::open_saga(&saga.order_id);
        let entry = if saga.state.is_terminal() {
            Append::raw(subject, Bytes::new()).expires_after(std::time::Duration::from_secs(1))
        } else {
            Append::json(subject, &saga.summary()).expires_after(self.entry_kept())
        };
        if let Err(e) = self.store.send(entry.rolls_up()).await {
            tracing::debug!(error = %e, "writing the saga's entry in the list");
        }
    }

    /// How long an unfinished saga's entry in the list is kept: twice the
    /// longest wait for its next record (eight step timeouts), which
    /// writes it again.
    fn entry_kept(&self) -> std::time::Duration {
        self.policy.step_timeout * 16
    }

    /// Arms a saga's wake-up, as a JetStream scheduled message on
    /// `saga.timer.<order_id>`: it fires `saga.timeout.<order_id>` at
    /// `arm.at` even if every orchestrator is down meanwhile, replacing the
    /// saga's previous one ([`crate::domain`]'s `wake` tells why that is
    /// safe).
    async fn arm(&self, arm: &Arm) -> Result<(), StoreError> {
        let schedule = format!("@at {}", domain::rfc3339(arm.at));
        let order_id = &arm.timer.order_id;
        let target = subjects::step_timeout(order_id);
        let ttl = format!("{}s", self.retention.as_secs().max(1));
        let append = Append::json(subjects::step_timer(order_id), &arm.timer)
            .header("Nats-Schedule", &schedule)
            .header("Nats-Schedule-Target", &target)
            .header("Nats-Schedule-TTL", &ttl);
        self.store.commit(vec![append]).await?;
        Ok(())
    }

    /// Cancels a finished saga's wake-up: an empty message rolls up its
    /// schedule (a message without a schedule on its subject would cancel
    /// it, but leave it stored for good), then expires. Best effort, so not
    /// acknowledged: a wake-up that fires anyway finds the saga finished
    /// and changes nothing, at the cost of a delivery, and expires too.
    async fn disarm(&self, order_id: &OrderId) {
        let append = Append::raw(subjects::step_timer(order_id), Bytes::new())
            .rolls_up()
            .expires_after(std::time::Duration::from_secs(1));
        if let Err(e) = self.store.send(append).await {
            tracing::debug!(error = %e, "cancelling a finished saga's wake-up");
        }
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
            .map(|start| (self.clock.now() - start).as_seconds_f64());
        self.metrics.saga_completed(outcome, seconds);
    }
}

/// `saga.query.get`.
pub fn get_saga_query(store: Store) -> Query {
    Query::json("get", subjects::GET_SAGA, move |request: ByOrder| {
        let store = store.clone();
        async move {
            let subject = subjects::saga_records(&request.order_id);
            let message = store.last_message(&subject).await?.ok_or_else(|| {
                QueryError::NotFound(format!("no saga for order {}", request.order_id))
            })?;
            let record: SagaRecord =
                serde_json::from_slice(&message.payload).map_err(|source| StoreError::Corrupt {
                    subject: message.subject.to_string(),
                    source,
                })?;
            let trace_id = message
                .headers
                .get("traceparent")
                .and_then(|v| events::saga::trace_id_of(v.as_str()));
            Ok(SagaView {
                trace_id,
                ..SagaView::from(record)
            })
        }
    })
}
