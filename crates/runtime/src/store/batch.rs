//! One atomic batch on the wire (nats-server 2.12+, ADR-50), and the
//! metrics that count it.

use std::time::{Duration, Instant};

use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SEQUENCE,
};
use async_nats::jetstream::stream::{DirectGetErrorKind, Stream};
use async_nats::jetstream::{self, Context};
use async_nats::HeaderMap;
use serde::Deserialize;

use super::{Append, Conflict, StoreError};
use crate::metrics::{BatchMetrics, BatchOutcome};
use crate::retry::Backoff;

/// How long a write may wait for its acknowledgement.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a batch whose outcome is unknown is looked for in the store
/// before it is given up as not stored.
const RECONCILE_WITHIN: Duration = Duration::from_secs(30);

/// Where a store's atomic batches go, and where they are counted.
#[derive(Debug, Clone)]
pub(super) struct Batches {
    pub(super) js: Context,
    /// The same stream, to read back what a batch did.
    pub(super) handle: Stream<()>,
    pub(super) stream: String,
    pub(super) metrics: Option<BatchMetrics>,
}

/// What became of a batch on the wire.
#[derive(Debug)]
enum Written {
    /// Stored: the sequence of its last message.
    Stored(u64),
    /// Not stored, for certain (refused, or never committed).
    Refused(StoreError),
    /// Sent with its commit, then no answer: stored or not, only the
    /// store can tell.
    Unknown(String),
}

impl Batches {
    /// Stores `appends` as one atomic batch: the sequence of the last one.
    /// A batch whose commit went unanswered (a timeout, the connection
    /// lost) is looked for in the store before anything is concluded
    /// ([`Batches::reconcile`]): a change stored but reported refused would
    /// make every change built on it fail, and its caller decide again on
    /// a state that no longer is.
    pub(super) async fn commit(&self, appends: Vec<Append>) -> Result<u64, StoreError> {
        let messages = appends.len();
        let started = Instant::now();
        let batch_id = batch_id();
        let probe = Probe::of(&appends[0]);
        let written = commit_batch(&self.js, &batch_id, appends).await;
        if let Some(metrics) = &self.metrics {
            let how = match &written {
                Written::Stored(_) => BatchOutcome::Stored,
                Written::Refused(StoreError::Conflict(_)) => BatchOutcome::Refused,
                Written::Refused(_) | Written::Unknown(_) => BatchOutcome::Unknown,
            };
            metrics.record(&self.stream, messages, started.elapsed().as_secs_f64(), how);
        }
        match written {
            Written::Stored(last) => Ok(last),
            Written::Refused(e) => Err(e),
            Written::Unknown(why) => match probe {
                Some(probe) => self.reconcile(&batch_id, &probe, messages, why).await,
                None => Err(StoreError::Unavailable(why)),
            },
        }
    }

