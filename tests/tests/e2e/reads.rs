//! A saga on its common path reads nothing back: the orchestrator decides
//! on the record it remembers, and a first charge does not look for an
//! earlier answer. Not a contract property but a documented design one
//! (docs/design.md, "The stream is the database"), and a cheap guard for what the
//! benchmark measures: each such read was a direct get per saga. (Fails
//! when every charge looks first. The race the orchestrator's per-saga
//! turn closes shows only at saturation, where `sagactl bench` counts it.)

use std::sync::{Arc, Mutex};

use e2e::testkit::{eventually, http_get};
use e2e::{Suite, SETTLE};
use events::OrderStatus;
use futures::future::join_all;
use futures::StreamExt;

const ORDERS: usize = 100;

#[tokio::test]
async fn a_saga_on_its_common_path_reads_neither_the_saga_nor_the_payments_back() {
    let suite = Suite::start().await;
    let skus: Vec<String> = (0..10).map(|i| format!("sku-{i}")).collect();
    let stock: Vec<(&str, u64, u64)> = skus.iter().map(|s| (s.as_str(), 10_000, 100)).collect();
    suite
        .seed(&stock, &[("c-1", 100_000_000), ("c-2", 100_000_000)])
        .await;

    // Every direct get any service asks for, by its request subject
    // (`$JS.API.DIRECT.GET.<stream>.<subject>`).
    let mut requests = suite
        .client
        .nats()
        .subscribe("$JS.API.DIRECT.GET.>")
        .await
        .expect("subscribed");
    suite.client.nats().flush().await.expect("flushed");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let recorder = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                seen.lock().unwrap().push(request.subject.to_string());
            }
        })
    };

    let orders: Vec<String> = (0..ORDERS).map(|i| format!("quiet-{i}")).collect();
    join_all(orders.iter().enumerate().map(|(i, id)| {
        let lines = [(skus[i % skus.len()].as_str(), 1)];
        let body = jetsaga_client::place_body(id, if i % 2 == 0 { "c-1" } else { "c-2" }, &lines);
        let client = suite.client.clone();
        async move {
            client
                .send("orders.cmd.place", Default::default(), body)
                .await
                .expect("published")
                .await
                .expect("stored")
        }
    }))
    .await;
    for id in &orders {
        assert_eq!(suite.settled(id).await.status, OrderStatus::Confirmed);
    }
    // The orchestrator counts a saga completed after its last write, so
    // every read it could make for these sagas is behind us then. (Not
    // `saga.query.get`: answering it is a read of the saga.)
    let orchestrator = suite.http_of("saga-orchestrator");
    let completed = format!("jetsaga_sagas_completed_total{{outcome=\"confirmed\"}} {ORDERS}");
    eventually("every saga to complete", SETTLE, || async {
        let (_, text) = http_get(orchestrator, "/metrics").await?;
        text.contains(&completed).then_some(())
    })
    .await;
    suite.client.nats().flush().await.expect("flushed");
    recorder.abort();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let saga_or_payment_reads: Vec<&String> = seen
        .iter()
        .filter(|s| {
            s.starts_with("$JS.API.DIRECT.GET.SAGA.saga.log.")
                || s.starts_with("$JS.API.DIRECT.GET.PAYMENTS.payments.evt.")
        })
        .collect();
    assert!(
        saga_or_payment_reads.is_empty(),
        "{} reads of sagas or payment events for {ORDERS} sagas: {:?}",
        saga_or_payment_reads.len(),
        saga_or_payment_reads.iter().take(10).collect::<Vec<_>>()
    );
    suite.stop().await;
}
