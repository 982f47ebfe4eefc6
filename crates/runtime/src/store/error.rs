//! Why a read or write of the store failed, by kind: a caller reloads and
//! decides again after a [`Conflict`], and tries again later otherwise.

use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::{self, ErrorCode};

/// JetStream's error codes for a failed expected-sequence check: 10071 on a
/// single server, 10164 from a clustered stream's leader when a racing
/// write is still in flight for the same subject. (async-nats gives only
/// the first its own [`PublishErrorKind`], the other arrives as `Other`.)
///
/// [`PublishErrorKind`]: async_nats::jetstream::context::PublishErrorKind
const WRONG_LAST_SEQUENCE: [ErrorCode; 2] = [
    ErrorCode::STREAM_WRONG_LAST_SEQUENCE,
    ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT,
];

/// Why a read or write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone wrote first: reload and decide again.
    #[error("optimistic concurrency conflict: {0}")]
    Conflict(Conflict),
    /// The stored message does not decode: a bug or a foreign writer.
    #[error("corrupt record on {subject}: {source}")]
    Corrupt {
        subject: String,
        source: serde_json::Error,
    },
    /// NATS did not answer or refused: try again later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// How a write lost to another. Nothing of its change was stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Conflict {
    /// The stream refused an expected-sequence check: the last message on
    /// a subject (or wildcard) the change checks is not the one its writer
    /// read. The server's error, with its code.
    #[error("{0}")]
    WrongLastSequence(jetstream::Error),
    /// Read back after a refused group: the last message on `subject` (or
    /// wildcard) is at `found`, not at the `expected` the change was
    /// decided on.
    #[error(
        "the last write to {subject} is {found}, not the {expected} this change was decided on"
    )]
    Stale {
        subject: String,
        expected: u64,
        found: u64,
    },
    /// The write on `subject` that the change builds on
    /// ([`crate::store::Append::expect_after`]) was not stored.
    #[error("the write to {subject} this change builds on was not stored")]
    PredecessorNotStored { subject: String },
    /// The write on `subject` that the change builds on had no outcome
    /// yet when the change was to be stored on its own: refused rather
    /// than stored unguarded.
    #[error("the write to {subject} this change builds on is unsettled")]
    PredecessorUnsettled { subject: String },
}

impl Conflict {
    /// The failed check a JetStream API error reports, if that is what it
    /// reports.
    pub(super) fn in_api_error(e: &jetstream::Error) -> Option<Self> {
        WRONG_LAST_SEQUENCE
            .contains(&e.error_code())
            .then(|| Self::WrongLastSequence(e.clone()))
    }

    /// The failed check behind a refused publish, if that is why it was
    /// refused.
    pub(super) fn in_publish_error(e: &PublishError) -> Option<Self> {
        let cause = std::error::Error::source(e)?.downcast_ref::<jetstream::Error>()?;
        Self::in_api_error(cause)
    }
}

impl From<Conflict> for StoreError {
    fn from(conflict: Conflict) -> Self {
        Self::Conflict(conflict)
    }
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::PublishErrorKind;

    use super::*;

    fn api_error(err_code: u64) -> jetstream::Error {
        serde_json::from_value(serde_json::json!({
            "code": 400,
            "err_code": err_code,
            "description": "wrong last sequence: 3",
        }))
        .expect("an API error")
    }

    #[test]
    fn a_wrong_last_sequence_is_a_conflict_on_a_single_server_and_a_cluster() {
        for code in [10071, 10164] {
            let conflict = Conflict::in_api_error(&api_error(code));
            assert_eq!(
                conflict,
                Some(Conflict::WrongLastSequence(api_error(code))),
                "{code}"
            );
        }
    }

    #[test]
    fn other_api_errors_are_no_conflict() {
        assert_eq!(Conflict::in_api_error(&api_error(10077)), None);
    }

    #[test]
    fn a_publish_refused_for_its_check_is_a_conflict_whatever_kind_async_nats_gives_it() {
        for (kind, code) in [
            (PublishErrorKind::WrongLastSequence, 10071),
            (PublishErrorKind::Other, 10164),
        ] {
            let refused = PublishError::with_source(kind, api_error(code));
            assert_eq!(
                Conflict::in_publish_error(&refused),
                Some(Conflict::WrongLastSequence(api_error(code))),
                "{code}"
            );
        }
    }

    #[test]
    fn a_publish_that_failed_otherwise_is_no_conflict() {
        let timed_out = PublishError::new(PublishErrorKind::TimedOut);
        assert_eq!(Conflict::in_publish_error(&timed_out), None);
        let refused = PublishError::with_source(PublishErrorKind::Other, api_error(10077));
        assert_eq!(Conflict::in_publish_error(&refused), None);
    }
}
