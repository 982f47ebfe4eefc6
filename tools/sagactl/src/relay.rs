//! The JetStream ceiling for a saga: the messages of one order saga relayed
//! through JetStream by participants that do nothing else. It is the
//! throughput no implementation of this contract's saga can pass on this
//! machine with this server, and the server CPU it needs a saga.
//!
//! A saga here is [`HOPS`] messages on one file-backed stream, each stored
//! by one participant and consumed by the next, as in jetsaga: the order
//! command, `placed`, the reserve command, `reserved`, the charge command,
//! `charged`, the commit command, `committed`, the confirm command and
//! `confirmed`. Each hop has a durable pull consumer with explicit acks,
//! and its participant acks a message only once the next one is stored
//! (its publish acknowledged), as every jetsaga consumer does; the last hop
//! tells the load the saga is done. The participants are NATS connections
//! of this process, one per service and one for the load, and nothing is read,
//! decided, checked or remembered: no state, no atomic batch, no timer, no
//! trace context.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::load::Percentiles;

/// Messages in one saga, command to outcome.
pub const HOPS: usize = 10;
/// Which participant (connection) consumes each hop's message and stores
/// the next: the order service takes the command and the confirm command,
/// the orchestrator every participant's answer, the inventory the reserve
/// and commit commands, the payment service the charge; the load hears the
/// outcome.
const CONSUMED_BY: [Participant; HOPS] = [
    Participant::Order,
    Participant::Orchestrator,
    Participant::Inventory,
    Participant::Orchestrator,
    Participant::Payment,
    Participant::Orchestrator,
    Participant::Inventory,
    Participant::Orchestrator,
    Participant::Order,
    Participant::Load,
];
/// About the size of a saga record or an order event.
const PAYLOAD_BYTES: usize = 512;
/// Messages a hop's participant handles at once, as a service's consumer
/// does (its concurrency); the server holds up to four times as many
/// unacknowledged for it.
const HANDLING_AT_ONCE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Participant {
    Order,
    Inventory,
    Payment,
    Orchestrator,
    Load,
}

/// What relaying sagas through JetStream alone achieved.
#[derive(Debug, Serialize)]
pub struct SagaFlow {
    pub sagas: usize,
    /// Sagas relayed to their last hop per second, `unsettled` at once.
    pub sagas_per_s: f64,
    pub unsettled: usize,
    /// From the first message published to the last one consumed.
    pub latency_ms: Percentiles,
    /// nats-server's CPU time during the run, per saga.
    pub server_cpu_ms_per_saga: f64,
}

/// Relays `sagas` sagas, at most `unsettled` at once, through a stream of
/// the server at `url` (whose process is `server_pid`, for its CPU time).
pub async fn run(
    url: &str,
    server_pid: u32,
    sagas: usize,
    unsettled: usize,
) -> anyhow::Result<SagaFlow> {
    let mut connections = HashMap::new();
    for participant in CONSUMED_BY {
        if let Entry::Vacant(slot) = connections.entry(participant) {
            slot.insert(jetstream::new(async_nats::connect(url).await?));
        }
    }
    let js = &connections[&Participant::Load];
    let stream = js
        .create_stream(StreamConfig {
            name: "RELAY".into(),
            subjects: vec!["relay.>".into()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await?;

    let (done, mut finished) = mpsc::unbounded_channel();
    let mut hops = JoinSet::new();
    for (hop, participant) in CONSUMED_BY.into_iter().enumerate() {
        let consumer = stream
            .create_consumer(PullConfig {
                durable_name: Some(format!("hop-{hop}")),
                filter_subject: subject(hop, "*"),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: (HANDLING_AT_ONCE * 4) as i64,
                ..Default::default()
            })
            .await?;
        let js = connections[&participant].clone();
        let done = done.clone();
        hops.spawn(relay(consumer, js, hop, done));
    }
    drop(done);

    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut started_at = HashMap::with_capacity(unsettled);
    let mut acks = FuturesUnordered::new();
    let cpu_before = crate::bench::usage(server_pid)?.cpu_seconds;
    let started = Instant::now();
    let mut placed = 0;
    let mut settled = 0;
    let run = async {
        while settled < sagas {
            while placed < sagas && started_at.len() < unsettled {
                started_at.insert(placed, Instant::now());
                let ack = js
                    .publish(subject(0, &placed.to_string()), payload.clone())
                    .await?;
                acks.push(ack.into_future());
                placed += 1;
            }
            tokio::select! {
                Some(ack) = acks.next() => {
                    ack?;
                }
                saga = finished.recv() => {
                    let saga = saga.context("every hop stopped")?;
                    // A repeat (a redelivery of the last hop) counts once.
                    if let Some(began) = started_at.remove(&saga) {
                        latency.record(began.elapsed().as_micros() as u64)?;
                        settled += 1;
                    }
                }
                Some(stopped) = hops.join_next() => {
                    stopped??;
                    anyhow::bail!("a hop stopped");
                }
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .context("sagas still unrelayed after 2 minutes")??;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::bench::usage(server_pid)?.cpu_seconds - cpu_before;
    hops.abort_all();
    js.delete_stream("RELAY").await?;
    Ok(SagaFlow {
        sagas,
        sagas_per_s: sagas as f64 / seconds,
        unsettled,
        latency_ms: Percentiles::of(&latency),
        server_cpu_ms_per_saga: cpu * 1000.0 / sagas as f64,
    })
}

/// `relay.<saga>.<hop>`: laid out as jetsaga's subjects are (the saga's
/// id, then what the message is), which is what the server's subject
/// index and the hops' filters (`relay.*.<hop>`) work on.
fn subject(hop: usize, saga: &str) -> String {
    format!("relay.{saga}.{hop}")
}

/// One hop's participant: for each message, stores the next hop's (or,
/// at the last hop, tells the load), then acks it.
async fn relay(
    consumer: jetstream::consumer::PullConsumer,
    js: Context,
    hop: usize,
    done: mpsc::UnboundedSender<usize>,
) -> anyhow::Result<()> {
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(HANDLING_AT_ONCE)
        .messages()
        .await?;
    let mut handling = FuturesUnordered::new();
    loop {
        tokio::select! {
            message = messages.next(), if handling.len() < HANDLING_AT_ONCE => {
                let message = message
                    .context("the consumer ended")?
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let js = js.clone();
                let done = done.clone();
                handling.push(async move {
                    let saga = message.subject.split('.').nth(1).unwrap_or_default();
                    if hop + 1 < HOPS {
                        js.publish(subject(hop + 1, saga), message.payload.clone())
                            .await?
                            .into_future()
                            .await?;
                    } else {
                        let _ = done.send(saga.parse()?);
                    }
                    message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))
                });
            }
            Some(handled) = handling.next() => handled?,
        }
    }
}
