//! The commands a client may publish (docs/contract.md 4.1), and how raw bytes
//! become one.
//!
//! Two kinds of bad input are told apart, because they are handled apart:
//! bytes that are not a JSON object cannot be answered at all and go to the
//! dead-letter subject ([`Unreadable`]); a JSON object that breaks the rules
//! is answered with a `rejected` event that lists *every* problem
//! ([`Invalid`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ids::{Cents, CustomerId, IdError, OrderId, Quantity, Sku};
use crate::order::LineItem;

/// Most lines one order may have.
pub const MAX_LINES: usize = 100;
/// Largest quantity one restock may add.
pub const MAX_RESTOCK: u64 = 1_000_000_000;
/// Highest unit price, in cents: low enough that no order total (100 lines
/// of 10000 units) can overflow.
pub const MAX_PRICE_CENTS: u64 = 1_000_000_000_000;
/// Longest `Nats-Msg-Id` a command may carry, in bytes. The id ends up in a
/// subject (hex-encoded, so twice as long, in the `<domain>.applied.<key>`
/// marker of a restock or deposit), and a subject longer than the server's
/// control line (4 KiB by default) makes the server close the connection
/// that sent it: one such command would cut a service off NATS on every
/// delivery. 256 bytes holds any UUID, ULID or digest a client may use as
/// an idempotency key, and keeps every subject built from it short.
pub const MAX_MSG_ID_BYTES: usize = 256;

/// A command's `Nats-Msg-Id` is longer than [`MAX_MSG_ID_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Nats-Msg-Id: must be at most {MAX_MSG_ID_BYTES} bytes, got {0}")]
pub struct MsgIdTooLong(pub usize);

/// Checks a command's `Nats-Msg-Id` (when it has one) before anything is
/// built from it.
pub fn check_msg_id(msg_id: Option<&str>) -> Result<(), MsgIdTooLong> {
    match msg_id {
        Some(id) if id.len() > MAX_MSG_ID_BYTES => Err(MsgIdTooLong(id.len())),
        _ => Ok(()),
    }
}

/// The body was not a JSON object of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable command: {0}")]
pub struct Unreadable(pub String);

/// The body was a JSON object, but not a valid command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid command: {}", errors.join("; "))]
pub struct Invalid {
    /// The `order_id` the client sent, when it was a string.
    pub order_id: Option<String>,
    pub errors: Vec<String>,
}

/// Either reason a place command cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// A client gave an `order_id` of the form the order service derives for
/// orders placed without one ([`OrderId::is_derived`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is reserved: ids of the form o-s<digits> or o-m<16 hex digits> \
     are given by the order service to orders placed without an order_id"
)]
pub struct DerivedIdGiven(pub String);

/// `orders.cmd.place`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// `None` when the client left it to the order service to derive one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<OrderId>,
    pub customer_id: CustomerId,
    pub items: Vec<LineItem>,
}

impl PlaceOrder {
    /// Parses and validates a place command, collecting every error.
    pub fn parse(body: &[u8]) -> Result<Self, PlaceError> {
        let object = parse_object(body)?;
        let mut errors = Vec::new();

        let (raw_order_id, order_id) = match object.get("order_id") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(raw)) if OrderId::is_derived(raw) => {
                errors.push(format!("order_id: {}", DerivedIdGiven(raw.clone())));
                (Some(raw.clone()), None)
            }
            Some(Value::String(raw)) => {
                let id = OrderId::parse(raw.clone())
                    .map_err(|e| errors.push(format!("order_id: {e}")))
                    .ok();
                (Some(raw.clone()), id)
            }
            Some(_) => {
                errors.push("order_id: must be a string".to_owned());
                (None, None)
            }
        };
        let customer_id = field_id(&object, "", "customer_id", CustomerId::parse, &mut errors);
        let items = parse_items(object.get("items"), &mut errors);

        match (customer_id, items) {
            (Some(customer_id), Some(items)) if errors.is_empty() => Ok(Self {
                order_id,
                customer_id,
                items,
            }),
            _ => Err(Invalid {
                order_id: raw_order_id,
                errors,
            }
            .into()),
        }
    }
}

