//! One atomic batch on the wire (nats-server 2.12+, ADR-50), and the
//! metrics that count it.

use std::time::{Duration, Instant};

use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
use async_nats::jetstream::Context;
use serde::Deserialize;

use super::{Append, StoreError, WRONG_LAST_SEQUENCE};
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
        Some(e) if WRONG_LAST_SEQUENCE.contains(&e.err_code) => {
            Err(StoreError::Conflict(e.description))
        }
        Some(e) => Err(StoreError::Unavailable(format!(
            "batch refused ({}): {}",
            e.err_code, e.description
        ))),
    }
}

fn batch_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 22)
}
