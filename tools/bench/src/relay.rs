//! The JetStream ceiling for a saga: the messages of one order saga relayed
//! through JetStream by participants that do nothing else. It is the most
//! any implementation of this contract's saga can settle on this machine
//! with this server, and the server CPU it needs a saga.
//!
//! A saga here is [`HOPS`] messages on one file-backed stream, each stored
//! by one participant and consumed by the next, as in jetsaga: the order
//! command, `placed`, the reserve command, `reserved`, the charge command,
//! `charged`, the commit command, `committed`, the confirm command and
//! `confirmed`. Each hop has a durable pull consumer with explicit acks,
//! and its participant acks a message only once what it answers is stored,
//! as every jetsaga consumer does; the last hop tells the load the saga is
//! done. The participants are NATS connections of this process, one per
//! service and one for the load. Nothing is read, decided or remembered,
//! and no write carries a check, a timer or a trace context.
//!
//! Three flows ([`Flow`]) tell what the state changes cost on top of the
//! messages: none, the states stored as plain publishes beside the answer,
//! or the states and the answer stored as one atomic batch through
//! jetsaga's store, as the inventory and the payment service write them.

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
use rand::Rng;
use runtime::{Append, Store};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use workload::Percentiles;

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
/// The states each hop's message changes, as jetsaga stores them: two sku
/// levels with `reserved` and with `committed` (the bench's orders have two
/// lines on average), the account with `charged`.
const STATES_CHANGED: [usize; HOPS] = [0, 0, 0, 2, 0, 1, 0, 2, 0, 0];
/// Skus and accounts the states are spread over, as in the bench's
/// catalogue.
const AGGREGATES: u32 = 1000;
/// About the size of a saga record or an order event.
const PAYLOAD_BYTES: usize = 512;
/// About the size of a sku's or an account's state.
const STATE_BYTES: usize = 128;
/// How long the run waits for the next saga to be relayed before it gives
/// up: a hop that failed or a server that stopped.
const STALLED: Duration = Duration::from_secs(30);
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

/// What the participants store when they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// The saga's messages alone.
    Messages,
    /// Also the states the answers change, each its own publish.
    PlainStates,
    /// The states and the answer that announces them as one atomic batch,
    /// through jetsaga's store (and its group commit), as jetsaga does.
    AtomicChanges,
}

impl Flow {
    pub const ALL: [Flow; 3] = [Flow::Messages, Flow::PlainStates, Flow::AtomicChanges];

    pub fn describe(self) -> &'static str {
        match self {
            Flow::Messages => "the saga's messages alone",
            Flow::PlainStates => "with the states they change, plain publishes",
            Flow::AtomicChanges => "with the states, atomic changes as jetsaga's",
        }
    }

    /// The states stored with the message of `hop`.
    fn states_changed(self, hop: usize) -> usize {
        match self {
            Flow::Messages => 0,
            Flow::PlainStates | Flow::AtomicChanges => STATES_CHANGED[hop],
        }
    }
}

/// What relaying sagas through JetStream alone achieved.
#[derive(Debug, Serialize)]
pub struct SagaFlow {
    pub flow: Flow,
    pub sagas: usize,
    /// Messages stored per saga.
    pub stored_per_saga: usize,
    /// Sagas relayed to their last hop per second, `unsettled` at once.
    pub sagas_per_s: f64,
    pub unsettled: usize,
    /// From the first message published to the last one consumed.
    pub latency_ms: Percentiles,
    /// nats-server's CPU time during the run, per saga.
    pub server_cpu_ms_per_saga: f64,
    /// Flushes the store's disk completed during the run, per saga
    /// (`None` where the kernel does not count them).
    pub disk_flushes_per_saga: Option<f64>,
}

/// A connection to an open server, or to any node of an open cluster
/// (`url`: one URL, or several, comma-separated).
pub async fn connect_open(url: &str) -> anyhow::Result<async_nats::Client> {
    let servers = url
        .split(',')
        .map(str::parse::<async_nats::ServerAddr>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(async_nats::connect(servers).await?)
}

/// Waits until JetStream answers: a cluster takes a few seconds to elect
/// its leader.
pub async fn wait_for_jetstream(raw: &async_nats::Client) -> anyhow::Result<()> {
    let js = jetstream::new(raw.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match js.query_account().await {
            Ok(_) => return Ok(()),
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("JetStream did not answer within 60 s: {e}")),
        }
    }
}

/// Waits until the stream `name` has a leader. A replicated stream just
/// created elects one first, and until it has, a publish to it finds no
/// responder.
pub async fn wait_for_leader(js: &jetstream::Context, name: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut stream = js.get_stream(name).await?;
        let info = stream.info().await?;
        match &info.cluster {
            Some(cluster) if cluster.leader.is_none() => {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "stream {name} elected no leader within 60 s"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            _ => return Ok(()),
        }
    }
}

