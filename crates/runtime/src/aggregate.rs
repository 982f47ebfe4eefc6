//! Hot aggregates, held and remembered by one process.
//!
//! Optimistic concurrency alone turns a hot sku into a storm of conflicts:
//! every racing writer reads, loses, and reads again. So within a process,
//! writers of one aggregate take turns (striped locks, taken in a fixed
//! order so multi-aggregate writes cannot deadlock), and the last state
//! written or read is remembered, so the common path does no read at all.
//! The expected-sequence checks stay on every write: another replica's
//! write makes ours fail, we forget what we remembered, and read again.
//! The cache is only ever a guess that the store confirms.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OwnedMutexGuard;

use crate::memory::Memory;
use crate::store::{Append, Store, StoreError, Versioned};

/// Lock stripes: aggregates that share a stripe take turns needlessly, but
/// memory stays fixed however many aggregates there are.
const STRIPES: usize = 1024;

/// The aggregates of one kind (skus, accounts) in one stream.
#[derive(Debug)]
pub struct Aggregates<T> {
    store: Store,
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
    memory: Memory<T>,
}

/// Turns held on some aggregates; released on drop.
#[derive(Debug)]
pub struct Held {
    _guards: Vec<OwnedMutexGuard<()>>,
}

impl<T: Clone + DeserializeOwned> Aggregates<T> {
    /// Remembers at most `capacity` aggregates.
    pub fn new(store: Store, capacity: usize) -> Self {
        Self {
            store,
            stripes: (0..STRIPES).map(|_| Arc::default()).collect(),
            memory: Memory::new(capacity),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes this process's turn on every aggregate of `subjects`.
    pub async fn hold<'a>(&self, subjects: impl IntoIterator<Item = &'a str>) -> Held {
        let mut stripes: Vec<usize> = subjects.into_iter().map(stripe).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.stripes[i].clone().lock_owned().await);
        }
        Held { _guards: guards }
    }

    /// The aggregate as last seen by this process, or read from the store.
    /// An absent aggregate is never remembered: it may be created elsewhere.
    pub async fn read(&self, subject: &str) -> Result<Option<Versioned<T>>, StoreError> {
        if let Some(hit) = self.memory.get(subject) {
            return Ok(Some(hit));
        }
        let read: Option<Versioned<T>> = self.store.last(subject).await?;
        if let Some(v) = &read {
            self.remember(v.clone());
        }
        Ok(read)
    }

    /// [`Aggregates::read`] of an owned subject, for concurrent reads.
    pub async fn read_owned(&self, subject: String) -> Result<Option<Versioned<T>>, StoreError> {
        self.read(&subject).await
    }

    /// Records the state just written (or read) at `seq`.
    pub fn remember(&self, value: Versioned<T>) {
        let key = value.subject.clone();
        self.memory.remember(&key, value);
    }

    /// Drops what is remembered of `subject`, after a conflict showed it
    /// stale.
    pub fn forget(&self, subject: &str) {
        self.memory.forget(subject);
    }
}

/// The outcome of [`Aggregates::apply_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<T> {
    /// Applied now: the aggregate's new state.
    Now(T),
    /// Applied before (a redelivery, or a replay): nothing changed.
    Before,
}

impl<T: Clone + DeserializeOwned + Serialize> Aggregates<T> {
    /// Applies an admin command (a restock, a deposit) to the aggregate on
    /// `subject` at most once: the new state and the command itself, stored
    /// on `marker` (which must be new), are one atomic batch, so a second
    /// delivery of the command finds its marker and changes nothing.
    /// `decide` computes the new state from the current one, or says why the
    /// command can never apply.
    pub async fn apply_once<E: std::fmt::Display>(
        &self,
        subject: &str,
        marker: &str,
        command: &Bytes,
        decide: impl Fn(Option<&T>) -> Result<T, E>,
    ) -> Result<Result<Applied<T>, String>, StoreError> {
        let _turn = self.hold([subject]).await;
        let current = self.read(subject).await?;
        let next = match decide(current.as_ref().map(|v| &v.value)) {
            Ok(next) => next,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let written = self
            .store
            .commit(vec![
                Append::json(subject, &next).expect_last(current.map_or(0, |v| v.seq)),
                Append::raw(marker.to_owned(), command.clone()).expect_last(0),
            ])
            .await;
        match written {
            Ok(seqs) => {
                self.remember(Versioned {
                    seq: seqs[0],
                    subject: subject.to_owned(),
                    value: next.clone(),
                });
                Ok(Ok(Applied::Now(next)))
            }
            Err(StoreError::Conflict(why)) => {
                self.forget(subject);
                if self.store.last_seq(marker).await? > 0 {
                    return Ok(Ok(Applied::Before));
                }
                Err(StoreError::Conflict(why))
            }
            Err(e) => Err(e),
        }
    }
}

fn stripe(subject: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    subject.hash(&mut hasher);
    (hasher.finish() % STRIPES as u64) as usize
}
