//! The saga's steps for the payment service, decided on what was decided
//! for the order already: whether a charge must look for an earlier
//! answer first, and what a refund gives back.
//!
//! Every step may come again (a redelivery, a retry, a step the saga asked
//! again after its deadline). A charge is guarded by its write, which
//! expects no payment event for the order yet; a refund is decided on the
//! order's last payment event, and one that finds nothing taken still
//! records the refund, so that a charge arriving late takes nothing.

use events::payment::{Account, PaymentEvent};
use events::saga::{SagaCommand, SagaRecord};
use events::{Cents, CustomerId, OrderId};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{refund, PaymentError};

/// How far ahead of its deadline a charge step must still be to be taken
/// without looking for an earlier answer first: room for the clocks of the
/// orchestrator's host and this one to disagree.
pub const CLOCK_MARGIN: time::Duration = time::Duration::seconds(2);

/// A saga step the payment service takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Charge {
        customer_id: &'a CustomerId,
        amount: Cents,
    },
    Refund {
        customer_id: &'a CustomerId,
    },
}

/// The payment service's step that `command` asks for.
pub fn step(command: &SagaCommand) -> Result<Step<'_>, PaymentError> {
    match command {
        SagaCommand::ChargePayment {
            customer_id,
            amount_cents,
        } => Ok(Step::Charge {
            customer_id,
            amount: *amount_cents,
        }),
        SagaCommand::RefundPayment { customer_id } => Ok(Step::Refund { customer_id }),
        other => Err(PaymentError::NotAPaymentCommand(other.name())),
    }
}

/// Whether a `charge_payment` step (`record`, delivered for the
/// `delivery`th time) may find its order decided already, so that the
/// service must look before it calls the gateway.
///
/// The saga gives up on a charge, and refunds, only once the deadline of
/// its last attempt has passed, and each attempt's deadline comes after
/// the one before. So the first delivery of a first attempt, well before
/// its own deadline, is the order's first payment step: nothing can have
/// been charged or refunded for it. Anything else (a redelivery, a retry,
/// a step near or past its deadline, or without one) may follow an answer.
/// Looking is only to spare the gateway a call: its calls are keyed by the
/// order, and the write's check refuses a second answer either way.
pub fn may_be_decided(record: &SagaRecord, delivery: i64, now: OffsetDateTime) -> bool {
    let deadline = record
        .deadline
        .as_deref()
        .and_then(|d| OffsetDateTime::parse(d, &Rfc3339).ok());
    let well_ahead = deadline.is_some_and(|d| now + CLOCK_MARGIN < d);
    !(delivery == 1 && record.attempt == 1 && well_ahead)
}

/// What refunding an order comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refunding {
    /// Refunded before: announce it again, in case the saga missed it.
    Repeat,
    /// Give `give_back` to the customer (nothing, when nothing was taken)
    /// and announce `event`.
    Refund {
        give_back: Option<Cents>,
        event: PaymentEvent,
    },
}

/// Refunds `order_id` given its last payment event `last`.
pub fn refunding(
    order_id: &OrderId,
    customer_id: &CustomerId,
    last: Option<&PaymentEvent>,
) -> Refunding {
    let taken = match last {
        Some(PaymentEvent::Refunded { .. }) => return Refunding::Repeat,
        // Still owed after a refund given up: try again (the account may
        // be repaired).
        Some(
            PaymentEvent::Charged { amount_cents, .. }
            | PaymentEvent::RefundFailed { amount_cents, .. },
        ) => *amount_cents,
        // Nothing was taken: record the refund anyway, so that the saga
        // hears back and a charge arriving late takes nothing.
        Some(PaymentEvent::Declined { .. }) | None => Cents::ZERO,
    };
    Refunding::Refund {
        give_back: (taken != Cents::ZERO).then_some(taken),
        event: PaymentEvent::Refunded {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            amount_cents: taken,
        },
    }
}

