//! Stock and money are conserved over a few hundred random orders, and
//! every confirmed total is the catalogue price.

use std::collections::HashMap;

use e2e::Suite;
use events::{Order, OrderStatus};
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SKUS: usize = 8;
const CUSTOMERS: usize = 10;
const ORDERS: usize = 300;

/// `(order_id, customer_id, [(sku, quantity)])`.
type RandomOrder = (String, String, Vec<(String, u32)>);

#[tokio::test]
async fn stock_and_money_are_conserved_over_random_orders() {
    let suite = Suite::start().await;
    let mut rng = StdRng::seed_from_u64(0x5a6a);
    let catalogue: Vec<(String, u64, u64)> = (0..SKUS)
        .map(|i| {
            (
                format!("sku-{i}"),
                rng.random_range(5..40),
                rng.random_range(100..5000),
            )
        })
        .collect();
    let customers: Vec<(String, u64)> = (0..CUSTOMERS)
        .map(|i| (format!("c-{i}"), rng.random_range(1..60_000)))
        .collect();
    let skus: Vec<(&str, u64, u64)> = catalogue
        .iter()
        .map(|(s, q, p)| (s.as_str(), *q, *p))
        .collect();
    let funds: Vec<(&str, u64)> = customers.iter().map(|(c, a)| (c.as_str(), *a)).collect();
    suite.seed(&skus, &funds).await;

    let orders: Vec<RandomOrder> = (0..ORDERS)
        .map(|i| {
            let customer = customers[rng.random_range(0..CUSTOMERS)].0.clone();
            let lines = (0..rng.random_range(1..=3))
                .map(|_| {
                    (
                        catalogue[rng.random_range(0..SKUS)].0.clone(),
                        rng.random_range(1..4),
                    )
                })
                .collect();
            (format!("r-{i}"), customer, lines)
        })
        .collect();
    let acks = join_all(orders.iter().map(|(id, customer, lines)| {
        let lines: Vec<(&str, u32)> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let body = jetsaga_client::place_body(id, customer, &lines);
        let client = suite.client.clone();
        async move {
            client
                .send("orders.cmd.place", Default::default(), body)
                .await
                .unwrap()
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(acks.len(), ORDERS);
    let settled: Vec<Order> = join_all(orders.iter().map(|(id, _, _)| suite.settled(id))).await;

    let prices: HashMap<&str, u64> = catalogue.iter().map(|(s, _, p)| (s.as_str(), *p)).collect();
    let mut sold: HashMap<String, u64> = HashMap::new();
    let mut spent: HashMap<String, u64> = HashMap::new();
    for order in settled
        .iter()
        .filter(|o| o.status == OrderStatus::Confirmed)
    {
        let mut total = 0;
        for line in &order.items {
            *sold.entry(line.sku.to_string()).or_default() += u64::from(line.quantity.get());
            assert_eq!(line.unit_price_cents.unwrap().0, prices[line.sku.as_str()]);
            total += prices[line.sku.as_str()] * u64::from(line.quantity.get());
        }
        assert_eq!(
            order.total_cents.unwrap().0,
            total,
            "order {}",
            order.order_id
        );
        *spent.entry(order.customer_id.to_string()).or_default() += total;
    }
    let confirmed = settled
        .iter()
        .filter(|o| o.status == OrderStatus::Confirmed)
        .count();
    assert!(
        confirmed > 0 && confirmed < ORDERS,
        "the mix should both confirm and cancel, got {confirmed}"
    );

    for (sku, restocked, _) in &catalogue {
        let level = suite.client.stock(sku).await.unwrap().unwrap();
        assert_eq!(level.reserved, 0, "{sku} still holds stock");
        assert_eq!(
            restocked - level.available - level.reserved,
            sold.get(sku).copied().unwrap_or(0),
            "{sku}"
        );
    }
    for (customer, deposited) in &customers {
        let balance = suite
            .client
            .account(customer)
            .await
            .unwrap()
            .map_or(0, |a| a.balance_cents.0);
        assert_eq!(
            deposited - balance,
            spent.get(customer).copied().unwrap_or(0),
            "{customer}"
        );
    }
    suite.stop().await;
}
