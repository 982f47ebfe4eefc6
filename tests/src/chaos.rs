//! What the chaos tests share: a random catalogue and orders, placing them
//! through outages, and the checks that nothing was lost or doubled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use events::{Order, OrderStatus};
use futures::future::join_all;
use jetsaga_client::{place_body, Client};
use rand::rngs::StdRng;
use rand::Rng;

use crate::testkit::{eventually, within};

pub const SKUS: usize = 30;
pub const CUSTOMERS: usize = 30;

/// The seeded skus `(sku, units, price)` and customers `(customer, cents)`.
#[derive(Debug)]
pub struct Catalogue {
    pub skus: Vec<(String, u64, u64)>,
    pub customers: Vec<(String, u64)>,
}

/// `(order_id, customer_id, [(sku, quantity)])`.
pub type RandomOrder = (String, String, Vec<(String, u32)>);

/// Seeds a catalogue where stock and money run short: some orders are
/// cancelled `out_of_stock` or `insufficient_funds` whatever the faults.
pub async fn seed(client: &Client, rng: &mut StdRng) -> Catalogue {
    let skus: Vec<(String, u64, u64)> = (0..SKUS)
        .map(|i| {
            (
                format!("sku-{i}"),
                rng.random_range(100..300),
                rng.random_range(100..5000),
            )
        })
        .collect();
    let customers: Vec<(String, u64)> = (0..CUSTOMERS)
        // Most can pay for a few dozen orders; the last five hardly any.
        .map(|i| {
            let balance = if i >= CUSTOMERS - 5 {
                rng.random_range(1..5_000)
            } else {
                rng.random_range(200_000..1_500_000)
            };
            (format!("c-{i}"), balance)
        })
        .collect();
    stock(client, skus, customers).await
}

/// Seeds a catalogue with stock and money for every order: without faults
/// each one confirms, so any cancel is the faults' doing.
pub async fn seed_ample(client: &Client, rng: &mut StdRng) -> Catalogue {
    let skus = (0..SKUS)
        .map(|i| (format!("sku-{i}"), 1_000_000, rng.random_range(100..5000)))
        .collect();
    let customers = (0..CUSTOMERS)
        .map(|i| (format!("c-{i}"), 1_000_000_000_000))
        .collect();
    stock(client, skus, customers).await
}

async fn stock(
    client: &Client,
    skus: Vec<(String, u64, u64)>,
    customers: Vec<(String, u64)>,
) -> Catalogue {
    for (sku, quantity, price) in &skus {
        client.restock(sku, *quantity, Some(*price)).await.unwrap();
    }
    for (customer, cents) in &customers {
        client.deposit(customer, *cents).await.unwrap();
    }
    for (sku, _, _) in &skus {
        eventually(
            &format!("{sku} stocked"),
            Duration::from_secs(30),
            || async move { client.stock(sku).await.ok().flatten() },
        )
        .await;
    }
    for (customer, _) in &customers {
        eventually(
            &format!("{customer} funded"),
            Duration::from_secs(30),
            || async move { client.account(customer).await.ok().flatten() },
        )
        .await;
    }
    Catalogue { skus, customers }
}

pub fn random_orders(catalogue: &Catalogue, rng: &mut StdRng, count: usize) -> Vec<RandomOrder> {
    (0..count)
        .map(|i| {
            let customer = catalogue.customers[rng.random_range(0..CUSTOMERS)]
                .0
                .clone();
            let lines = (0..rng.random_range(1..=3))
                .map(|_| {
                    (
                        catalogue.skus[rng.random_range(0..SKUS)].0.clone(),
                        rng.random_range(1..4),
                    )
                })
                .collect();
            (format!("chaos-{i}"), customer, lines)
        })
        .collect()
}

/// Places every order at a steady rate; one that JetStream does not
/// acknowledge (NATS down) is sent again until it is: its id makes that safe.
pub async fn place_all(client: Client, orders: Vec<RandomOrder>, per_second: f64) -> usize {
    place_timed(client, orders, per_second).await.sent.len()
}

