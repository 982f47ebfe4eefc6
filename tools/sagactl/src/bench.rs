//! `sagactl bench`: how close jetsaga runs to JetStream's own limit on this
//! machine. In one run, against its own nats-server (temporary store) and
//! the four service binaries beside `sagactl`:
//!
//! 1. the JetStream ceiling: async publishes with acks in flight, pull
//!    consume + ack, and two-message atomic batches (jetsaga's write), and
//!    the floor: how long one publish and one atomic change take alone;
//!    and the saga flow: a saga's messages relayed by participants that do
//!    nothing else ([`crate::relay`]), the most any implementation of the
//!    saga could settle here;
//! 2. each service's time from start to ready;
//! 3. sagas per second at saturation, every order expected to confirm;
//! 4. latency percentiles at fixed offered rates;
//! 5. what one saga costs in stored messages, consumer deliveries and NATS
//!    messages, from the server's own statistics, and in CPU time;
//! 6. how the services' atomic batches went during the saturation run
//!    (their `jetsaga_store_batch_*` metrics), and how long each consumer
//!    took per message (what a saga's latency is made of);
//! 7. peak RSS and CPU seconds of each service and of nats-server;
//!
//! then prints a table (and JSON with `--json` or `--out`) and checks the
//! targets of the performance issue.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::consumer::pull::Config as PullConfig;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use bytes::Bytes;
use clap::Args;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use jetsaga_client::Client;
use serde::Serialize;
use testkit::{free_port, http_get, NatsServer};

use crate::demo::{self, Service};
use crate::load::{self, Percentiles, Report};
use crate::output::Output;
use crate::relay::{self, Flow, SagaFlow};
use crate::seed::{self, customer_name, sku_name, Plan};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Orders in the saturation run.
    #[arg(long, default_value_t = 10_000)]
    pub saturation_orders: usize,
    /// Orders unsettled at once in the saturation run: enough to keep every
    /// service busy, few enough that none waits into its step deadline.
    #[arg(long, default_value_t = 256)]
    pub saturation_in_flight: usize,
    /// Offered rates of the latency runs, orders per second.
    #[arg(long, value_delimiter = ',', default_value = "250,1000,2000")]
    pub rates: Vec<f64>,
    /// Seconds each fixed-rate run lasts.
    #[arg(long, default_value_t = 5)]
    pub rate_seconds: u64,
    /// Messages in each raw JetStream measurement.
    #[arg(long, default_value_t = 100_000)]
    pub js_messages: usize,
    /// Sagas relayed through JetStream alone in each saga flow.
    #[arg(long, default_value_t = 20_000)]
    pub flow_sagas: usize,
    /// Skus in the catalogue: fewer make hotter skus, whose changes queue
    /// behind each other.
    #[arg(long, default_value_t = 1000)]
    pub skus: usize,
    /// Customers ordering.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Export the services' traces to this OTLP/HTTP endpoint (off by
    /// default), to measure what tracing costs.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// A small, quick run that checks the benchmark itself.
    #[arg(long)]
    pub quick: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub command: String,
    pub skus: usize,
    pub customers: usize,
    pub trace_export: bool,
    pub jetstream: Ceiling,
    /// A saga's messages through JetStream alone, as many unsettled at
    /// once as in the saturation run: bare, with the states they change,
    /// and with those as jetsaga's atomic changes.
    pub saga_flows: Vec<SagaFlow>,
    /// From process start to `/readyz` 200.
    pub ready_ms: BTreeMap<String, f64>,
    pub saturation: Report,
    pub rates: Vec<RateRun>,
    pub per_saga: Cost,
    /// The atomic batches of the saturation run, by stream.
    pub batches: BTreeMap<String, GroupCommit>,
    /// How long the services' consumers took per message during the
    /// saturation run, by consumer: a saga's latency is about the sum,
    /// over consumers, of `per_saga` × `mean_ms`.
    pub handling: BTreeMap<String, Handling>,
    pub resources: BTreeMap<String, Resources>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub nats_server: String,
}

