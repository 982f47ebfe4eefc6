//! Hot aggregates, held and remembered by one process.
//!
//! Optimistic concurrency alone turns a hot sku into a storm of conflicts:
//! every racing writer reads, loses, and reads again. So within a process,
//! writers of one aggregate take turns ([`crate::turns`]), and the last state
//! written or read is remembered, so the common path does no read at all.
//! The expected-sequence checks stay on every write: another replica's
//! write makes ours fail, we forget what we remembered, and read again.
//! The cache is only ever a guess that the store confirms.
//!
//! With replicas, that guess is wrong about as often as another replica
//! wrote the aggregate last, and each wrong guess costs the batch it was
//! queued in, a nak and a redelivery. So an aggregate whose change lost a
//! conflict is contended for a while ([`CONTENDED_FOR`]): its remembered
//! state is not trusted, and each writer reads the store first, which
//! narrows the race to the time between that read and the write.
//!
//! A turn need not last until the write is stored, only until it is
//! queued ([`crate::store::Store::queue`]): the next writer decides on the
//! state just queued ([`Version::Queued`]), and its write is stored right
//! after that one, or not at all. Holding the turn across the write made
//! a hot sku's changes wait a batch each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::memory::Memory;
use crate::outcome::{Attempt, Outcome};
use crate::store::{Append, Queued, Store, StoreError, Versioned};
pub use crate::turns::Held;
use crate::turns::Turns;

/// Turn stripes: aggregates that share one take turns needlessly.
const STRIPES: usize = 1024;

/// How long an aggregate stays contended after one of our changes to it
/// lost a conflict: its state is read from the store before each change.
pub const CONTENDED_FOR: Duration = Duration::from_secs(30);

/// The aggregates of one kind (skus, accounts) in one stream.
#[derive(Debug)]
pub struct Aggregates<T> {
    store: Store,
    turns: Turns,
    memory: Memory<T>,
    /// States written by changes still queued for the store: newer than
    /// anything in `memory`, until they are settled.
    queued: Mutex<HashMap<String, (T, Queued)>>,
    /// How long what is written beside the aggregates is kept: the marker
    /// of an applied command ([`Aggregates::apply_once`]) and the facts
    /// about an order ([`Aggregates::expiring`]); for ever when `None`.
    kept: Option<Duration>,
    /// Aggregates another writer (a replica) changed under us lately, and
    /// when we last lost a conflict on each.
    contended: Mutex<HashMap<String, Instant>>,
}

/// What this process knows of an aggregate without reading the store.
enum Recalled<T> {
    Known(Known<T>),
    /// Nothing: the store is to be read.
    Unknown,
    /// Its last change queued is sure to fail, and is not settled yet.
    Doomed(Queued),
}

/// An aggregate's state as this process knows it, and its version.
#[derive(Debug, Clone)]
pub struct Known<T> {
    pub value: T,
    pub version: Version,
}

/// Which write an aggregate's known state comes from.
#[derive(Debug, Clone)]
pub enum Version {
    /// Stored at this sequence.
    Stored(u64),
    /// Written by a change of this process that is still being stored.
    Queued(Queued),
}

/// Guards `append`, a new state of an aggregate known at `version` (`None`:
/// it does not exist yet): it is stored only right after that version, and
/// rolls up the states before it, so that the aggregate keeps one message.
pub fn guard(append: Append, version: Option<&Version>) -> Append {
    let append = append.rolls_up();
    match version {
        Some(Version::Stored(seq)) => append.expect_last(*seq),
        Some(Version::Queued(queued)) => append.expect_after(queued),
        None => append.expect_last(0),
    }
}

impl<T: Clone + DeserializeOwned> Aggregates<T> {
    /// Remembers at most `capacity` aggregates.
    pub fn new(store: Store, capacity: usize) -> Self {
        Self {
            store,
            turns: Turns::new(STRIPES),
            memory: Memory::new(capacity),
            queued: Mutex::default(),
            kept: None,
            contended: Mutex::default(),
        }
    }

    /// The markers of applied commands, and the facts written with
    /// [`Aggregates::expiring`], expire `kept` after they are stored
    /// (docs/design.md says why that is safe for each).
    pub fn keeping_for(mut self, kept: Duration) -> Self {
        self.kept = Some(kept);
        self
    }

