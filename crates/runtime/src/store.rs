//! The event store: JetStream streams used as the database.
//!
//! An aggregate (a sku, an account, an order, a saga) is a subject whose
//! *last message is its state*. A change is a set of [`Append`]s committed
//! as one atomic batch, each guarded by the last sequence its writer read
//! (per-subject optimistic concurrency). So the new state and the event that
//! announces it are stored together or not at all, and two writers racing
//! on one aggregate can never both win: the loser gets [`StoreError::Conflict`],
//! reloads, and decides again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use async_nats::jetstream::Context;

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{BatchMetrics, BatchOutcome, Metrics};
use crate::telemetry;

/// The header that applies an expected-sequence check to a wildcard
/// (nats-server 2.11+), rather than to the message's own subject.
const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
/// JetStream's error codes for a failed expected-sequence check: 10071 on a
/// single server, 10164 from a clustered stream's leader when a racing
/// write is still in flight for the same subject.
const WRONG_LAST_SEQUENCE: [u64; 2] = [10071, 10164];
/// How long a write may wait for its acknowledgement.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A value read from the store with the sequence it was stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub seq: u64,
    pub subject: String,
    pub value: T,
}

/// Why a read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone wrote first: reload and decide again.
    #[error("optimistic concurrency conflict: {0}")]
    Conflict(String),
    /// The stored message does not decode: a bug or a foreign writer.
    #[error("corrupt record on {subject}: {source}")]
    Corrupt {
        subject: String,
        source: serde_json::Error,
    },
    /// NATS did not answer or refused: try again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// One message of a change, with the check that guards it.
#[derive(Debug, Clone)]
pub struct Append {
    pub subject: String,
    pub payload: Bytes,
    pub headers: HeaderMap,
    /// Stores only right after this write, queued earlier in the same
    /// store (see [`Append::expect_after`]).
    after: Option<Queued>,
}

/// A message queued for the group committer: where it will be stored, once
/// that is known. Settled before its change's caller hears the outcome.
#[derive(Debug, Clone, Default)]
pub struct Queued(Arc<OnceLock<Option<u64>>>);

impl Queued {
    /// `None` while the change is in flight; then the sequence the message
    /// was stored at, or `None` if the change was not stored (refused, or
    /// its outcome unknown).
    pub fn outcome(&self) -> Option<Option<u64>> {
        self.0.get().copied()
    }

    fn settle(&self, seq: Option<u64>) {
        let _ = self.0.set(seq);
    }
}

/// A change queued for the group committer ([`Store::queue`]).
#[derive(Debug)]
pub struct QueuedChange {
    /// Each append's message, in order: a later change may build on one
    /// ([`Append::expect_after`]) before it is stored.
    pub messages: Vec<Queued>,
    outcome: oneshot::Receiver<Result<Vec<u64>, StoreError>>,
    span: tracing::Span,
}

impl QueuedChange {
    /// Waits until the change is stored (all of it) or refused (none of
    /// it): the sequence of each append, in order.
    pub async fn stored(self) -> Result<Vec<u64>, StoreError> {
        let written = self
            .outcome
            .await
            .unwrap_or_else(|_| Err(committer_stopped()));
        if let Err(e) = &written {
            self.span
                .set_status(opentelemetry::trace::Status::error(e.to_string()));
        }
        written
    }
}

fn committer_stopped() -> StoreError {
    StoreError::Unavailable("the group committer stopped".to_owned())
}

impl Append {
    /// An append of `value` as JSON, with no check (yet).
    pub fn json(subject: impl Into<String>, value: &impl Serialize) -> Self {
        let payload = serde_json::to_vec(value).expect("jetsaga records always serialize");
        Self {
            subject: subject.into(),
            payload: payload.into(),
            headers: HeaderMap::new(),
            after: None,
        }
    }

    /// An append of bytes as they are.
    pub fn raw(subject: impl Into<String>, payload: Bytes) -> Self {
        Self {
            subject: subject.into(),
            payload,
            headers: HeaderMap::new(),
            after: None,
        }
    }

