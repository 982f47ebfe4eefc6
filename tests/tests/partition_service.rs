//! A service cut off from NATS for 20 s under load, its packets dropped
//! both ways (a [`Link`](e2e::testkit::Link) that carries nothing), then
//! reconnected: it notices (its consumers miss their heartbeats), stays
//! alive, goes not ready, and once the link is back catches up. Nothing is
//! lost, done twice, or cancelled.

use std::time::{Duration, Instant};

use e2e::faults::{Run, Window};
use e2e::testkit::{eventually, http_get, NatsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cut_off_from_nats_catches_up_once_reconnected() {
    // With the default step timeout (10 s: reserving is given up after
    // 70 s), as the suite ships: the backlog of a 20 s partition is caught
    // up within the steps' budgets.
    let mut run = Run::on(
        NatsServer::start(),
        &[("SAGA_STEP_TIMEOUT_MS", "10000")],
        3000,
        0x0f_0004,
        &["inventory-service"],
    )
    .await;
    let load = run.load(100.0);
    // The fault strikes into the load, with work in flight: a schedule,
    // not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let from = Instant::now();
    run.link("inventory-service").cut();
    let sidecar = run.service("inventory-service").http;
    eventually(
        "the cut-off service to go not ready",
        Duration::from_secs(20),
        || async {
            let (status, _) = http_get(sidecar, "/readyz").await?;
            (status == 503).then_some(())
        },
    )
    .await;
    let noticed = from.elapsed();
    // The partition's length is the fault itself.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(noticed)).await;
    let inventory = run.service("inventory-service");
    assert!(inventory.running(), "a partition is no reason to exit");
    let (status, _) = http_get(inventory.http, "/healthz")
        .await
        .expect("it answers");
    assert_eq!(status, 200, "alive through the partition");
    run.link("inventory-service").heal();
    let window = Window {
        what: "inventory-service cut off from NATS for 20 s".to_owned(),
        from,
        to: Instant::now(),
    };
    eprintln!("the cut-off service went not ready {noticed:?} into the partition");

    let tally = run.verdict("inventory cut off 20 s", load, &[window]).await;
    assert_eq!(
        tally.confirmed, tally.placed,
        "a partition shorter than a step's budget cancels nothing: {tally}"
    );
}
