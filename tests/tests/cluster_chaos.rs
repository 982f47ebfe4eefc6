//! Chaos on a cluster: three nats-servers, streams with three replicas, two
//! replicas of each service; one NATS node and one replica of each service
//! are SIGKILLed during the load and brought back later. Same checks as the
//! single-node chaos test. (A test binary of its own, so that it never runs
//! beside the other chaos test on two cores.)

use std::time::{Duration, Instant};

use e2e::chaos::{
    check_confirms_most, check_conservation, check_no_unavailable, check_outcomes, place_all,
    random_orders, seed, settle_all,
};
use e2e::testkit::ServiceProcess;
use e2e::testkit::{Identity, NatsCluster};
use e2e::SERVICES;
use rand::rngs::StdRng;
use rand::SeedableRng;

const ORDERS: usize = 1000;
const SEED: u64 = 0x000c_4a06;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_a_node_and_a_replica_of_each_service() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut cluster = NatsCluster::start();
    let logs = tempfile::tempdir().unwrap();
    let env = [
        ("SAGA_STEP_TIMEOUT_MS", "5000"),
        ("RUST_LOG", "warn"),
        ("STREAM_REPLICAS", "3"),
    ];
    // A new cluster elects its leaders first: provisioning waits for it.
    e2e::provision_cluster(&cluster.urls(), cluster.security()).await;
    let mut services: Vec<ServiceProcess> = SERVICES
        .iter()
        .flat_map(|name| {
            [0, 1].map(|_| {
                ServiceProcess::spawn(name, &cluster.urls(), cluster.security(), &env, logs.path())
            })
        })
        .collect();
    // A new cluster elects its leaders first: allow for it.
    for service in &services {
        service.wait_ready_within(Duration::from_secs(90)).await;
    }
    let client = e2e::connect_as(&cluster.urls(), cluster.security(), Identity::Operator).await;
    let catalogue = seed(&client, &mut rng).await;
    let orders = random_orders(&catalogue, &mut rng, ORDERS);

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
    assert_eq!(acked, ORDERS, "every order was accepted");

    for service in &services {
        service.wait_ready().await;
    }
    let settling = Instant::now();
    let settled = settle_all(&client, &orders).await;
    let confirmed = check_conservation(&client, &catalogue, &settled).await;
    check_outcomes(&client, &orders).await;
    e2e::audit(&cluster.urls(), cluster.security()).await;
    check_no_unavailable(&settled);
    check_confirms_most(&catalogue, &orders, confirmed);
    eprintln!(
        "cluster chaos: {ORDERS} orders on 3 NATS nodes (R3), 2 replicas of each service; \
         one node and one replica of each killed; {confirmed} confirmed; settled {:.1} s after the load",
        settling.elapsed().as_secs_f64()
    );
}