    /// Stores only if the last message on this subject has sequence `seq`
    /// (0: there is none).
    pub fn expect_last(mut self, seq: u64) -> Self {
        self.headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            seq.to_string().as_str(),
        );
        self
    }

    /// Stores only if the last message on any subject matching `filter`
    /// (a wildcard) has sequence `seq` (0: there is none).
    pub fn expect_last_on(self, filter: &str, seq: u64) -> Self {
        let mut append = self.expect_last(seq);
        append.headers.insert(
            HeaderName::from_static(EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT),
            filter,
        );
        append
    }

    /// Stores only right after `queued`, a message on the same subject
    /// queued earlier in the same store and not stored yet: the check
    /// becomes the sequence it gets, and if it is not stored, neither is
    /// this. So a writer need not wait for its predecessor's write before
    /// deciding on what it wrote.
    pub fn expect_after(mut self, queued: &Queued) -> Self {
        self.after = Some(queued.clone());
        self
    }

    /// Adds a header, such as a `traceparent`.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(HeaderName::from_static(name), value);
        self
    }
}

/// Messages of concurrent changes committed together in one atomic batch.
/// The server's limit is 1000 per batch.
const GROUP_MESSAGES: usize = 256;
/// Group batches in flight at once, per store. One: while it is being
/// stored, changes queue and the next group grows, and the server, whose
/// cost is per batch, does the least work. (Measured on 2 cores, 6000
/// orders with 256 unsettled: 255 sagas/s with 4 in flight, 450 with 1.)
const GROUPS_IN_FLIGHT: usize = 1;
/// Changes of a refused group committed again on their own at once, per
/// group: with [`GROUPS_IN_FLIGHT`], well under the server's 50.
const RETRIES_IN_FLIGHT: usize = 8;

/// Reads and writes the aggregates of one stream.
#[derive(Debug, Clone)]
pub struct Store {
    js: Context,
    stream: Stream<()>,
    /// Changes of more than one message, to the group committer.
    groups: mpsc::Sender<Change>,
}

/// A change waiting for the group committer, and where its outcome goes.
#[derive(Debug)]
struct Change {
    appends: Vec<Append>,
    /// Settled with the outcome, before `done` is sent.
    messages: Vec<Queued>,
    done: oneshot::Sender<Result<Vec<u64>, StoreError>>,
}

impl Change {
    /// Settles the change's messages, then tells its caller.
    fn finish(self, outcome: Result<Vec<u64>, StoreError>) {
        match &outcome {
            Ok(seqs) => {
                for (message, seq) in self.messages.iter().zip(seqs) {
                    message.settle(Some(*seq));
                }
            }
            Err(_) => self.messages.iter().for_each(|m| m.settle(None)),
        }
        let _ = self.done.send(outcome);
    }

    /// Adds what this change's checks are about (the subjects it writes,
    /// the wildcards it checks) to `checked`, those of a group's earlier
    /// changes; `false`, adding nothing, if one of its checks is about
    /// something already there: the server would check it against the
    /// stream before the batch, blind to the earlier change. An append
    /// built on an earlier change of the group carries no check of its own.
    fn claim(&self, checked: &mut HashSet<String>) -> bool {
        let mut claims = Vec::new();
        for append in &self.appends {
            let guarded = append
                .headers
                .get(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE)
                .is_some();
            let filter = append
                .headers
                .get(EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT)
                .map(|f| f.as_str().to_owned());
            for key in std::iter::once(append.subject.clone()).chain(filter) {
                if guarded && checked.contains(&key) {
                    return false;
                }
                claims.push(key);
            }
        }
        checked.extend(claims);
        true
    }

