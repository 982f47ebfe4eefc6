//! `sagactl audit` (guarantee 8): checks from the stored state alone,
//! without knowing what was seeded, that stock and money add up and that
//! nothing is held or charged for a finished order.
//!
//! Every sku's state carries its totals restocked and committed, and every
//! account its totals deposited, charged and refunded, written in the same
//! atomic batch as each change; each participant's last event about an
//! order says what it holds for it. So:
//!
//! - each sku: `restocked = available + reserved + committed`;
//! - each account: `balance + charged = deposited + refunded`;
//! - each sku's `reserved` is what the orders it holds for hold (their last
//!   inventory event `reserved`, `commit_failed` or `release_failed`);
//! - each sku's `committed` is the quantity of its confirmed orders, and of
//!   the orders committed but not yet confirmed;
//! - each customer's `charged - refunded` is the total of their confirmed
//!   orders, and of the orders charged but not yet finished;
//! - a finished order holds no stock and a cancelled one is not charged
//!   (nor owed a refund that failed).
//!
//! The streams are read while sagas run, each from its first message to
//! its last: every new message lands at the end, so each read is the
//! stream as it was when the read ended. Orders are read first, then the
//! inventory, then the payments: a step is stored before the order's end
//! that follows it, so whatever an order finished by the first read did
//! is in the later ones, and the orders that moved meanwhile count as
//! unfinished. A participant's events about an order expire with the
//! saga's history: a finished order's total then stands in its final
//! state, and an unfinished one's events are recent.

use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;
use std::time::Instant;

use events::inventory::{InventoryEvent, StockLevel};
use events::order::OrderEvent;
use events::payment::{Account, PaymentEvent};
use events::subjects::streams;
use events::{CustomerId, Order, OrderId, OrderStatus, PricedLine, Sku};
use jetsaga_client::Client;
use runtime::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::output::Output;

/// What the streams hold: the last message of each aggregate and of each
/// order's events, per participant.
#[derive(Debug, Default)]
pub struct Books {
    pub orders: BTreeMap<OrderId, Order>,
    pub skus: BTreeMap<Sku, StockLevel>,
    pub stock_held: BTreeMap<OrderId, InventoryEvent>,
    pub accounts: BTreeMap<CustomerId, Account>,
    pub payments: BTreeMap<OrderId, PaymentEvent>,
    /// Messages that could not be read, by subject.
    pub unreadable: Vec<String>,
}

/// One thing that does not add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// `sku`, `account`, `order`, `stored`.
    pub kind: &'static str,
    /// The sku, customer or order it is about.
    pub id: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.id, self.message)
    }
}

/// The audit's report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub orders: usize,
    pub skus: usize,
    pub accounts: usize,
    pub seconds: f64,
    pub violations: Vec<Violation>,
}

/// `sagactl audit`: exit 0 when everything adds up, 1 with every
/// violation named.
pub async fn run(client: &Client, out: &Output) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let books = read(client).await?;
    let violations = check(&books);
    let report = Report {
        ok: violations.is_empty(),
        orders: books.orders.len(),
        skus: books.skus.len(),
        accounts: books.accounts.len(),
        seconds: started.elapsed().as_secs_f64(),
        violations,
    };
    out.value(&report, || {
        let mut text = format!(
            "{} orders, {} skus, {} accounts read in {:.2} s: ",
            report.orders, report.skus, report.accounts, report.seconds
        );
        if report.ok {
            text.push_str("the books add up");
        } else {
            text.push_str(&format!("{} violations", report.violations.len()));
            for v in &report.violations {
                text.push_str(&format!("\n  {v}"));
            }
        }
        text
    });
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads the books: orders first, then the inventory, then the payments.
pub async fn read(client: &Client) -> anyhow::Result<Books> {
    let js = async_nats::jetstream::new(client.nats().clone());
    let mut books = Books::default();
    for (stream, subjects) in [
        (streams::ORDERS, &["orders.evt."][..]),
        (
            streams::INVENTORY,
            &["inventory.sku.", "inventory.evt."][..],
        ),
        (
            streams::PAYMENTS,
            &["payments.account.", "payments.evt."][..],
        ),
    ] {
        let store = Store::new(js.clone(), stream).await?;
        // Oldest first: a later message of an aggregate replaces an earlier.
        for message in store.scan_all(">").await? {
            let subject = message.subject.as_str();
            if !subjects.iter().any(|prefix| subject.starts_with(prefix)) {
                continue;
            }
            let payload = &message.payload;
            let read = match subject.split('.').take(2).collect::<Vec<_>>()[..] {
                ["orders", "evt"] if subject == events::subjects::ORDER_REJECTED => Ok(()),
                ["orders", "evt"] => decode::<OrderEvent>(payload).map(|e| {
                    books.orders.insert(e.order.order_id.clone(), e.order);
                }),
                ["inventory", "sku"] => decode::<StockLevel>(payload).map(|level| {
                    books.skus.insert(level.sku.clone(), level);
                }),
                ["inventory", "evt"] => decode::<InventoryEvent>(payload).map(|event| {
                    books.stock_held.insert(event.order_id().clone(), event);
                }),
                ["payments", "account"] => decode::<Account>(payload).map(|account| {
                    books.accounts.insert(account.customer_id.clone(), account);
                }),
                ["payments", "evt"] => decode::<PaymentEvent>(payload).map(|event| {
                    books.payments.insert(event.order_id().clone(), event);
                }),
                _ => Ok(()),
            };
            if let Err(e) = read {
                books.unreadable.push(format!("{subject}: {e}"));
            }
        }
    }
    Ok(books)
}

fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(payload)
}