    /// `append` (a fact written beside the aggregates, such as an order's
    /// event), made to expire as the aggregates keep it.
    pub fn expiring(&self, append: Append) -> Append {
        match self.kept {
            Some(kept) => append.expires_after(kept),
            None => append,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes this process's turn on every aggregate of `subjects`.
    pub async fn hold<'a>(&self, subjects: impl IntoIterator<Item = &'a str>) -> Held {
        self.turns.hold(subjects).await
    }

    /// The aggregate as last written or seen by this process (a write
    /// still queued included), or read from the store. An absent aggregate
    /// is never remembered: it may be created elsewhere.
    pub async fn read(&self, subject: &str) -> Result<Option<Known<T>>, StoreError> {
        loop {
            match self.recall(subject) {
                Recalled::Known(known) => return Ok(Some(known)),
                Recalled::Unknown => break,
                // Sure to fail, but not settled yet: a change it is built
                // on may still be stored, and a read of the store now
                // could miss it.
                Recalled::Doomed(message) => {
                    message.settled().await;
                }
            }
        }
        let read: Option<Versioned<T>> = self.store.last(subject).await?;
        Ok(read.map(|v| {
            self.remember(v.clone());
            Known {
                value: v.value,
                version: Version::Stored(v.seq),
            }
        }))
    }

    /// The aggregate as the store holds it, once this process's own
    /// changes to it still being stored are settled: what a refusal must be
    /// decided on. A state only remembered may be stale, and one still
    /// queued may yet fail; a refusal writes nothing of the aggregate, so
    /// no check would catch either. To be called under the aggregate's
    /// turn, so that no change of ours is queued meanwhile.
    pub async fn read_stored(&self, subject: String) -> Result<Option<Known<T>>, StoreError> {
        let pending = self.lock_queued().get(&subject).map(|(_, m)| m.clone());
        if let Some(message) = pending {
            message.settled().await;
        }
        self.forget(&subject);
        self.read(&subject).await
    }

    /// [`Aggregates::read`] of an owned subject, for concurrent reads.
    pub async fn read_owned(&self, subject: String) -> Result<Option<Known<T>>, StoreError> {
        self.read(&subject).await
    }

    fn recall(&self, subject: &str) -> Recalled<T> {
        let mut queued = self.lock_queued();
        if let Some((value, message)) = queued.get(subject) {
            match message.outcome() {
                // A change in flight but built on one that failed fails
                // too: building on it in turn would only lengthen a chain
                // of refusals that new writers keep alive.
                None if message.doomed() => return Recalled::Doomed(message.clone()),
                None => {
                    return Recalled::Known(Known {
                        value: value.clone(),
                        version: Version::Queued(message.clone()),
                    })
                }
                Some(Some(seq)) => {
                    let (value, _) = queued.remove(subject).expect("just found");
                    self.memory.remember(
                        subject,
                        Versioned {
                            seq,
                            subject: subject.to_owned(),
                            value,
                        },
                    );
                }
                Some(None) => {
                    // Not stored: what is remembered from before it may
                    // be older than what the store holds now (the links
                    // stored in between were never remembered on their
                    // own), so nothing is, and the next writer reads.
                    queued.remove(subject);
                    self.memory.forget(subject);
                }
            }
        }
        drop(queued);
        if self.is_contended(subject) {
            return Recalled::Unknown;
        }
        match self.memory.get(subject) {
            Some(v) => Recalled::Known(Known {
                value: v.value,
                version: Version::Stored(v.seq),
            }),
            None => Recalled::Unknown,
        }
    }

    /// Records the state just written (or read) at `seq`.
    pub fn remember(&self, value: Versioned<T>) {
        let key = value.subject.clone();
        self.memory.remember(&key, value);
    }

    /// Writes a change made under `turn`: `appends` begins with the new
    /// state of each aggregate in `changed` (subject and state, in the same
    /// order). The turn is held until the change is queued, not until it is
    /// stored: the next writer of these aggregates decides on the states
    /// queued here, and its write is stored right after this one, or not at
    /// all. A change of no aggregate (an event alone) is written plainly.
    pub async fn write(
        &self,
        turn: Held,
        changed: Vec<(String, T)>,
        appends: Vec<Append>,
    ) -> Result<Vec<u64>, StoreError> {
        if changed.is_empty() {
            let written = self.store.commit(appends).await;
            drop(turn);
            return written;
        }
        let queued = self.store.queue(appends).await?;
        let subjects: Vec<String> = changed.iter().map(|(s, _)| s.clone()).collect();
        let messages = queued.messages.clone();
        for ((subject, value), message) in changed.into_iter().zip(&messages) {
            self.remember_queued(&subject, value, message.clone());
        }
        drop(turn);
        let written = queued.stored().await;
        if let Err(e) = &written {
            let conflict = matches!(e, StoreError::Conflict(_));
            for (subject, message) in subjects.iter().zip(&messages) {
                self.drop_failed(subject, message);
                if conflict {
                    self.contend(subject);
                }
            }
        }
        written
    }

    /// Marks `subject` contended ([`CONTENDED_FOR`]) from now.
    fn contend(&self, subject: &str) {
        let mut contended = self.lock_contended();
        if contended.len() >= self.memory.capacity() {
            contended.retain(|_, since| since.elapsed() < CONTENDED_FOR);
        }
        contended.insert(subject.to_owned(), Instant::now());
    }

    /// Whether a change of ours to `subject` lost a conflict lately.
    fn is_contended(&self, subject: &str) -> bool {
        self.lock_contended()
            .get(subject)
            .is_some_and(|since| since.elapsed() < CONTENDED_FOR)
    }

    fn lock_contended(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.contended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets `subject`'s state after `message`, a change of ours to it,
    /// was not stored: both the state it queued and the one it was decided
    /// on, which may be stale. A newer change queued after it stays: it was
    /// built on this one, fails with it, and clears up after itself.
    fn drop_failed(&self, subject: &str, message: &Queued) {
        let mut queued = self.lock_queued();
        match queued.get(subject) {
            Some((_, newer)) if !newer.is(message) => return,
            Some(_) => {
                queued.remove(subject);
            }
            None => {}
        }
        drop(queued);
        self.memory.forget(subject);
    }

    /// Records the state `message`, a change still queued, writes on
    /// `subject`: the next writer decides on it, and its write goes right
    /// after that one, or not at all.
    fn remember_queued(&self, subject: &str, value: T, message: Queued) {
        let mut queued = self.lock_queued();
        if queued.len() >= self.memory.capacity() {
            // Settled entries move to `memory`, which is bounded; those
            // still in flight are few (one per aggregate at most).
            let settled: Vec<String> = queued
                .iter()
                .filter(|(_, (_, m))| m.outcome().is_some())
                .map(|(k, _)| k.clone())
                .collect();
            drop(queued);
            for subject in settled {
                self.recall(&subject);
            }
            queued = self.lock_queued();
        }
        queued.insert(subject.to_owned(), (value, message));
    }

    /// Drops what is remembered of `subject` as stored, after a refusal or
    /// a conflict showed it may be stale, so that the next read asks the
    /// store. A change of this process still being stored is kept: it is
    /// newer than anything the store holds, and its own outcome settles
    /// it (dropping it would let the next writer decide on an older state
    /// and refuse the batch behind it).
    pub fn forget(&self, subject: &str) {
        let mut queued = self.lock_queued();
        if let Some((_, message)) = queued.get(subject) {
            if message.outcome().is_none() {
                return;
            }
            queued.remove(subject);
        }
        drop(queued);
        self.memory.forget(subject);
    }

    fn lock_queued(&self) -> std::sync::MutexGuard<'_, HashMap<String, (T, Queued)>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
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
    /// The marker of an applied command, kept as long as the aggregates
    /// keep markers.
    fn marker(&self, marker: &str, command: &Bytes) -> Append {
        self.expiring(Append::raw(marker.to_owned(), command.clone()).expect_last(0))
    }

    /// Applies an admin command (a restock, a deposit) to the aggregate on
    /// `subject` at most once: the new state and the command itself, stored
    /// on `marker` (which must be new), are one atomic batch, so a second
    /// delivery of the command finds its marker and changes nothing.
    /// `decide` computes the new state from the current one, or says why the
    /// command can never apply (the attempt's refusal).
    pub async fn apply_once<E>(
        &self,
        subject: &str,
        marker: &str,
        command: &Bytes,
        decide: impl Fn(Option<&T>) -> Result<T, E>,
    ) -> Attempt<Applied<T>, E> {
        let _turn = self.hold([subject]).await;
        let current = self.read(subject).await?;
        let next = match decide(current.as_ref().map(|v| &v.value)) {
            Ok(next) => next,
            Err(e) => return Ok(Outcome::Refused(e)),
        };
        let written = self
            .store
            .commit(vec![
                guard(
                    Append::json(subject, &next),
                    current.as_ref().map(|k| &k.version),
                ),
                self.marker(marker, command),
            ])
            .await;
        match written {
            Ok(seqs) => {
                self.remember(Versioned {
                    seq: seqs[0],
                    subject: subject.to_owned(),
                    value: next.clone(),
                });
                Ok(Outcome::Done(Applied::Now(next)))
            }
            Err(StoreError::Conflict(why)) => {
                self.forget(subject);
                self.contend(subject);
                if self.store.last_seq(marker).await? > 0 {
                    return Ok(Outcome::Done(Applied::Before));
                }
                Err(StoreError::Conflict(why))
            }
            Err(e) => Err(e),
        }
    }
}