/// Relays `sagas` sagas, at most `unsettled` at once, through a stream of
/// `replicas` on the server at `url` (whose processes are `server_pids`,
/// for their CPU time).
pub async fn run(
    url: &str,
    server_pids: &[u32],
    replicas: usize,
    flow: Flow,
    sagas: usize,
    unsettled: usize,
) -> anyhow::Result<SagaFlow> {
    let mut connections = HashMap::new();
    for participant in CONSUMED_BY {
        if let Entry::Vacant(slot) = connections.entry(participant) {
            slot.insert(jetstream::new(connect_open(url).await?));
        }
    }
    let js = &connections[&Participant::Load];
    let stream = js
        .create_stream(StreamConfig {
            name: "RELAY".into(),
            subjects: vec!["relay.>".into()],
            storage: StorageType::File,
            num_replicas: replicas,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await?;
    wait_for_leader(js, "RELAY").await?;

    // One store (and group committer) per participant, as per service.
    let mut stores = HashMap::new();
    for (participant, js) in &connections {
        stores.insert(*participant, Store::new(js.clone(), "RELAY").await?);
    }
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
        let answer = Answer {
            js: connections[&participant].clone(),
            store: stores[&participant].clone(),
            flow,
            hop,
            state: Bytes::from(vec![b's'; STATE_BYTES]),
        };
        hops.spawn(relay(consumer, answer, done.clone()));
    }
    drop(done);

    let payload = Bytes::from(vec![b'x'; PAYLOAD_BYTES]);
    let mut latency = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut started_at = HashMap::with_capacity(unsettled);
    let mut acks = FuturesUnordered::new();
    let cpu_before = crate::counts::cpu_seconds(server_pids)?;
    let disk_before = crate::counts::DiskCounts::read(server_pids)?;
    let started = Instant::now();
    let mut placed = 0;
    let mut settled = 0;
    let mut progress = Instant::now();
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
                        progress = Instant::now();
                    }
                }
                _ = tokio::time::sleep_until((progress + STALLED).into()) => {
                    anyhow::bail!(
                        "no saga relayed for {STALLED:?}: {settled} of {sagas} relayed"
                    );
                }
                Some(stopped) = hops.join_next() => {
                    stopped??;
                    anyhow::bail!("a hop stopped");
                }
            }
        }
        anyhow::Ok(())
    };
    run.await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = crate::counts::cpu_seconds(server_pids)? - cpu_before;
    let flushes =
        crate::counts::DiskCounts::read(server_pids)?.flushes_since(&disk_before, sagas as f64);
    hops.abort_all();
    js.delete_stream("RELAY").await?;
    let states: usize = (0..HOPS).map(|hop| flow.states_changed(hop)).sum();
    Ok(SagaFlow {
        flow,
        sagas,
        stored_per_saga: HOPS + states,
        sagas_per_s: sagas as f64 / seconds,
        unsettled,
        latency_ms: Percentiles::of(&latency),
        server_cpu_ms_per_saga: cpu * 1000.0 / sagas as f64,
        disk_flushes_per_saga: flushes,
    })
}

/// `relay.<saga>.<hop>`: laid out as jetsaga's subjects are (the saga's
/// id, then what the message is), which is what the server's subject
/// index and the hops' filters (`relay.*.<hop>`) work on.
fn subject(hop: usize, saga: &str) -> String {
    format!("relay.{saga}.{hop}")
}

/// How one hop's participant answers a message.
#[derive(Clone)]
struct Answer {
    js: Context,
    store: Store,
    flow: Flow,
    hop: usize,
    /// The body of every state it stores.
    state: Bytes,
}

impl Answer {
    /// Stores the next hop's message for `saga`, and the states it
    /// changes as the flow says; returns once all of it is stored.
    async fn send(&self, saga: &str, payload: Bytes) -> anyhow::Result<()> {
        let next = subject(self.hop + 1, saga);
        let changed = self.flow.states_changed(self.hop + 1);
        let states: Vec<String> = {
            let mut rng = rand::rng();
            (0..changed)
                .map(|_| {
                    let aggregate = rng.random_range(0..AGGREGATES);
                    format!("relay.state.{aggregate}.{}", self.hop + 1)
                })
                .collect()
        };
        match self.flow {
            Flow::AtomicChanges if changed > 0 => {
                let mut appends: Vec<Append> = states
                    .into_iter()
                    .map(|subject| Append::raw(subject, self.state.clone()))
                    .collect();
                appends.push(Append::raw(next, payload));
                self.store.commit(appends).await?;
            }
            Flow::PlainStates if changed > 0 => {
                let mut acks = Vec::with_capacity(changed + 1);
                for subject in states {
                    acks.push(self.js.publish(subject, self.state.clone()).await?);
                }
                acks.push(self.js.publish(next, payload).await?);
                for ack in acks {
                    ack.await?;
                }
            }
            _ => {
                self.js.publish(next, payload).await?.await?;
            }
        }
        Ok(())
    }
}

/// One hop's participant: for each message, stores its answer (or, at the
/// last hop, tells the load), then acks it.
async fn relay(
    consumer: jetstream::consumer::PullConsumer,
    answer: Answer,
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
                let answer = answer.clone();
                let done = done.clone();
                handling.push(async move {
                    let saga = message.subject.split('.').nth(1).unwrap_or_default();
                    if answer.hop + 1 < HOPS {
                        answer.send(saga, message.payload.clone()).await?;
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
