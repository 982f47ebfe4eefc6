//! Identifiers and amounts whose constructors enforce the contract's rules,
//! so a value of these types is valid by construction ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest identifier the contract allows.
pub const MAX_ID_LEN: usize = 64;
/// Largest quantity of one order line.
pub const MAX_QUANTITY: u32 = 10_000;

/// Why a raw value is not a valid identifier or quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} characters, got {0}")]
    TooLong(usize),
    #[error("may contain only A-Z a-z 0-9 _ -, found {0:?}")]
    BadChar(char),
    #[error("must be between 1 and {MAX_QUANTITY}, got {0}")]
    QuantityOutOfRange(u64),
}

/// Checks the contract's identifier rule: 1 to 64 of `A-Z a-z 0-9 _ -`.
/// Such a string is safe to use as one token of a NATS subject.
pub fn check_identifier(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some(bad) = raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(IdError::BadChar(bad));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(raw.len()));
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `raw` against the contract's identifier rule.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                check_identifier(&raw)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The id of one order, and so of its saga.
    OrderId
);
identifier!(
    /// The id of a customer, the owner of one payment account.
    CustomerId
);
identifier!(
    /// A stock-keeping unit: one item of the catalogue.
    Sku
);

/// The prefix of an order id derived from the stream sequence of a place
/// command without an `order_id` or a `Nats-Msg-Id`: `o-s<sequence>`.
pub const DERIVED_FROM_SEQUENCE: &str = "o-s";
/// The prefix of an order id derived from the `Nats-Msg-Id` of a place
/// command without an `order_id`: `o-m<16 hex digits of its digest>`.
pub const DERIVED_FROM_MSG_ID: &str = "o-m";

impl OrderId {
    /// `o-s<seq>`: the id of the order placed by the message at `seq`.
    pub fn derived_from_sequence(seq: u64) -> Self {
        Self(format!("{DERIVED_FROM_SEQUENCE}{seq}"))
    }

    /// `o-m<digest>`: the id of the order placed with a `Nats-Msg-Id` of
    /// this 64-bit digest.
    pub fn derived_from_msg_id(digest: u64) -> Self {
        Self(format!("{DERIVED_FROM_MSG_ID}{digest:016x}"))
    }

    /// Whether `raw` has the form of a derived id: `o-s` and digits, or
    /// `o-m` and 16 lowercase hex digits. Those ids are the order
    /// service's alone: a client that placed `o-s42` itself would claim
    /// the id of the order a later message (at sequence 42) places.
    pub fn is_derived(raw: &str) -> bool {
        if let Some(digits) = raw.strip_prefix(DERIVED_FROM_SEQUENCE) {
            return !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        }
        if let Some(hex) = raw.strip_prefix(DERIVED_FROM_MSG_ID) {
            return hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        }
        false
    }
}

/// A quantity of one order line or restock: 1 to 10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(raw: u64) -> Result<Self, IdError> {
        match u32::try_from(raw) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(Self(q)),
            _ => Err(IdError::QuantityOutOfRange(raw)),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u64> for Quantity {
    type Error = IdError;
    fn try_from(raw: u64) -> Result<Self, IdError> {
        Self::new(raw)
    }
}

impl From<Quantity> for u64 {
    fn from(q: Quantity) -> u64 {
        u64::from(q.0)
    }
}

/// An amount of money in integer cents. Never negative: balances and prices
/// that would go below zero are refused by the domain, not wrapped.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

impl Cents {
    pub const ZERO: Cents = Cents(0);

    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }

    pub fn checked_sub(self, other: Cents) -> Option<Cents> {
        self.0.checked_sub(other.0).map(Cents)
    }

    pub fn checked_mul(self, quantity: Quantity) -> Option<Cents> {
        self.0.checked_mul(u64::from(quantity.get())).map(Cents)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identifiers_accept_the_contract_alphabet() {
        assert!(OrderId::parse("o-1001").is_ok());
        assert!(Sku::parse("SKU_9-x").is_ok());
        assert!(CustomerId::parse("a".repeat(64)).is_ok());
    }

    #[test]
    fn identifiers_refuse_what_would_break_a_subject() {
        for bad in ["o.1", "o 1", "o*", "o>", "ö", ""] {
            assert!(OrderId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(OrderId::parse("a".repeat(65)), Err(IdError::TooLong(65)));
    }

    #[test]
    fn identifiers_deserialize_through_validation() {
        assert!(serde_json::from_str::<Sku>("\"sku-1\"").is_ok());
        assert!(serde_json::from_str::<Sku>("\"sku.1\"").is_err());
    }

    #[test]
    fn derived_ids_have_the_derived_form_and_are_valid_ids() {
        for id in [
            OrderId::derived_from_sequence(0),
            OrderId::derived_from_sequence(u64::MAX),
            OrderId::derived_from_msg_id(0),
            OrderId::derived_from_msg_id(u64::MAX),
        ] {
            assert!(OrderId::is_derived(id.as_str()), "{id}");
            assert_eq!(OrderId::parse(id.as_str()), Ok(id.clone()));
        }
    }

    #[test]
    fn only_the_exact_derived_forms_are_reserved() {
        for derived in ["o-s42", "o-s007", "o-m0123456789abcdef"] {
            assert!(OrderId::is_derived(derived), "{derived}");
        }
        for free in [
            "o-1001",
            "o-s",
            "o-sale-42",
            "o-s42x",
            "o-m",
            "o-mike",
            "o-m0123456789abcde",
            "o-m0123456789abcdef0",
            "o-m0123456789ABCDEF",
            "O-s42",
        ] {
            assert!(!OrderId::is_derived(free), "{free}");
        }
    }

    #[test]
    fn quantity_is_between_one_and_ten_thousand() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(1).is_ok());
        assert!(Quantity::new(10_000).is_ok());
        assert!(Quantity::new(10_001).is_err());
        assert!(Quantity::new(u64::MAX).is_err());
    }

    #[test]
    fn cents_display_as_money() {
        assert_eq!(Cents(129_905).to_string(), "1299.05");
    }

    proptest! {
        #[test]
        fn a_parsed_identifier_is_always_one_subject_token(raw in "\\PC{0,80}") {
            if let Ok(id) = OrderId::parse(raw.clone()) {
                prop_assert!(!id.as_str().is_empty() && id.as_str().len() <= MAX_ID_LEN);
                prop_assert!(!id.as_str().contains(['.', '*', '>', ' ']));
            }
        }
    }
}
