//! Chaos: 2000 random orders at a steady rate while a random service is
//! SIGKILLed and restarted every second or two, and nats-server itself is
//! killed and restarted; then, from the queries alone: every order settled,
//! stock and money conserved, every confirmed total at catalogue price.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::chaos::{
    check_confirms_most, check_conservation, check_no_unavailable, check_outcomes, place_all,
    random_orders, seed, settle_all,
};
use e2e::testkit::ServiceProcess;
use e2e::testkit::{Identity, NatsServer};
use e2e::SERVICES;
use events::OrderStatus;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ORDERS: usize = 2000;
const PER_SECOND: f64 = 100.0;
const SEED: u64 = 0x000c_4a05;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_settles_and_nothing_is_lost_or_doubled_through_crashes() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut nats = NatsServer::start();
    e2e::provision(&nats.url(), nats.security(), 1).await;
    let logs = tempfile::tempdir().unwrap();
    let env = [("SAGA_STEP_TIMEOUT_MS", "5000"), ("RUST_LOG", "warn")];
    let mut services: Vec<ServiceProcess> = SERVICES
        .iter()
        .map(|name| ServiceProcess::spawn(name, &nats.url(), nats.security(), &env, logs.path()))
        .collect();
    for service in &services {
        service.wait_ready().await;
    }
    let client = e2e::connect_as(&nats.url(), nats.security(), Identity::Operator).await;
    let catalogue = seed(&client, &mut rng).await;
    let orders = random_orders(&catalogue, &mut rng, ORDERS);

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
        kills + terminations >= 5 && nats_restarts == 1,
        "chaos ran: {kills} kills, {terminations} SIGTERMs, {nats_restarts} NATS restarts"
    );

    for service in &services {
        service.wait_ready().await;
    }
    let settling = Instant::now();
    let settled = settle_all(&client, &orders).await;
    let settle_seconds = settling.elapsed().as_secs_f64();

    let confirmed = check_conservation(&client, &catalogue, &settled).await;
    check_outcomes(&client, &orders).await;
    e2e::audit(&nats.url(), nats.security()).await;
    check_no_unavailable(&settled);
    check_confirms_most(&catalogue, &orders, confirmed);
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
