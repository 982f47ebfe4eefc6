//! Every stream of the suite and its configuration, in one table: the
//! subjects each holds and the settings they all share (file storage,
//! direct gets, atomic batches, a two-minute duplicate window).
//! Provisioning (`sagactl provision`, [`crate::provision`]) creates them
//! from it; the services only check that they are there.

use std::time::Duration;

use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use events::subjects::streams::{DLQ, INVENTORY, ORDERS, PAYMENTS, SAGA};

/// The suite's streams, by name.
pub const ALL: [&str; 5] = [ORDERS, INVENTORY, PAYMENTS, SAGA, DLQ];

/// The streams that hold the saga's own messages (all but the dead
/// letters).
pub const SAGA_STREAMS: [&str; 4] = [ORDERS, INVENTORY, PAYMENTS, SAGA];

/// The configuration of stream `name` with `replicas` replicas, or `None`
/// for a name that is not one of [`ALL`].
pub fn config(name: &str, replicas: usize) -> Option<StreamConfig> {
    let shared = |subjects: &[&str]| StreamConfig {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: StorageType::File,
        num_replicas: replicas,
        allow_direct: true,
        allow_atomic_publish: true,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    Some(match name {
        ORDERS => shared(&["orders.cmd.>", "orders.evt.>"]),
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
        // A saga's record and its next command are one plain publish; its
        // wake-ups are scheduled messages.
        SAGA => StreamConfig {
            allow_message_schedules: true,
            allow_atomic_publish: false,
            ..shared(&["saga.log.>", "saga.timer.>", "saga.timeout.>"])
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
            let config = config(name, 3).expect("a stream of the table");
            assert_eq!(config.name, name);
            assert_eq!(config.num_replicas, 3);
            assert_eq!(config.storage, StorageType::File);
            assert!(config.allow_direct, "{name} serves direct gets");
        }
        assert!(config("NOPE", 1).is_none());
    }

    #[test]
    fn no_subject_is_held_by_two_streams() {
        let subjects: Vec<String> = ALL
            .iter()
            .flat_map(|name| config(name, 1).unwrap().subjects)
            .collect();
        let prefixes: std::collections::BTreeSet<&str> = subjects
            .iter()
            .map(|s| s.split('.').next().unwrap_or_default())
            .collect();
        assert_eq!(prefixes.len(), ALL.len(), "{subjects:?}");
    }

    #[test]
    fn only_the_saga_stream_schedules_and_only_it_has_no_batches() {
        for name in ALL {
            let config = config(name, 1).unwrap();
            assert_eq!(config.allow_message_schedules, name == SAGA, "{name}");
            assert_eq!(config.allow_atomic_publish, name != SAGA, "{name}");
        }
    }
}