fn parse_items(value: Option<&Value>, errors: &mut Vec<String>) -> Option<Vec<LineItem>> {
    let lines = match value {
        None | Some(Value::Null) => {
            errors.push("items: is required".to_owned());
            return None;
        }
        Some(Value::Array(lines)) => lines,
        Some(_) => {
            errors.push("items: must be a list".to_owned());
            return None;
        }
    };
    if lines.is_empty() {
        errors.push("items: must not be empty".to_owned());
    }
    if lines.len() > MAX_LINES {
        errors.push(format!(
            "items: at most {MAX_LINES} lines, got {}",
            lines.len()
        ));
    }
    let before = errors.len();
    let parsed: Vec<LineItem> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| parse_line(i, line, errors))
        .collect();
    (errors.len() == before && !parsed.is_empty()).then_some(parsed)
}

fn parse_line(i: usize, line: &Value, errors: &mut Vec<String>) -> Option<LineItem> {
    let Value::Object(line) = line else {
        errors.push(format!("items[{i}]: must be an object"));
        return None;
    };
    let sku = field_id(line, &format!("items[{i}]."), "sku", Sku::parse, errors);
    let quantity = match line.get("quantity") {
        None | Some(Value::Null) => Err("quantity: is required".to_owned()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(q) => Quantity::new(q).map_err(|e| format!("quantity: {e}")),
            None => Err(format!("quantity: must be between 1 and 10000, got {n}")),
        },
        Some(_) => Err("quantity: must be an integer".to_owned()),
    }
    .map_err(|e| errors.push(format!("items[{i}].{e}")));
    match (sku, quantity) {
        (Some(sku), Ok(quantity)) => Some(LineItem { sku, quantity }),
        _ => None,
    }
}

/// Reads a required identifier field, recording an error that names the
/// field (behind `prefix`) when it is missing or invalid.
fn field_id<T>(
    object: &Map<String, Value>,
    prefix: &str,
    name: &str,
    parse: fn(String) -> Result<T, IdError>,
    errors: &mut Vec<String>,
) -> Option<T> {
    let result = match object.get(name) {
        None | Some(Value::Null) => Err("is required".to_owned()),
        Some(Value::String(raw)) => parse(raw.clone()).map_err(|e| e.to_string()),
        Some(_) => Err("must be a string".to_owned()),
    };
    result
        .map_err(|e| errors.push(format!("{prefix}{name}: {e}")))
        .ok()
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Unreadable> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Unreadable("expected a JSON object".to_owned())),
        Err(e) => Err(Unreadable(format!("not JSON: {e}"))),
    }
}

/// Decodes `body` as `T`, naming the offending field in the error.
fn strict<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Unreadable> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Unreadable(e.inner().to_string())
        } else {
            Unreadable(format!("{path}: {}", e.inner()))
        }
    })
}

/// `inventory.cmd.restock`: add stock to a sku and, when given, set its price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restock {
    pub sku: Sku,
    pub quantity: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price_cents: Option<Cents>,
}

impl Restock {
    pub fn parse(body: &[u8]) -> Result<Self, Unreadable> {
        let restock: Self = strict(body)?;
        if !(1..=MAX_RESTOCK).contains(&restock.quantity) {
            return Err(Unreadable(format!(
                "quantity: must be between 1 and {MAX_RESTOCK}, got {}",
                restock.quantity
            )));
        }
        if let Some(price) = restock.unit_price_cents.filter(|p| p.0 > MAX_PRICE_CENTS) {
            return Err(Unreadable(format!(
                "unit_price_cents: must be at most {MAX_PRICE_CENTS}, got {}",
                price.0
            )));
        }
        Ok(restock)
    }
}

/// `payments.cmd.deposit`: add to a customer's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    pub customer_id: CustomerId,
    pub amount_cents: Cents,
}