    /// The sequence of the last message on `key` (a subject or wildcard),
    /// or 0.
    pub(super) async fn last_seq(&self, key: &str) -> Result<u64, StoreError> {
        match self.handle.direct_get_last_for_subject(key).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(0),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        }
    }

    /// Finds out whether the batch `batch_id` of `count` messages, whose
    /// commit went unanswered, was stored: the sequence of its last message
    /// if it was. First a fence, a publish the stream refuses for certain:
    /// once it is answered, the stream has handled everything this
    /// connection sent before it, the batch included. Then the first
    /// message stored after the one the batch's first check expected: the
    /// batch's own (stored), or another's, or none (not stored: the check
    /// could not have held). While the stream does not answer, the lookup
    /// is tried again, for [`RECONCILE_WITHIN`]; then the batch counts as
    /// not stored, which only costs a read: every later write is checked.
    async fn reconcile(
        &self,
        batch_id: &str,
        probe: &Probe,
        count: usize,
        why: String,
    ) -> Result<u64, StoreError> {
        let deadline = tokio::time::Instant::now() + RECONCILE_WITHIN;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match self.look_up(batch_id, probe).await {
                Ok(Some(first)) => {
                    tracing::warn!(batch_id, "a batch whose commit went unanswered was stored");
                    return Ok(first + count as u64 - 1);
                }
                Ok(None) => {
                    tracing::warn!(
                        batch_id,
                        "a batch whose commit went unanswered was not stored"
                    );
                    return Err(StoreError::Unavailable(why));
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(batch_id, error = %e, "cannot tell whether a batch was stored");
                    return Err(StoreError::Unavailable(why));
                }
                Err(e) => {
                    tracing::debug!(batch_id, error = %e, "looking for a batch, again");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// One try of [`Batches::reconcile`]: the sequence of the batch's first
    /// message, `None` if it was not stored.
    async fn look_up(&self, batch_id: &str, probe: &Probe) -> Result<Option<u64>, String> {
        let mut fence = HeaderMap::new();
        fence.insert(NATS_EXPECTED_LAST_SEQUENCE, u64::MAX.to_string().as_str());
        let answer = tokio::time::timeout(
            WRITE_TIMEOUT,
            self.js
                .client()
                .request_with_headers(probe.subject.clone(), fence, Default::default()),
        )
        .await
        .map_err(|_| "the fence went unanswered".to_owned())?
        .map_err(|e| e.to_string())?;
        if batch_outcome(&answer.payload).is_ok() {
            return Err("the fence was not refused".to_owned());
        }
        let next = self
            .handle
            .direct_get_next_for_subject(&probe.key, Some(probe.after + 1))
            .await;
        match next {
            Ok(message) => {
                let ours = message
                    .headers
                    .get(NATS_BATCH_ID)
                    .is_some_and(|id| id.as_str() == batch_id);
                Ok(ours.then_some(message.sequence))
            }
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// How to find a batch in the stream: its first message is the first one
/// stored on `key` (its subject, or the wildcard its check is about) after
/// sequence `after`, if the batch was stored at all. Only a checked
/// message tells: an unchecked one could be anywhere.
#[derive(Debug)]
struct Probe {
    subject: String,
    key: String,
    after: u64,
}

impl Probe {
    fn of(append: &Append) -> Option<Self> {
        let (key, after) = append.check()?;
        Some(Self {
            subject: append.subject.clone(),
            key,
            after,
        })
    }
}

/// The server's answer to a batch's first or last message.
#[derive(Deserialize)]
struct BatchReply {
    #[serde(default)]
    error: Option<jetstream::Error>,
    #[serde(default)]
    seq: u64,
}

/// nats-server rolls a subject up in a batch only at its first message
/// there (`batch rollup sub invalid` otherwise): an aggregate changed twice
/// in one batch (a hot sku) keeps the rollup on its first state alone, and
/// holds the batch's states until its next batch rolls them up.
fn one_rollup_per_subject(appends: &mut [Append]) {
    let mut rolled = std::collections::HashSet::new();
    for append in appends.iter_mut() {
        if append.headers.get(ROLLUP).is_some() && !rolled.insert(append.subject.clone()) {
            append.headers = append
                .headers
                .iter()
                .filter(|(name, _)| AsRef::<str>::as_ref(*name) != ROLLUP)
                .flat_map(|(name, values)| values.iter().map(move |v| (name.clone(), v.clone())))
                .fold(
                    async_nats::HeaderMap::new(),
                    |mut headers, (name, value)| {
                        headers.append(name, value);
                        headers
                    },
                );
        }
    }
}

/// The header of a rollup ([`Append::rolls_up`]).
const ROLLUP: &str = "Nats-Rollup";

/// An atomic batch: the stream stores the messages only when the last one,
/// carrying the commit header, arrives and every expected-sequence check of
/// the batch holds.
async fn commit_batch(js: &Context, batch_id: &str, mut appends: Vec<Append>) -> Written {
    one_rollup_per_subject(&mut appends);
    let client = js.client();
    let count = appends.len();
    let mut committed = None;
    for (i, mut append) in appends.into_iter().enumerate() {
        append.headers.insert(NATS_BATCH_ID, batch_id);
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
            .await;
            // Until the commit is sent, a batch that fails is not stored:
            // the server drops a batch that is never committed.
            let failed = |why: String| {
                if last {
                    Written::Unknown(why)
                } else {
                    Written::Refused(StoreError::Unavailable(why))
                }
            };
            let reply = match reply {
                Err(_) => return failed("batch write timed out".to_owned()),
                Ok(Err(e)) => return failed(e.to_string()),
                Ok(Ok(reply)) => reply,
            };
            match batch_outcome(&reply.payload) {
                Ok(seq) => committed = seq.or(committed),
                Err(refused) => return Written::Refused(refused),
            }
        } else if let Err(e) = client
            .publish_with_headers(append.subject, append.headers, append.payload)
            .await
        {
            return Written::Refused(StoreError::Unavailable(e.to_string()));
        }
    }
    match committed {
        Some(last) => Written::Stored(last),
        None => Written::Unknown("the batch commit was not acknowledged".to_owned()),
    }
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
        Some(e) => Err(match Conflict::in_api_error(&e) {
            Some(conflict) => StoreError::Conflict(conflict),
            None => StoreError::Unavailable(format!("batch refused: {e}")),
        }),
    }
}

fn batch_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 22)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_changed_twice_in_a_batch_is_rolled_up_by_its_first_change_alone() {
        let state =
            |n: &str| Append::raw("inventory.sku.a", bytes::Bytes::from(n.to_owned())).rolls_up();
        let mut appends = vec![
            state("1").expect_last(7),
            Append::raw("inventory.evt.o-1.reserved", bytes::Bytes::new()),
            state("2"),
            Append::raw("inventory.sku.b", bytes::Bytes::new()).rolls_up(),
            state("3"),
        ];
        one_rollup_per_subject(&mut appends);
        let rolls: Vec<bool> = appends
            .iter()
            .map(|a| a.headers.get(ROLLUP).is_some())
            .collect();
        assert_eq!(rolls, [true, false, false, true, false]);
        assert_eq!(appends[4].payload, "3", "the message stays");
        assert_eq!(
            appends[0].check(),
            Some(("inventory.sku.a".to_owned(), 7)),
            "other headers stay"
        );
    }

    #[test]
    fn the_opening_acknowledgement_is_empty() {
        assert!(matches!(batch_outcome(b""), Ok(None)));
    }

    #[test]
    fn a_stored_batch_answers_with_its_last_sequence() {
        let reply = br#"{"stream":"T","seq":42,"batch":"b","count":3}"#;
        assert!(matches!(batch_outcome(reply), Ok(Some(42))));
    }

    #[test]
    fn a_batch_refused_for_a_check_is_a_conflict() {
        let reply =
            br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 7"}}"#;
        match batch_outcome(reply) {
            Err(StoreError::Conflict(Conflict::WrongLastSequence(e))) => {
                assert_eq!(
                    e.error_code(),
                    jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_refused_otherwise_is_unavailable() {
        let reply = br#"{"error":{"code":500,"err_code":10077,"description":"store failed"}}"#;
        assert!(matches!(
            batch_outcome(reply),
            Err(StoreError::Unavailable(_))
        ));
    }
}