/// What JetStream itself does on this machine, one file-backed stream.
#[derive(Debug, Serialize)]
pub struct Ceiling {
    /// Async publishes per second, acks awaited 4096 at a time.
    pub publish_per_s: f64,
    /// Messages pulled and acked per second.
    pub consume_ack_per_s: f64,
    /// Two-message changes (atomic, each with its expected-sequence check)
    /// stored per second through jetsaga's store, 32 writers at once.
    pub atomic_changes_per_s: f64,
    /// One publish, from sending it to its ack, with nothing else going on.
    pub publish_latency_ms: Percentiles,
    /// One two-message atomic change through jetsaga's store, alone.
    pub atomic_change_latency_ms: Percentiles,
}

/// A consumer's messages during the saturation run.
#[derive(Debug, Default, Serialize)]
pub struct Handling {
    /// Messages handled per saga settled.
    pub per_saga: f64,
    /// Mean time to handle one (`jetsaga_message_handle_duration_seconds`).
    pub mean_ms: f64,
}

/// How a stream's atomic batches went during the saturation run.
#[derive(Debug, Default, Serialize)]
pub struct GroupCommit {
    pub batches_per_s: f64,
    pub mean_messages: f64,
    /// From a batch's first message sent to its outcome.
    pub mean_ms: f64,
    /// Refused by an expected-sequence check (their changes are then
    /// committed again one by one).
    pub refused: f64,
}

#[derive(Debug, Serialize)]
pub struct RateRun {
    pub offered_per_s: f64,
    pub report: Report,
}

