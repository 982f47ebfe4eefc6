//! Provisioning, a step of its own (`sagactl provision`, run as `admin`):
//! every stream of [`streams::ALL`] created, or updated to the table's
//! configuration, idempotently; or, as a check, only compared with it.
//! The services never create a stream: they wait for this.

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;

use crate::nats::stream_exists;
use crate::streams;

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

/// Brings every stream to the table's configuration with `replicas`
/// replicas, or with `check_only` only reports what differs.
pub async fn provision(
    js: &Context,
    replicas: usize,
    check_only: bool,
) -> Result<Vec<StreamReport>, ProvisionError> {
    let mut report = Vec::new();
    for stream in streams::ALL {
        let fail = |reason: String| ProvisionError { stream, reason };
        let wanted = streams::config(stream, replicas).expect("a stream of the table");
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
    let mut out = Vec::new();
    let mut compare = |name: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{name}: {a} -> {b}"));
        }
    };
    let subjects = |c: &StreamConfig| {
        let mut s = c.subjects.clone();
        s.sort();
        s.join(",")
    };
    compare("subjects", subjects(current), subjects(wanted));
    compare(
        "storage",
        format!("{:?}", current.storage),
        format!("{:?}", wanted.storage),
    );
    compare(
        "replicas",
        current.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    compare(
        "allow_direct",
        current.allow_direct.to_string(),
        wanted.allow_direct.to_string(),
    );
    compare(
        "allow_atomic_publish",
        current.allow_atomic_publish.to_string(),
        wanted.allow_atomic_publish.to_string(),
    );
    compare(
        "allow_message_schedules",
        current.allow_message_schedules.to_string(),
        wanted.allow_message_schedules.to_string(),
    );
    compare(
        "duplicate_window",
        format!("{:?}", current.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    compare(
        "max_age",
        format!("{:?}", current.max_age),
        format!("{:?}", wanted.max_age),
    );
    compare(
        "description",
        format!("{:?}", current.description),
        format!("{:?}", wanted.description),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_table_agrees_with_itself_and_each_difference_is_named() {
        let wanted = streams::config(streams::ALL[0], 3).unwrap();
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
