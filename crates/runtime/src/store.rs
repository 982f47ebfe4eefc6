//! The event store: JetStream streams used as the database.
//!
//! An aggregate (a sku, an account, an order, a saga) is a subject whose
//! *last message is its state*. A change is a set of [`Append`]s committed
//! as one atomic batch, each guarded by the last sequence its writer read
//! (per-subject optimistic concurrency). So the new state and the event that
//! announces it are stored together or not at all, and two writers racing
//! on one aggregate can never both win: the loser gets [`StoreError::Conflict`],
//! reloads, and decides again.

mod append;
mod batch;
mod committer;
mod error;
mod plan;
mod scan;

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use async_nats::jetstream::Context;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use append::{Append, Queued};
use batch::Batches;
pub use committer::QueuedChange;
use committer::{committer_stopped, group_commits, Change, GROUPS_IN_FLIGHT, GROUP_MESSAGES};
pub use error::{Conflict, StoreError};
pub use scan::{Scan, Scanned};

use crate::metrics::{BatchMetrics, Metrics};
use crate::telemetry;

/// A value read from the store with the sequence it was stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub seq: u64,
    pub subject: String,
    pub value: T,
}

impl<T> Versioned<T> {
    /// The same message, its value changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            seq: self.seq,
            subject: self.subject,
            value: f(self.value),
        }
    }
}

/// Reads and writes the aggregates of one stream.
#[derive(Debug, Clone)]
pub struct Store {
    js: Context,
    /// The stream's name.
    name: String,
    stream: Stream<()>,
    /// Changes of more than one message, to the group committer.
    groups: mpsc::Sender<Change>,
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
            handle: handle.clone(),
            stream: stream.to_owned(),
            metrics,
        };
        tokio::spawn(group_commits(batches, queue));
        Ok(Self {
            js,
            name: stream.to_owned(),
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

    /// The last message on `subject` (which may be a wildcard), as stored,
    /// headers and all.
    pub async fn last_message(&self, subject: &str) -> Result<Option<StreamMessage>, StoreError> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Announces again the last event on `filter` (an order's event subtree),
    /// unchanged, unless a newer one arrives first. For a step asked again:
    /// whoever missed the answer hears it now, and anyone who had it already
    /// ignores a repeat. The repeat is a new last message on `filter`: the
    /// sequence of the last message there now (the repeat's, or the newer
    /// one's, at least), or `None` when there was no event to repeat.
    pub async fn re_emit(&self, filter: &str) -> Result<Option<u64>, StoreError> {
        let Some(message) = self.last_message(filter).await? else {
            return Ok(None);
        };
        let mut again = Append::raw(message.subject.to_string(), message.payload)
            .expect_last_on(filter, message.sequence);
        // A repeat expires as the original does, counted from now.
        if let Some(ttl) = message.headers.get(append::TTL) {
            again = again.header(append::TTL, ttl.as_str());
        }
        match self.commit(vec![again]).await {
            Ok(seqs) => Ok(seqs.last().copied()),
            Err(StoreError::Conflict(_)) => Ok(Some(message.sequence + 1)),
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
        let change = Change::new(appends, done);
        let messages = change.messages.clone();
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
            Err(e) => Err(match Conflict::in_publish_error(&e) {
                Some(conflict) => StoreError::Conflict(conflict),
                None => StoreError::Unavailable(e.to_string()),
            }),
        }
    }
}

/// Runs one read-decide-write attempt until it does not hit a write
/// conflict, with a short jittered pause between attempts so that writers
/// racing on a hot aggregate spread out. A conflict that outlasts
/// [`CONFLICTS_FOR`] is returned, and the message is retried later.
///
/// Bounded by time, not by a count of attempts: replicas racing on a hot
/// aggregate under load lose many races in a row, each settled in
/// milliseconds, and a message's deliveries are too few to spend on them.
pub async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let until = tokio::time::Instant::now() + CONFLICTS_FOR;
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(1), Duration::from_millis(100));
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(StoreError::Conflict(why)) if tokio::time::Instant::now() < until => {
                tries += 1;
                tracing::debug!(%why, tries, "write conflict, deciding again");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}

/// How long [`retry_conflicts`] keeps deciding again.
pub const CONFLICTS_FOR: Duration = Duration::from_secs(2);
