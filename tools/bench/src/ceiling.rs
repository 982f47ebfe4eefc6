//! JetStream's own ceiling and floor on this machine, one file-backed
//! stream: async publishes with acks in flight, pull consume + ack, and
//! two-message atomic changes through jetsaga's store (its write); then
//! how long one publish, and one atomic change, take alone.

use std::future::IntoFuture;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use workload::Percentiles;

use crate::report::Ceiling;

/// Measures the ceiling with `n` messages each, on a stream of `replicas`.
pub async fn ceiling(
    raw: &async_nats::Client,
    n: usize,
    replicas: usize,
) -> anyhow::Result<Ceiling> {
    let js = async_nats::jetstream::new(raw.clone());
    let stream = js
        .create_stream(StreamConfig {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            storage: StorageType::File,
            num_replicas: replicas,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await?;
    crate::relay::wait_for_leader(&js, "BENCH").await?;
    let payload = Bytes::from(vec![b'x'; 256]);

    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    for i in 0..n {
        let ack = js
            .publish(format!("bench.p.{}", i % 1000), payload.clone())
            .await?;
        acks.push(ack.into_future());
        while acks.len() >= 4096 {
            acks.next().await.context("an ack")??;
        }
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let publish_per_s = n as f64 / started.elapsed().as_secs_f64();

    let consumer = stream
        .create_consumer(PullConfig {
            durable_name: Some("bench".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 10_000,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(1000)
        .messages()
        .await?;
    let started = Instant::now();
    for _ in 0..n {
        let message = messages
            .next()
            .await
            .context("the consumer ended")?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let consume_ack_per_s = n as f64 / started.elapsed().as_secs_f64();
    drop(messages);

    // jetsaga's write: a state and an event, stored together or not at all.
    let store = runtime::Store::new(js.clone(), "BENCH").await?;
    let batches = (n / 10).max(100);
    let started = Instant::now();
    let mut commits = FuturesUnordered::new();
    for i in 0..batches {
        let store = store.clone();
        let payload = payload.clone();
        commits.push(async move {
            store
                .commit(vec![
                    runtime::Append::raw(format!("bench.state.{i}"), payload.clone())
                        .expect_last(0),
                    runtime::Append::raw(format!("bench.event.{i}"), payload).expect_last(0),
                ])
                .await
        });
        while commits.len() >= 32 {
            commits.next().await.context("a commit")??;
        }
    }
    while let Some(commit) = commits.next().await {
        commit?;
    }
    let atomic_changes_per_s = batches as f64 / started.elapsed().as_secs_f64();

    // The floor under any saga's latency: one write at a time, nothing else
    // going on. Until its order is confirmed, a saga makes three atomic
    // changes and eight plain writes (its command included), one after the
    // other.
    const ALONE: usize = 200;
    let mut publishes = latency_histogram()?;
    for i in 0..ALONE {
        let started = Instant::now();
        js.publish(format!("bench.alone.{i}"), payload.clone())
            .await?
            .await?;
        publishes.record(started.elapsed().as_micros() as u64)?;
    }
    let mut changes = latency_histogram()?;
    for i in 0..ALONE {
        let started = Instant::now();
        store
            .commit(vec![
                runtime::Append::raw(format!("bench.state.alone.{i}"), payload.clone())
                    .expect_last(0),
                runtime::Append::raw(format!("bench.event.alone.{i}"), payload.clone())
                    .expect_last(0),
            ])
            .await?;
        changes.record(started.elapsed().as_micros() as u64)?;
    }
    js.delete_stream("BENCH").await?;
    Ok(Ceiling {
        publish_per_s,
        consume_ack_per_s,
        atomic_changes_per_s,
        publish_latency_ms: Percentiles::of(&publishes),
        atomic_change_latency_ms: Percentiles::of(&changes),
    })
}

/// Microseconds, from 1 µs to a minute.
fn latency_histogram() -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    Ok(hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?)
}
