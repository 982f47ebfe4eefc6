//! The soak: sagas run for minutes with a short retention window, and what
//! the streams hold levels off instead of growing with the sagas, but for
//! the orders' final states (one message each).

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use e2e::Suite;
use events::subjects::{self, streams};
use jetsaga_client::place_body;

const WINDOW_SECONDS: u64 = 20;
const SECONDS: u64 = 100;
const PER_SECOND: u64 = 40;

/// Messages and bytes of `stream`.
async fn held(js: &async_nats::jetstream::Context, stream: &str) -> (u64, u64) {
    let mut stream = js.get_stream(stream).await.expect("the stream");
    let state = stream.info().await.expect("its info").state.clone();
    (state.messages, state.bytes)
}

#[tokio::test]
async fn with_a_short_window_what_sagas_leave_levels_off() {
    let suite = Suite::start_with(&[
        ("SAGA_HISTORY_RETENTION_SECONDS", "20"),
        ("SAGA_STEP_TIMEOUT_MS", "1000"),
    ])
    .await;
    suite
        .seed(&[("sku-1", 10_000_000, 100)], &[("c-1", 1_000_000_000)])
        .await;
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    let started = Instant::now();
    let mut placed = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    // (seconds, orders placed, messages and bytes of the streams a saga
    // passes through, messages of ORDERS)
    let mut curve: Vec<(u64, u64, u64, u64, u64)> = Vec::new();
    while started.elapsed() < Duration::from_secs(SECONDS) {
        ticks.tick().await;
        for _ in 0..PER_SECOND / 10 {
            let body = place_body(&format!("o-{placed}"), "c-1", &[("sku-1", 1)]);
            suite
                .client
                .command(subjects::PLACE_ORDER, HeaderMap::new(), body)
                .await
                .expect("stored");
            placed += 1;
        }
        let seconds = started.elapsed().as_secs();
        if seconds.is_multiple_of(10) && curve.last().is_none_or(|p| p.0 != seconds) {
            let mut sagas = (0, 0);
            for stream in [streams::SAGA, streams::INVENTORY, streams::PAYMENTS] {
                let (messages, bytes) = held(&js, stream).await;
                sagas = (sagas.0 + messages, sagas.1 + bytes);
            }
            let orders = held(&js, streams::ORDERS).await.0;
            curve.push((seconds, placed, sagas.0, sagas.1, orders));
            eprintln!(
                "{seconds:>4} s: {placed:>5} orders placed; SAGA + INVENTORY + PAYMENTS hold \
                 {} messages, {} kB; ORDERS {orders} messages",
                sagas.0,
                sagas.1 / 1000
            );
        }
    }
    // Past two windows, the sagas placed double while what they leave in
    // flight stays about the same.
    let at = |s: u64| *curve.iter().find(|p| p.0 == s).expect("a sample");
    let (middle, end) = (at(50), at(SECONDS - 10));
    assert!(end.1 >= middle.1 * 17 / 10, "{curve:?}");
    assert!(
        end.2 <= middle.2 * 13 / 10,
        "messages grew with the sagas: {curve:?}"
    );
    assert!(
        end.3 <= middle.3 * 13 / 10,
        "bytes grew with the sagas: {curve:?}"
    );
    // ORDERS keeps one final state per order, and little else.
    assert!(end.4 >= end.1 - PER_SECOND * WINDOW_SECONDS, "{curve:?}");
    assert!(
        end.4 <= end.1 + PER_SECOND * 2 * WINDOW_SECONDS,
        "{curve:?}"
    );
    suite.stop().await;
}
