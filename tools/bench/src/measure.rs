//! The saga runs: the suite at saturation (a closed loop, every order
//! expected to confirm) and at fixed offered rates, with what a saga costs
//! the server and the services, how their atomic batches went, and how
//! long each consumer took per message.

use std::collections::BTreeMap;
use std::time::Duration;

use jetsaga_client::Client;
use workload::{customer_name, sku_name, Plan, Spec};

use crate::counts::{cpu_seconds, server_counts, service_counts, service_usage, usage};
use crate::report::{Cost, GroupCommit, Handling, Measured, RateRun};
use crate::suite::Suite;

/// Orders placed one at a time, each alone on the suite.
const IDLE_ORDERS: usize = 50;

/// What the saga runs put through the suite.
#[derive(Debug, Clone)]
pub struct Workload {
    pub saturation_orders: usize,
    pub saturation_in_flight: usize,
    pub rates: Vec<f64>,
    pub rate_seconds: u64,
    pub skus: usize,
    pub customers: usize,
}

/// Seeds plenty of everything (every order should confirm), then runs
/// saturation and each offered rate, reading the processes before and
/// after.
pub async fn measure(suite: &Suite, workload: &Workload) -> anyhow::Result<Measured> {
    let raw = suite.connect(launcher::Identity::Operator).await?;
    let raw = &raw;
    let services = &suite.services[..];
    let monitors = suite.nats.monitors();
    let nodes = suite.nats.processes();
    let node_pids: Vec<u32> = nodes.iter().map(|(_, pid)| *pid).collect();
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
    workload::seed::seed(&client, &plan, true).await?;
    let spec = |count: usize, rate: Option<f64>| Spec {
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
        let server = cpu_seconds(&node_pids)?;
        let mut services_cpu = 0.0;
        for service in services {
            services_cpu += service_usage(service)?.cpu_seconds;
        }
        Ok((server, services_cpu))
    };
    let before = server_counts(raw, &monitors).await?;
    let services_before = service_counts(services).await?;
    let cpu_before = cpu()?;
    let saturation = workload::load::run(&client, &spec(saturation_orders, None)).await?;
    let cpu_after = cpu()?;
    let after = server_counts(raw, &monitors).await?;
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

    // Half the saturation just measured: the load at which latency is
    // judged (docs/performance.md, "Targets").
    let half = (saturation.throughput / 2.0).max(1.0).round();
    let count = (half * rate_seconds as f64).round() as usize;
    eprintln!("half saturation: {half}/s for {rate_seconds} s ({count} orders)");
    let half_saturation = RateRun {
        offered_per_s: half,
        report: workload::load::run(&client, &spec(count, Some(half))).await?,
    };
    // One order at a time on an otherwise idle suite: its latency against
    // the floor of the writes a saga makes.
    eprintln!("one at a time: {IDLE_ORDERS} orders, each alone");
    let alone = workload::load::run(
        &client,
        &Spec {
            max_in_flight: Some(1),
            ..spec(IDLE_ORDERS, None)
        },
    )
    .await?;

    let mut rate_runs = Vec::new();
    for &rate in rates {
        let count = (rate * rate_seconds as f64).round() as usize;
        eprintln!("fixed rate: {rate}/s for {rate_seconds} s ({count} orders)");
        let report = workload::load::run(&client, &spec(count, Some(rate))).await?;
        rate_runs.push(RateRun {
            offered_per_s: rate,
            report,
        });
    }

    let mut resources = BTreeMap::new();
    for service in services {
        resources.insert(service.name.to_owned(), service_usage(service)?);
    }
    if let Some((console, _)) = &suite.console {
        resources.insert(console.name.to_owned(), service_usage(console)?);
    }
    for (name, pid) in nodes {
        resources.insert(name, usage(pid)?);
    }
    Ok(Measured {
        saturation,
        half_saturation,
        alone,
        rates: rate_runs,
        per_saga,
        batches,
        handling,
        resources,
    })
}
