//! A full disk: the JetStream store reaches its limit under load. Every
//! write is refused: the client sees its orders refused (and sends them
//! again), and no service acknowledges a message whose effects it could
//! not store. Once an operator makes room (the limit raised, the server's
//! configuration reloaded), every accepted order settles and the books
//! balance.

use std::time::{Duration, Instant};

use e2e::faults::{Run, Window};
use e2e::testkit::{eventually, NatsServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_writes_and_loses_nothing_once_room_is_made() {
    // With the default step timeout (10 s: reserving is given up after
    // 70 s): while the store is full no step can be answered.
    let mut run = Run::on(
        NatsServer::start_with_store_limit("24MB"),
        &[("SAGA_STEP_TIMEOUT_MS", "10000")],
        6000,
        0x0f_0006,
        &[],
    )
    .await;
    let load = run.load(100.0);
    // A restock of a sku of its own, sent until one is refused: the
    // store is full.
    let refused = eventually("the store to be full", Duration::from_secs(60), || async {
        let sent = run.client.restock("full-disk-probe", 1, Some(1)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sent.err()
    })
    .await;
    let from = Instant::now();
    assert!(
        refused.to_string().contains("insufficient resources"),
        "refused for the full store: {refused}"
    );
    // The store stays full for a while: the fault itself.
    tokio::time::sleep(Duration::from_secs(10)).await;
    run.nats.set_store_limit("1GB");
    let window = Window {
        what: "the JetStream store full for 10 s".to_owned(),
        from,
        to: Instant::now(),
    };
    let tally = run.verdict("store full 10 s", load, &[window]).await;
    assert!(
        !tally.refusals.is_empty(),
        "the client saw its orders refused while the store was full"
    );
    assert!(
        tally
            .refusals
            .iter()
            .all(|r| r.contains("insufficient resources")),
        "every refusal says why: {:?}",
        tally.refusals.first()
    );
    assert_eq!(
        tally.confirmed, tally.placed,
        "a full store delays, and cancels nothing: {tally}"
    );
}
