//! The group committer: changes queued by concurrent writers, stored
//! together in one atomic batch, each keeping its own checks and outcome.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::batch::Batches;
use super::plan::{Pending, Planner};
use super::{Append, Conflict, Queued, StoreError};

/// Messages of concurrent changes committed together in one atomic batch.
/// The server's limit is 1000 per batch.
pub(super) const GROUP_MESSAGES: usize = 256;
/// Group batches in flight at once, per store. One: while it is being
/// stored, changes queue and the next group grows, and the server, whose
/// cost is per batch, does the least work; chains of changes built on
/// queued ones are planned for one group at a time, too. More in flight
/// make smaller batches and fewer sagas a second (docs/performance.md).
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
pub(super) type Change = Pending<oneshot::Sender<Result<Vec<u64>, StoreError>>>;

impl Change {
    /// Settles the change's messages, then tells its caller.
    fn finish(self, outcome: Result<Vec<u64>, StoreError>) {
        match &outcome {
            Ok(seqs) => {
                for (message, seq) in self.messages.iter().zip(seqs) {
                    message.settle(Some(*seq));
                }
            }
            Err(e) => {
                let subjects: Vec<&str> = self.appends.iter().map(|a| a.subject.as_str()).collect();
                tracing::debug!(error = %e, ?subjects, "change not stored");
                self.messages.iter().for_each(|m| m.settle(None))
            }
        }
        let _ = self.reply.send(outcome);
    }
}

