//! Provisioning, a step of its own (`sagactl provision`, run as `admin`):
//! every stream of [`streams::ALL`] created, or updated to the table's
//! configuration, idempotently; or, as a check, only compared with it.
//! The services never create a stream: they wait for this.

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;

use crate::nats::stream_exists;
use crate::streams::{self, Layout};

/// What provisioning did, or (as a check) would do, to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// It was missing and was created (a check: is missing).
    Create,
    /// It differed and was updated (a check: differs), in these settings.
    Update(Vec<String>),
    /// It was as it should be.
    None,
}

/// One stream's line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    pub stream: &'static str,
    pub change: Change,
}

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
#[error("stream {stream}: {reason}")]
pub struct ProvisionError {
    pub stream: &'static str,
    pub reason: String,
}

/// Brings every stream to the table's configuration laid out as `layout`
/// says, or with `check_only` only reports what differs.
pub async fn provision(
    js: &Context,
    layout: Layout,
    check_only: bool,
) -> Result<Vec<StreamReport>, ProvisionError> {
    let mut report = Vec::new();
    for stream in streams::ALL {
        let fail = |reason: String| ProvisionError { stream, reason };
        let wanted = streams::config(stream, layout).expect("a stream of the table");
        let change = if !stream_exists(js, stream).await.map_err(fail)? {
            if !check_only {
                js.create_stream(wanted)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
            }
            Change::Create
        } else {
            let mut handle = js
                .get_stream(stream)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let current = handle
                .info()
                .await
                .map_err(|e| fail(e.to_string()))?
                .config
                .clone();
            let differences = differences(&current, &wanted);
            if differences.is_empty() {
                Change::None
            } else {
                if !check_only {
                    js.update_stream(wanted)
                        .await
                        .map_err(|e| fail(e.to_string()))?;
                }
                Change::Update(differences)
            }
        };
        report.push(StreamReport { stream, change });
    }
    Ok(report)
}

/// The settings the table sets in which `current` differs from `wanted`,
/// each as `name: current -> wanted` (the server fills in everything the
/// table leaves unset, so only the table's own settings are compared).
pub fn differences(current: &StreamConfig, wanted: &StreamConfig) -> Vec<String> {
    fn differ<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, name: &str, a: T, b: T) {
        if a != b {
            out.push(format!("{name}: {a:?} -> {b:?}"));
        }
    }
    let sorted = |c: &StreamConfig| {
        let mut subjects = c.subjects.clone();
        subjects.sort();
        subjects
    };
    let (c, w) = (current, wanted);
    let mut out = Vec::new();
    differ(&mut out, "subjects", sorted(c), sorted(w));
    differ(&mut out, "storage", c.storage, w.storage);
    differ(&mut out, "replicas", c.num_replicas, w.num_replicas);
    differ(&mut out, "allow_direct", c.allow_direct, w.allow_direct);
    differ(
        &mut out,
        "allow_atomic_publish",
        c.allow_atomic_publish,
        w.allow_atomic_publish,
    );
    differ(
        &mut out,
        "allow_message_schedules",
        c.allow_message_schedules,
        w.allow_message_schedules,
    );
    differ(
        &mut out,
        "duplicate_window",
        c.duplicate_window,
        w.duplicate_window,
    );
    differ(&mut out, "allow_rollup", c.allow_rollup, w.allow_rollup);
    differ(
        &mut out,
        "allow_message_ttl",
        c.allow_message_ttl,
        w.allow_message_ttl,
    );
    differ(&mut out, "max_age", c.max_age, w.max_age);
    differ(&mut out, "max_bytes", c.max_bytes, w.max_bytes);
    differ(&mut out, "discard", c.discard, w.discard);
    differ(&mut out, "description", &c.description, &w.description);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_table_agrees_with_itself_and_each_difference_is_named() {
        let wanted = streams::config(streams::ALL[0], Layout::replicas(3)).unwrap();
        assert!(differences(&wanted, &wanted).is_empty());
        let mut current = wanted.clone();
        current.num_replicas = 1;
        current.max_age = Duration::from_secs(60);
        current.subjects.reverse();
        let found = differences(&current, &wanted);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("replicas: 1 -> 3"), "{found:?}");
        assert!(found[1].starts_with("max_age"), "{found:?}");
    }
}
