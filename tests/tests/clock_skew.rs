//! Clock skew: the orchestrator as two replicas, one whose clock is five
//! minutes behind the server's and one five minutes ahead, and the payment
//! service's clock five minutes ahead (libfaketime). Wake-ups are armed as
//! JetStream schedules, which the server fires by its own clock: read from
//! a clock behind, they would fire at once and come back early, again and
//! again; from a clock ahead, five minutes late. The services decide on
//! the server's time, read from the messages they receive, and export how
//! far their clock is from it.

use std::time::{Duration, Instant};

use e2e::faults::{skewed, Run};
use e2e::testkit::{eventually, http_get, metrics};
use events::saga::StepStatus;

const MINUTES_5: f64 = 300.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_hold_with_clocks_minutes_apart() {
    // Within what a debug build keeps up with, libfaketime's slower clock
    // calls included: a step that waits longer than its 5 s timeout for a
    // busy machine times out on time, and this test is about wake-ups that
    // come early.
    let mut run = Run::start(&[], 1000, 0x0f_0007).await;
    let env = |offset: &str| skewed(offset);
    let (behind, ahead) = (env("-5m"), env("+5m"));
    let as_str = |env: &[(String, String)]| -> Vec<(String, String)> { env.to_vec() };
    run.remove("saga-orchestrator");
    run.remove("payment-service");
    for (name, env) in [
        ("saga-orchestrator", as_str(&behind)),
        ("saga-orchestrator", as_str(&ahead)),
        ("payment-service", as_str(&ahead)),
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run.add_replica_with(name, &env).await;
    }

    let load = run.load(50.0);
    let tally = run.verdict("clocks 5 min apart", load, &[]).await;
    assert_eq!(tally.confirmed, tally.placed, "{tally}");

    // Each replica read its skew from the server (behind: the server is
    // ahead of it), and no step's wake-up fired: none was due.
    let orchestrators: Vec<_> = run
        .services
        .iter()
        .filter(|s| s.name == "saga-orchestrator")
        .map(|s| s.http)
        .collect();
    let mut offsets = Vec::new();
    let mut woken = 0.0;
    for sidecar in &orchestrators {
        let (_, text) = http_get(*sidecar, "/metrics").await.expect("metrics");
        offsets.push(metrics::value(&text, "jetsaga_clock_offset_seconds", &[]).expect("exported"));
        woken += metrics::value(
            &text,
            "jetsaga_messages_handled_total",
            &[("consumer", "saga-timeouts")],
        )
        .unwrap_or(0.0);
    }
    assert!(
        (offsets[0] - MINUTES_5).abs() < 5.0 && (offsets[1] + MINUTES_5).abs() < 5.0,
        "each orchestrator knows its skew: {offsets:?}"
    );
    assert!(
        woken < 20.0,
        "no storm of wake-ups firing early: {woken} handled for {} sagas",
        tally.placed
    );

    // A step left unanswered times out after its timeout by the server's
    // clock, not five minutes late, on the replica whose clock is ahead.
    let first = run
        .services
        .iter()
        .position(|s| s.name == "saga-orchestrator")
        .expect("two orchestrators");
    run.services.remove(first);
    run.remove("payment-service");
    let placed = Instant::now();
    run.client
        .place("skewed-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    let client = &run.client;
    eventually(
        "the unanswered charge to time out",
        Duration::from_secs(60),
        || async {
            let saga = client.saga("skewed-1").await.ok().flatten()?;
            saga.steps
                .iter()
                .any(|s| s.name == "charge_payment" && s.status == StepStatus::TimedOut)
                .then_some(())
        },
    )
    .await;
    let waited = placed.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "a 5 s step timed out after {waited:?}"
    );
}
