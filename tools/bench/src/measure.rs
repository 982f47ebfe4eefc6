//! The saga runs: the suite at saturation (a closed loop, every order
//! expected to confirm) and at fixed offered rates, with what a saga costs
//! the server and the services, how their atomic batches went, and how
//! long each consumer took per message.

use std::collections::BTreeMap;
use std::time::Duration;

use jetsaga_client::Client;
use workload::{customer_name, sku_name, Plan, Report, Spec};

use crate::counts::{server_counts, service_counts, service_usage, usage, DiskCounts, MachineTime};
use crate::report::{Cost, GroupCommit, Handling, Measured, RateRun, SecurityCost, StreamCost};
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

/// A suite seeded with plenty of everything (every order of the benchmark
/// should confirm), and the client that places its orders.
pub struct Loader {
    client: Client,
    plan: Plan,
    in_flight: usize,
}

impl Loader {
    /// Seeds the suite reached by `raw` for `workload`.
    pub async fn seeded(raw: &async_nats::Client, workload: &Workload) -> anyhow::Result<Self> {
        let client = Client::new(raw.clone());
        let plan = Plan {
            skus: (1..=workload.skus)
                .map(|i| (sku_name(i), 1_000_000_000, 1_000))
                .collect(),
            customers: (1..=workload.customers)
                .map(|i| (customer_name(i), 100_000_000_000_000))
                .collect(),
        };
        workload::seed::seed(&client, &plan, true).await?;
        Ok(Self {
            client,
            plan,
            in_flight: workload.saturation_in_flight,
        })
    }

    /// `count` orders at `rate` a second, or as fast as `in_flight`
    /// unsettled at once allow (a closed loop) when there is none.
    pub fn spec(&self, count: usize, rate: Option<f64>) -> Spec {
        Spec {
            count,
            duration: None,
            rate,
            max_in_flight: rate.is_none().then_some(self.in_flight),
            skus: self.plan.skus.iter().map(|(s, _, _)| s.clone()).collect(),
            customers: self.plan.customers.iter().map(|(c, _)| c.clone()).collect(),
            max_lines: 3,
            settle: Duration::from_secs(60),
            progress: true,
        }
    }

    pub async fn run(&self, spec: &Spec) -> anyhow::Result<Report> {
        workload::load::run(&self.client, spec).await
    }
}