/// What one saga costs, from the server's statistics over the saturation
/// run (its deltas divided by the sagas settled).
#[derive(Debug, Default, Serialize)]
pub struct Cost {
    /// Messages stored in the streams (state, events, commands, timers).
    pub stored_messages: f64,
    /// Messages delivered to the services' consumers.
    pub deliveries: f64,
    /// NATS messages the server received (publishes, acks, API requests).
    pub nats_messages_in: f64,
    /// NATS messages the server sent (deliveries, replies, acks).
    pub nats_messages_out: f64,
    /// nats-server's CPU time.
    pub server_cpu_ms: f64,
    /// The four services' CPU time, together.
    pub services_cpu_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Resources {
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

pub async fn run(args: BenchArgs, out: &Output) -> anyhow::Result<bool> {
    let (workload, js_messages, flow_sagas) = if args.quick {
        let quick = Workload {
            saturation_orders: 500,
            saturation_in_flight: args.saturation_in_flight,
            rates: vec![100.0],
            rate_seconds: 2,
            skus: 50,
            customers: 50,
        };
        (quick, 5_000, 1_000)
    } else {
        let full = Workload {
            saturation_orders: args.saturation_orders,
            saturation_in_flight: args.saturation_in_flight,
            rates: args.rates.clone(),
            rate_seconds: args.rate_seconds,
            skus: args.skus.max(1),
            customers: args.customers.max(1),
        };
        (full, args.js_messages, args.flow_sagas)
    };
    let bin_dir = demo::bin_dir()?;
    let monitor = free_port();
    let nats = NatsServer::start_with(&["-m", &monitor.to_string()]);
    let nats_pid = nats.pid().context("nats-server runs")?;
    let monitor = SocketAddr::from(([127, 0, 0, 1], monitor));
    let logs = std::env::temp_dir().join(format!("jetsaga-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    eprintln!(
        "nats-server {} (monitoring {monitor}); logs in {}",
        nats.url(),
        logs.display()
    );

    let raw = async_nats::connect(nats.url()).await?;
    eprintln!("JetStream ceiling ({js_messages} messages each)...");
    let jetstream = ceiling(&raw, js_messages).await?;
    let mut saga_flows = Vec::new();
    for flow in Flow::ALL {
        eprintln!(
            "saga flow, {}: {flow_sagas} sagas through JetStream alone, {} unsettled at once...",
            flow.describe(),
            workload.saturation_in_flight
        );
        let measured = relay::run(
            &nats.url(),
            nats_pid,
            flow,
            flow_sagas,
            workload.saturation_in_flight,
        )
        .await?;
        saga_flows.push(measured);
    }

    // All four at once, as `docker compose up` starts them: each provisions
    // its streams and binds to the others' as they appear.
    let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", "warn")];
    if let Some(endpoint) = &args.otlp_endpoint {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
        env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"));
    }
    let started = Instant::now();
    let mut services: Vec<Service> = Vec::new();
    for (name, _) in demo::SERVICES {
        match demo::spawn(&bin_dir, name, free_port(), &nats.url(), &logs, &env) {
            Ok(service) => services.push(service),
            Err(e) => {
                for service in &mut services {
                    demo::stop(service).await;
                }
                return Err(e);
            }
        }
    }
    let mut ready_ms = BTreeMap::new();
    let run = async {
        for service in &services {
            let ready = ready_after(service.http, started, Duration::from_secs(30))
                .await
                .with_context(|| format!("{} did not become ready", service.name))?;
            ready_ms.insert(service.name.to_owned(), ready.as_secs_f64() * 1000.0);
        }
        measure(&raw, monitor, &services, nats_pid, &workload).await
    };
    // Whatever happens, nothing started here outlives the run.
    let outcome = tokio::select! {
        outcome = run => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    for service in &mut services {
        demo::stop(service).await;
    }
    drop(nats);
    let (saturation, rate_runs, per_saga, batches, handling, resources) = outcome?;

    let targets = targets(&saturation, &rate_runs, &resources, &ready_ms);
    let report = BenchReport {
        machine: machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        skus: workload.skus,
        customers: workload.customers,
        trace_export: args.otlp_endpoint.is_some(),
        jetstream,
        saga_flows,
        ready_ms,
        saturation,
        rates: rate_runs,
        per_saga,
        batches,
        handling,
        resources,
        targets,
    };
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    out.value(&report, || table(&report));
    Ok(report.saturation.unsettled == 0)
}

/// What the saga runs put through the suite.
#[derive(Debug, Clone)]
struct Workload {
    saturation_orders: usize,
    saturation_in_flight: usize,
    rates: Vec<f64>,
    rate_seconds: u64,
    skus: usize,
    customers: usize,
}

type Measured = (
    Report,
    Vec<RateRun>,
    Cost,
    BTreeMap<String, GroupCommit>,
    BTreeMap<String, Handling>,
    BTreeMap<String, Resources>,
);

async fn measure(
    raw: &async_nats::Client,
    monitor: SocketAddr,
    services: &[Service],
    nats_pid: u32,
    workload: &Workload,
) -> anyhow::Result<Measured> {
    let Workload {
        saturation_orders,
        saturation_in_flight,
        ref rates,
        rate_seconds,
        skus,
        customers,
    } = *workload;
    let client = Client::new(raw.clone());
    // Plenty of everything: every order of the benchmark should confirm.
    let plan = Plan {
        skus: (1..=skus)
            .map(|i| (sku_name(i), 1_000_000_000, 1_000))
            .collect(),
        customers: (1..=customers)
            .map(|i| (customer_name(i), 100_000_000_000_000))
            .collect(),
    };
    seed::seed(&client, &plan).await?;
    let spec = |count: usize, rate: Option<f64>| load::Spec {
        count,
        duration: None,
        rate,
        max_in_flight: rate.is_none().then_some(saturation_in_flight),
        skus: plan.skus.iter().map(|(s, _, _)| s.clone()).collect(),
        customers: plan.customers.iter().map(|(c, _)| c.clone()).collect(),
        max_lines: 3,
        settle: Duration::from_secs(60),
        progress: true,
    };

    eprintln!("saturation: {saturation_orders} orders, {saturation_in_flight} unsettled at once");
    let cpu = || -> anyhow::Result<(f64, f64)> {
        let server = usage(nats_pid)?.cpu_seconds;
        let mut services_cpu = 0.0;
        for service in services {
            services_cpu += usage(service.child.id())?.cpu_seconds;
        }
        Ok((server, services_cpu))
    };
    let before = server_counts(raw, monitor).await?;
    let services_before = service_counts(services).await?;
    let cpu_before = cpu()?;
    let saturation = load::run(&client, &spec(saturation_orders, None)).await?;
    let cpu_after = cpu()?;
    let after = server_counts(raw, monitor).await?;
    let services_after = service_counts(services).await?;
    let sagas = (saturation.confirmed + saturation.cancelled.values().sum::<usize>()).max(1) as f64;
    let batches = services_after
        .batches
        .into_iter()
        .map(|(stream, now)| {
            let then = services_before
                .batches
                .get(&stream)
                .cloned()
                .unwrap_or_default();
            let count = (now.count - then.count).max(1.0);
            let commit = GroupCommit {
                batches_per_s: (now.count - then.count) / saturation.seconds,
                mean_messages: (now.messages - then.messages) / count,
                mean_ms: (now.seconds - then.seconds) / count * 1000.0,
                refused: now.refused - then.refused,
            };
            (stream, commit)
        })
        .collect();
    let handling = services_after
        .handled
        .into_iter()
        .filter_map(|(consumer, now)| {
            let then = services_before
                .handled
                .get(&consumer)
                .cloned()
                .unwrap_or_default();
            let count = now.count - then.count;
            (count > 0.0).then(|| {
                let handled = Handling {
                    per_saga: count / sagas,
                    mean_ms: (now.seconds - then.seconds) / count * 1000.0,
                };
                (consumer, handled)
            })
        })
        .collect();
    let per_saga = Cost {
        stored_messages: (after.stored - before.stored) as f64 / sagas,
        deliveries: (after.delivered - before.delivered) as f64 / sagas,
        nats_messages_in: (after.in_msgs - before.in_msgs) as f64 / sagas,
        nats_messages_out: (after.out_msgs - before.out_msgs) as f64 / sagas,
        server_cpu_ms: (cpu_after.0 - cpu_before.0) * 1000.0 / sagas,
        services_cpu_ms: (cpu_after.1 - cpu_before.1) * 1000.0 / sagas,
    };

    let mut rate_runs = Vec::new();
    for &rate in rates {
        let count = (rate * rate_seconds as f64).round() as usize;
        eprintln!("fixed rate: {rate}/s for {rate_seconds} s ({count} orders)");
        let report = load::run(&client, &spec(count, Some(rate))).await?;
        rate_runs.push(RateRun {
            offered_per_s: rate,
            report,
        });
    }

    let mut resources = BTreeMap::new();
    for service in services {
        resources.insert(service.name.to_owned(), usage(service.child.id())?);
    }
    resources.insert("nats-server".to_owned(), usage(nats_pid)?);
    Ok((
        saturation, rate_runs, per_saga, batches, handling, resources,
    ))
}

/// Polls `/readyz` closely, for a start-up time worth reporting: the time
/// from `started` to the first 200.
async fn ready_after(
    addr: SocketAddr,
    started: Instant,
    within: Duration,
) -> anyhow::Result<Duration> {
    while started.elapsed() < within {
        if let Some((200, _)) = http_get(addr, "/readyz").await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("not ready after {within:?}")
}

async fn ceiling(raw: &async_nats::Client, n: usize) -> anyhow::Result<Ceiling> {
    let js = async_nats::jetstream::new(raw.clone());
    let stream = js
        .create_stream(StreamConfig {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            storage: StorageType::File,
            allow_atomic_publish: true,
            ..Default::default()
        })
        .await?;
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

/// A stream's `jetsaga_store_batch_*` totals, as a service reports them.
#[derive(Debug, Clone, Default)]
struct BatchCounts {
    count: f64,
    messages: f64,
    seconds: f64,
    refused: f64,
}

/// A consumer's `jetsaga_message_handle_duration_seconds` totals.
#[derive(Debug, Clone, Default)]
struct HandledCounts {
    count: f64,
    seconds: f64,
}

/// What the services' own metrics have counted so far.
#[derive(Debug, Default)]
struct ServiceCounts {
    /// Atomic batches, by stream.
    batches: BTreeMap<String, BatchCounts>,
    /// Messages handled, by consumer.
    handled: BTreeMap<String, HandledCounts>,
}

async fn service_counts(services: &[Service]) -> anyhow::Result<ServiceCounts> {
    let mut counts = ServiceCounts::default();
    for service in services {
        let (_, text) = http_get(service.http, "/metrics")
            .await
            .with_context(|| format!("{} serves /metrics", service.name))?;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or_default();
            if let Some(consumer) = label(series, "consumer") {
                let entry = counts.handled.entry(consumer.to_owned()).or_default();
                match name {
                    "jetsaga_message_handle_duration_seconds_count" => entry.count += value,
                    "jetsaga_message_handle_duration_seconds_sum" => entry.seconds += value,
                    _ => {}
                }
                continue;
            }
            let Some(stream) = label(series, "stream") else {
                continue;
            };
            let entry = counts.batches.entry(stream.to_owned()).or_default();
            match name {
                "jetsaga_store_batch_messages_count" => entry.count += value,
                "jetsaga_store_batch_messages_sum" => entry.messages += value,
                "jetsaga_store_batch_duration_seconds_sum" => entry.seconds += value,
                "jetsaga_store_batches_total" if label(series, "outcome") == Some("refused") => {
                    entry.refused += value
                }
                _ => {}
            }
        }
    }
    counts.batches.retain(|_, c| c.count > 0.0);
    Ok(counts)
}

/// The value of label `name` in a Prometheus series such as
/// `metric{a="1",b="2"}`.
fn label<'a>(series: &'a str, name: &str) -> Option<&'a str> {
    let labels = series.split_once('{')?.1.strip_suffix('}')?;
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.trim_matches('"'))
    })
}

