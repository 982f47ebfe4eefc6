//! What a change is made of: [`Append`]s, each with the expected-sequence
//! check that guards it, and the [`Queued`] cell that tells where a queued
//! message was stored.

use std::sync::{Arc, OnceLock};

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use serde::Serialize;

/// The header that applies an expected-sequence check to a wildcard
/// (nats-server 2.11+), rather than to the message's own subject.
pub(super) const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str =
    "Nats-Expected-Last-Subject-Sequence-Subject";

/// One message of a change, with the check that guards it.
#[derive(Debug, Clone)]
pub struct Append {
    pub subject: String,
    pub payload: Bytes,
    pub headers: HeaderMap,
    /// Stores only right after this write, queued earlier in the same
    /// store (see [`Append::expect_after`]).
    pub(super) after: Option<Queued>,
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

    pub(super) fn settle(&self, seq: Option<u64>) {
        let _ = self.0.set(seq);
    }

    /// Whether `other` is this same message.
    pub(super) fn is(&self, other: &Queued) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
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