    /// Turns each `expect_after` into a check on the sequence its
    /// predecessor got. `Err` when a predecessor was not stored;
    /// `Ok(true)` when one is still in flight, which can only be in this
    /// same group, earlier (groups go one at a time, in queue order): the
    /// batch's own order then guards this append.
    fn resolve(&mut self) -> Result<bool, StoreError> {
        let mut in_group = false;
        for append in &mut self.appends {
            let Some(after) = &append.after else { continue };
            match after.outcome() {
                Some(Some(seq)) => {
                    append.headers.insert(
                        NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                        seq.to_string().as_str(),
                    );
                    append.after = None;
                }
                Some(None) => {
                    return Err(StoreError::Conflict(format!(
                        "the write to {} this change builds on was not stored",
                        append.subject
                    )))
                }
                None => in_group = true,
            }
        }
        Ok(in_group)
    }
}

#[derive(Deserialize)]
struct BatchReply {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

impl Store {
    /// A store of `stream`, with its group committer (a task on the current
    /// runtime, which ends when the last clone of the store is dropped).
    pub async fn new(js: Context, stream: &str) -> Result<Self, StoreError> {
        Self::open(js, stream, None).await
    }

    /// As [`Store::new`], recording every atomic batch in `metrics`
    /// (`jetsaga_store_batch_*`).
    pub async fn with_metrics(
        js: Context,
        stream: &str,
        metrics: &Metrics,
    ) -> Result<Self, StoreError> {
        Self::open(js, stream, Some(metrics.batches().clone())).await
    }

    async fn open(
        js: Context,
        stream: &str,
        metrics: Option<BatchMetrics>,
    ) -> Result<Self, StoreError> {
        let handle = js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (groups, queue) = mpsc::channel(GROUPS_IN_FLIGHT * GROUP_MESSAGES);
        let batches = Batches {
            js: js.clone(),
            stream: stream.to_owned(),
            metrics,
        };
        tokio::spawn(group_commits(batches, queue));
        Ok(Self {
            js,
            stream: handle,
            groups,
        })
    }

    /// The last message on `subject` (which may be a wildcard), decoded.
    pub async fn last<T: DeserializeOwned>(
        &self,
        subject: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let Some(message) = self.last_message(subject).await? else {
            return Ok(None);
        };
        let subject = message.subject.to_string();
        let value =
            serde_json::from_slice(&message.payload).map_err(|source| StoreError::Corrupt {
                subject: subject.clone(),
                source,
            })?;
        Ok(Some(Versioned {
            seq: message.sequence,
            subject,
            value,
        }))
    }

    /// The sequence of the last message on `subject`, or 0.
    pub async fn last_seq(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self.last_message(subject).await?.map_or(0, |m| m.sequence))
    }