#[derive(Debug, Default)]
struct Counts {
    stored: u64,
    delivered: u64,
    in_msgs: u64,
    out_msgs: u64,
}

/// Messages stored in jetsaga's streams, deliveries to its consumers, and
/// the server's message totals.
async fn server_counts(raw: &async_nats::Client, monitor: SocketAddr) -> anyhow::Result<Counts> {
    let js = async_nats::jetstream::new(raw.clone());
    let mut counts = Counts::default();
    for name in ["ORDERS", "INVENTORY", "PAYMENTS", "SAGA"] {
        let mut stream = js.get_stream(name).await?;
        // The last sequence counts every message ever stored, whatever the
        // stream has since discarded.
        counts.stored += stream.info().await?.state.last_sequence;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            counts.delivered += info?.delivered.consumer_sequence;
        }
    }
    let (_, varz) = http_get(monitor, "/varz")
        .await
        .context("the monitoring port answers")?;
    let varz: serde_json::Value = serde_json::from_str(&varz)?;
    counts.in_msgs = varz["in_msgs"].as_u64().unwrap_or(0);
    counts.out_msgs = varz["out_msgs"].as_u64().unwrap_or(0);
    Ok(counts)
}

/// Peak RSS (the kernel's high-water mark) and CPU time of a process.
pub(crate) fn usage(pid: u32) -> anyhow::Result<Resources> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM in /proc/<pid>/status")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .context("utime and stime in /proc/<pid>/stat")?
        .iter()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(Resources {
        peak_rss_mib: hwm_kib / 1024.0,
        cpu_seconds: ticks as f64 / 100.0,
    })
}