impl Deposit {
    pub fn parse(body: &[u8]) -> Result<Self, Unreadable> {
        let deposit: Self = strict(body)?;
        if deposit.amount_cents == Cents::ZERO {
            return Err(Unreadable("amount_cents: must be positive".to_owned()));
        }
        Ok(deposit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Invalid {
        match PlaceOrder::parse(body.as_bytes()) {
            Err(PlaceError::Invalid(i)) => i,
            other => panic!("expected Invalid for {body}, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_order_parses() {
        let order = PlaceOrder::parse(
            br#"{"order_id":"o-1","customer_id":"c-7","items":[{"sku":"sku-1","quantity":2}]}"#,
        )
        .unwrap();
        assert_eq!(order.order_id.unwrap().as_str(), "o-1");
        assert_eq!(order.items[0].quantity.get(), 2);
    }

    #[test]
    fn order_id_is_optional() {
        let order = PlaceOrder::parse(br#"{"customer_id":"c","items":[{"sku":"s","quantity":1}]}"#)
            .unwrap();
        assert_eq!(order.order_id, None);
    }

    #[test]
    fn every_error_is_listed_not_just_the_first() {
        let i = invalid(
            r#"{"order_id":"o.1","items":[{"sku":"a b","quantity":0},{"sku":"s*","quantity":10001}]}"#,
        );
        assert_eq!(i.order_id.as_deref(), Some("o.1"));
        let all = i.errors.join("\n");
        for needle in [
            "order_id",
            "customer_id: is required",
            "items[0].sku",
            "items[0].quantity",
            "items[1].sku",
            "items[1].quantity",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from {all}");
        }
        assert_eq!(i.errors.len(), 6);
    }

    #[test]
    fn a_client_may_not_give_an_id_of_the_derived_form() {
        for claimed in ["o-s42", "o-m00000000deadbeef"] {
            let i = invalid(&format!(
                r#"{{"order_id":"{claimed}","customer_id":"c","items":[{{"sku":"s","quantity":1}}]}}"#
            ));
            assert_eq!(i.order_id.as_deref(), Some(claimed));
            assert_eq!(
                i.errors,
                [format!(
                    "order_id: \"{claimed}\" is reserved: ids of the form o-s<digits> or \
                     o-m<16 hex digits> are given by the order service to orders placed \
                     without an order_id"
                )]
            );
        }
        let free = PlaceOrder::parse(
            br#"{"order_id":"o-sale-42","customer_id":"c","items":[{"sku":"s","quantity":1}]}"#,
        );
        assert!(free.is_ok(), "{free:?}");
    }

    #[test]
    fn no_items_and_too_many_lines_are_invalid() {
        assert!(invalid(r#"{"customer_id":"c","items":[]}"#).errors[0].contains("empty"));
        let lines = vec![r#"{"sku":"s","quantity":1}"#; 101].join(",");
        let i = invalid(&format!(r#"{{"customer_id":"c","items":[{lines}]}}"#));
        assert!(i.errors[0].contains("at most 100"));
    }

    #[test]
    fn wrong_types_are_invalid_not_unreadable() {
        let i = invalid(r#"{"customer_id":7,"items":"many","order_id":3}"#);
        assert_eq!(i.errors.len(), 3);
        let i = invalid(r#"{"customer_id":"c","items":[{"sku":"s","quantity":-1}, 5]}"#);
        assert_eq!(i.errors.len(), 2);
    }

    #[test]
    fn non_objects_are_unreadable() {
        for body in ["not json", "[1,2]", "42", ""] {
            assert!(matches!(
                PlaceOrder::parse(body.as_bytes()),
                Err(PlaceError::Unreadable(_))
            ));
        }
    }

    #[test]
    fn a_message_id_longer_than_the_cap_is_refused_by_its_length() {
        assert_eq!(check_msg_id(None), Ok(()));
        assert_eq!(check_msg_id(Some(&"a".repeat(MAX_MSG_ID_BYTES))), Ok(()));
        let refused = check_msg_id(Some(&"a".repeat(5_000))).unwrap_err();
        assert_eq!(refused, MsgIdTooLong(5_000));
        assert_eq!(
            refused.to_string(),
            "Nats-Msg-Id: must be at most 256 bytes, got 5000"
        );
    }

    #[test]
    fn restock_and_deposit_are_strict() {
        assert!(Restock::parse(br#"{"sku":"s","quantity":5,"unit_price_cents":100}"#).is_ok());
        assert!(Restock::parse(br#"{"sku":"s","quantity":0}"#).is_err());
        let pricey =
            Restock::parse(br#"{"sku":"s","quantity":1,"unit_price_cents":1000000000001}"#);
        assert!(pricey.unwrap_err().0.starts_with("unit_price_cents: "));
        assert!(Restock::parse(br#"{"sku":"s.x","quantity":1}"#).is_err());
        assert!(Deposit::parse(br#"{"customer_id":"c","amount_cents":1}"#).is_ok());
        assert!(Deposit::parse(br#"{"customer_id":"c","amount_cents":0}"#).is_err());
        let negative = Deposit::parse(br#"{"customer_id":"c","amount_cents":-5}"#).unwrap_err();
        assert!(negative.0.starts_with("amount_cents: "), "{negative}");
    }
}
