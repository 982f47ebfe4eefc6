//! Rolling restarts: two replicas of every service, each restarted in turn
//! (SIGTERM, wait for its exit, start it again, wait until it is ready)
//! while the other carries the load, twice over. A graceful stop finishes
//! or hands back what it holds: no order is cancelled for unavailability,
//! nothing is dead-lettered, nothing is lost or done twice.

use std::time::{Duration, Instant};

use e2e::faults::{Run, Window};
use e2e::SERVICES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_restarted_one_replica_at_a_time_under_load_twice() {
    let mut run = Run::start(&[], 1500, 0x0f_0005).await;
    for name in SERVICES {
        run.add_replica(name).await;
    }
    // Eight service processes on the machine, and two writers of every
    // sku and account, which lose races to each other: a quarter of the
    // rate of the single-replica tests, well under what this topology
    // carries, so that what the test measures is the restarts, not the
    // machine's capacity (that is the benchmark's). 60 s of load cover
    // the 16 restarts.
    let load = run.load(25.0);
    let from = Instant::now();
    let mut restarts = 0;
    for _round in 0..2 {
        for i in 0..run.services.len() {
            let replica = &mut run.services[i];
            let status = replica.terminate(Duration::from_secs(10)).await;
            assert_eq!(
                status.code(),
                Some(0),
                "{} stops cleanly under load",
                replica.name
            );
            replica.restart();
            replica.wait_ready().await;
            restarts += 1;
            // The pace of the roll, as a Deployment's minReadySeconds sets
            // it: the restarts spread over the load.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    let window = Window {
        what: format!("{restarts} rolling restarts"),
        from,
        to: Instant::now(),
    };
    assert_eq!(
        restarts, 16,
        "two rounds over two replicas of four services"
    );
    let tally = run.verdict("rolling restarts", load, &[window]).await;
    assert_eq!(
        tally.confirmed, tally.placed,
        "a rolling restart makes no step unavailable: {tally}"
    );
}