/// Everything in `books` that does not add up.
pub fn check(books: &Books) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut violation = |kind, id: &dyn fmt::Display, message: String| {
        found.push(Violation {
            kind,
            id: id.to_string(),
            message,
        });
    };
    for unreadable in &books.unreadable {
        violation("stored", &"message", format!("unreadable: {unreadable}"));
    }
    let finished = |order_id: &OrderId| {
        books
            .orders
            .get(order_id)
            .map(|o| o.status)
            .filter(|s| *s != OrderStatus::Pending)
    };

    // Stock: what each order holds or has committed, by sku.
    let mut held: BTreeMap<&Sku, u64> = BTreeMap::new();
    let mut committed: BTreeMap<&Sku, u64> = BTreeMap::new();
    for (order_id, event) in &books.stock_held {
        let status = finished(order_id);
        let (lines, holds): (&[PricedLine], bool) = match event {
            InventoryEvent::Reserved { lines, .. }
            | InventoryEvent::CommitFailed { lines, .. }
            | InventoryEvent::ReleaseFailed { lines, .. } => (lines, true),
            InventoryEvent::Committed { lines, .. } => (lines, false),
            InventoryEvent::Released { .. } | InventoryEvent::ReserveFailed { .. } => continue,
        };
        match (holds, status) {
            (true, Some(status)) => violation(
                "order",
                order_id,
                format!(
                    "{status:?}, yet its stock is still held ({})",
                    event.type_name()
                ),
            ),
            (false, Some(OrderStatus::Cancelled)) => violation(
                "order",
                order_id,
                "CANCELLED, yet its stock was committed".to_owned(),
            ),
            // Counted below with the confirmed orders.
            (false, Some(_)) => continue,
            _ => {}
        }
        let into = if holds { &mut held } else { &mut committed };
        for line in lines {
            *into.entry(&line.sku).or_default() += u64::from(line.quantity.get());
        }
    }
    // Money: what each customer's confirmed orders cost, and the charges of
    // the orders not finished yet.
    let mut owed: BTreeMap<&CustomerId, u64> = BTreeMap::new();
    for order in books.orders.values() {
        let confirmed = order.status == OrderStatus::Confirmed;
        if confirmed {
            *owed.entry(&order.customer_id).or_default() += order.total_cents.map_or(0, |t| t.0);
            for line in &order.items {
                *committed.entry(&line.sku).or_default() += u64::from(line.quantity.get());
            }
        }
        let stock = books.stock_held.get(&order.order_id);
        if confirmed && stock.is_some_and(|e| !matches!(e, InventoryEvent::Committed { .. })) {
            violation(
                "order",
                &order.order_id,
                format!(
                    "CONFIRMED, yet its stock was not committed ({})",
                    stock.map_or("", |e| e.type_name())
                ),
            );
        }
        let paid = books.payments.get(&order.order_id);
        if confirmed && paid.is_some_and(|e| !matches!(e, PaymentEvent::Charged { .. })) {
            violation(
                "order",
                &order.order_id,
                format!(
                    "CONFIRMED, yet it was not paid ({})",
                    paid.map_or("", |e| e.type_name())
                ),
            );
        }
    }
    for (order_id, event) in &books.payments {
        match (event, finished(order_id)) {
            (PaymentEvent::Charged { .. }, Some(OrderStatus::Cancelled)) => violation(
                "order",
                order_id,
                "CANCELLED, yet its customer is charged".to_owned(),
            ),
            (
                PaymentEvent::Charged {
                    customer_id,
                    amount_cents,
                    ..
                },
                None,
            ) => {
                *owed.entry(customer_id).or_default() += amount_cents.0;
            }
            (PaymentEvent::RefundFailed { amount_cents, .. }, _) => violation(
                "order",
                order_id,
                format!("its refund failed: {amount_cents} cents are owed to its customer"),
            ),
            _ => {}
        }
    }

    for (sku, level) in &books.skus {
        let counted = level.available + level.reserved + level.committed;
        if level.restocked != counted {
            violation(
                "sku",
                sku,
                format!(
                    "restocked {} but available {} + reserved {} + committed {} = {counted}",
                    level.restocked, level.available, level.reserved, level.committed
                ),
            );
        }
        let holds = held.get(sku).copied().unwrap_or(0);
        if level.reserved != holds {
            violation(
                "sku",
                sku,
                format!("reserved {}, but the orders hold {holds}", level.reserved),
            );
        }
        let sold = committed.get(sku).copied().unwrap_or(0);
        if level.committed != sold {
            violation(
                "sku",
                sku,
                format!(
                    "committed {}, but its confirmed and committing orders take {sold}",
                    level.committed
                ),
            );
        }
    }
    for sku in held.keys().chain(committed.keys()) {
        if !books.skus.contains_key(*sku) {
            violation(
                "sku",
                sku,
                "orders hold or took it, but it is not stocked".to_owned(),
            );
        }
    }
    for (customer, account) in &books.accounts {
        let (balance, deposited) = (account.balance_cents.0, account.deposited_cents.0);
        let (charged, refunded) = (account.charged_cents.0, account.refunded_cents.0);
        if balance + charged != deposited + refunded {
            violation(
                "account",
                customer,
                format!(
                    "balance {balance} + charged {charged} != deposited {deposited} + refunded {refunded}"
                ),
            );
        }
        let net = charged.saturating_sub(refunded);
        let costs = owed.get(customer).copied().unwrap_or(0);
        if net != costs {
            violation(
                "account",
                customer,
                format!(
                    "charged {charged} - refunded {refunded} = {net}, but its confirmed and charged orders cost {costs}"
                ),
            );
        }
    }
    for customer in owed.keys() {
        if !books.accounts.contains_key(*customer) {
            violation(
                "account",
                customer,
                "its orders were paid, but it has no account".to_owned(),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests;