fn targets(
    saturation: &Report,
    rates: &[RateRun],
    resources: &BTreeMap<String, Resources>,
    ready_ms: &BTreeMap<String, f64>,
) -> Vec<Target> {
    let mut targets = vec![Target {
        what: "saturation throughput".into(),
        goal: ">= 2500 sagas/s, every one confirmed".into(),
        measured: format!(
            "{:.0} sagas/s, {} of {} confirmed",
            saturation.throughput, saturation.confirmed, saturation.placed
        ),
        met: saturation.throughput >= 2500.0 && saturation.confirmed == saturation.placed,
    }];
    if let Some(run) = rates.iter().find(|r| r.offered_per_s == 1000.0) {
        targets.push(Target {
            what: "p99 latency at 1000/s offered".into(),
            goal: "<= 50 ms".into(),
            measured: format!("{:.1} ms", run.report.latency_ms.p99),
            met: run.report.latency_ms.p99 <= 50.0 && run.report.unsettled == 0,
        });
    }
    for (name, usage) in resources.iter().filter(|(n, _)| *n != "nats-server") {
        targets.push(Target {
            what: format!("peak RSS of {name}"),
            goal: "<= 50 MiB".into(),
            measured: format!("{:.1} MiB", usage.peak_rss_mib),
            met: usage.peak_rss_mib <= 50.0,
        });
    }
    for (name, ms) in ready_ms {
        targets.push(Target {
            what: format!("{name} ready after start"),
            goal: "< 1 s".into(),
            measured: format!("{ms:.0} ms"),
            met: *ms < 1000.0,
        });
    }
    targets
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let nats_server = std::process::Command::new(testkit::nats_server_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        memory_gib: memory_kib / 1024.0 / 1024.0,
        nats_server,
    }
}

