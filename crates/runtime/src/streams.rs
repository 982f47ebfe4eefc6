//! Every stream of the suite and its configuration, in one table: the
//! subjects each holds and the settings they all share (file storage,
//! direct gets, atomic batches, a two-minute duplicate window, and new
//! messages refused rather than old ones dropped when a stream is full).
//! Provisioning (`sagactl provision`, [`crate::provision`]) creates them
//! from it; the services only check that they are there.
//!
//! Given the bytes of file store the suite may fill ([`Layout::store_bytes`]),
//! each stream that takes atomic batches gets its share as a byte limit.
//! That limit, not the server's, is the one a full store reaches:
//! nats-server checks a stream's limit for an atomic batch as a whole,
//! before storing any of it, while its server-wide limit
//! (`max_file_store`) is checked message by message, so a batch that
//! crosses it is stored in part, its state without its event, and
//! answered as refused. The server refuses limits that add up to more
//! than its store. The saga stream has no byte limit: a stream with
//! scheduled messages cannot refuse new ones (nats-server allows it only
//! to drop old ones, which would lose sagas); it has the rest of the
//! store ([`SAGA_SHARE_PERCENT`]) to itself, and takes no batches.

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, StorageType};
use events::subjects::streams::{DLQ, INVENTORY, ORDERS, PAYMENTS, SAGA};

/// The suite's streams, by name.
pub const ALL: [&str; 5] = [ORDERS, INVENTORY, PAYMENTS, SAGA, DLQ];

/// The streams that hold the saga's own messages (all but the dead
/// letters).
pub const SAGA_STREAMS: [&str; 4] = [ORDERS, INVENTORY, PAYMENTS, SAGA];

/// How the streams are laid out on the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Replicas of every stream (3 on a cluster).
    pub replicas: usize,
    /// The bytes of each server's file store the streams may fill between
    /// them, shared out by [`share_percent`]; `None`: no byte limit, the
    /// server's own store is the only one.
    pub store_bytes: Option<u64>,
}

impl Layout {
    /// `replicas` replicas and no byte limit.
    pub fn replicas(replicas: usize) -> Self {
        Self {
            replicas,
            store_bytes: None,
        }
    }
}

/// The share of the store, in percent, stream `name` may fill (0: no
/// limit of its own). A saga stores about 1.1 kB in ORDERS, 2.4 kB in
/// INVENTORY, 2 kB in PAYMENTS and 6 kB in SAGA. ORDERS gets the smallest
/// share for what it holds, so that it is the one to fill: a full store
/// then refuses new orders at the door, where the client sees it, and no
/// saga starts that could not finish. By then SAGA holds about a third of
/// the store (its share: half) and INVENTORY an eighth (its limit:
/// more than a fifth).
pub fn share_percent(name: &str) -> u64 {
    match name {
        ORDERS => 6,
        INVENTORY | PAYMENTS => 22,
        DLQ => 2,
        _ => 0,
    }
}

/// The share of the store left to the saga stream, which has no limit of
/// its own.
pub const SAGA_SHARE_PERCENT: u64 = 48;

