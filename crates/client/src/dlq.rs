//! Dead letters: list them, look at one, and re-drive it once its cause is
//! fixed (docs/contract.md 4.5).

use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::HeaderMap;
use bytes::Bytes;
use events::replay::{self, NotReplayable};
use serde::Serialize;

use crate::{Client, ClientError};

/// The dead-letter stream.
pub const STREAM: &str = "DLQ";

/// One dead letter, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its sequence in the dead-letter stream: what `show` and `replay` take.
    pub seq: u64,
    /// `dlq.<service>.<original subject>`.
    pub subject: String,
    pub original_subject: String,
    pub reason: String,
    pub deliveries: String,
    /// When it was dead-lettered (RFC 3339).
    pub time: String,
    #[serde(skip)]
    pub headers: HeaderMap,
    /// The original body, unchanged (lossy UTF-8 in JSON output).
    #[serde(serialize_with = "lossy")]
    pub body: Bytes,
}

impl DeadLetter {
    /// Whether the letter may be replayed: written by a service (its
    /// subject is exactly `dlq.<service>.<original subject>`, which only
    /// that service may publish), about a command that service consumes.
    /// Else, why not.
    pub fn replayable(&self) -> Result<(), NotReplayable> {
        replay::check(&self.subject, &self.original_subject).map(|_| ())
    }
}

fn lossy<S: serde::Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

impl Client {
    /// Every dead letter on subjects matching `filter` (`dlq.>` for all,
    /// `dlq.payment-service.>` for one service), oldest first.
    pub async fn dead_letters(&self, filter: &str) -> Result<Vec<DeadLetter>, ClientError> {
        let mut letters = Vec::new();
        let mut from = 1;
        loop {
            let (page, next) = self.dead_letters_page(filter, from, 1000).await?;
            letters.extend(page);
            match next {
                Some(next) => from = next,
                None => return Ok(letters),
            }
        }
    }

    /// At most `limit` dead letters on subjects matching `filter`, from
    /// sequence `from` on, oldest first; and the sequence the next page
    /// starts from, when there may be one.
    pub async fn dead_letters_page(
        &self,
        filter: &str,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, Option<u64>), ClientError> {
        let stream = self.dlq().await?;
        let mut letters = Vec::new();
        let mut next = from.max(1);
        while letters.len() < limit {
            match stream.direct_get_next_for_subject(filter, Some(next)).await {
                Ok(message) => {
                    next = message.sequence + 1;
                    letters.push(letter(message));
                }
                Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => {
                    return Ok((letters, None))
                }
                Err(e) => return Err(query_error(e)),
            }
        }
        Ok((letters, Some(next)))
    }

    /// One dead letter by its sequence.
    pub async fn dead_letter(&self, seq: u64) -> Result<Option<DeadLetter>, ClientError> {
        match self.dlq().await?.direct_get(seq).await {
            Ok(message) => Ok(Some(letter(message))),
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => Ok(None),
            Err(e) => Err(query_error(e)),
        }
    }

    /// Publishes the dead letter's body, with the client's original headers,
    /// to its original subject again, then removes it from the dead-letter
    /// stream. Only what a service dead-lettered itself, of a command it
    /// consumes, is replayed ([`DeadLetter::replayable`]): the other
    /// subjects are aggregates' histories, where an old message appended
    /// again would become their state, and a letter that is not a
    /// service's may be forged. A command keeps its `Nats-Msg-Id`, so a
    /// replay of one that was in fact applied is recognised and changes
    /// nothing; one sent without an id gets `replay:DLQ:<seq>`, which makes
    /// replaying the same letter twice within the dedup window publish it
    /// once.
    pub async fn replay(&self, letter: &DeadLetter) -> Result<u64, ClientError> {
        if let Err(refused) = letter.replayable() {
            return Err(ClientError::Publish(format!(
                "dead letter #{} not replayed: {refused}",
                letter.seq
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, values) in letter.headers.iter() {
            let lower = name.to_string().to_ascii_lowercase();
            if lower.starts_with("dlq-") || lower.starts_with("nats-") {
                continue;
            }
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
        let msg_id = letter
            .headers
            .get("Dlq-Original-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| format!("replay:{}:{}", STREAM, letter.seq));
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        let ack = self
            .command(&letter.original_subject, headers, letter.body.clone())
            .await?;
        self.dlq()
            .await?
            .delete_message(letter.seq)
            .await
            .map_err(|e| {
                ClientError::Publish(format!("replayed, but not removed from {STREAM}: {e}"))
            })?;
        Ok(ack.sequence)
    }

    async fn dlq(&self) -> Result<async_nats::jetstream::stream::Stream<()>, ClientError> {
        self.js
            .get_stream_no_info(STREAM)
            .await
            .map_err(|e| ClientError::Query {
                subject: STREAM.to_owned(),
                reason: e.to_string(),
            })
    }
}

fn letter(message: async_nats::jetstream::message::StreamMessage) -> DeadLetter {
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    DeadLetter {
        seq: message.sequence,
        subject: message.subject.to_string(),
        original_subject: header("Dlq-Original-Subject"),
        reason: header("Dlq-Reason"),
        deliveries: header("Dlq-Deliveries"),
        time: message
            .time
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        headers: message.headers.clone(),
        body: message.payload,
    }
}

fn query_error(e: impl std::fmt::Display) -> ClientError {
    ClientError::Query {
        subject: STREAM.to_owned(),
        reason: e.to_string(),
    }
}
