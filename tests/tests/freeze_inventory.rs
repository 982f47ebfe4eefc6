//! A service frozen (SIGSTOP) with its connections open, then resumed.
//! Unlike a crash, nothing tells the others it is gone: its work is
//! redelivered after the ack wait while it still holds it, the saga asks
//! its steps again, and when it wakes its late writes race the redelivered
//! work's. They must lose, never double it, and nothing is cancelled: the
//! freeze is shorter than a step's budget. (Each fault test is a test
//! binary of its own: each loads both cores.)

use std::time::Duration;

use e2e::faults::{freeze, Run};

const PER_SECOND: f64 = 100.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_frozen_past_its_ack_wait_loses_its_late_writes() {
    let mut run = Run::start(&[], 3000, 0x0f_0001).await;
    let load = run.load(PER_SECOND);
    // Into the load, so the inventory holds steps when it stops; longer
    // than the ack wait (10 s), so they are redelivered meanwhile.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pid = run.service("inventory-service").pid().expect("running");
    let window = freeze(pid, "inventory-service", Duration::from_secs(13)).await;
    let tally = run.verdict("inventory frozen 13 s", load, &[window]).await;
    assert_eq!(
        tally.confirmed, tally.placed,
        "a freeze shorter than the step budget cancels nothing: {tally}"
    );
}
