//! Which dead letters may be replayed: only what a service dead-lettered
//! itself, and only a command that service consumes.
//!
//! The subject of a dead letter proves who wrote it: the server lets only
//! a service's own identity publish under `dlq.<service>.>`
//! (docs/contract.md section 7). So a letter is a service's when its subject
//! is exactly `dlq.<service>.<Dlq-Original-Subject>` for one of the four
//! services. Anything else (a letter under another name, one whose header
//! says it came from elsewhere, or one of a subject the service never
//! consumes) could have been forged by whoever may write to the
//! dead-letter stream, and replaying it would publish the forger's command
//! with the operator's rights.

use crate::subjects::{
    dead_letter, ABORT_SAGA, CANCEL_ORDER, DEPOSIT, PLACE_ORDER, RESTOCK, RETRY_SAGA,
};

/// Each service, by binary name, and the client and operator commands it
/// consumes: the only subjects a dead letter of it may be replayed to. The
/// orchestrator's are the requests about a saga (one dead-lettered for an
/// order that was not there yet may be replayed once it is).
pub const COMMANDS_BY_SERVICE: [(&str, &[&str]); 4] = [
    ("order-service", &[PLACE_ORDER]),
    ("inventory-service", &[RESTOCK]),
    ("payment-service", &[DEPOSIT]),
    ("saga-orchestrator", &[CANCEL_ORDER, RETRY_SAGA, ABORT_SAGA]),
];

/// Why a dead letter is not replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    #[error(
        "{subject} is no service's dead-letter subject: only order-service, \
         inventory-service, payment-service and saga-orchestrator write \
         dead letters, under dlq.<service>.>"
    )]
    UnknownService { subject: String },
    #[error(
        "{subject} does not match its Dlq-Original-Subject {original:?}: a \
         service dead-letters a message of <subject> on dlq.<service>.<subject>"
    )]
    SubjectMismatch { subject: String, original: String },
    #[error("{original} is not a command {service} consumes: {service} consumes {consumes}")]
    NotItsCommand {
        service: &'static str,
        original: String,
        consumes: String,
    },
}

/// Checks that the dead letter on `subject`, whose `Dlq-Original-Subject`
/// is `original`, was written by a service about a command it consumes;
/// returns that service.
pub fn check(subject: &str, original: &str) -> Result<&'static str, NotReplayable> {
    let (service, commands) = COMMANDS_BY_SERVICE
        .iter()
        .find(|(service, _)| {
            subject
                .strip_prefix("dlq.")
                .and_then(|rest| rest.strip_prefix(service))
                .is_some_and(|rest| rest.starts_with('.'))
        })
        .ok_or_else(|| NotReplayable::UnknownService {
            subject: subject.to_owned(),
        })?;
    if subject != dead_letter(service, original) {
        return Err(NotReplayable::SubjectMismatch {
            subject: subject.to_owned(),
            original: original.to_owned(),
        });
    }
    if !commands.contains(&original) {
        return Err(NotReplayable::NotItsCommand {
            service,
            original: original.to_owned(),
            consumes: if commands.is_empty() {
                "no command".to_owned()
            } else {
                commands.join(", ")
            },
        });
    }
    Ok(service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_services_own_letter_of_a_command_it_consumes_is_replayable() {
        for (service, command) in [
            ("order-service", PLACE_ORDER),
            ("inventory-service", RESTOCK),
            ("payment-service", DEPOSIT),
            ("saga-orchestrator", CANCEL_ORDER),
            ("saga-orchestrator", ABORT_SAGA),
        ] {
            assert_eq!(check(&dead_letter(service, command), command), Ok(service));
        }
    }

    #[test]
    fn a_letter_under_no_services_name_is_refused() {
        for subject in [
            "dlq.mallory.inventory.cmd.restock",
            "dlq.inventory-service-2.inventory.cmd.restock",
            "dlq.inventory-serviceinventory.cmd.restock",
            "inventory-service.inventory.cmd.restock",
            "dlq.inventory-service",
        ] {
            assert!(
                matches!(
                    check(subject, RESTOCK),
                    Err(NotReplayable::UnknownService { .. })
                ),
                "{subject}"
            );
        }
    }

    #[test]
    fn a_letter_whose_header_names_another_subject_is_refused() {
        let refused = check("dlq.order-service.orders.cmd.place", RESTOCK).unwrap_err();
        assert_eq!(
            refused,
            NotReplayable::SubjectMismatch {
                subject: "dlq.order-service.orders.cmd.place".to_owned(),
                original: RESTOCK.to_owned(),
            }
        );
        assert!(check("dlq.order-service.orders.cmd.place", "").is_err());
    }

    #[test]
    fn a_letter_of_a_command_the_service_does_not_consume_is_refused() {
        let refused = check("dlq.order-service.inventory.cmd.restock", RESTOCK).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "inventory.cmd.restock is not a command order-service consumes: \
             order-service consumes orders.cmd.place"
        );
        for (subject, original) in [
            (
                "dlq.inventory-service.saga.log.o-1.reserve_stock",
                "saga.log.o-1.reserve_stock",
            ),
            ("dlq.saga-orchestrator.orders.cmd.place", PLACE_ORDER),
            ("dlq.payment-service.payments.cmd.>", "payments.cmd.>"),
        ] {
            assert!(
                matches!(
                    check(subject, original),
                    Err(NotReplayable::NotItsCommand { .. })
                ),
                "{subject}"
            );
        }
    }
}
