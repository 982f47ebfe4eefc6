//! `jetsaga-bench`: how close jetsaga runs to JetStream's own limit on this
//! machine. In one run, against its own nats-server (temporary store) and
//! the four service binaries beside it:
//!
//! 1. the JetStream ceiling and floor ([`ceiling`]), and the saga flows: a
//!    saga's messages relayed by participants that do nothing else
//!    ([`relay`]), the most any implementation of the saga could settle
//!    here;
//! 2. each service's time from start to ready;
//! 3. sagas per second at saturation, every order expected to confirm, and
//!    latency percentiles at fixed offered rates ([`measure`]);
//! 4. what one saga costs in stored messages, deliveries, NATS messages,
//!    CPU time and disk flushes, by stream too; the services' atomic
//!    batches and handling times; peak RSS and CPU seconds of every process
//!    ([`counts`]);
//! 5. what security costs: saturation runs alternating between the suite
//!    and the same suite without authentication ([`measure::security_cost`]);
//!
//! then prints a table (JSON with `--json` or `--out`) and checks the
//! performance targets ([`report`]). `jetsaga-bench burst` measures
//! backpressure instead: memory while a burst of orders settles
//! ([`burst`]).
//!
//! Exit codes: 0 every order settled, 1 failure (or orders left
//! unsettled: the numbers are not worth keeping), 2 usage.

mod burst;
mod ceiling;
mod counts;
mod measure;
mod relay;
mod report;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use launcher::Access;

use crate::measure::Workload;
use crate::relay::Flow;
use crate::report::BenchReport;
use crate::suite::{Server, Suite};

#[derive(Debug, Parser)]
#[command(
    name = "jetsaga-bench",
    version,
    about = "Measure the jetsaga suite against JetStream's own limits on this machine",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Print JSON instead of the table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Backpressure: place a burst of orders at once and report each
    /// process's peak memory while it settles.
    Burst(burst::BurstArgs),
}