    async fn last_message(&self, subject: &str) -> Result<Option<StreamMessage>, StoreError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Announces again the last event on `filter` (an order's event subtree),
    /// unchanged, unless a newer one arrives first. For a step asked again:
    /// whoever missed the answer hears it now, and anyone who had it already
    /// ignores a repeat. `false` when there was no event to repeat.
    pub async fn re_emit(&self, filter: &str) -> Result<bool, StoreError> {
        let Some(message) = self.last_message(filter).await? else {
            return Ok(false);
        };
        let again = Append::raw(message.subject.to_string(), message.payload)
            .expect_last_on(filter, message.sequence);
        match self.commit(vec![again]).await {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Stores every append, atomically: all of them or none. Returns the
    /// stream sequence of each, in order (a batch is stored contiguously).
    ///
    /// A change of several messages may be stored in one batch with other
    /// changes (see `group_commits`); when the outcome of a write is unknown
    /// (a timeout) the caller tries again, so each of its appends should
    /// carry an expected-sequence check that tells a repeat.
    ///
    /// The write is one `send` span (kind producer) named after the last
    /// append, which by convention is the event the change announces; every
    /// message carries the span's trace context in its headers.
    pub async fn commit(&self, mut appends: Vec<Append>) -> Result<Vec<u64>, StoreError> {
        if appends.len() != 1 || appends[0].after.is_some() {
            return self.queue(appends).await?.stored().await;
        }
        let mut append = appends.pop().expect("one append");
        let span = telemetry::producer_span(&append.subject, 1);
        telemetry::inject(&span, &mut append.headers);
        let written = self.commit_one(append).instrument(span.clone()).await;
        match &written {
            Ok(seq) => span.set_attribute("messaging.message.id", seq.to_string()),
            Err(e) => span.set_status(opentelemetry::trace::Status::error(e.to_string())),
        }
        written.map(|seq| vec![seq])
    }

    /// Sends one message without asking for its acknowledgement, for a
    /// write that may be lost at no cost (a best-effort clean-up): the
    /// stream stores it all the same, but nobody waits for it, and the
    /// server sends no answer. No check makes sense here, as nobody would
    /// hear it fail.
    pub async fn send(&self, mut append: Append) -> Result<(), StoreError> {
        let span = telemetry::producer_span(&append.subject, 1);
        telemetry::inject(&span, &mut append.headers);
        self.js
            .client()
            .publish_with_headers(append.subject, append.headers, append.payload)
            .instrument(span)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Queues a change for the group committer, which stores it, all or
    /// nothing, in one atomic batch with whatever other changes are
    /// waiting, and returns once it is queued: a writer that takes turns
    /// on its aggregates can let the next one decide on what it wrote
    /// ([`QueuedChange::messages`], [`Append::expect_after`]) while the
    /// batch is stored. The span is the write's, as for [`Store::commit`].
    pub async fn queue(&self, mut appends: Vec<Append>) -> Result<QueuedChange, StoreError> {
        let (done, outcome) = oneshot::channel();
        let Some(announced) = appends.last() else {
            let _ = done.send(Ok(vec![]));
            return Ok(QueuedChange {
                messages: vec![],
                outcome,
                span: tracing::Span::none(),
            });
        };
        let span = telemetry::producer_span(&announced.subject, appends.len());
        for append in &mut appends {
            telemetry::inject(&span, &mut append.headers);
        }
        let messages: Vec<Queued> = appends.iter().map(|_| Queued::default()).collect();
        let change = Change {
            appends,
            messages: messages.clone(),
            done,
        };
        self.groups
            .send(change)
            .await
            .map_err(|_| committer_stopped())?;
        Ok(QueuedChange {
            messages,
            outcome,
            span,
        })
    }

    async fn commit_one(&self, append: Append) -> Result<u64, StoreError> {
        let ack = self
            .js
            .publish_with_headers(append.subject, append.headers, append.payload)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e)
                if e.kind() == PublishErrorKind::WrongLastSequence || is_constant_conflict(&e) =>
            {
                Err(StoreError::Conflict(e.to_string()))
            }
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }
}

/// Group commit. An atomic batch costs about the same whatever its size
/// (the server stages it on disk: about 2.0 ms for 2 messages, 2.9 ms for 50,
/// here), so the changes that arrive while earlier groups are being stored
/// are stored together: one batch of up to [`GROUP_MESSAGES`] messages.
/// Each change keeps its own expected-sequence checks, so a group is stored
/// only if every change in it would have been; if a check fails, each
/// change of the group is committed again on its own, and only the one
/// that lost the race sees the conflict.
///
/// The server checks a batch against the stream as it was before the
/// batch, not against the batch's own earlier messages. So two changes
/// that check the same subject or wildcard (two answers for one order, two
/// writes of one aggregate) never share a batch, where both checks would
/// pass: the later one, and everything queued after it, waits for the next
/// group, and its check then sees the first. The one exception is a change
/// built on an earlier change of the group ([`Append::expect_after`]),
/// which the batch's order guards.
async fn group_commits(batches: Batches, mut queue: mpsc::Receiver<Change>) {
    let in_flight = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    // Changes held back from a group, first in line for the next one.
    let mut held_back: VecDeque<Change> = VecDeque::new();
    loop {
        let first = match held_back.pop_front() {
            Some(change) => change,
            None => match queue.recv().await {
                Some(change) => change,
                None => break,
            },
        };
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .expect("never closed");
        // Everything that queued while the earlier groups were stored.
        let mut messages = first.appends.len();
        let mut group = vec![first];
        while messages < GROUP_MESSAGES {
            let next = match held_back.pop_front() {
                Some(change) => change,
                None => match queue.try_recv() {
                    Ok(change) => change,
                    Err(_) => break,
                },
            };
            messages += next.appends.len();
            group.push(next);
        }
        // The earlier groups are settled now (one group at a time): each
        // change that builds on one of their writes checks the sequence it
        // got, or fails with it; in queue order, so that a failure carries
        // on down a chain of changes within this group.
        let mut ready = Vec::with_capacity(group.len());
        let mut checked = HashSet::new();
        let mut chained = false;
        let mut rest = group.into_iter();
        for mut change in rest.by_ref() {
            let in_group = match change.resolve() {
                Ok(in_group) => in_group,
                Err(e) => {
                    change.finish(Err(e));
                    continue;
                }
            };
            if !change.claim(&mut checked) {
                held_back.push_back(change);
                break;
            }
            chained |= in_group;
            ready.push(change);
        }
        // Behind the one held back, in order: a change may build on it.
        held_back.extend(rest);
        if ready.is_empty() {
            continue;
        }
        let batches = batches.clone();
        tokio::spawn(async move {
            commit_group(&batches, ready, chained).await;
            drop(permit);
        });
    }
}

/// Stores `group` as one batch. `chained`: some change builds on another
/// change of the group, and stands unguarded without it.
async fn commit_group(batches: &Batches, mut group: Vec<Change>, chained: bool) {
    if group.len() == 1 {
        let change = group.pop().expect("one change");
        return commit_alone(batches, change).await;
    }
    let sizes: Vec<usize> = group.iter().map(|c| c.appends.len()).collect();
    let all: Vec<Append> = group.iter().flat_map(|c| c.appends.clone()).collect();
    match batches.commit(all).await {
        Ok(last) => {
            // A batch is stored contiguously, in order.
            let mut next = last + 1 - sizes.iter().sum::<usize>() as u64;
            for change in group {
                let count = change.appends.len() as u64;
                change.finish(Ok((next..next + count).collect()));
                next += count;
            }
        }
        Err(StoreError::Conflict(_)) if chained => {
            // As below, but in order, so that a change that builds on
            // another is checked against the sequence that one got, or
            // fails with it.
            for mut change in group {
                match change.resolve() {
                    Ok(false) => commit_alone(batches, change).await,
                    // Cannot be: every earlier change of the group is
                    // settled. Refused rather than stored unguarded.
                    Ok(true) => change.finish(Err(StoreError::Conflict(
                        "a change it builds on is unsettled".to_owned(),
                    ))),
                    Err(e) => change.finish(Err(e)),
                }
            }
        }
        Err(StoreError::Conflict(_)) => {
            // Someone's check failed: nothing of the group was stored. Each
            // change on its own now, so that only the loser hears of it.
            // A few at a time: the server admits only so many batches in
            // flight per stream.
            futures::stream::iter(group)
                .for_each_concurrent(RETRIES_IN_FLIGHT, |change| commit_alone(batches, change))
                .await;
        }
        Err(e) => {
            // Stored or not, nobody knows (a timeout, NATS gone): each change
            // is retried by its caller, whose checks tell a repeat.
            let why = e.to_string();
            for change in group {
                change.finish(Err(StoreError::Unavailable(why.clone())));
            }
        }
    }
}

/// One change in a batch of its own, its outcome sent to its caller.
async fn commit_alone(batches: &Batches, change: Change) {
    let count = change.appends.len() as u64;
    let outcome = batches
        .commit(change.appends.clone())
        .await
        .map(|last| (last + 1 - count..=last).collect());
    change.finish(outcome);
}

/// Where a store's atomic batches go, and where they are counted.
#[derive(Debug, Clone)]
struct Batches {
    js: Context,
    stream: String,
    metrics: Option<BatchMetrics>,
}

impl Batches {
    /// [`commit_batch`], recorded.
    async fn commit(&self, appends: Vec<Append>) -> Result<u64, StoreError> {
        let messages = appends.len();
        let started = std::time::Instant::now();
        let outcome = commit_batch(&self.js, appends).await;
        if let Some(metrics) = &self.metrics {
            let how = match &outcome {
                Ok(_) => BatchOutcome::Stored,
                Err(StoreError::Conflict(_)) => BatchOutcome::Refused,
                Err(_) => BatchOutcome::Unknown,
            };
            metrics.record(&self.stream, messages, started.elapsed().as_secs_f64(), how);
        }
        outcome
    }
}

/// An atomic batch (nats-server 2.12+, ADR-50): the stream stores the
/// messages only when the last one, carrying the commit header, arrives and
/// every expected-sequence check of the batch holds. Returns the sequence
/// of the last message.
async fn commit_batch(js: &Context, appends: Vec<Append>) -> Result<u64, StoreError> {
    let client = js.client();
    let batch_id = batch_id();
    let count = appends.len();
    let mut committed = None;
    for (i, mut append) in appends.into_iter().enumerate() {
        append.headers.insert(NATS_BATCH_ID, batch_id.as_str());
        append
            .headers
            .insert(NATS_BATCH_SEQUENCE, (i + 1).to_string().as_str());
        let first = i == 0;
        let last = i + 1 == count;
        if last {
            append.headers.insert(NATS_BATCH_COMMIT, "1");
        }
        if first || last {
            // The first message opens the batch and the server answers it
            // (an empty acknowledgement, or an error); the last one is
            // answered with the outcome of the whole batch.
            let reply = tokio::time::timeout(
                WRITE_TIMEOUT,
                client.request_with_headers(append.subject, append.headers, append.payload),
            )
            .await
            .map_err(|_| StoreError::Unavailable("batch write timed out".to_owned()))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            committed = batch_outcome(&reply.payload)?.or(committed);
        } else {
            client
                .publish_with_headers(append.subject, append.headers, append.payload)
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
    }
    committed
        .ok_or_else(|| StoreError::Unavailable("the batch commit was not acknowledged".to_owned()))
}

/// The last sequence of a committed batch, `None` for the opening
/// acknowledgement, or the error that refused the batch.
fn batch_outcome(reply: &[u8]) -> Result<Option<u64>, StoreError> {
    if reply.is_empty() {
        return Ok(None);
    }
    let reply: BatchReply = serde_json::from_slice(reply)
        .map_err(|e| StoreError::Unavailable(format!("unreadable batch reply: {e}")))?;
    match reply.error {
        None => Ok(Some(reply.seq)),
        Some(e) if WRONG_LAST_SEQUENCE.contains(&e.err_code) => {
            Err(StoreError::Conflict(e.description))
        }
        Some(e) => Err(StoreError::Unavailable(format!(
            "batch refused ({}): {}",
            e.err_code, e.description
        ))),
    }
}

/// async-nats maps only 10071 to `WrongLastSequence`; 10164 (a racing
/// expected-sequence write on a clustered stream) arrives as `Other`.
fn is_constant_conflict(e: &async_nats::jetstream::context::PublishError) -> bool {
    format!("{e:?}").contains("ErrorCode(10164)")
}

fn batch_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 22)
}

/// Runs one read-decide-write attempt until it does not hit a write
/// conflict, with a short jittered pause between attempts so that writers
/// racing on a hot aggregate spread out. A conflict that outlasts the
/// attempts is returned, and the message is retried later.
pub async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    const ATTEMPTS: u32 = 12;
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(StoreError::Conflict(why)) if tries + 1 < ATTEMPTS => {
                tries += 1;
                tracing::debug!(%why, tries, "write conflict, deciding again");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}
