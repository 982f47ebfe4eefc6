//! Turns: within one process, the writers of one aggregate go one at a
//! time, so that each decides on what the one before it wrote instead of
//! racing it into a refused write and a read.
//!
//! Striped locks: aggregates that share a stripe take turns needlessly,
//! but memory stays fixed however many aggregates there are. Stripes are
//! taken in a fixed order, so writers of several aggregates cannot
//! deadlock. Turns order the writers of one process only: the
//! expected-sequence checks on every write still settle races with other
//! replicas.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

/// A fixed set of stripes to take turns on.
#[derive(Debug)]
pub struct Turns {
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

/// Turns held on some aggregates; released on drop.
#[derive(Debug)]
pub struct Held {
    _guards: Vec<OwnedMutexGuard<()>>,
}

impl Turns {
    /// `stripes` locks: at most that many aggregates hold a turn at once,
    /// and two that share a stripe wait for each other.
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1)).map(|_| Arc::default()).collect(),
        }
    }

    /// Takes this process's turn on every one of `keys`.
    pub async fn hold<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Held {
        let mut stripes: Vec<usize> = keys.into_iter().map(|k| self.stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.stripes[i].clone().lock_owned().await);
        }
        Held { _guards: guards }
    }

    fn stripe(&self, key: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.stripes.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_key_is_held_once_at_a_time() {
        let turns = Turns::new(64);
        let held = turns.hold(["a"]).await;
        let again = tokio::time::timeout(Duration::from_millis(50), turns.hold(["a"])).await;
        assert!(again.is_err(), "a second turn on a held key must wait");
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), turns.hold(["a"])).await;
        assert!(again.is_ok(), "a released key is free again");
    }

    #[tokio::test]
    async fn keys_in_any_order_take_their_stripes_in_one_order() {
        let turns = Arc::new(Turns::new(2));
        // Many keys over two stripes: holding them in opposite orders
        // would deadlock if stripes were taken in the order given.
        let keys: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
        let reversed: Vec<String> = keys.iter().rev().cloned().collect();
        let mut tasks = Vec::new();
        for order in [keys, reversed] {
            let turns = turns.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    let _held = turns.hold(order.iter().map(String::as_str)).await;
                    tokio::task::yield_now().await;
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("no deadlock")
                .expect("no panic");
        }
    }
}
