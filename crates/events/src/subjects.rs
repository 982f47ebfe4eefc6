//! Every subject and stream name jetsaga uses, public or internal, in one
//! place. Tokens built from ids are safe: a validated id never contains
//! `.`, `*`, `>` or white space.

use crate::ids::{CustomerId, OrderId, Sku};

/// Client commands (docs/contract.md 4.1).
pub const PLACE_ORDER: &str = "orders.cmd.place";
pub const RESTOCK: &str = "inventory.cmd.restock";
pub const DEPOSIT: &str = "payments.cmd.deposit";

/// Queries (docs/contract.md 4.3).
pub const GET_ORDER: &str = "orders.query.get";
pub const GET_STOCK: &str = "inventory.query.stock";
pub const GET_ACCOUNT: &str = "payments.query.account";
pub const GET_SAGA: &str = "saga.query.get";

/// Operator commands on a saga (docs/contract.md 4.1).
pub const CANCEL_ORDER: &str = "orders.cmd.cancel";
pub const RETRY_SAGA: &str = "saga.cmd.retry";
pub const ABORT_SAGA: &str = "saga.cmd.abort";

/// `saga.query.list` (docs/contract.md 4.3).
pub const LIST_SAGAS: &str = "saga.query.list";

/// Every unfinished saga's entry in the list: `saga.open.<order_id>`.
pub const OPEN_SAGAS: &str = "saga.open.>";

/// Every finished saga's last record: `saga.log.<order_id>.finish`.
pub const FINISHED_SAGAS: &str = "saga.log.*.finish";

/// Where rejected place commands are announced. It has one token fewer than
/// `orders.evt.<order_id>.<type>`, so it can never collide with an order.
pub const ORDER_REJECTED: &str = "orders.evt.rejected";

/// The streams, each owned (created and updated) by one service.
pub mod streams {
    /// `orders.cmd.place`, `orders.evt.>`; owned by the order service.
    pub const ORDERS: &str = "ORDERS";
    /// `inventory.cmd.>`, `inventory.sku.>`, `inventory.evt.>`, `inventory.applied.>`.
    pub const INVENTORY: &str = "INVENTORY";
    /// `payments.cmd.>`, `payments.account.>`, `payments.evt.>`, `payments.applied.>`.
    pub const PAYMENTS: &str = "PAYMENTS";
    /// `saga.log.>`, `saga.open.>`, `saga.timer.>`, `saga.timeout.>`, and
    /// the requests about sagas, `saga.cmd.>` and `orders.cmd.cancel`;
    /// owned by the orchestrator.
    pub const SAGA: &str = "SAGA";
    /// `dlq.>`; every service declares it, with the same configuration.
    pub const DLQ: &str = "DLQ";
}

/// The durable consumers, by `(stream, name)`: each service creates its own
/// at start-up, and its identity may use those and no others.
pub mod consumers {
    use super::streams::{INVENTORY, ORDERS, PAYMENTS, SAGA};

    pub const ORDER_PLACE: (&str, &str) = (ORDERS, "order-place");
    pub const ORDER_SAGA: (&str, &str) = (SAGA, "order-saga");
    pub const INVENTORY_COMMANDS: (&str, &str) = (INVENTORY, "inventory-commands");
    pub const INVENTORY_SAGA: (&str, &str) = (SAGA, "inventory-saga");
    pub const PAYMENT_COMMANDS: (&str, &str) = (PAYMENTS, "payment-commands");
    pub const PAYMENT_SAGA: (&str, &str) = (SAGA, "payment-saga");
    pub const SAGA_ORDERS: (&str, &str) = (ORDERS, "saga-orders");
    pub const SAGA_INVENTORY: (&str, &str) = (INVENTORY, "saga-inventory");
    pub const SAGA_PAYMENTS: (&str, &str) = (PAYMENTS, "saga-payments");
    pub const SAGA_TIMEOUTS: (&str, &str) = (SAGA, "saga-timeouts");
    /// `orders.cmd.cancel`, `saga.cmd.retry`, `saga.cmd.abort`.
    pub const SAGA_OPERATOR: (&str, &str) = (SAGA, "saga-operator");
}

