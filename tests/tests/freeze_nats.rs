//! nats-server itself frozen (SIGSTOP) for 10 s under load: every write and
//! acknowledgement in flight goes unanswered, connections stay open, and
//! batches whose commits went unanswered may or may not be stored. Once
//! it resumes, each unknown write is settled from the store and nothing is
//! lost, doubled or cancelled.

use std::time::Duration;

use e2e::faults::{freeze, Run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nats_server_costs_a_pause_and_nothing_else() {
    let run = Run::start(&[], 3000, 0x0f_0003).await;
    let load = run.load(100.0);
    // The fault strikes into the load, with work in flight: a schedule,
    // not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let pid = run.nats.pid().expect("running");
    let window = freeze(pid, "nats-server", Duration::from_secs(10)).await;
    let tally = run
        .verdict("nats-server frozen 10 s", load, &[window])
        .await;
    assert_eq!(
        tally.confirmed, tally.placed,
        "a 10 s freeze is shorter than any step's budget: {tally}"
    );
}