/// Seeds plenty of everything, then runs saturation and each offered rate,
/// reading the processes before and after.
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
        ..
    } = *workload;
    let loader = Loader::seeded(raw, workload).await?;
    let spec = |count: usize, rate: Option<f64>| loader.spec(count, rate);

    eprintln!("saturation: {saturation_orders} orders, {saturation_in_flight} unsettled at once");
    // Each node's CPU seconds, and the services' together.
    let cpu = || -> anyhow::Result<(Vec<f64>, f64)> {
        let server = node_pids
            .iter()
            .map(|pid| Ok(usage(*pid)?.cpu_seconds))
            .collect::<anyhow::Result<_>>()?;
        let mut services_cpu = 0.0;
        for service in services {
            services_cpu += service_usage(service)?.cpu_seconds;
        }
        Ok((server, services_cpu))
    };
    let before = server_counts(raw, &monitors).await?;
    let services_before = service_counts(services).await?;
    let cpu_before = cpu()?;
    let disk_before = DiskCounts::read(&node_pids)?;
    let time_before = MachineTime::read()?;
    let saturation = loader.run(&spec(saturation_orders, None)).await?;
    let steal_percent = MachineTime::read()?.steal_percent_since(&time_before);
    let disk_after = DiskCounts::read(&node_pids)?;
    let cpu_after = cpu()?;
    let after = server_counts(raw, &monitors).await?;
    let services_after = service_counts(services).await?;
    let sagas = (saturation.confirmed + saturation.cancelled.values().sum::<usize>()).max(1) as f64;
    let batches: BTreeMap<String, GroupCommit> = services_after
        .batches
        .iter()
        .map(|(stream, now)| {
            let then = services_before
                .batches
                .get(stream)
                .cloned()
                .unwrap_or_default();
            let count = (now.count - then.count).max(1.0);
            let commit = GroupCommit {
                per_saga: (now.count - then.count) / sagas,
                batches_per_s: (now.count - then.count) / saturation.seconds,
                mean_messages: (now.messages - then.messages) / count,
                mean_ms: (now.seconds - then.seconds) / count * 1000.0,
                refused: now.refused - then.refused,
            };
            (stream.clone(), commit)
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
    let streams = after
        .streams
        .iter()
        .map(|(name, now)| {
            let then = before.streams.get(name).cloned().unwrap_or_default();
            let cost = StreamCost {
                stored_messages: (now.stored - then.stored) as f64 / sagas,
                deliveries: (now.delivered - then.delivered) as f64 / sagas,
                atomic_batches: batches.get(name).map_or(0.0, |b| b.per_saga),
                // One server leads everything: only a cluster's say.
                leader: now.leader.clone().filter(|_| nodes.len() > 1),
            };
            (name.clone(), cost)
        })
        .collect();
    let per_saga = Cost {
        stored_messages: (after.stored() - before.stored()) as f64 / sagas,
        deliveries: (after.delivered() - before.delivered()) as f64 / sagas,
        nats_messages_in: (after.in_msgs - before.in_msgs) as f64 / sagas,
        nats_messages_out: (after.out_msgs - before.out_msgs) as f64 / sagas,
        server_cpu_ms: (cpu_after.0.iter().sum::<f64>() - cpu_before.0.iter().sum::<f64>())
            * 1000.0
            / sagas,
        server_cpu_ms_by_node: nodes
            .iter()
            .zip(cpu_after.0.iter().zip(&cpu_before.0))
            .map(|((name, _), (after, before))| (name.clone(), (after - before) * 1000.0 / sagas))
            .collect(),
        services_cpu_ms: (cpu_after.1 - cpu_before.1) * 1000.0 / sagas,
        server_write_syscalls: (disk_after.write_syscalls - disk_before.write_syscalls) as f64
            / sagas,
        disk_flushes: disk_after.flushes_since(&disk_before, sagas),
        streams,
    };

    // Half the saturation just measured: the load at which latency is
    // judged (docs/performance.md, "Targets").
    let half = (saturation.throughput / 2.0).max(1.0).round();
    let count = (half * rate_seconds as f64).round() as usize;
    eprintln!("half saturation: {half}/s for {rate_seconds} s ({count} orders)");
    let half_saturation = RateRun {
        offered_per_s: half,
        report: loader.run(&spec(count, Some(half))).await?,
    };
    // One order at a time on an otherwise idle suite: its latency against
    // the floor of the writes a saga makes.
    eprintln!("one at a time: {IDLE_ORDERS} orders, each alone");
    let alone = loader
        .run(&Spec {
            max_in_flight: Some(1),
            ..spec(IDLE_ORDERS, None)
        })
        .await?;

    let mut rate_runs = Vec::new();
    for &rate in rates {
        let count = (rate * rate_seconds as f64).round() as usize;
        eprintln!("fixed rate: {rate}/s for {rate_seconds} s ({count} orders)");
        let report = loader.run(&spec(count, Some(rate))).await?;
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
        steal_percent,
        batches,
        handling,
        resources,
    })
}

/// What security costs at saturation: the secured suite and the same suite
/// on a server without authentication or permissions, in alternating
/// rounds of `orders` each, so that both see the same moments of a machine
/// whose speed drifts; both suites run all along, the idle one waiting.
pub async fn security_cost(
    secured: &Suite,
    plain: &Suite,
    workload: &Workload,
    rounds: usize,
    orders: usize,
) -> anyhow::Result<SecurityCost> {
    let secured_raw = secured.connect(launcher::Identity::Operator).await?;
    let plain_raw = plain.connect(launcher::Identity::Operator).await?;
    let secured_loader = Loader::seeded(&secured_raw, workload).await?;
    let plain_loader = Loader::seeded(&plain_raw, workload).await?;
    let mut cost = SecurityCost::default();
    for round in 1..=rounds {
        for (name, loader, runs) in [
            ("plain", &plain_loader, &mut cost.plain),
            ("secured", &secured_loader, &mut cost.secured),
        ] {
            eprintln!("security, round {round} of {rounds}, {name}: {orders} orders");
            runs.push(loader.run(&loader.spec(orders, None)).await?);
        }
    }
    Ok(cost)
}
