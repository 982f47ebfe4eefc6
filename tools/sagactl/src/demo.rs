//! `sagactl demo`: the whole suite on this machine. Starts a nats-server
//! (temporary store) and the four service binaries that sit beside
//! `sagactl`, seeds a catalogue and customers, puts a stream of orders
//! through with a live progress line, reports, and keeps everything up
//! until Ctrl-C so the README's `nats` recipes can be tried against it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use jetsaga_client::Client;
use rand::Rng;
use testkit::{free_port, terminate, wait_until_ready, NatsServer};

use crate::load;
use crate::output::Output;
use crate::seed::{self, customer_name, sku_name, Plan};

pub(crate) const SERVICES: [(&str, u16); 4] = [
    ("order-service", 8081),
    ("inventory-service", 8082),
    ("payment-service", 8083),
    ("saga-orchestrator", 8084),
];

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 1500)]
    pub orders: usize,
    /// Orders per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Stop once the orders are through, instead of waiting for Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

pub(crate) struct Service {
    pub name: &'static str,
    pub child: Child,
    pub http: SocketAddr,
}

pub async fn run(args: DemoArgs, out: &Output) -> anyhow::Result<()> {
    let bin_dir = bin_dir()?;
    let port = if port_is_free(4222) {
        4222
    } else {
        free_port()
    };
    let nats = NatsServer::start_on(port, &["-m", &monitor_port().to_string()]);
    let logs = std::env::temp_dir().join(format!("jetsaga-demo-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    eprintln!("nats-server    {} (JetStream, temporary store)", nats.url());

    let mut services = Vec::new();
    for (name, default_port) in SERVICES {
        services.push(spawn(
            &bin_dir,
            name,
            default_port,
            &nats.url(),
            &logs,
            &[],
        )?);
    }
    let outcome = drive(&args, &nats, &services, &logs, out).await;
    for service in &mut services {
        stop(service).await;
    }
    drop(nats);
    outcome
}

async fn drive(
    args: &DemoArgs,
    nats: &NatsServer,
    services: &[Service],
    logs: &Path,
    out: &Output,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for service in services {
        wait_ready(service).await?;
        eprintln!("{:<14} http://{} (ready)", service.name, service.http);
    }
    eprintln!(
        "all ready in {:.2} s; logs in {}",
        started.elapsed().as_secs_f64(),
        logs.display()
    );

    let client = Client::connect(&nats.url()).await?;
    let plan = demo_plan();
    seed::seed(&client, &plan).await?;
    eprintln!(
        "seeded {} skus and {} customers (a few of them short of money)",
        plan.skus.len(),
        plan.customers.len()
    );

    eprintln!("placing {} orders at {}/s", args.orders, args.rate);
    let spec = load::Spec {
        count: args.orders,
        duration: None,
        rate: Some(args.rate),
        max_in_flight: None,
        skus: plan.skus.iter().map(|(s, _, _)| s.clone()).collect(),
        customers: plan.customers.iter().map(|(c, _)| c.clone()).collect(),
        max_lines: 3,
        settle: Duration::from_secs(30),
        progress: true,
    };
    let report = load::run(&client, &spec).await?;
    out.value(&report, || report.to_string());
    anyhow::ensure!(
        report.unsettled == 0,
        "{} orders did not settle",
        report.unsettled
    );
    if args.no_wait {
        return Ok(());
    }
    let url = nats.url();
    eprintln!(
        "\nThe suite keeps running. Try, in another terminal:\n  \
         nats -s {url} sub 'orders.evt.>'\n  \
         nats -s {url} pub orders.cmd.place '{{\"order_id\":\"o-1001\",\"customer_id\":\"c-01\",\"items\":[{{\"sku\":\"sku-01\",\"quantity\":2}}]}}'\n  \
         nats -s {url} req orders.query.get '{{\"order_id\":\"o-1001\"}}'\n  \
         nats -s {url} micro ls\n  \
         sagactl --nats-url {url} get o-1001\n\
         Ctrl-C stops everything."
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("\nstopping");
    Ok(())
}

/// Twenty skus at varied prices, scarce enough that some orders run out;
/// forty customers, the last five nearly broke.
fn demo_plan() -> Plan {
    let mut rng = rand::rng();
    Plan {
        skus: (1..=20)
            .map(|i| (sku_name(i), 400, rng.random_range(199..4999)))
            .collect(),
        customers: (1..=40)
            .map(|i| (customer_name(i), if i > 35 { 2_000 } else { 10_000_000 }))
            .collect(),
    }
}

/// Where the service binaries are: beside `sagactl`.
pub(crate) fn bin_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .context("sagactl has a folder")?
        .to_path_buf())
}

/// Starts one service binary, logging to `<logs>/<name>.log`.
pub(crate) fn spawn(
    bin_dir: &Path,
    name: &'static str,
    default_port: u16,
    nats_url: &str,
    logs: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Service> {
    let binary: PathBuf = bin_dir.join(name);
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it first (cargo build --release --bins)",
        binary.display()
    );
    let port = if port_is_free(default_port) {
        default_port
    } else {
        free_port()
    };
    let http = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let child = Command::new(&binary)
        .env("NATS_URL", nats_url)
        .env("HTTP_ADDR", http.to_string())
        .env("LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Service { name, child, http })
}

async fn wait_ready(service: &Service) -> anyhow::Result<()> {
    wait_until_ready(service.http, Duration::from_secs(30))
        .await
        .map_err(|last| {
            anyhow::anyhow!("{} not ready after 30 s (/readyz: {last:?})", service.name)
        })
}

/// SIGTERM, then up to the grace period for a clean exit.
pub(crate) async fn stop(service: &mut Service) {
    if terminate(&mut service.child, Duration::from_secs(30))
        .await
        .is_none()
    {
        let _ = service.child.kill();
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub(crate) fn monitor_port() -> u16 {
    if port_is_free(8222) {
        8222
    } else {
        free_port()
    }
}
