//! The payment decisions, pure: given an account as stored and a command,
//! the new account and the event that announces it.

use events::commands::Deposit;
use events::payment::{Account, PaymentEvent};
use events::saga::SagaRecord;
use events::{CancelReason, Cents, CustomerId, OrderId};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How far ahead of its deadline a charge step must still be to be taken
/// without looking for an earlier answer first: room for the clocks of the
/// orchestrator's host and this one to disagree.
pub const CLOCK_MARGIN: time::Duration = time::Duration::seconds(2);

/// A command that cannot be applied to the account as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("depositing would overflow the balance of {0}")]
    Overflow(CustomerId),
}

/// Adds a deposit to the balance, opening the account if needed.
pub fn deposit(current: Option<&Account>, command: &Deposit) -> Result<Account, PaymentError> {
    let balance = current.map_or(Cents::ZERO, |a| a.balance_cents);
    Ok(Account {
        customer_id: command.customer_id.clone(),
        balance_cents: balance
            .checked_add(command.amount_cents)
            .ok_or_else(|| PaymentError::Overflow(command.customer_id.clone()))?,
    })
}

/// What a charge comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Taken: the new account and `charged`.
    Taken {
        account: Account,
        event: PaymentEvent,
    },
    /// Not taken: `declined`.
    Declined(PaymentEvent),
}

/// Takes `amount` from the balance, or declines when it is short (an
/// unknown customer has nothing).
pub fn charge(
    order_id: &OrderId,
    customer_id: &CustomerId,
    current: Option<&Account>,
    amount: Cents,
) -> Charge {
    match current.and_then(|a| a.balance_cents.checked_sub(amount)) {
        Some(balance) => Charge::Taken {
            account: Account {
                customer_id: customer_id.clone(),
                balance_cents: balance,
            },
            event: PaymentEvent::Charged {
                order_id: order_id.clone(),
                customer_id: customer_id.clone(),
                amount_cents: amount,
            },
        },
        None => Charge::Declined(PaymentEvent::Declined {
            order_id: order_id.clone(),
            customer_id: customer_id.clone(),
            reason: CancelReason::InsufficientFunds,
        }),
    }
}

/// Gives a charge back.
pub fn refund(current: &Account, amount: Cents) -> Result<Account, PaymentError> {
    Ok(Account {
        balance_cents: current
            .balance_cents
            .checked_add(amount)
            .ok_or_else(|| PaymentError::Overflow(current.customer_id.clone()))?,
        ..current.clone()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> CustomerId {
        CustomerId::parse("c-1").unwrap()
    }

    fn order() -> OrderId {
        OrderId::parse("o-1").unwrap()
    }

    fn account(balance: u64) -> Account {
        Account {
            customer_id: customer(),
            balance_cents: Cents(balance),
        }
    }

    #[test]
    fn a_deposit_opens_and_then_grows_an_account() {
        let cmd = Deposit {
            customer_id: customer(),
            amount_cents: Cents(500),
        };
        let opened = deposit(None, &cmd).unwrap();
        assert_eq!(opened.balance_cents, Cents(500));
        assert_eq!(
            deposit(Some(&opened), &cmd).unwrap().balance_cents,
            Cents(1000)
        );
    }

    #[test]
    fn a_charge_within_the_balance_is_taken() {
        let Charge::Taken { account, event } =
            charge(&order(), &customer(), Some(&account(1000)), Cents(999))
        else {
            panic!("expected the charge to be taken");
        };
        assert_eq!(account.balance_cents, Cents(1));
        assert!(matches!(
            event,
            PaymentEvent::Charged {
                amount_cents: Cents(999),
                ..
            }
        ));
    }

    #[test]
    fn a_short_balance_or_no_account_declines() {
        for current in [Some(account(998)), None] {
            assert!(matches!(
                charge(&order(), &customer(), current.as_ref(), Cents(999)),
                Charge::Declined(PaymentEvent::Declined {
                    reason: CancelReason::InsufficientFunds,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_refund_restores_the_balance() {
        assert_eq!(
            refund(&account(1), Cents(999)).unwrap().balance_cents,
            Cents(1000)
        );
    }

    fn charge_step(attempt: u32, deadline: Option<OffsetDateTime>) -> SagaRecord {
        use events::saga::{SagaCommand, SagaState};
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
        }
    }

    #[test]
    fn only_a_first_delivery_of_a_first_attempt_well_before_its_deadline_skips_the_look() {
        let now = OffsetDateTime::now_utc();
        let ahead = Some(now + time::Duration::seconds(10));
        assert!(!may_be_decided(&charge_step(1, ahead), 1, now));
        // A redelivery may follow a charge this service stored and
        // crashed before acknowledging.
        assert!(may_be_decided(&charge_step(1, ahead), 2, now));
        // A retry may follow a slow first attempt's charge.
        assert!(may_be_decided(&charge_step(2, ahead), 1, now));
        // Past (or about to pass) its deadline, the saga may have given
        // up and refunded: the clocks get their margin.
        let near = Some(now + CLOCK_MARGIN);
        assert!(may_be_decided(&charge_step(1, near), 1, now));
        let past = Some(now - time::Duration::seconds(1));
        assert!(may_be_decided(&charge_step(1, past), 1, now));
        assert!(may_be_decided(&charge_step(1, None), 1, now));
    }
}
