//! Chaos: 2000 random orders at a steady rate while a random service is
//! SIGKILLed and restarted every second or two, and nats-server itself is
//! killed and restarted; then, from the queries alone: every order settled,
//! stock and money conserved, every confirmed total at catalogue price.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::process::ServiceProcess;
use e2e::testkit::{eventually, NatsCluster, NatsServer};
use e2e::SERVICES;
use events::{Order, OrderStatus};
use futures::future::join_all;
use jetsaga_client::{place_body, Client};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ORDERS: usize = 2000;
const PER_SECOND: f64 = 100.0;
const SKUS: usize = 30;
const CUSTOMERS: usize = 30;
const SEED: u64 = 0x000c_4a05;

struct Catalogue {
    skus: Vec<(String, u64, u64)>,
    customers: Vec<(String, u64)>,
}

/// `(order_id, customer_id, [(sku, quantity)])`.
type RandomOrder = (String, String, Vec<(String, u32)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_settles_and_nothing_is_lost_or_doubled_through_crashes() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut nats = NatsServer::start();
    let logs = tempfile::tempdir().unwrap();
    let env = [("SAGA_STEP_TIMEOUT_MS", "5000"), ("RUST_LOG", "warn")];
    let mut services: Vec<ServiceProcess> = SERVICES
        .iter()
        .map(|name| ServiceProcess::spawn(name, &nats.url(), &env, logs.path()))
        .collect();
    for service in &services {
        service.wait_ready().await;
    }
    let client = Client::connect(&nats.url()).await.unwrap();
    let catalogue = seed(&client, &mut rng).await;
    let orders = random_orders(&catalogue, &mut rng);

    let load = tokio::spawn(place_all(client.clone(), orders.clone(), PER_SECOND));
    let (mut kills, mut terminations, mut nats_restarts) = (0, 0, 0);
    while !load.is_finished() {
        // The chaos cadence is the point here, not a wait for a condition.
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..2000))).await;
        if kills + terminations == 5 && nats_restarts == 0 {
            nats.kill();
            tokio::time::sleep(Duration::from_millis(500)).await;
            nats.restart();
            nats_restarts += 1;
            continue;
        }
        let victim = &mut services[rng.random_range(0..SERVICES.len())];
        if rng.random_bool(0.25) {
            // A graceful stop under load: in-flight work finished or
            // released, a clean exit within the grace period.
            let status = victim.terminate(Duration::from_secs(7)).await;
            assert_eq!(
                status.code(),
                Some(0),
                "{} exits 0 on SIGTERM under load",
                victim.name
            );
            terminations += 1;
        } else {
            victim.kill();
            kills += 1;
        }
        victim.restart();
    }
    let acked = load.await.unwrap();
    assert_eq!(acked, ORDERS, "every order was accepted");
    assert!(
        kills >= 5 && nats_restarts == 1,
        "chaos ran: {kills} kills, {nats_restarts} NATS restarts"
    );

    for service in &services {
        service.wait_ready().await;
    }
    let settling = Instant::now();
    let settled: Vec<Order> = eventually("every order to settle", Duration::from_secs(240), || {
        let client = client.clone();
        let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.clone()).collect();
        async move { all_settled(&client, &ids).await }
    })
    .await;
    let settle_seconds = settling.elapsed().as_secs_f64();

    let confirmed = check_conservation(&client, &catalogue, &settled).await;
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for order in settled
        .iter()
        .filter(|o| o.status == OrderStatus::Cancelled)
    {
        *reasons
            .entry(order.reason.map_or("none", |r| r.as_str()).to_owned())
            .or_default() += 1;
    }
    eprintln!(
        "chaos: {ORDERS} orders, {kills} service kills, {terminations} SIGTERMs, {nats_restarts} NATS restart; \
         {confirmed} confirmed, cancelled {reasons:?}; settled {settle_seconds:.1} s after the load"
    );
    for service in &mut services {
        let status = service.terminate(Duration::from_secs(10)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "{} stops cleanly after the chaos",
            service.name
        );
    }
}

/// The cluster variant: three nats-servers, streams with three replicas,
/// two replicas of each service; one NATS node and one replica of each
/// service are SIGKILLed during the load, and brought back later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_a_node_and_a_replica_of_each_service() {
    const CLUSTER_ORDERS: usize = 1000;
    let mut rng = StdRng::seed_from_u64(SEED + 1);
    let mut cluster = NatsCluster::start();
    let logs = tempfile::tempdir().unwrap();
    let env = [
        ("SAGA_STEP_TIMEOUT_MS", "5000"),
        ("RUST_LOG", "warn"),
        ("STREAM_REPLICAS", "3"),
    ];
    let mut services: Vec<ServiceProcess> = SERVICES
        .iter()
        .flat_map(|name| {
            [0, 1].map(|_| ServiceProcess::spawn(name, &cluster.urls(), &env, logs.path()))
        })
        .collect();
    for service in &services {
        service.wait_ready().await;
    }
    let client = Client::connect(&cluster.urls()).await.unwrap();
    let catalogue = seed(&client, &mut rng).await;
    let mut orders = random_orders(&catalogue, &mut rng);
    orders.truncate(CLUSTER_ORDERS);

    let load = tokio::spawn(place_all(client.clone(), orders.clone(), 50.0));
    // A scripted outage: the cadence is the point, not a wait.
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.kill(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for replica in services.iter_mut().step_by(2) {
        replica.kill();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.restart(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for replica in services.iter_mut().step_by(2) {
        replica.restart();
    }
    let acked = load.await.unwrap();
    assert_eq!(acked, CLUSTER_ORDERS, "every order was accepted");

    for service in &services {
        service.wait_ready().await;
    }
    let settling = Instant::now();
    let settled: Vec<Order> = eventually("every order to settle", Duration::from_secs(240), || {
        let client = client.clone();
        let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.clone()).collect();
        async move { all_settled(&client, &ids).await }
    })
    .await;
    let confirmed = check_conservation(&client, &catalogue, &settled).await;
    eprintln!(
        "cluster chaos: {CLUSTER_ORDERS} orders on 3 NATS nodes (R3), 2 replicas of each service; \
         one node and one replica of each killed; {confirmed} confirmed; settled {:.1} s after the load",
        settling.elapsed().as_secs_f64()
    );
}

async fn seed(client: &Client, rng: &mut StdRng) -> Catalogue {
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

fn random_orders(catalogue: &Catalogue, rng: &mut StdRng) -> Vec<RandomOrder> {
    (0..ORDERS)
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
async fn place_all(client: Client, orders: Vec<RandomOrder>, per_second: f64) -> usize {
    let started = Instant::now();
    let mut acked = 0;
    for (i, (id, customer, lines)) in orders.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / per_second);
        tokio::time::sleep_until(due.into()).await;
        let lines: Vec<(&str, u32)> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        let body = place_body(id, customer, &lines);
        loop {
            match client
                .command("orders.cmd.place", Default::default(), body.clone())
                .await
            {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        acked += 1;
    }
    acked
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
async fn check_conservation(client: &Client, catalogue: &Catalogue, settled: &[Order]) -> usize {
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