/// What [`place_timed`] saw.
#[derive(Debug, Default)]
pub struct Placed {
    /// When each order was first sent, in order.
    pub sent: Vec<Instant>,
    /// Each refusal of a send (sent again until acknowledged).
    pub refusals: Vec<String>,
}

/// [`place_all`], saying when each order was first sent and what refused
/// the sends that were refused.
pub async fn place_timed(client: Client, orders: Vec<RandomOrder>, per_second: f64) -> Placed {
    let started = Instant::now();
    let mut placed = Placed::default();
    for (i, (id, customer, lines)) in orders.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / per_second);
        tokio::time::sleep_until(due.into()).await;
        let lines: Vec<(&str, u32)> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let body = place_body(id, customer, &lines);
        placed.sent.push(Instant::now());
        loop {
            match client
                .command("orders.cmd.place", Default::default(), body.clone())
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    placed.refusals.push(e.to_string());
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
            }
        }
    }
    placed
}

/// Waits (up to four minutes) until none of `orders` is pending; returns
/// them all. Failing, names the orders still pending and what their sagas
/// wait on.
pub async fn settle_all(client: &Client, orders: &[RandomOrder]) -> Vec<Order> {
    let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.clone()).collect();
    let settled = within(Duration::from_secs(240), || all_settled(client, &ids)).await;
    if let Some(settled) = settled {
        return settled;
    }
    let mut pending = Vec::new();
    for id in &ids {
        if let Ok(Some(order)) = client.order(id).await {
            if order.status == OrderStatus::Pending {
                pending.push(id.as_str());
            }
        }
    }
    let mut sagas = Vec::new();
    for id in pending.iter().take(5) {
        let saga = client.saga(id).await;
        sagas.push(format!("{id}: {saga:?}"));
    }
    panic!(
        "{} orders still pending after 240 s; the first sagas:\n{}",
        pending.len(),
        sagas.join("\n")
    );
}

/// Every order, once none is pending (`None` while one is, or a query fails).
async fn all_settled(client: &Client, ids: &[String]) -> Option<Vec<Order>> {
    let mut settled = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(200) {
        let found = join_all(chunk.iter().map(|id| client.order(id))).await;
        for order in found {
            let order = order.ok()??;
            if order.status == OrderStatus::Pending {
                return None;
            }
            settled.push(order);
        }
    }
    Some(settled)
}

/// Stock and money conserved, nothing left reserved, every confirmed total
/// at catalogue price. Returns the number confirmed.
pub async fn check_conservation(
    client: &Client,
    catalogue: &Catalogue,
    settled: &[Order],
) -> usize {
    let prices: HashMap<&str, u64> = catalogue
        .skus
        .iter()
        .map(|(s, _, p)| (s.as_str(), *p))
        .collect();
    let mut sold: HashMap<String, u64> = HashMap::new();
    let mut spent: HashMap<String, u64> = HashMap::new();
    let confirmed: Vec<&Order> = settled
        .iter()
        .filter(|o| o.status == OrderStatus::Confirmed)
        .collect();
    for order in &confirmed {
        let mut total = 0;
        for line in &order.items {
            let price = prices[line.sku.as_str()];
            assert_eq!(
                line.unit_price_cents.map(|p| p.0),
                Some(price),
                "{}",
                order.order_id
            );
            *sold.entry(line.sku.to_string()).or_default() += u64::from(line.quantity.get());
            total += price * u64::from(line.quantity.get());
        }
        assert_eq!(
            order.total_cents.map(|t| t.0),
            Some(total),
            "{}",
            order.order_id
        );
        *spent.entry(order.customer_id.to_string()).or_default() += total;
    }
    for (sku, restocked, _) in &catalogue.skus {
        let level = client.stock(sku).await.unwrap().unwrap();
        assert_eq!(level.reserved, 0, "{sku} still holds stock");
        assert_eq!(
            restocked - level.available,
            sold.get(sku).copied().unwrap_or(0),
            "stock of {sku}"
        );
    }
    for (customer, deposited) in &catalogue.customers {
        let balance = client
            .account(customer)
            .await
            .unwrap()
            .unwrap()
            .balance_cents
            .0;
        assert_eq!(
            deposited - balance,
            spent.get(customer).copied().unwrap_or(0),
            "money of {customer}"
        );
    }
    confirmed.len()
}

