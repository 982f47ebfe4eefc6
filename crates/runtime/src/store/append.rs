//! What a change is made of: [`Append`]s, each with the expected-sequence
//! check that guards it, and the [`Queued`] cell that tells where a queued
//! message was stored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use serde::Serialize;

/// The header that applies an expected-sequence check to a wildcard
/// (nats-server 2.11+), rather than to the message's own subject.
pub(super) const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str =
    "Nats-Expected-Last-Subject-Sequence-Subject";

/// The header of a per-message TTL.
pub const TTL: &str = "Nats-TTL";

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
pub struct Queued(Arc<Settlement>);

#[derive(Debug)]
struct Settlement {
    outcome: OnceLock<Option<u64>>,
    settled: Notify,
    /// Sure not to be stored, though not settled yet: refused with or
    /// before its group, and told once the group is settled.
    lost: AtomicBool,
    /// The messages of the changes built on this one
    /// ([`Append::expect_after`]), every message of each (a change spans
    /// several aggregates): lost with it if it is not stored. `None` once
    /// this one is settled or lost. Weak: a chain of changes to a hot
    /// aggregate holds no more than its links in flight.
    dependents: std::sync::Mutex<Option<Vec<Weak<Settlement>>>>,
}

impl Default for Settlement {
    fn default() -> Self {
        Self {
            outcome: OnceLock::new(),
            settled: Notify::new(),
            lost: AtomicBool::new(false),
            dependents: std::sync::Mutex::new(Some(Vec::new())),
        }
    }
}

impl Settlement {
    fn dependents(&self) -> std::sync::MutexGuard<'_, Option<Vec<Weak<Settlement>>>> {
        self.dependents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Queued {
    /// The messages of a change made of `appends`, queued now, each
    /// recorded as built on the messages the change builds on.
    pub(super) fn of_change(appends: &[Append]) -> Vec<Self> {
        let messages: Vec<Self> = appends.iter().map(|_| Self::default()).collect();
        for after in appends.iter().filter_map(|a| a.after.as_ref()) {
            after.carries(&messages);
        }
        messages
    }

    /// Whether the message is sure not to be stored: it was not, or it is
    /// still in flight but lost, or built on one that was not (the server
    /// would refuse it, so nothing should be built on it in turn): a
    /// failure marks what is built on it lost ([`Queued::lose`]).
    pub fn doomed(&self) -> bool {
        match self.outcome() {
            Some(outcome) => outcome.is_none(),
            None => self.0.lost.load(Ordering::Acquire),
        }
    }

    /// `None` while the change is in flight; then the sequence the message
    /// was stored at, or `None` if the change was not stored (refused, or
    /// its outcome unknown).
    pub fn outcome(&self) -> Option<Option<u64>> {
        self.0.outcome.get().copied()
    }

    /// Waits until the message is settled: [`Queued::outcome`], known.
    pub async fn settled(&self) -> Option<u64> {
        loop {
            // Registered before the check, so a settlement in between
            // still wakes it.
            let settled = self.0.settled.notified();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            settled.await;
        }
    }

    /// Marks the message as sure not to be stored, ahead of its
    /// settlement, and with it every message of every change built on it,
    /// transitively: nothing is built on any of them meanwhile. Without
    /// it, a change of two skus whose link on one sku had failed still
    /// looked sound on the other, and new changes of that sku joined it
    /// until it was refused in its turn.
    pub(super) fn lose(&self) {
        let mut lost = vec![Arc::clone(&self.0)];
        while let Some(settlement) = lost.pop() {
            settlement.lost.store(true, Ordering::Release);
            let dependents = settlement.dependents().take().unwrap_or_default();
            lost.extend(dependents.iter().filter_map(Weak::upgrade));
        }
    }

    /// Records every message of `change` as built on this one: lost with
    /// it, at once if it is lost already.
    pub(super) fn carries(&self, change: &[Queued]) {
        let mut dependents = self.0.dependents();
        match dependents.as_mut() {
            Some(list) => list.extend(change.iter().map(|m| Arc::downgrade(&m.0))),
            None if self.doomed() => {
                drop(dependents);
                change.iter().for_each(Queued::lose);
            }
            None => {}
        }
    }

    pub(super) fn settle(&self, seq: Option<u64>) {
        let _ = self.0.outcome.set(seq);
        match seq {
            Some(_) => drop(self.0.dependents().take()),
            None => self.lose(),
        }
        self.0.settled.notify_waiters();
    }

    /// Whether `other` is this same message.
    pub(crate) fn is(&self, other: &Queued) -> bool {
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

    /// What this append is checked against, if anything: the subject or
    /// wildcard, and the last sequence it expects there.
    pub(super) fn check(&self) -> Option<(String, u64)> {
        let expected = self
            .headers
            .get(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE)?
            .as_str()
            .parse()
            .ok()?;
        let key = self
            .headers
            .get(EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT)
            .map_or_else(|| self.subject.clone(), |f| f.as_str().to_owned());
        Some((key, expected))
    }

    /// Expires `ttl` after it is stored, to the second (a per-message TTL,
    /// nats-server 2.11+, on a stream that allows them).
    pub fn expires_after(self, ttl: Duration) -> Self {
        self.header(TTL, &format!("{}s", ttl.as_secs().max(1)))
    }

    /// Once stored, the only message on its subject: the server purges the
    /// ones before it (a rollup), so an aggregate whose last message is
    /// its state keeps that one alone.
    pub fn rolls_up(self) -> Self {
        self.header("Nats-Rollup", "sub")
    }

    /// Adds a header, such as a `traceparent`.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(HeaderName::from_static(name), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(subject: &str) -> Append {
        Append::raw(subject, Bytes::from_static(b"x"))
    }

    #[test]
    fn a_change_is_doomed_on_every_aggregate_when_one_it_builds_on_is_lost() {
        let first = Queued::of_change(&[append("a")]);
        let other = Queued::of_change(&[append("b")]);
        // Built on `first` for "a", on `other` for "b".
        let both = Queued::of_change(&[
            append("a").expect_after(&first[0]),
            append("b").expect_after(&other[0]),
        ]);
        let next = Queued::of_change(&[append("b").expect_after(&both[1])]);
        assert!(!both[1].doomed());
        first[0].lose();
        assert!(
            both.iter().all(Queued::doomed),
            "both messages of the change"
        );
        assert!(next[0].doomed(), "and what is built on them, transitively");
        assert!(!other[0].doomed());
        // Built on a lost message later: lost at once.
        let late = Queued::of_change(&[append("a").expect_after(&both[0])]);
        assert!(late[0].doomed());
    }

    #[test]
    fn a_change_built_on_a_stored_message_stands() {
        let first = Queued::of_change(&[append("a")]);
        first[0].settle(Some(7));
        let next = Queued::of_change(&[append("a").expect_after(&first[0])]);
        assert!(!next[0].doomed());
        let failed = Queued::of_change(&[append("b")]);
        let built = Queued::of_change(&[append("b").expect_after(&failed[0])]);
        failed[0].settle(None);
        assert!(built[0].doomed(), "a failure dooms what is built on it");
    }
}
