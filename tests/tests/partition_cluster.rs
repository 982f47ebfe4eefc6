//! A NATS node cut off from the other two of a 3-node cluster (streams with
//! three replicas) under load: every route between it and the others
//! drops every packet, while its clients still reach it. The node leading
//! the inventory stream is the one cut off, so that stream's leader moves
//! to the majority; the services connected to the cut-off node can use no
//! stream meanwhile. Then the routes heal. Nothing is lost, done twice or
//! cancelled.

use std::time::{Duration, Instant};

use e2e::chaos::{
    check_conservation, check_outcomes, place_timed, random_orders, seed_ample, settle_all,
};
use e2e::faults::{check_cancels, logs_dir, unavailable_reach, Tally, Window};
use e2e::testkit::{eventually, Identity, NatsCluster, ServiceProcess};
use e2e::SERVICES;
use events::subjects::streams;
use rand::rngs::StdRng;
use rand::SeedableRng;

const ORDERS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_cut_off_from_its_cluster_loses_its_leaders_and_nothing_else() {
    let mut rng = StdRng::seed_from_u64(0x0f_0008);
    let cluster = NatsCluster::start_linked().await;
    // A new cluster elects its leaders first: provisioning waits for it.
    e2e::provision_cluster(&cluster.urls(), cluster.security()).await;
    let logs = logs_dir();
    let step_timeout = Duration::from_secs(10);
    let env = [("RUST_LOG", "warn"), ("STREAM_REPLICAS", "3")];
    let services: Vec<ServiceProcess> = SERVICES
        .iter()
        .map(|name| {
            ServiceProcess::spawn(name, &cluster.urls(), cluster.security(), &env, logs.path())
        })
        .collect();
    for service in &services {
        service.wait_ready_within(Duration::from_secs(90)).await;
    }
    let client = e2e::connect_as(&cluster.urls(), cluster.security(), Identity::Operator).await;
    let catalogue = seed_ample(&client, &mut rng).await;
    let orders = random_orders(&catalogue, &mut rng, ORDERS);
    // The inventory stream's leader, as node `i` sees it: a node cut off
    // from the others knows of no new one.
    let admins = futures::future::join_all((0..3).map(|i| {
        let url = cluster.url(i);
        let security = cluster.security();
        async move {
            let admin = e2e::connect_as(&url, security, Identity::Admin).await;
            async_nats::jetstream::new(admin.nats().clone())
        }
    }))
    .await;
    let leader = |i: usize| {
        let admin = admins[i].clone();
        async move {
            let mut stream = admin.get_stream(streams::INVENTORY).await.ok()?;
            stream.info().await.ok()?.cluster.clone()?.leader
        }
    };

    let load = tokio::spawn(place_timed(client.clone(), orders.clone(), 50.0));
    // The fault strikes into the load, with work in flight: a schedule,
    // not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = eventually(
        "the inventory stream's leader",
        Duration::from_secs(10),
        || leader(0),
    )
    .await;
    let cut: usize = before
        .trim_start_matches('n')
        .parse()
        .expect("nodes are n0, n1, n2");
    let from = Instant::now();
    cluster.isolate(cut);
    let majority = (cut + 1) % 3;
    let after = eventually(
        "a new leader on the majority",
        Duration::from_secs(30),
        || async { leader(majority).await.filter(|l| *l != before) },
    )
    .await;
    // The partition's length is the fault itself.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(from.elapsed())).await;
    cluster.rejoin(cut);
    let window = Window {
        what: format!("NATS node {before} cut off from the others for 20 s"),
        from,
        to: Instant::now(),
    };

    let placed = load.await.unwrap();
    assert_eq!(placed.sent.len(), ORDERS, "every order was accepted");
    for service in &services {
        service.wait_ready_within(Duration::from_secs(90)).await;
    }
    let settling = Instant::now();
    let settled = settle_all(&client, &orders).await;
    let settle_seconds = settling.elapsed().as_secs_f64();
    check_conservation(&client, &catalogue, &settled).await;
    e2e::audit(&cluster.urls(), cluster.security()).await;
    check_outcomes(&client, &orders).await;
    let mut tally = Tally::of(&settled, settle_seconds);
    tally.refusals = placed.refusals;
    eprintln!("NATS node cut off 20 s (inventory leader {before} -> {after}): {tally}");
    check_cancels(
        &settled,
        &placed.sent,
        &[window],
        unavailable_reach(step_timeout),
    );
    assert_eq!(
        tally.confirmed, tally.placed,
        "a node's partition shorter than a step's budget cancels nothing: {tally}"
    );
}
