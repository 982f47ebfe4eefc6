//! The group commit's plan, pure and synchronous: which of the waiting
//! changes share the next atomic batch, which wait for the one after, and
//! which are refused before anything is sent.
//!
//! The server checks a batch against the stream as it was before the
//! batch, not against the batch's own earlier messages. So two changes
//! that check the same subject or wildcard (two answers for one order, two
//! writes of one aggregate) never share a batch, where both checks would
//! pass: the later one, and everything queued after it, waits for the next
//! group, and its check then sees the first. The one exception is a change
//! built on an earlier change of the group ([`Append::expect_after`]),
//! which the batch's order guards.

use std::collections::{HashSet, VecDeque};

use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;

use super::append::EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT;
use super::{Append, Conflict, Queued, StoreError};

/// A change waiting for a group, and `reply`, where its outcome goes.
#[derive(Debug)]
pub(super) struct Pending<T> {
    pub(super) appends: Vec<Append>,
    /// One per append: settled with the outcome, before `reply` hears it.
    pub(super) messages: Vec<Queued>,
    pub(super) reply: T,
}

impl<T> Pending<T> {
    pub(super) fn new(appends: Vec<Append>, reply: T) -> Self {
        let messages = Queued::of_change(&appends);
        Self {
            appends,
            messages,
            reply,
        }
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
    /// predecessor got. `Err` when a predecessor was not stored, or is
    /// one of `refused`; `Ok(true)` when one is still in flight, which can
    /// only be in this same group, earlier (groups go one at a time, in
    /// queue order): the batch's own order then guards this append.
    pub(super) fn resolve(&mut self, refused: &[Queued]) -> Result<bool, StoreError> {
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
                None if !refused.iter().any(|r| r.is(after)) => in_group = true,
                Some(None) | None => {
                    return Err(Conflict::PredecessorNotStored {
                        subject: append.subject.clone(),
                    }
                    .into())
                }
            }
        }
        Ok(in_group)
    }
}

/// The next group, as planned.
#[derive(Debug)]
pub(super) struct Group<T> {
    /// To be stored together, in this order, in one atomic batch.
    pub(super) ready: Vec<Pending<T>>,
    /// Some change of `ready` builds on an earlier one, and stands
    /// unguarded without it.
    pub(super) chained: bool,
    /// Refused before anything is sent: a write they build on was not
    /// stored.
    pub(super) refused: Vec<(Pending<T>, StoreError)>,
}

/// Plans groups one after the other, holding back the changes that must
/// wait for the next.
#[derive(Debug)]
pub(super) struct Planner<T> {
    /// Messages per group: a group takes changes until it holds this many.
    cap: usize,
    /// Changes held back from a group, first in line for the next one.
    held_back: VecDeque<Pending<T>>,
}

impl<T> Planner<T> {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            held_back: VecDeque::new(),
        }
    }

    /// The first change held back from the last group, if any: the next
    /// group starts with it.
    pub(super) fn take_held_back(&mut self) -> Option<Pending<T>> {
        self.held_back.pop_front()
    }

    /// The next group, from `first`, then the changes held back, then those
    /// `incoming` yields (everything queued meanwhile), until it holds
    /// `cap` messages. To be called once the earlier groups are settled:
    /// each change that builds on one of their writes checks the sequence
    /// it got, or is refused; in queue order, so that a refusal carries on
    /// down a chain of changes within this group.
    pub(super) fn plan(
        &mut self,
        first: Pending<T>,
        mut incoming: impl FnMut() -> Option<Pending<T>>,
    ) -> Group<T> {
        let mut messages = first.appends.len();
        let mut group = vec![first];
        while messages < self.cap {
            let Some(next) = self.held_back.pop_front().or_else(&mut incoming) else {
                break;
            };
            messages += next.appends.len();
            group.push(next);
        }

        let mut planned = Group {
            ready: Vec::with_capacity(group.len()),
            chained: false,
            refused: Vec::new(),
        };
        let mut refused_messages = Vec::new();
        let mut checked = HashSet::new();
        let mut rest = group.into_iter();
        for mut change in rest.by_ref() {
            let in_group = match change.resolve(&refused_messages) {
                Ok(in_group) => in_group,
                Err(e) => {
                    change.messages.iter().for_each(Queued::lose);
                    refused_messages.extend(change.messages.iter().cloned());
                    planned.refused.push((change, e));
                    continue;
                }
            };
            if !change.claim(&mut checked) {
                self.held_back.push_back(change);
                break;
            }
            planned.chained |= in_group;
            planned.ready.push(change);
        }
        // Behind the one held back, in order: a change may build on it.
        self.held_back.extend(rest);
        planned
    }
}

#[cfg(test)]
mod tests;