/// Every cancel of `settled` is for want of stock or money, never for a
/// step left unanswered: the outages of the chaos tests are seconds long,
/// the steps' budgets tens of seconds. A run where the faults cancelled
/// orders would otherwise pass on its books alone.
pub fn check_no_unavailable(settled: &[Order]) {
    let unavailable: Vec<(&str, &str)> = settled
        .iter()
        .filter(|o| o.status == OrderStatus::Cancelled)
        .filter_map(|o| {
            let reason = o.reason?.as_str();
            reason
                .ends_with("_unavailable")
                .then_some((o.order_id.as_str(), reason))
        })
        .collect();
    assert!(
        unavailable.is_empty(),
        "{} orders cancelled for a step left unanswered: {:?}",
        unavailable.len(),
        &unavailable[..unavailable.len().min(5)]
    );
}

/// How many of `orders` a fault-free suite would confirm taking them one
/// at a time, in order, from `catalogue` as seeded: an order confirms if
/// every sku has its quantity left and its customer the total, and only
/// then takes both.
pub fn confirmed_without_faults(catalogue: &Catalogue, orders: &[RandomOrder]) -> usize {
    let mut stock: HashMap<&str, (u64, u64)> = catalogue
        .skus
        .iter()
        .map(|(sku, quantity, price)| (sku.as_str(), (*quantity, *price)))
        .collect();
    let mut balances: HashMap<&str, u64> = catalogue
        .customers
        .iter()
        .map(|(customer, cents)| (customer.as_str(), *cents))
        .collect();
    let mut confirmed = 0;
    for (_, customer, lines) in orders {
        let in_stock = lines
            .iter()
            .all(|(sku, quantity)| stock[sku.as_str()].0 >= u64::from(*quantity));
        let total: u64 = lines
            .iter()
            .map(|(sku, quantity)| stock[sku.as_str()].1 * u64::from(*quantity))
            .sum();
        let balance = balances
            .get_mut(customer.as_str())
            .expect("a seeded customer");
        if in_stock && *balance >= total {
            *balance -= total;
            for (sku, quantity) in lines {
                stock.get_mut(sku.as_str()).expect("a seeded sku").0 -= u64::from(*quantity);
            }
            confirmed += 1;
        }
    }
    confirmed
}

/// The faults cost no order that a fault-free suite would confirm: the
/// orders are such that most confirm without faults, and the run
/// confirmed nearly as many (orders in flight together take stock in
/// another order than one at a time, so not exactly as many). A run whose
/// faults turned orders into refusals of another name would otherwise
/// pass on its books alone.
pub fn check_confirms_most(catalogue: &Catalogue, orders: &[RandomOrder], confirmed: usize) {
    let model = confirmed_without_faults(catalogue, orders);
    assert!(
        model * 2 > orders.len(),
        "most orders confirm without faults ({model} of {})",
        orders.len()
    );
    assert!(
        confirmed * 10 >= model * 9,
        "{confirmed} confirmed, where {model} would without faults"
    );
    eprintln!("{confirmed} confirmed; without faults, one at a time: {model}");
}

/// Beyond the books: every saga of `orders` finished (none left
/// compensating or waiting on a step), and no message was dead-lettered
/// (a crash or a restart must cost a redelivery, never a message).
pub async fn check_outcomes(client: &Client, orders: &[RandomOrder]) {
    let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.clone()).collect();
    eventually("every saga to finish", Duration::from_secs(60), || async {
        for chunk in ids.chunks(200) {
            let sagas = join_all(chunk.iter().map(|id| client.saga(id))).await;
            for saga in sagas {
                if !saga.ok()??.state.is_terminal() {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    let letters = client
        .dead_letters("dlq.>")
        .await
        .expect("the dead letters can be read");
    assert!(
        letters.is_empty(),
        "no dead letters, found {}: {:?}",
        letters.len(),
        letters
            .iter()
            .take(5)
            .map(|l| (&l.subject, &l.reason))
            .collect::<Vec<_>>()
    );
}