fn table(r: &BenchReport) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    let m = &r.machine;
    let _ = writeln!(
        t,
        "\nmachine: {} cpus ({}), {:.0} GiB; {}; trace export {}; {} skus, {} customers",
        m.cpus,
        m.cpu_model,
        m.memory_gib,
        m.nats_server,
        if r.trace_export { "on" } else { "off" },
        r.skus,
        r.customers
    );
    let j = &r.jetstream;
    let _ = writeln!(
        t,
        "JetStream ceiling: publish {:.0}/s, consume+ack {:.0}/s, 2-message atomic changes {:.0}/s",
        j.publish_per_s, j.consume_ack_per_s, j.atomic_changes_per_s
    );
    let _ = writeln!(
        t,
        "JetStream floor (one write alone): publish p50 {:.2} ms (p99 {:.2}), 2-message atomic change p50 {:.2} ms (p99 {:.2})",
        j.publish_latency_ms.p50,
        j.publish_latency_ms.p99,
        j.atomic_change_latency_ms.p50,
        j.atomic_change_latency_ms.p99
    );
    let _ = writeln!(
        t,
        "JetStream saga flow ({} messages a saga, relayed by participants that do nothing):",
        relay::HOPS
    );
    for f in &r.saga_flows {
        let _ = writeln!(
            t,
            "  {:<48} {:>5.0} sagas/s, p50 {:.1} ms, p99 {:.1} ms; {} stored and {:.2} ms of nats-server CPU a saga",
            f.flow.describe(),
            f.sagas_per_s,
            f.latency_ms.p50,
            f.latency_ms.p99,
            f.stored_per_saga,
            f.server_cpu_ms_per_saga
        );
    }
    let ready: Vec<String> = r
        .ready_ms
        .iter()
        .map(|(n, ms)| format!("{n} {ms:.0} ms"))
        .collect();
    let _ = writeln!(t, "ready after start: {}", ready.join(", "));
    let _ = writeln!(t, "\nsaturation\n{}", r.saturation);
    for run in &r.rates {
        let _ = writeln!(t, "\noffered {}/s\n{}", run.offered_per_s, run.report);
    }
    let c = &r.per_saga;
    let _ = writeln!(
        t,
        "\nper saga: {:.1} messages stored, {:.1} deliveries, {:.1} NATS messages in, {:.1} out; CPU: nats-server {:.2} ms, services {:.2} ms",
        c.stored_messages,
        c.deliveries,
        c.nats_messages_in,
        c.nats_messages_out,
        c.server_cpu_ms,
        c.services_cpu_ms
    );
    for (stream, b) in &r.batches {
        let _ = writeln!(
            t,
            "atomic batches on {stream} (saturation): {:.0}/s, {:.1} messages and {:.1} ms each, {:.0} refused",
            b.batches_per_s, b.mean_messages, b.mean_ms, b.refused
        );
    }
    if !r.handling.is_empty() {
        let _ = writeln!(
            t,
            "\nhandling one message, during saturation (what a saga's latency is made of):"
        );
        for (consumer, h) in &r.handling {
            let _ = writeln!(
                t,
                "  {consumer:<20} {:>7.1} ms x {:.1} a saga",
                h.mean_ms, h.per_saga
            );
        }
        let sum: f64 = r.handling.values().map(|h| h.mean_ms * h.per_saga).sum();
        let _ = writeln!(t, "  {:<20} {sum:>7.1} ms", "sum");
    }
    let _ = writeln!(
        t,
        "\n{:<20} {:>14} {:>12}",
        "process", "peak RSS MiB", "CPU s"
    );
    for (name, u) in &r.resources {
        let _ = writeln!(
            t,
            "{name:<20} {:>14.1} {:>12.1}",
            u.peak_rss_mib, u.cpu_seconds
        );
    }
    let _ = writeln!(
        t,
        "\n{:<40} {:<40} {:<32} met",
        "target", "goal", "measured"
    );
    for target in &r.targets {
        let _ = writeln!(
            t,
            "{:<40} {:<40} {:<32} {}",
            target.what,
            target.goal,
            target.measured,
            if target.met { "yes" } else { "NO" }
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn reads_a_label_of_a_prometheus_series() {
        let series = r#"jetsaga_store_batches_total{outcome="refused",stream="INVENTORY"}"#;
        assert_eq!(label(series, "stream"), Some("INVENTORY"));
        assert_eq!(label(series, "outcome"), Some("refused"));
        assert_eq!(label(series, "consumer"), None);
        assert_eq!(label("process_cpu_seconds_total", "stream"), None);
    }
}
