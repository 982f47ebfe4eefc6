//! `sagactl demo`: the whole suite on this machine, secured as in
//! production. Starts a nats-server (temporary store, the suite's
//! identities), provisions the streams as `admin`, starts the four service
//! binaries that sit beside `sagactl`, each as its own identity, makes
//! `nats` CLI contexts for the `client` and `operator` identities, seeds a
//! catalogue and customers, puts a stream of orders through with a live
//! progress line, reports, and keeps everything up until Ctrl-C so the
//! README's `nats` recipes can be tried against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use jetsaga_client::Client;
use launcher::{
    preferred_port, Access, Identity, NatsServer, Security, ServiceProcess, CONSOLE, SERVICES,
};
use rand::Rng;
use workload::{customer_name, sku_name, Plan, Spec};

use crate::output::Output;

/// How long a service may take to become ready, and to stop.
const READY_WITHIN: Duration = Duration::from_secs(30);
const STOP_WITHIN: Duration = Duration::from_secs(30);

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

pub async fn run(args: DemoArgs, out: &Output) -> anyhow::Result<()> {
    // From here on, SIGINT (Ctrl-C) or SIGTERM stops what the demo started:
    // a signal's default action would end this process and leave its
    // nats-server and services running, holding their ports.
    let stop = runtime::service::shutdown_on_signals();
    let monitor = preferred_port(8222).to_string();
    let nats = NatsServer::launch(preferred_port(4222), &["-m", &monitor], Access::Secured)?;
    let logs = std::env::temp_dir().join(format!("jetsaga-demo-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    eprintln!(
        "nats-server    {} (JetStream, temporary store, credentials in {})",
        nats.url(),
        nats.security().material().dir.display()
    );
    let contexts = save_contexts(&nats.url(), nats.security())?;
    eprintln!(
        "nats CLI       contexts jetsaga-client and jetsaga-operator ({}):\n               \
         `nats context select jetsaga-operator` and the README's recipes work as written",
        contexts.display()
    );
    let admin = connect(&nats, Identity::Admin).await?;
    runtime::provision::provision(
        &async_nats::jetstream::new(admin.nats().clone()),
        runtime::streams::Layout::replicas(1),
        false,
    )
    .await?;
    eprintln!("streams        provisioned");

    // The services log JSON, and export traces where the user asks for it.
    let passed: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OTEL_") || k == "RUST_LOG")
        .collect();
    let mut services = Vec::new();
    let mut outcome = Ok(());
    for (name, default_port) in SERVICES {
        let identity = nats.security().service_env(name);
        let mut env: Vec<(&str, &str)> = vec![("LOG_FORMAT", "json")];
        env.extend(passed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(identity.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let http = SocketAddr::from(([127, 0, 0, 1], preferred_port(default_port)));
        match ServiceProcess::launch(name, &nats.url(), http, &env, &logs) {
            Ok(service) => services.push(service),
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        }
    }
    // The console, as operator: whoever has the token it prints may act
    // through it (the user's own CONSOLE_OPERATOR_TOKEN, else a new one).
    let token = std::env::var("CONSOLE_OPERATOR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
    let trace_url = std::env::var("CONSOLE_TRACE_URL").ok();
    if outcome.is_ok() {
        let operator = nats.security().env(Identity::Operator);
        let mut env: Vec<(&str, &str)> = vec![
            ("LOG_FORMAT", "json"),
            ("CONSOLE_OPERATOR_TOKEN", token.as_str()),
        ];
        env.extend(passed.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(operator.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend(trace_url.as_deref().map(|url| ("CONSOLE_TRACE_URL", url)));
        let http = SocketAddr::from(([127, 0, 0, 1], preferred_port(CONSOLE.1)));
        match ServiceProcess::launch(CONSOLE.0, &nats.url(), http, &env, &logs) {
            Ok(console) => services.push(console),
            Err(e) => outcome = Err(e.into()),
        }
    }
    if outcome.is_ok() {
        outcome = tokio::select! {
            outcome = drive(&args, &nats, &services, &token, &logs, out) => outcome,
            () = stop.cancelled() => {
                eprintln!("\nstopping");
                Ok(())
            }
        };
    }
    for service in &mut services {
        service.stop(STOP_WITHIN).await;
    }
    outcome
}

async fn drive(
    args: &DemoArgs,
    nats: &NatsServer,
    services: &[ServiceProcess],
    token: &str,
    logs: &Path,
    out: &Output,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for service in services {
        service.ready(READY_WITHIN).await?;
        eprintln!("{:<14} http://{} (ready)", service.name, service.http);
    }
    eprintln!(
        "all ready in {:.2} s; logs in {}",
        started.elapsed().as_secs_f64(),
        logs.display()
    );
    if let Some(console) = services.iter().find(|s| s.name == CONSOLE.0) {
        eprintln!(
            "console        open http://{} in a browser; to act on sagas, sign in with the \
             operator token {token}",
            console.http
        );
    }

    let client = connect(nats, Identity::Operator).await?;
    let plan = demo_plan();
    workload::seed::seed(&client, &plan, true).await?;
    eprintln!(
        "seeded {} skus and {} customers (a few of them short of money)",
        plan.skus.len(),
        plan.customers.len()
    );

    eprintln!("placing {} orders at {}/s", args.orders, args.rate);
    let spec = Spec {
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
    let report = workload::load::run(&client, &spec).await?;
    out.value(&report, || report.to_string());
    anyhow::ensure!(
        report.unsettled == 0,
        "{} orders did not settle",
        report.unsettled
    );
    if args.no_wait {
        return Ok(());
    }
    eprintln!(
        "\nThe suite keeps running. Try, in another terminal:\n  \
         nats context select jetsaga-operator\n  \
         nats sub 'orders.evt.>'\n  \
         nats pub orders.cmd.place '{{\"order_id\":\"o-1001\",\"customer_id\":\"c-01\",\"items\":[{{\"sku\":\"sku-01\",\"quantity\":2}}]}}'\n  \
         nats req orders.query.get '{{\"order_id\":\"o-1001\"}}'\n  \
         nats micro ls\n  \
         sagactl --context jetsaga-operator get o-1001\n\
         Ctrl-C stops everything."
    );
    // Until a signal stops the demo (`run`).
    std::future::pending().await
}

/// A client of the demo's server, as `identity`.
async fn connect(nats: &NatsServer, identity: Identity) -> anyhow::Result<Client> {
    let connection = nats.security().connection(&nats.url(), identity);
    Ok(Client::connect(&connection).await?)
}

/// Writes the `nats` CLI contexts `jetsaga-client` and `jetsaga-operator`
/// (replacing the demo's earlier ones, touching no other) and returns
/// their folder.
fn save_contexts(url: &str, security: &Security) -> anyhow::Result<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .ok_or_else(|| anyhow::anyhow!("no HOME or XDG_CONFIG_HOME for the nats contexts"))?;
    let dir = config.join("nats/context");
    std::fs::create_dir_all(&dir)?;
    for identity in [Identity::Client, Identity::Operator] {
        let context = serde_json::json!({
            "description": format!("jetsaga demo, as {}", identity.name()),
            "url": url,
            "creds": security.creds(identity),
            "inbox_prefix": auth::inbox_prefix(identity),
        });
        std::fs::write(
            dir.join(format!("jetsaga-{}.json", identity.name())),
            serde_json::to_vec_pretty(&context)?,
        )?;
    }
    Ok(dir)
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
