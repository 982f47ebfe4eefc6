//! Backpressure, measured: a burst of orders placed as fast as JetStream
//! takes them, against the release services on their own nats-server.
//! Each consumer pulls only what it can start, so the burst should show
//! as latency, not as memory: the report is every process's peak RSS (the
//! kernel's high-water mark) and how the burst settled.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use jetsaga_client::Client;
use serde::Serialize;
use workload::{customer_name, sku_name, Plan, Report, Spec};

use crate::counts::{service_usage, usage};
use crate::report::Resources;
use crate::suite::Suite;

#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    /// Orders placed at once.
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Give up on orders still pending this long after the last was placed.
    #[arg(long, default_value_t = 120)]
    settle_seconds: u64,
    /// Also write the JSON report to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct BurstReport {
    orders: usize,
    burst: Report,
    /// Peak RSS and CPU seconds of each process over the whole run.
    resources: BTreeMap<String, Resources>,
}

/// Runs the burst; `Ok(false)` when orders were left unsettled.
pub async fn run(args: BurstArgs, json: bool) -> anyhow::Result<bool> {
    let mut suite = Suite::start_server(false, launcher::Access::Secured, &[])?;
    let measured = async {
        suite.provision().await?;
        suite.start_services(&[("RUST_LOG", "warn")]).await?;
        let client = Client::new(suite.connect(launcher::Identity::Operator).await?);
        // Twenty skus and forty customers with plenty of both: contention
        // as in the demo, and every order can confirm.
        let plan = Plan {
            skus: (1..=20).map(|i| (sku_name(i), 1_000_000, 1_000)).collect(),
            customers: (1..=40)
                .map(|i| (customer_name(i), 1_000_000_000))
                .collect(),
        };
        workload::seed::seed(&client, &plan, true).await?;
        eprintln!(
            "burst: {} orders, as fast as JetStream acknowledges them",
            args.orders
        );
        let spec = Spec {
            count: args.orders,
            duration: None,
            rate: None,
            max_in_flight: None,
            skus: plan.skus.iter().map(|(s, _, _)| s.clone()).collect(),
            customers: plan.customers.iter().map(|(c, _)| c.clone()).collect(),
            max_lines: 3,
            settle: Duration::from_secs(args.settle_seconds),
            progress: true,
        };
        let burst = workload::load::run(&client, &spec).await?;
        let mut resources = BTreeMap::new();
        for service in &suite.services {
            resources.insert(service.name.to_owned(), service_usage(service)?);
        }
        for (name, pid) in suite.nats.processes() {
            resources.insert(name, usage(pid)?);
        }
        anyhow::Ok(BurstReport {
            orders: args.orders,
            burst,
            resources,
        })
    };
    let outcome = tokio::select! {
        outcome = measured => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    suite.stop().await;
    let report = outcome?;
    let text = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &text)?;
    }
    if json {
        println!("{text}");
    } else {
        println!("{}", report.burst);
        println!("peak RSS during the burst:");
        for (name, r) in &report.resources {
            println!("  {name:<18} {:>6.1} MiB", r.peak_rss_mib);
        }
    }
    Ok(report.burst.unsettled == 0)
}