/// The account of the customer charged for `order_id`, with `amount`
/// given back.
pub fn refund_to(
    order_id: &OrderId,
    customer_id: &CustomerId,
    current: Option<&Account>,
    amount: Cents,
) -> Result<Account, PaymentError> {
    let account = current.ok_or_else(|| PaymentError::NoAccount {
        order_id: order_id.clone(),
        customer_id: customer_id.clone(),
    })?;
    refund(account, amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::saga::SagaState;
    use events::CancelReason;

    fn customer() -> CustomerId {
        CustomerId::parse("c-1").unwrap()
    }

    fn order() -> OrderId {
        OrderId::parse("o-1").unwrap()
    }

    fn charge_step(attempt: u32, deadline: Option<OffsetDateTime>) -> SagaRecord {
        SagaRecord {
            order_id: order(),
            customer_id: customer(),
            state: SagaState::Charging,
            items: vec![],
            lines: None,
            total_cents: Some(Cents(999)),
            reason: None,
            steps: vec![],
            command: SagaCommand::ChargePayment {
                customer_id: customer(),
                amount_cents: Cents(999),
            },
            attempt,
            deadline: deadline.map(|d| d.format(&Rfc3339).unwrap()),
            wake_at: None,
            order_seq: None,
            inventory_seq: None,
            retried_seq: None,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-11-26T12:00:00Z", &Rfc3339).unwrap()
    }

    fn ten_seconds_ahead() -> Option<OffsetDateTime> {
        Some(now() + time::Duration::seconds(10))
    }

    fn refunded(amount: Cents) -> PaymentEvent {
        PaymentEvent::Refunded {
            order_id: order(),
            customer_id: customer(),
            amount_cents: amount,
        }
    }

    #[test]
    fn the_saga_commands_map_to_the_payment_steps() {
        let charge = charge_step(1, None).command;
        assert_eq!(
            step(&charge),
            Ok(Step::Charge {
                customer_id: &customer(),
                amount: Cents(999),
            })
        );
        let refund = SagaCommand::RefundPayment {
            customer_id: customer(),
        };
        assert_eq!(
            step(&refund),
            Ok(Step::Refund {
                customer_id: &customer()
            })
        );
    }

    #[test]
    fn a_step_for_another_service_is_refused_by_name() {
        assert_eq!(
            step(&SagaCommand::CommitStock),
            Err(PaymentError::NotAPaymentCommand("commit_stock"))
        );
    }

    #[test]
    fn the_first_delivery_of_a_first_attempt_well_before_its_deadline_needs_no_look() {
        assert!(!may_be_decided(
            &charge_step(1, ten_seconds_ahead()),
            1,
            now()
        ));
    }

    #[test]
    fn a_redelivered_charge_looks_first() {
        // It may follow a charge this service stored and crashed before
        // acknowledging.
        assert!(may_be_decided(
            &charge_step(1, ten_seconds_ahead()),
            2,
            now()
        ));
    }

    #[test]
    fn a_retried_charge_looks_first() {
        // It may follow a slow first attempt's charge.
        assert!(may_be_decided(
            &charge_step(2, ten_seconds_ahead()),
            1,
            now()
        ));
    }

    #[test]
    fn a_charge_within_the_clock_margin_of_its_deadline_looks_first() {
        // Past (or about to pass) its deadline, the saga may have given up
        // and refunded: the clocks get their margin.
        let near = Some(now() + CLOCK_MARGIN);
        assert!(may_be_decided(&charge_step(1, near), 1, now()));
        let past = Some(now() - time::Duration::seconds(1));
        assert!(may_be_decided(&charge_step(1, past), 1, now()));
    }

    #[test]
    fn a_charge_without_a_deadline_looks_first() {
        assert!(may_be_decided(&charge_step(1, None), 1, now()));
    }

    #[test]
    fn a_refund_after_a_charge_gives_the_charge_back() {
        let charged = PaymentEvent::Charged {
            order_id: order(),
            customer_id: customer(),
            amount_cents: Cents(999),
        };
        assert_eq!(
            refunding(&order(), &customer(), Some(&charged)),
            Refunding::Refund {
                give_back: Some(Cents(999)),
                event: refunded(Cents(999)),
            }
        );
    }

    #[test]
    fn a_refund_with_nothing_taken_records_a_refund_of_nothing() {
        let declined = PaymentEvent::Declined {
            order_id: order(),
            customer_id: customer(),
            reason: CancelReason::InsufficientFunds,
        };
        for last in [None, Some(declined)] {
            assert_eq!(
                refunding(&order(), &customer(), last.as_ref()),
                Refunding::Refund {
                    give_back: None,
                    event: refunded(Cents::ZERO),
                }
            );
        }
    }

    #[test]
    fn a_refund_asked_again_after_one_given_up_tries_again() {
        let failed = PaymentEvent::RefundFailed {
            order_id: order(),
            customer_id: customer(),
            amount_cents: Cents(999),
            error: "the balance of c-1 would overflow".to_owned(),
        };
        assert_eq!(
            refunding(&order(), &customer(), Some(&failed)),
            Refunding::Refund {
                give_back: Some(Cents(999)),
                event: refunded(Cents(999)),
            }
        );
    }

    #[test]
    fn a_redelivered_refund_after_the_refund_only_repeats_it() {
        assert_eq!(
            refunding(&order(), &customer(), Some(&refunded(Cents(999)))),
            Refunding::Repeat
        );
    }

    #[test]
    fn a_refund_to_a_customer_with_no_account_is_refused() {
        assert_eq!(
            refund_to(&order(), &customer(), None, Cents(999)),
            Err(PaymentError::NoAccount {
                order_id: order(),
                customer_id: customer(),
            })
        );
    }

    #[test]
    fn a_refund_to_the_charged_account_restores_its_balance() {
        let account = Account {
            customer_id: customer(),
            balance_cents: Cents(1),
            deposited_cents: Cents(1_000),
            charged_cents: Cents(999),
            refunded_cents: Cents::ZERO,
        };
        let restored = refund_to(&order(), &customer(), Some(&account), Cents(999)).unwrap();
        assert_eq!(restored.balance_cents, Cents(1000));
    }
}
