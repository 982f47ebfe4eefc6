//! What a process remembers of the store: the last version it saw of some
//! aggregates, bounded in number.
//!
//! Memory is only ever a guess that the store confirms: every write made
//! from it still carries its expected-sequence check, so a stale entry
//! costs a refused write and a fresh read, never a lost update. What it
//! saves is the read on the common path.
//!
//! When full, it forgets the entry used longest ago: the aggregates in use
//! now (the sagas in flight, the hot skus) stay. (Dropping whichever entry
//! a hash map lists first is not random: new entries land there as often
//! as old ones, and the sagas in flight would be read back.)

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use lru::LruCache;

use crate::store::Versioned;

/// At most `capacity` aggregates, each at the newest version seen.
#[derive(Debug)]
pub struct Memory<T> {
    entries: Mutex<LruCache<String, Versioned<T>>>,
}

impl<T: Clone> Memory<T> {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The version remembered under `key` (which counts as a use).
    pub fn get(&self, key: &str) -> Option<Versioned<T>> {
        self.lock().get(key).cloned()
    }

    /// Remembers `value` under `key`, unless a newer version is remembered
    /// already: two writers of one aggregate may finish in either order,
    /// and stream sequences only grow.
    pub fn remember(&self, key: &str, value: Versioned<T>) {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some(known) if known.seq >= value.seq => {}
            Some(known) => *known = value,
            None => {
                entries.push(key.to_owned(), value);
            }
        }
    }

    /// Drops what is remembered under `key`, after a refused write showed
    /// it stale.
    pub fn forget(&self, key: &str) {
        self.lock().pop(key);
    }

    pub fn capacity(&self) -> usize {
        self.lock().cap().get()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<String, Versioned<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, value: &str) -> Versioned<String> {
        Versioned {
            seq,
            subject: "s".to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let memory = Memory::new(4);
        memory.remember("a", at(7, "new"));
        memory.remember("a", at(5, "old"));
        assert_eq!(memory.get("a").unwrap().value, "new");
        memory.remember("a", at(9, "newer"));
        assert_eq!(memory.get("a").unwrap().seq, 9);
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let memory = Memory::new(3);
        for (i, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            memory.remember(key, at(i as u64 + 1, key));
        }
        assert_eq!(memory.len(), 3);
        assert_eq!(memory.get("e").unwrap().value, "e");
    }

    #[test]
    fn when_full_it_forgets_what_was_used_longest_ago() {
        let memory = Memory::new(3);
        memory.remember("a", at(1, "a"));
        memory.remember("b", at(2, "b"));
        memory.remember("c", at(3, "c"));
        // `a` is in use; `b` is not.
        assert!(memory.get("a").is_some());
        memory.remember("d", at(4, "d"));
        assert!(memory.get("b").is_none(), "the least recently used goes");
        for key in ["a", "c", "d"] {
            assert!(memory.get(key).is_some(), "{key} stays");
        }
        // A saga in flight is used at every step: a stream of new ones
        // never pushes it out.
        for i in 0..1000u64 {
            assert!(
                memory.get("a").is_some(),
                "lost the entry in use after {i} new ones"
            );
            memory.remember(&format!("new-{i}"), at(10 + i, "new"));
        }
    }

    #[test]
    fn a_forgotten_entry_is_gone() {
        let memory = Memory::new(3);
        memory.remember("a", at(1, "a"));
        memory.forget("a");
        assert!(memory.get("a").is_none());
        assert!(memory.is_empty());
    }
}
