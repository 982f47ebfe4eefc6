//! What one attempt at a message comes to, in one type for every handler.
//!
//! An attempt reads, decides and writes. Either the store fails it (a
//! [`StoreError`]: a conflict is decided again, anything else retried
//! later), or it comes to an [`Outcome`]: done, refused for good, or not
//! possible yet. Each maps to one JetStream action through
//! [`HandleError`]:
//!
//! | attempt | action |
//! | --- | --- |
//! | `Ok(Outcome::Done(_))` | ack |
//! | `Ok(Outcome::Later(d, _))` | nak, redelivered after `d` |
//! | `Ok(Outcome::Refused(_))` | dead letter |
//! | `Err(StoreError)` | as [`HandleError::from`] says |
//!
//! The refusal `E` is the handler's own typed error, kept until the
//! message is settled, so a caller can tell one refusal from another.

use std::fmt::Display;
use std::time::Duration;

use crate::consumer::HandleError;
use crate::store::StoreError;

/// One read-decide-write attempt: the store failed it, or it came to an
/// [`Outcome`].
pub type Attempt<T, E> = Result<Outcome<T, E>, StoreError>;

/// What an attempt the store did not fail came to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Outcome<T, E> {
    /// Done, now or before.
    Done(T),
    /// Can never be done (a bug, corrupt state, a command its aggregate
    /// forbids): no retry will change that.
    Refused(E),
    /// Cannot be done yet (a dependency is down): try again after this
    /// long, whatever the delivery count.
    Later(Duration, E),
}

impl<T, E> Outcome<T, E> {
    /// `Done` when `decided` is `Ok`, `Refused` when it is not.
    pub fn of(decided: Result<T, E>) -> Self {
        match decided {
            Ok(value) => Self::Done(value),
            Err(e) => Self::Refused(e),
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }

    /// The same outcome, with what was done turned by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U, E> {
        match self {
            Self::Done(value) => Outcome::Done(f(value)),
            Self::Refused(e) => Outcome::Refused(e),
            Self::Later(after, e) => Outcome::Later(after, e),
        }
    }
}

impl<T, E: Display> Outcome<T, E> {
    /// What the consumer does with the message: `Ok` acks it.
    pub fn handled(self) -> Result<T, HandleError> {
        match self {
            Self::Done(value) => Ok(value),
            Self::Refused(e) => Err(HandleError::Reject(e.to_string())),
            Self::Later(after, e) => Err(HandleError::RetryAfter(after, e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no such sku")]
    struct NoSuchSku;

    #[test]
    fn a_done_attempt_is_acknowledged_with_its_value() {
        let outcome: Outcome<u32, NoSuchSku> = Outcome::of(Ok(7));
        assert!(outcome.is_done());
        assert_eq!(outcome.map(|n| n * 2).handled().unwrap(), 14);
    }

    #[test]
    fn a_refused_attempt_is_dead_lettered_with_its_reason() {
        let outcome: Outcome<(), NoSuchSku> = Outcome::of(Err(NoSuchSku));
        assert!(matches!(
            outcome.handled(),
            Err(HandleError::Reject(why)) if why == "no such sku"
        ));
    }

    #[test]
    fn an_attempt_not_possible_yet_is_retried_after_the_delay_it_names() {
        let outcome: Outcome<(), NoSuchSku> = Outcome::Later(Duration::from_secs(3), NoSuchSku);
        assert!(matches!(
            outcome.handled(),
            Err(HandleError::RetryAfter(after, why))
                if after == Duration::from_secs(3) && why == "no such sku"
        ));
    }
}
