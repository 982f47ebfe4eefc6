//! The payment decisions, pure: given an account as stored and a command,
//! the new account and the event that announces it. What a saga step comes
//! to, given what was decided for the order already, is the `steps` module.

mod steps;

pub use steps::{may_be_decided, refund_to, refunding, step, Refunding, Step, CLOCK_MARGIN};

use events::commands::Deposit;
use events::payment::{Account, PaymentEvent};
use events::{CancelReason, Cents, CustomerId, OrderId};

/// A command that cannot be applied to the account as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("the balance of {0} would overflow")]
    Overflow(CustomerId),
    #[error("not a payment command: {0}")]
    NotAPaymentCommand(&'static str),
    #[error("order {order_id}: charged customer {customer_id} has no account")]
    NoAccount {
        order_id: OrderId,
        customer_id: CustomerId,
    },
    #[error("the account of {customer_id} cannot be read: {error}")]
    Unreadable {
        customer_id: CustomerId,
        error: String,
    },
    /// A step given up for good: the saga was answered `answer`.
    #[error("{step} given up, answered {answer}: {cause}")]
    GaveUp {
        step: &'static str,
        answer: &'static str,
        cause: Box<PaymentError>,
    },
}

/// What an account's state did to a step that can never be done as it
/// stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Unreadable,
    Inconsistent,
    Overflow,
}

impl PaymentError {
    /// Whether, and how, the stored account makes the step impossible for
    /// good: no retry can do it, so the saga must hear that it failed.
    pub fn unusable(&self) -> Option<Unusable> {
        match self {
            Self::Unreadable { .. } => Some(Unusable::Unreadable),
            Self::NoAccount { .. } => Some(Unusable::Inconsistent),
            Self::Overflow(_) => Some(Unusable::Overflow),
            Self::NotAPaymentCommand(_) | Self::GaveUp { .. } => None,
        }
    }
}

/// The answer to a charge given up for good: declined, so that the saga
/// compensates and the order is cancelled `payment_unavailable`.
pub fn charge_given_up(order_id: &OrderId, customer_id: &CustomerId) -> PaymentEvent {
    PaymentEvent::Declined {
        order_id: order_id.clone(),
        customer_id: customer_id.clone(),
        reason: CancelReason::PaymentUnavailable,
    }
}

/// The answer to a refund of `amount` given up for good (`error`): the
/// saga ends, and the amount is recorded as still owed.
pub fn refund_given_up(
    order_id: &OrderId,
    customer_id: &CustomerId,
    amount: Cents,
    error: &PaymentError,
) -> PaymentEvent {
    PaymentEvent::RefundFailed {
        order_id: order_id.clone(),
        customer_id: customer_id.clone(),
        amount_cents: amount,
        error: error.to_string(),
    }
}

/// Adds a deposit to the balance, opening the account if needed.
pub fn deposit(current: Option<&Account>, command: &Deposit) -> Result<Account, PaymentError> {
    let account = current.cloned().unwrap_or_else(|| Account {
        customer_id: command.customer_id.clone(),
        balance_cents: Cents::ZERO,
        deposited_cents: Cents::ZERO,
        charged_cents: Cents::ZERO,
        refunded_cents: Cents::ZERO,
    });
    let overflow = || PaymentError::Overflow(command.customer_id.clone());
    Ok(Account {
        balance_cents: account
            .balance_cents
            .checked_add(command.amount_cents)
            .ok_or_else(overflow)?,
        deposited_cents: account
            .deposited_cents
            .checked_add(command.amount_cents)
            .ok_or_else(overflow)?,
        ..account
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

impl Charge {
    /// What the charge writes: the new account (none when declined), and
    /// the order's event.
    pub fn into_change(self) -> (Option<Account>, PaymentEvent) {
        match self {
            Self::Taken { account, event } => (Some(account), event),
            Self::Declined(event) => (None, event),
        }
    }
}

/// Takes `amount` from the balance, or declines when it is short (an
/// unknown customer has nothing).
pub fn charge(
    order_id: &OrderId,
    customer_id: &CustomerId,
    current: Option<&Account>,
    amount: Cents,
) -> Charge {
    let taken = current.and_then(|a| {
        Some(Account {
            balance_cents: a.balance_cents.checked_sub(amount)?,
            // No more can be charged than was deposited: no overflow.
            charged_cents: a.charged_cents.checked_add(amount)?,
            ..a.clone()
        })
    });
    match taken {
        Some(account) => Charge::Taken {
            account,
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
    let overflow = || PaymentError::Overflow(current.customer_id.clone());
    Ok(Account {
        balance_cents: current
            .balance_cents
            .checked_add(amount)
            .ok_or_else(overflow)?,
        refunded_cents: current
            .refunded_cents
            .checked_add(amount)
            .ok_or_else(overflow)?,
        ..current.clone()
    })
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
            deposited_cents: Cents(balance),
            charged_cents: Cents::ZERO,
            refunded_cents: Cents::ZERO,
        }
    }

    /// What every account must satisfy, and `sagactl audit` checks.
    fn adds_up(a: &Account) -> bool {
        a.balance_cents.0 + a.charged_cents.0 == a.deposited_cents.0 + a.refunded_cents.0
    }

    #[test]
    fn every_change_keeps_the_totals_adding_up() {
        let deposit_of = |cents| Deposit {
            customer_id: customer(),
            amount_cents: Cents(cents),
        };
        let opened = deposit(None, &deposit_of(500)).unwrap();
        let topped = deposit(Some(&opened), &deposit_of(300)).unwrap();
        let Charge::Taken {
            account: charged, ..
        } = charge(&order(), &customer(), Some(&topped), Cents(600))
        else {
            panic!("taken")
        };
        let refunded = refund(&charged, Cents(600)).unwrap();
        for a in [&opened, &topped, &charged, &refunded] {
            assert!(adds_up(a), "{a:?}");
        }
        assert_eq!(
            (
                refunded.balance_cents,
                refunded.deposited_cents,
                refunded.charged_cents,
                refunded.refunded_cents
            ),
            (Cents(800), Cents(800), Cents(600), Cents(600))
        );
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

    #[test]
    fn a_refund_that_would_overflow_the_balance_is_impossible() {
        let refused = refund(&account(u64::MAX - 1), Cents(2)).unwrap_err();
        assert_eq!(refused, PaymentError::Overflow(customer()));
        assert_eq!(refused.unusable(), Some(Unusable::Overflow));
    }

    #[test]
    fn a_charge_given_up_is_declined_as_payment_unavailable() {
        assert_eq!(
            charge_given_up(&order(), &customer()),
            PaymentEvent::Declined {
                order_id: order(),
                customer_id: customer(),
                reason: CancelReason::PaymentUnavailable,
            }
        );
    }

    #[test]
    fn a_refund_given_up_records_what_is_still_owed() {
        let why = PaymentError::Overflow(customer());
        assert_eq!(
            refund_given_up(&order(), &customer(), Cents(999), &why),
            PaymentEvent::RefundFailed {
                order_id: order(),
                customer_id: customer(),
                amount_cents: Cents(999),
                error: "the balance of c-1 would overflow".to_owned(),
            }
        );
    }
}
