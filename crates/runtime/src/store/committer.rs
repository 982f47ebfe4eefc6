//! The group committer: changes queued by concurrent writers, stored
//! together in one atomic batch, each keeping its own checks and outcome.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::append::EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT;
use super::batch::Batches;
use super::{Append, Queued, StoreError};

/// Messages of concurrent changes committed together in one atomic batch.
/// The server's limit is 1000 per batch.
pub(super) const GROUP_MESSAGES: usize = 256;
/// Group batches in flight at once, per store. One: while it is being
/// stored, changes queue and the next group grows, and the server, whose
/// cost is per batch, does the least work. (Measured on 2 cores, 6000
/// orders with 256 unsettled: 255 sagas/s with 4 in flight, 450 with 1.)
pub(super) const GROUPS_IN_FLIGHT: usize = 1;
/// Changes of a refused group committed again on their own at once, per
/// group: with [`GROUPS_IN_FLIGHT`], well under the server's 50.
pub(super) const RETRIES_IN_FLIGHT: usize = 8;

/// A change queued for the group committer ([`Store::queue`]).
#[derive(Debug)]
pub struct QueuedChange {
    /// Each append's message, in order: a later change may build on one
    /// ([`Append::expect_after`]) before it is stored.
    pub messages: Vec<Queued>,
    pub(super) outcome: oneshot::Receiver<Result<Vec<u64>, StoreError>>,
    pub(super) span: tracing::Span,
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

pub(super) fn committer_stopped() -> StoreError {
    StoreError::Unavailable("the group committer stopped".to_owned())
}

/// A change waiting for the group committer, and where its outcome goes.
#[derive(Debug)]
pub(super) struct Change {
    pub(super) appends: Vec<Append>,
    /// Settled with the outcome, before `done` is sent.
    pub(super) messages: Vec<Queued>,
    pub(super) done: oneshot::Sender<Result<Vec<u64>, StoreError>>,
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
pub(super) async fn group_commits(batches: Batches, mut queue: mpsc::Receiver<Change>) {
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
