//! Freezes in a row: the inventory frozen (SIGSTOP) long enough that the
//! saga asks its reservations a third time, then the orchestrator frozen
//! from just before the inventory wakes until past those attempts'
//! deadlines. When the orchestrator wakes, the wake-ups that fired
//! meanwhile and the answers stored meanwhile reach it together: a step
//! answered before its deadline was handled must move the saga on, not be
//! given up. Nothing is cancelled.

use std::time::Duration;

use e2e::faults::{freeze, Run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_orchestrator_gives_up_no_step_that_was_answered() {
    let mut run = Run::start(&[], 2500, 0x0f_0002).await;
    let load = run.load(100.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let inventory = run.service("inventory-service").pid().expect("running");
    let orchestrator = run.service("saga-orchestrator").pid().expect("running");
    // Reservations asked now are asked again after 5 s and a third time
    // 10 s later, while the inventory is frozen; the third attempt's
    // deadline comes 20 s after that, while the orchestrator is.
    let frozen = tokio::spawn(freeze(
        inventory,
        "inventory-service",
        Duration::from_secs(19),
    ));
    tokio::time::sleep(Duration::from_secs(18)).await;
    let paused = freeze(orchestrator, "saga-orchestrator", Duration::from_secs(25)).await;
    let windows = [frozen.await.expect("the freeze ran"), paused];
    let tally = run
        .verdict(
            "inventory frozen 19 s, then the orchestrator 25 s",
            load,
            &windows,
        )
        .await;
    assert_eq!(
        tally.confirmed, tally.placed,
        "every step was answered within its budget: nothing may be given up: {tally}"
    );
}
