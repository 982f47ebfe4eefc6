//! One atomic batch on the wire (nats-server 2.12+, ADR-50), and the
//! metrics that count it.

use std::time::{Duration, Instant};

use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
use async_nats::jetstream::{self, Context};
use serde::Deserialize;

use super::{Append, Conflict, StoreError};
use crate::metrics::{BatchMetrics, BatchOutcome};

/// How long a write may wait for its acknowledgement.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a store's atomic batches go, and where they are counted.
#[derive(Debug, Clone)]
pub(super) struct Batches {
    pub(super) js: Context,
    pub(super) stream: String,
    pub(super) metrics: Option<BatchMetrics>,
}

impl Batches {
    /// [`commit_batch`], recorded.
    pub(super) async fn commit(&self, appends: Vec<Append>) -> Result<u64, StoreError> {
        let messages = appends.len();
        let started = Instant::now();
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

/// The server's answer to a batch's first or last message.
#[derive(Deserialize)]
struct BatchReply {
    #[serde(default)]
    error: Option<jetstream::Error>,
    #[serde(default)]
    seq: u64,
}

/// An atomic batch: the stream stores the messages only when the last one,
/// carrying the commit header, arrives and every expected-sequence check of
/// the batch holds. Returns the sequence of the last message.
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