/// Group commit. An atomic batch costs about the same whatever its size
/// (the server stages it on disk: about 2.0 ms for 2 messages, 2.9 ms for 50,
/// here), so the changes that arrive while earlier groups are being stored
/// are stored together: one batch of up to [`GROUP_MESSAGES`] messages.
/// Each change keeps its own expected-sequence checks, so a group is stored
/// only if every change in it would have been; if a check fails, the store
/// tells which changes lost (`weed_out`), and only those see the conflict.
///
/// Which changes share a group is [`Planner`]'s to say.
pub(super) async fn group_commits(batches: Batches, mut queue: mpsc::Receiver<Change>) {
    let in_flight = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT));
    let mut planner = Planner::new(GROUP_MESSAGES);
    loop {
        let first = match planner.take_held_back() {
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
        // The earlier groups are settled now (one group at a time); this
        // one takes everything that queued while they were stored.
        let group = planner.plan(first, || queue.try_recv().ok());
        if group.ready.is_empty() {
            for (change, e) in group.refused {
                change.finish(Err(e));
            }
            continue;
        }
        let batches = batches.clone();
        tokio::spawn(async move {
            commit_group(&batches, group.ready, group.chained).await;
            // Refused before the group was sent, they hear of it only now
            // that the group is settled: one may be built on a change of
            // the group too (for another aggregate), and its writer, told
            // at once, would read the store while that change was still
            // in flight (see `commit_group`).
            for (change, e) in group.refused {
                change.finish(Err(e));
            }
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
    match store_together(batches, &group).await {
        Ok(last) => finish_together(group, last),
        Err(StoreError::Conflict(_)) => {
            // Someone's check failed: nothing of the group was stored. The
            // store says whose: those changes lose, with whatever is built
            // on them, and the rest are stored together again at once. A
            // group is not retried change by change while everything else
            // waits: that made one stale change cost a round trip for each
            // change queued beside it, and, with a replica writing the same
            // aggregates, the next group grew while this one crawled, until
            // steps waited longer than their deadlines.
            let mut lost = Vec::new();
            let mut rest = group;
            loop {
                let (kept, losers) = match weed_out(batches, rest).await {
                    Ok(weeded) => weeded,
                    Err(group) => break one_by_one(batches, group, chained).await,
                };
                if losers.is_empty() {
                    // The store read shows every check holding (a read
                    // from a replica behind its leader): only the checks
                    // of each change alone can tell the loser.
                    break one_by_one(batches, kept, chained).await;
                }
                lost.extend(losers);
                match kept.len() {
                    0 => break,
                    1 => break commit_alone(batches, kept.into_iter().next().expect("one")).await,
                    _ => match store_together(batches, &kept).await {
                        Ok(last) => break finish_together(kept, last),
                        // Another writer raced in between (a replica): weed
                        // again. Each round loses at least one change, so
                        // this ends.
                        Err(StoreError::Conflict(_)) => rest = kept,
                        Err(e) => break fail_together(kept, &e),
                    },
                }
            }
            // The losers hear of it only now that the rest is settled. A
            // loser's writer forgets the state it queued and reads the
            // store; had the change its own was built on still been in
            // flight, that read would miss it, and the next change,
            // decided on it, would be refused in turn.
            for (change, conflict) in lost {
                change.finish(Err(conflict.into()));
            }
        }
        Err(e) => fail_together(group, &e),
    }
}

/// Every change of `group` in one batch: the sequence of its last message.
async fn store_together(batches: &Batches, group: &[Change]) -> Result<u64, StoreError> {
    let all: Vec<Append> = group.iter().flat_map(|c| c.appends.clone()).collect();
    batches.commit(all).await
}

/// Settles the changes of a group stored as one batch ending at `last`.
fn finish_together(group: Vec<Change>, last: u64) {
    // A batch is stored contiguously, in order.
    let total: usize = group.iter().map(|c| c.appends.len()).sum();
    let mut next = last + 1 - total as u64;
    for change in group {
        let count = change.appends.len() as u64;
        change.finish(Ok((next..next + count).collect()));
        next += count;
    }
}

/// Not stored, and nobody can say more (refused otherwise than by a check,
/// or its outcome unknown even to the store): each change is retried by
/// its caller, whose checks tell a repeat.
fn fail_together(group: Vec<Change>, e: &StoreError) {
    let why = e.to_string();
    for change in group {
        change.finish(Err(StoreError::Unavailable(why.clone())));
    }
}

/// A refused group's changes: those that can be stored again, and those
/// that lost, with why (not settled yet).
type Weeded = (Vec<Change>, Vec<(Change, Conflict)>);

/// After a refused group: reads, for each check of the group's changes,
/// the last sequence the stream holds, and parts the group into the
/// changes whose checks hold, and the losers: each change whose check
/// fails and, in order, each change built on a loser or on a write that
/// was not stored. `Err(group)`, untouched, when the store cannot be read.
async fn weed_out(batches: &Batches, group: Vec<Change>) -> Result<Weeded, Vec<Change>> {
    let mut keys: Vec<String> = group
        .iter()
        .flat_map(|c| c.appends.iter())
        .filter_map(|a| a.check().map(|(key, _)| key))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let read = futures::future::try_join_all(keys.iter().map(|key| batches.last_seq(key))).await;
    let Ok(seqs) = read else {
        return Err(group);
    };
    let last: std::collections::HashMap<&str, u64> =
        keys.iter().map(String::as_str).zip(seqs).collect();
    let mut rest = Vec::with_capacity(group.len());
    let mut lost: Vec<(Change, Conflict)> = Vec::new();
    for change in group {
        let stale = change.appends.iter().find_map(|a| {
            let (key, expected) = a.check()?;
            let found = last[key.as_str()];
            (found != expected).then_some(Conflict::Stale {
                subject: key,
                expected,
                found,
            })
        });
        let loses = stale.or_else(|| {
            change
                .appends
                .iter()
                .find(|a| a.after.as_ref().is_some_and(Queued::doomed))
                .map(|a| Conflict::PredecessorNotStored {
                    subject: a.subject.clone(),
                })
        });
        match loses {
            Some(conflict) => {
                // Lost now, told later: nothing is built on it meanwhile.
                change.messages.iter().for_each(Queued::lose);
                lost.push((change, conflict));
            }
            None => rest.push(change),
        }
    }
    Ok((rest, lost))
}

/// Each change of a refused group on its own, so that only the loser hears
/// of it. In order when some build on others (`chained`), so that a change
/// built on another is checked against the sequence that one got, or fails
/// with it; otherwise a few at a time: the server admits only so many
/// batches in flight per stream.
async fn one_by_one(batches: &Batches, group: Vec<Change>, chained: bool) {
    if !chained {
        futures::stream::iter(group)
            .for_each_concurrent(RETRIES_IN_FLIGHT, |change| commit_alone(batches, change))
            .await;
        return;
    }
    for mut change in group {
        match change.resolve(&[]) {
            Ok(false) => commit_alone(batches, change).await,
            // Cannot be: every earlier change of the group is settled.
            // Refused rather than stored unguarded.
            Ok(true) => {
                let subject = change
                    .appends
                    .iter()
                    .find(|a| a.after.is_some())
                    .map_or_else(String::new, |a| a.subject.clone());
                change.finish(Err(Conflict::PredecessorUnsettled { subject }.into()))
            }
            Err(e) => change.finish(Err(e)),
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
