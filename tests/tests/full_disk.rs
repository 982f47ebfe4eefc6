//! A full disk: the JetStream store reaches its limit under load. Every
//! write is refused, whole: the client sees its orders refused (and sends
//! them again), no service acknowledges a message whose effects it could
//! not store, and no atomic write is stored in part. Once an operator
//! makes room (the store grown, the streams' limits raised by
//! provisioning again), every accepted order settles and the books
//! balance.

use std::time::{Duration, Instant};

use e2e::faults::{torn_batches, Run, Window};
use e2e::testkit::{eventually, Identity, NatsServer};
use e2e::{connect_as, provision_as};
use events::subjects::streams::ORDERS;
use runtime::streams::{Layout, ALL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_writes_whole_and_loses_nothing_once_room_is_made() {
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
    let (url, security) = (run.nats.url(), run.nats.security());
    // The streams may fill the server's 24 MB between them: each that
    // takes atomic batches refuses a write that would cross its share, and
    // the orders stream fills first, before the server's own limit, which
    // an atomic batch can cross halfway, is reached.
    let layout = |store_bytes| Layout {
        replicas: 1,
        store_bytes: Some(store_bytes),
    };
    provision_as(&url, security, layout(24_000_000)).await;
    let admin = connect_as(&url, security, Identity::Admin).await;
    let js = async_nats::jetstream::new(admin.nats().clone());

    let load = run.load(100.0);
    // The orders stream full: less room left in it than an order takes.
    eventually(
        "the orders stream to be full",
        Duration::from_secs(60),
        || async {
            let info = js.get_stream(ORDERS).await.ok()?.info().await.ok()?.clone();
            let room = (info.config.max_bytes as u64).saturating_sub(info.state.bytes);
            (room < 1024).then_some(())
        },
    )
    .await;
    let from = Instant::now();
    // The store stays full for a while: the fault itself.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Room made: the server's store grown first (the streams' limits may
    // add up to no more than it), then the limits raised.
    run.nats.set_store_limit("1GB");
    eventually(
        "the streams' limits raised",
        Duration::from_secs(10),
        || async {
            runtime::provision::provision(&js, layout(800_000_000), false)
                .await
                .ok()
        },
    )
    .await;
    let window = Window {
        what: "the orders stream full for 10 s".to_owned(),
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
            .all(|r| r.contains("maximum bytes exceeded")),
        "every refusal says why: {:?}",
        tally.refusals.first()
    );
    assert_eq!(
        tally.confirmed, tally.placed,
        "a full store delays, and cancels nothing: {tally}"
    );
    for stream in ALL {
        let torn = torn_batches(&js, stream).await;
        assert!(
            torn.is_empty(),
            "{stream} holds batches stored in part: {torn:?}"
        );
    }
}