/// `orders.evt.<order_id>.<type>`.
pub fn order_event(order_id: &OrderId, kind: &str) -> String {
    format!("orders.evt.{order_id}.{kind}")
}

/// Every event of one order: `orders.evt.<order_id>.*`.
pub fn order_events(order_id: &OrderId) -> String {
    format!("orders.evt.{order_id}.*")
}

/// `inventory.sku.<sku>`: a sku's stock levels.
pub fn stock(sku: &Sku) -> String {
    format!("inventory.sku.{sku}")
}

/// `inventory.evt.<order_id>.<type>`.
pub fn inventory_event(order_id: &OrderId, kind: &str) -> String {
    format!("inventory.evt.{order_id}.{kind}")
}

pub fn inventory_events(order_id: &OrderId) -> String {
    format!("inventory.evt.{order_id}.*")
}

/// `payments.account.<customer_id>`: a customer's balance.
pub fn account(customer_id: &CustomerId) -> String {
    format!("payments.account.{customer_id}")
}

/// `payments.evt.<order_id>.<type>`.
pub fn payment_event(order_id: &OrderId, kind: &str) -> String {
    format!("payments.evt.{order_id}.{kind}")
}

pub fn payment_events(order_id: &OrderId) -> String {
    format!("payments.evt.{order_id}.*")
}

/// `saga.log.<order_id>.<command>`: one saga transition.
pub fn saga_record(order_id: &OrderId, command: &str) -> String {
    format!("saga.log.{order_id}.{command}")
}

/// Every record of one saga: `saga.log.<order_id>.*`.
pub fn saga_records(order_id: &OrderId) -> String {
    format!("saga.log.{order_id}.*")
}

/// `saga.open.<order_id>`: an unfinished saga's entry in the list of
/// sagas (its [`crate::saga::SagaSummary`]), written with each of its
/// records, one message a saga (each rolls up the last).
pub fn open_saga(order_id: &OrderId) -> String {
    format!("saga.open.{order_id}")
}

/// `saga.timer.<order_id>`: the saga's wake-up, a JetStream scheduled
/// message. A subject holds one schedule, so arming the next step's
/// deadline replaces the last one: a saga has at most one pending.
/// (Sagas written before this kept one per step, on
/// `saga.timer.<order_id>.<command>.<attempt>`.)
pub fn step_timer(order_id: &OrderId) -> String {
    format!("saga.timer.{order_id}")
}

/// `saga.timeout.<order_id>`: where a step's deadline fires.
pub fn step_timeout(order_id: &OrderId) -> String {
    format!("saga.timeout.{order_id}")
}

/// The consumer filter for one saga command, across all sagas.
pub fn saga_command_filter(command: &str) -> String {
    format!("saga.log.*.{command}")
}

/// Whether `token` can be one token of a subject: not empty, and without
/// `.`, `*`, `>` or white space. Anything taken from a message's headers
/// must be made one (hex-encoded, or hashed) before it goes in a subject.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

/// `<domain>.applied.<key>`: marks an admin command (restock, deposit) as
/// applied, so a redelivery or a replay applies nothing twice.
pub fn applied(domain: &str, key: &str) -> String {
    format!("{domain}.applied.{key}")
}

/// The inbox prefix of an identity's connections (`_INBOX.<identity>`):
/// replies to its requests come to `_INBOX.<identity>.<unique>`, and no
/// other identity may subscribe there.
pub fn inbox_prefix(identity: &str) -> String {
    format!("_INBOX.{identity}")
}

/// `dlq.<service>.<original subject>` (docs/contract.md 4.5).
pub fn dead_letter(service: &str, original_subject: &str) -> String {
    format!("dlq.{service}.{original_subject}")
}

/// The `order_id` token of an `<domain>.<kind>.<order_id>.<type>` subject.
pub fn order_id_token(subject: &str) -> Option<&str> {
    subject.split('.').nth(2)
}