#[derive(Debug, Clone, Args)]
struct BenchArgs {
    /// Orders in the saturation run.
    #[arg(long, default_value_t = 10_000)]
    saturation_orders: usize,
    /// Orders unsettled at once in the saturation run: enough to keep every
    /// service busy, few enough that none waits into its step deadline.
    #[arg(long, default_value_t = 256)]
    saturation_in_flight: usize,
    /// Offered rates of the latency runs, orders per second.
    #[arg(long, value_delimiter = ',', default_value = "250,1000,2000")]
    rates: Vec<f64>,
    /// Seconds each fixed-rate run lasts.
    #[arg(long, default_value_t = 5)]
    rate_seconds: u64,
    /// Messages in each raw JetStream measurement.
    #[arg(long, default_value_t = 100_000)]
    js_messages: usize,
    /// Sagas relayed through JetStream alone in each saga flow.
    #[arg(long, default_value_t = 20_000)]
    flow_sagas: usize,
    /// Skus in the catalogue: fewer make hotter skus, whose changes queue
    /// behind each other.
    #[arg(long, default_value_t = 1000)]
    skus: usize,
    /// Customers ordering.
    #[arg(long, default_value_t = 1000)]
    customers: usize,
    /// Export the services' traces to this OTLP/HTTP endpoint (off by
    /// default), to measure what tracing costs.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Run the suite on a server without authentication or permissions, to
    /// measure what security costs (by default it runs secured, as
    /// deployed: every process its own identity).
    #[arg(long, conflicts_with = "tls")]
    plain: bool,
    /// Run the suite secured and over TLS, with client certificates.
    #[arg(long)]
    tls: bool,
    /// Run everything (the ceiling, the saga flows and the suite) on a
    /// three-node nats-server cluster on loopback, every stream replicated
    /// three times, as the prod overlay deploys it.
    #[arg(long, conflicts_with = "tls")]
    cluster: bool,
    /// Run every nats-server of the benchmark (the suite's and the saga
    /// flows') with `sync_interval: always`: each write on disk before it
    /// is acknowledged, so that a power loss loses nothing acknowledged.
    #[arg(long)]
    sync_always: bool,
    /// Rounds of the security comparison: saturation runs of half
    /// `--saturation-orders` each, alternating between the suite as
    /// secured (or over TLS, with `--tls`) and the same suite on a server
    /// without authentication or permissions; 0 leaves it out.
    #[arg(long, default_value_t = 2)]
    security_rounds: usize,
    /// A small, quick run that checks the benchmark itself.
    #[arg(long)]
    quick: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.mode {
        Some(Mode::Burst(args)) => burst::run(args, cli.json).await,
        None => run(cli.bench, cli.json).await,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl BenchArgs {
    /// The saga runs, and the messages and sagas of the JetStream runs.
    fn workload(&self) -> (Workload, usize, usize) {
        if self.quick {
            let quick = Workload {
                saturation_orders: 500,
                saturation_in_flight: self.saturation_in_flight,
                rates: vec![100.0],
                rate_seconds: 2,
                skus: 50,
                customers: 50,
            };
            return (quick, 5_000, 1_000);
        }
        let full = Workload {
            saturation_orders: self.saturation_orders,
            saturation_in_flight: self.saturation_in_flight,
            rates: self.rates.clone(),
            rate_seconds: self.rate_seconds,
            skus: self.skus.max(1),
            customers: self.customers.max(1),
        };
        (full, self.js_messages, self.flow_sagas)
    }
}

/// The whole benchmark; `Ok(false)` when orders were left unsettled.
async fn run(args: BenchArgs, json: bool) -> anyhow::Result<bool> {
    let (workload, js_messages, flow_sagas) = args.workload();
    let started = counts::MachineTime::read()?;
    let access = if args.plain {
        Access::Open
    } else if args.tls {
        Access::SecuredTls
    } else {
        Access::Secured
    };
    // The ceiling and the saga flows measure JetStream alone, on subjects
    // of their own: on a server of their own with no permissions, before
    // the suite's starts.
    let durability: &[(&str, &str)] = if args.sync_always {
        &[("sync_interval", "always")]
    } else {
        &[]
    };
    let flows_server = Server::launch(args.cluster, Access::Open, durability)?;
    let flows_pids: Vec<u32> = flows_server
        .processes()
        .into_iter()
        .map(|(_, pid)| pid)
        .collect();
    let replicas = flows_server.replicas();
    let flows = async {
        let raw = relay::connect_open(&flows_server.url()).await?;
        relay::wait_for_jetstream(&raw).await?;
        eprintln!("JetStream ceiling ({js_messages} messages each, {replicas} replicas)...");
        let jetstream = ceiling::ceiling(&raw, js_messages, replicas).await?;
        let mut saga_flows = Vec::new();
        for flow in Flow::ALL {
            eprintln!(
                "saga flow, {}: {flow_sagas} sagas through JetStream alone, {} unsettled at once...",
                flow.describe(),
                workload.saturation_in_flight
            );
            let flow = relay::run(
                &flows_server.url(),
                &flows_pids,
                replicas,
                flow,
                flow_sagas,
                workload.saturation_in_flight,
            )
            .await?;
            saga_flows.push(flow);
        }
        anyhow::Ok((jetstream, saga_flows))
    };
    let (jetstream, saga_flows) = tokio::select! {
        outcome = flows => outcome?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    drop(flows_server);
    let mut suite = Suite::start_server(args.cluster, access, durability)?;
    let measured = async {
        suite.provision().await?;
        let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", "warn")];
        if let Some(endpoint) = &args.otlp_endpoint {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
            env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"));
        }
        let mut ready_ms = suite.start_services(&env).await?;
        let console_ready = suite.start_console(&env).await?;
        ready_ms.insert(launcher::CONSOLE.0.to_owned(), console_ready);
        let measured = measure::measure(&suite, &workload).await?;
        let security = match (access, args.security_rounds) {
            (Access::Open, _) | (_, 0) => None,
            (_, rounds) => {
                let mut plain = Suite::start_server(args.cluster, Access::Open, durability)?;
                plain.provision().await?;
                plain.start_services(&env).await?;
                let orders = (workload.saturation_orders / 2).max(200);
                let cost = measure::security_cost(&suite, &plain, &workload, rounds, orders).await;
                plain.stop().await;
                Some(cost?)
            }
        };
        anyhow::Ok((ready_ms, measured, security))
    };
    // Whatever happens, nothing started here outlives the run.
    let outcome = tokio::select! {
        outcome = measured => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    suite.stop().await;
    let (ready_ms, measured, security) = outcome?;
    let mode = report::RunMode {
        sync_always: args.sync_always,
        tls: args.tls,
    };
    let targets = report::targets(
        &measured,
        &jetstream,
        &saga_flows,
        &ready_ms,
        security.as_ref(),
        mode,
    );
    let report = BenchReport {
        machine: counts::machine(),
        run_steal_percent: counts::MachineTime::read()?.steal_percent_since(&started),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        skus: workload.skus,
        customers: workload.customers,
        trace_export: args.otlp_endpoint.is_some(),
        jetstream,
        saga_flows,
        ready_ms,
        measured,
        security,
        targets,
    };
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{text}");
    } else {
        println!("{}", report::table(&report));
    }
    Ok(report.measured.saturation.unsettled == 0)
}
