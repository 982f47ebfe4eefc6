//! Reading many messages of a stream in one request: a batched direct get
//! (nats-server 2.11+), whose answers come back as one message each, then
//! an end-of-batch marker that says how many more match. No consumer is
//! created, so it needs no more permission than reading one message.

use std::time::Duration;

use async_nats::StatusCode;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::{Store, StoreError};

/// Messages asked for in one request by [`Store::scan_all`].
const SCAN_BATCH: usize = 1000;

/// How long the next answer of a batch may take before the scan fails.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// One message a scan read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub seq: u64,
    pub subject: String,
    pub payload: Bytes,
}

/// What one request of a scan read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Oldest first.
    pub messages: Vec<Scanned>,
    /// Whether more messages match after the last one.
    pub more: bool,
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    seq: u64,
    next_by_subj: &'a str,
    batch: usize,
}

impl Store {
    /// Up to `max` messages on `filter` (which may be a wildcard), from
    /// sequence `from` on, oldest first.
    pub async fn scan(&self, filter: &str, from: u64, max: usize) -> Result<Scan, StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(e.to_string());
        let client = self.js.client();
        let inbox = client.new_inbox();
        let mut answers = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        let request = BatchRequest {
            seq: from.max(1),
            next_by_subj: filter,
            batch: max.max(1),
        };
        client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", self.name),
                inbox,
                serde_json::to_vec(&request).expect("serializes").into(),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let mut scan = Scan::default();
        loop {
            let answer = tokio::time::timeout(ANSWER_WAIT, answers.next())
                .await
                .map_err(|_| {
                    unavailable(&format!(
                        "scanning {filter}: no answer within {ANSWER_WAIT:?}"
                    ))
                })?
                .ok_or_else(|| unavailable(&"scanning: the subscription ended"))?;
            let header = |name: &str| {
                answer
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            match answer.status {
                // Nothing matches.
                Some(StatusCode::NOT_FOUND) => return Ok(scan),
                // The end of the batch.
                Some(status) if status.as_u16() == 204 => {
                    scan.more = header("Nats-Num-Pending")
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n > 0);
                    return Ok(scan);
                }
                Some(status) => {
                    return Err(unavailable(&format!(
                        "scanning {filter}: {status} {}",
                        answer.description.as_deref().unwrap_or_default()
                    )))
                }
                None => {}
            }
            let seq = header("Nats-Sequence")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unavailable(&"scanning: an answer without its sequence"))?;
            let subject = header("Nats-Subject").unwrap_or_default();
            scan.messages.push(Scanned {
                seq,
                subject,
                payload: answer.payload,
            });
        }
    }

    /// Every message on `filter`, oldest first, read a batch at a time.
    pub async fn scan_all(&self, filter: &str) -> Result<Vec<Scanned>, StoreError> {
        let mut messages = Vec::new();
        let mut from = 1;
        loop {
            let scan = self.scan(filter, from, SCAN_BATCH).await?;
            if let Some(last) = scan.messages.last() {
                from = last.seq + 1;
            }
            let more = scan.more && !scan.messages.is_empty();
            messages.extend(scan.messages);
            if !more {
                return Ok(messages);
            }
        }
    }
}