/// The configuration of stream `name` laid out as `layout` says, or
/// `None` for a name that is not one of [`ALL`].
pub fn config(name: &str, layout: Layout) -> Option<StreamConfig> {
    let max_bytes = match (layout.store_bytes, share_percent(name)) {
        (Some(bytes), share) if share > 0 => (bytes / 100 * share) as i64,
        _ => -1,
    };
    let shared = |subjects: &[&str]| StreamConfig {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: StorageType::File,
        num_replicas: layout.replicas,
        allow_direct: true,
        allow_atomic_publish: true,
        duplicate_window: Duration::from_secs(120),
        // What a saga leaves expires (docs/design.md, "Retention"), and an
        // aggregate's new state rolls up its last.
        allow_message_ttl: true,
        allow_rollup: true,
        max_bytes,
        discard: DiscardPolicy::New,
        ..Default::default()
    };
    Some(match name {
        ORDERS => shared(&["orders.cmd.place", "orders.evt.>"]),
        INVENTORY => shared(&[
            "inventory.cmd.>",
            "inventory.sku.>",
            "inventory.evt.>",
            "inventory.applied.>",
        ]),
        PAYMENTS => shared(&[
            "payments.cmd.>",
            "payments.account.>",
            "payments.evt.>",
            "payments.applied.>",
        ]),
        // A saga's record (its state and next command) is one publish; its
        // wake-ups are scheduled messages. The requests about sagas (a client's cancel included)
        // are here, where their consumer, the orchestrator, removes them.
        SAGA => StreamConfig {
            allow_message_schedules: true,
            discard: DiscardPolicy::Old,
            ..shared(&[
                "saga.log.>",
                "saga.open.>",
                "saga.timer.>",
                "saga.timeout.>",
                "saga.cmd.>",
                "orders.cmd.cancel",
            ])
        },
        DLQ => StreamConfig {
            description: Some("jetsaga dead letters: dlq.<service>.<original subject>".to_owned()),
            max_age: Duration::from_secs(14 * 24 * 3600),
            ..shared(&["dlq.>"])
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_has_a_configuration_with_the_replicas_asked_for() {
        for name in ALL {
            let config = config(name, Layout::replicas(3)).expect("a stream of the table");
            assert_eq!(config.name, name);
            assert_eq!(config.num_replicas, 3);
            assert_eq!(config.storage, StorageType::File);
            assert!(config.allow_direct, "{name} serves direct gets");
        }
        assert!(config("NOPE", Layout::replicas(1)).is_none());
    }

    #[test]
    fn no_subject_is_held_by_two_streams() {
        /// Whether some subject matches both filters.
        fn overlap(a: &str, b: &str) -> bool {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
            for i in 0..a.len().max(b.len()) {
                match (a.get(i), b.get(i)) {
                    (Some(&">"), _) | (_, Some(&">")) => return true,
                    (Some(x), Some(y)) if x == y || *x == "*" || *y == "*" => {}
                    _ => return false,
                }
            }
            true
        }
        assert!(overlap("orders.cmd.>", "orders.cmd.cancel"));
        assert!(!overlap("orders.cmd.place", "orders.cmd.cancel"));
        let held: Vec<(&str, String)> = ALL
            .iter()
            .flat_map(|name| {
                let subjects = config(name, Layout::replicas(1)).unwrap().subjects;
                subjects.into_iter().map(move |s| (*name, s))
            })
            .collect();
        for (i, (one, a)) in held.iter().enumerate() {
            for (other, b) in &held[i + 1..] {
                assert!(one == other || !overlap(a, b), "{one} {a} and {other} {b}");
            }
        }
    }

    #[test]
    fn every_stream_takes_batches_expiries_and_rollups_and_only_the_saga_stream_schedules() {
        for name in ALL {
            let config = config(name, Layout::replicas(1)).unwrap();
            assert!(config.allow_atomic_publish, "{name}");
            assert!(config.allow_message_ttl, "{name}");
            assert!(config.allow_rollup, "{name}");
            assert_eq!(config.allow_message_schedules, name == SAGA, "{name}");
        }
    }

    #[test]
    fn a_store_is_shared_out_and_every_batched_stream_refuses_new_messages_when_full() {
        let shares: u64 = ALL.iter().map(|name| share_percent(name)).sum();
        assert_eq!(shares + SAGA_SHARE_PERCENT, 100);
        let layout = Layout {
            replicas: 1,
            store_bytes: Some(1_000_000),
        };
        let limits: Vec<i64> = ALL
            .iter()
            .map(|name| config(name, layout).unwrap().max_bytes)
            .collect();
        let reserved: i64 = limits.iter().filter(|&&bytes| bytes > 0).sum();
        assert_eq!(reserved, 520_000, "{limits:?}");
        for name in ALL {
            let config = config(name, layout).unwrap();
            let limited = name != SAGA;
            assert_eq!(config.max_bytes > 0, limited, "{name}");
            let discard = if limited {
                DiscardPolicy::New
            } else {
                DiscardPolicy::Old
            };
            assert_eq!(config.discard, discard, "{name}");
            assert_eq!(
                super::config(name, Layout::replicas(1)).unwrap().max_bytes,
                -1
            );
        }
    }
}