/// The last token of a subject.
pub fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

/// The subjects whose third token is an order id:
/// `<domain>.<kind>.<order_id>[.<more>]`.
const ORDER_KEYED: [&str; 7] = [
    "orders.evt.",
    "inventory.evt.",
    "payments.evt.",
    "saga.log.",
    "saga.open.",
    "saga.timer.",
    "saga.timeout.",
];

/// The order a subject is about, if it names one.
pub fn order_id_of(subject: &str) -> Option<&str> {
    if let Some(rest) = subject.strip_prefix("dlq.") {
        // dlq.<service>.<original subject>
        return rest
            .split_once('.')
            .and_then(|(_, original)| order_id_of(original));
    }
    if subject == ORDER_REJECTED || !ORDER_KEYED.iter().any(|p| subject.starts_with(p)) {
        return None;
    }
    order_id_token(subject)
}

/// A subject with its ids (order, sku, customer, attempt, admin key)
/// replaced by `*`: few enough distinct values to name spans by, as the
/// OpenTelemetry messaging conventions ask (`messaging.destination.template`).
pub fn template(subject: &str) -> String {
    if let Some(rest) = subject.strip_prefix("dlq.") {
        return match rest.split_once('.') {
            Some((service, original)) => format!("dlq.{service}.{}", template(original)),
            None => subject.to_owned(),
        };
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let keyed = [
        "orders.evt",
        "inventory.evt",
        "payments.evt",
        "saga.log",
        "saga.open",
        "saga.timer",
        "saga.timeout",
        "inventory.sku",
        "payments.account",
        "inventory.applied",
        "payments.applied",
    ];
    if subject == ORDER_REJECTED || tokens.len() < 3 {
        return subject.to_owned();
    }
    let head = format!("{}.{}", tokens[0], tokens[1]);
    if !keyed.contains(&head.as_str()) {
        return subject.to_owned();
    }
    let mut out: Vec<&str> = tokens.clone();
    out[2] = "*";
    if head == "saga.timer" && out.len() > 4 {
        out[4] = "*";
    }
    out.join(".")
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn a_token_has_no_separator_wildcard_or_white_space() {
        assert!(is_token("m6162"));
        assert!(is_token("o-s42"));
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "a\r\n"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn ids_become_wildcards_and_fixed_tokens_stay() {
        assert_eq!(template("orders.cmd.place"), "orders.cmd.place");
        assert_eq!(
            template("orders.evt.o-1.confirmed"),
            "orders.evt.*.confirmed"
        );
        assert_eq!(template(ORDER_REJECTED), ORDER_REJECTED);
        assert_eq!(template("saga.log.o-1.reserve"), "saga.log.*.reserve");
        assert_eq!(template("saga.timer.o-1.charge.3"), "saga.timer.*.charge.*");
        assert_eq!(template("saga.timer.o-1"), "saga.timer.*");
        assert_eq!(template("saga.timeout.o-1"), "saga.timeout.*");
        assert_eq!(template("inventory.sku.sku-9"), "inventory.sku.*");
        assert_eq!(template("payments.account.c-1"), "payments.account.*");
        assert_eq!(
            template("dlq.payment-service.saga.log.o-1.charge"),
            "dlq.payment-service.saga.log.*.charge"
        );
    }

    #[test]
    fn the_order_of_a_subject() {
        assert_eq!(order_id_of("orders.evt.o-1.confirmed"), Some("o-1"));
        assert_eq!(order_id_of("saga.timeout.o-2"), Some("o-2"));
        assert_eq!(order_id_of("saga.open.o-4"), Some("o-4"));
        assert_eq!(
            order_id_of("dlq.order-service.orders.evt.o-3.placed"),
            Some("o-3")
        );
        assert_eq!(order_id_of("orders.evt.rejected"), None);
        assert_eq!(order_id_of("orders.cmd.place"), None);
        assert_eq!(order_id_of("inventory.sku.s-1"), None);
        assert_eq!(order_id_of("dlq.order-service.orders.cmd.place"), None);
    }
}
