//! What one benchmark run measured, the targets it checks, and the table
//! it prints for people (the JSON is the same structs, serialized).

use std::collections::BTreeMap;

use serde::Serialize;
use workload::{Percentiles, Report};

use crate::relay::{self, Flow, SagaFlow};

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub machine: Machine,
    /// The share of the machine's CPU time the hypervisor gave to other
    /// machines over the whole run, in percent (the saturation run's alone
    /// is `steal_percent`): where it is large, the run measured a slower
    /// machine than it names, and unevenly.
    pub run_steal_percent: f64,
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
    #[serde(flatten)]
    pub measured: Measured,
    /// Saturation with and without security, alternating; absent with
    /// `--plain` or `--security-rounds 0`.
    pub security: Option<SecurityCost>,
    pub targets: Vec<Target>,
}

/// What the saga runs through the suite measured.
#[derive(Debug, Serialize)]
pub struct Measured {
    pub saturation: Report,
    /// At half the saturation throughput.
    pub half_saturation: RateRun,
    /// One order at a time, each alone on the suite.
    pub alone: Report,
    pub rates: Vec<RateRun>,
    pub per_saga: Cost,
    /// The share of the machine's CPU time the hypervisor gave to other
    /// machines during the saturation run, in percent: a run with much of
    /// it measured a slower machine than it reports.
    pub steal_percent: f64,
    /// The atomic batches of the saturation run, by stream.
    pub batches: BTreeMap<String, GroupCommit>,
    /// How long the services' consumers took per message during the
    /// saturation run, by consumer: a saga's latency is about the sum,
    /// over consumers, of `per_saga` × `mean_ms`.
    pub handling: BTreeMap<String, Handling>,
    pub resources: BTreeMap<String, Resources>,
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
    pub per_saga: f64,
    pub batches_per_s: f64,
    pub mean_messages: f64,
    /// From a batch's first message sent to its outcome.
    pub mean_ms: f64,
    /// Refused by an expected-sequence check (their changes are then
    /// committed again one by one).
    pub refused: f64,
}

/// Saturation runs of the secured suite and of the same suite without
/// authentication or permissions, alternating (`--security-rounds`).
#[derive(Debug, Default, Serialize)]
pub struct SecurityCost {
    pub plain: Vec<Report>,
    pub secured: Vec<Report>,
}

impl SecurityCost {
    /// Sagas a second of each, over all its rounds.
    pub fn throughputs(&self) -> (f64, f64) {
        let rate = |runs: &[Report]| {
            let sagas: usize = runs.iter().map(|r| r.placed - r.unsettled).sum();
            let seconds: f64 = runs.iter().map(|r| r.seconds).sum();
            sagas as f64 / seconds.max(f64::MIN_POSITIVE)
        };
        (rate(&self.plain), rate(&self.secured))
    }

    fn all_confirmed(&self) -> bool {
        self.plain
            .iter()
            .chain(&self.secured)
            .all(|r| r.confirmed == r.placed)
    }
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
    /// nats-server's CPU time (every node's, on a cluster).
    pub server_cpu_ms: f64,
    /// The same, node by node.
    pub server_cpu_ms_by_node: BTreeMap<String, f64>,
    /// The four services' CPU time, together.
    pub services_cpu_ms: f64,
    /// nats-server's write system calls.
    pub server_write_syscalls: f64,
    /// Flushes the store's disk completed (fsyncs that reached it; the
    /// whole device's, so anything else writing to it counts too); `None`
    /// where the kernel does not count them.
    pub disk_flushes: Option<f64>,
    /// The same by stream: where a saga's writes go, and so which stream's
    /// leader bounds the rate first (docs/scaling.md).
    pub streams: BTreeMap<String, StreamCost>,
}

/// What one saga costs one stream.
#[derive(Debug, Default, Serialize)]
pub struct StreamCost {
    /// Messages stored.
    pub stored_messages: f64,
    /// Deliveries to its consumers.
    pub deliveries: f64,
    /// The services' atomic batches on it.
    pub atomic_batches: f64,
    /// The node that led it at the end of the run, on a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
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

/// How the suite ran: what decides which targets apply.
#[derive(Debug, Clone, Copy)]
pub struct RunMode {
    /// Every write on disk before it is acknowledged (`--sync-always`).
    pub sync_always: bool,
    /// The suite secured over TLS (`--tls`).
    pub tls: bool,
}

/// Writes a saga makes that wait on the server: three atomic changes (the
/// reservation, the charge, the commit) and seven publishes.
const SAGA_ATOMIC_CHANGES: f64 = 3.0;
const SAGA_PUBLISHES: f64 = 7.0;

/// The performance targets (docs/performance.md, "Targets"), each checked
/// against what this same run measured: the saga flows, the saga runs, and
/// how soon each process was ready.
pub fn targets(
    measured: &Measured,
    jetstream: &Ceiling,
    saga_flows: &[SagaFlow],
    ready_ms: &BTreeMap<String, f64>,
    security: Option<&SecurityCost>,
    mode: RunMode,
) -> Vec<Target> {
    let Measured {
        saturation,
        half_saturation,
        alone,
        rates,
        resources,
        ..
    } = measured;
    let mut targets = Vec::new();
    let all_confirmed = saturation.confirmed == saturation.placed;
    if let Some(atomic) = saga_flows.iter().find(|f| f.flow == Flow::AtomicChanges) {
        let ratio = saturation.throughput / atomic.sagas_per_s.max(f64::MIN_POSITIVE);
        targets.push(Target {
            what: "saturation against the atomic saga flow".into(),
            goal: ">= 90%, every one confirmed".into(),
            measured: format!(
                "{:.0} of {:.0} sagas/s = {:.0}%, {} of {} confirmed",
                saturation.throughput,
                atomic.sagas_per_s,
                ratio * 100.0,
                saturation.confirmed,
                saturation.placed
            ),
            met: ratio >= 0.9 && all_confirmed,
        });
    }
    let half = &half_saturation.report;
    targets.push(Target {
        what: format!(
            "p99 at half saturation ({:.0}/s offered)",
            half_saturation.offered_per_s
        ),
        goal: "<= 50 ms, every one confirmed".into(),
        measured: format!(
            "{:.1} ms, {} of {} confirmed",
            half.latency_ms.p99, half.confirmed, half.placed
        ),
        met: half.latency_ms.p99 <= 50.0 && half.confirmed == half.placed && half.unsettled == 0,
    });
    let floor = SAGA_ATOMIC_CHANGES * jetstream.atomic_change_latency_ms.p50
        + SAGA_PUBLISHES * jetstream.publish_latency_ms.p50;
    targets.push(Target {
        what: "p50 of one order alone".into(),
        goal: format!("<= 2 x its writes' floor ({floor:.1} ms)"),
        measured: format!(
            "{:.1} ms = {:.1} x the floor",
            alone.latency_ms.p50,
            alone.latency_ms.p50 / floor.max(f64::MIN_POSITIVE)
        ),
        met: alone.latency_ms.p50 <= 2.0 * floor && alone.unsettled == 0,
    });
    if mode.sync_always {
        targets.push(Target {
            what: "saturation at full durability".into(),
            goal: ">= 600 sagas/s, every one confirmed".into(),
            measured: format!("{:.0} sagas/s", saturation.throughput),
            met: saturation.throughput >= 600.0 && all_confirmed,
        });
        if let Some(run) = rates.iter().find(|r| r.offered_per_s == 250.0) {
            targets.push(Target {
                what: "p99 at 250/s at full durability".into(),
                goal: "<= 100 ms".into(),
                measured: format!("{:.1} ms", run.report.latency_ms.p99),
                met: run.report.latency_ms.p99 <= 100.0 && run.report.unsettled == 0,
            });
        }
    }
    if let Some(security) = security {
        let (plain, secured) = security.throughputs();
        let ratio = secured / plain.max(f64::MIN_POSITIVE);
        targets.push(Target {
            what: format!(
                "saturation {} against plain",
                if mode.tls {
                    "secured over TLS"
                } else {
                    "secured"
                }
            ),
            goal: ">= 90%, every one confirmed".into(),
            measured: format!(
                "{secured:.0} of {plain:.0} sagas/s = {:.0}% ({} rounds each)",
                ratio * 100.0,
                security.secured.len()
            ),
            met: ratio >= 0.9 && security.all_confirmed(),
        });
    }
    for (name, usage) in resources
        .iter()
        .filter(|(n, _)| !n.starts_with("nats-server"))
    {
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

/// The report as a table for people.
pub fn table(r: &BenchReport) -> String {
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
    let _ = writeln!(
        t,
        "CPU time stolen by the hypervisor over the whole run: {:.1}%",
        r.run_steal_percent
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
        let flushes = f
            .disk_flushes_per_saga
            .map_or_else(String::new, |n| format!(", {n:.2} disk flushes"));
        let _ = writeln!(
            t,
            "  {:<48} {:>5.0} sagas/s, p50 {:.1} ms, p99 {:.1} ms; {} stored and {:.2} ms of nats-server CPU{flushes} a saga",
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
    let _ = writeln!(
        t,
        "\nsaturation (CPU time stolen by the hypervisor meanwhile: {:.1}%)\n{}",
        r.measured.steal_percent, r.measured.saturation
    );
    let half = &r.measured.half_saturation;
    let _ = writeln!(
        t,
        "\nhalf saturation, offered {}/s\n{}",
        half.offered_per_s, half.report
    );
    let _ = writeln!(t, "\none order at a time\n{}", r.measured.alone);
    for run in &r.measured.rates {
        let _ = writeln!(t, "\noffered {}/s\n{}", run.offered_per_s, run.report);
    }
    if let Some(security) = &r.security {
        let (plain, secured) = security.throughputs();
        let runs = |runs: &[Report]| {
            let each: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}", r.throughput))
                .collect();
            each.join(", ")
        };
        let _ = writeln!(
            t,
            "\nsecurity, alternating saturation runs: plain {plain:.0} sagas/s ({}), secured {secured:.0} sagas/s ({})",
            runs(&security.plain),
            runs(&security.secured)
        );
    }
    let c = &r.measured.per_saga;
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
    let flushes = c
        .disk_flushes
        .map_or_else(|| "not counted".to_owned(), |f| format!("{f:.2}"));
    let _ = writeln!(
        t,
        "disk per saga: {:.1} write calls of nats-server, disk flushes {flushes}",
        c.server_write_syscalls
    );
    for (stream, s) in &c.streams {
        let leader = s
            .leader
            .as_ref()
            .map_or_else(String::new, |l| format!(", led by {l}"));
        let _ = writeln!(
            t,
            "  {stream:<10} {:>5.1} stored, {:>4.1} deliveries, {:.3} atomic batches a saga{leader}",
            s.stored_messages, s.deliveries, s.atomic_batches
        );
    }
    if c.server_cpu_ms_by_node.len() > 1 {
        let nodes: Vec<String> = c
            .server_cpu_ms_by_node
            .iter()
            .map(|(node, ms)| format!("{node} {ms:.2} ms"))
            .collect();
        let _ = writeln!(t, "nats-server CPU a saga, by node: {}", nodes.join(", "));
    }
    for (stream, b) in &r.measured.batches {
        let _ = writeln!(
            t,
            "atomic batches on {stream} (saturation): {:.0}/s, {:.1} messages and {:.1} ms each, {:.0} refused",
            b.batches_per_s, b.mean_messages, b.mean_ms, b.refused
        );
    }
    if !r.measured.handling.is_empty() {
        let _ = writeln!(
            t,
            "\nhandling one message, during saturation (what a saga's latency is made of):"
        );
        for (consumer, h) in &r.measured.handling {
            let _ = writeln!(
                t,
                "  {consumer:<20} {:>7.1} ms x {:.1} a saga",
                h.mean_ms, h.per_saga
            );
        }
        let sum: f64 = r
            .measured
            .handling
            .values()
            .map(|h| h.mean_ms * h.per_saga)
            .sum();
        let _ = writeln!(t, "  {:<20} {sum:>7.1} ms", "sum");
    }
    let _ = writeln!(
        t,
        "\n{:<20} {:>14} {:>12}",
        "process", "peak RSS MiB", "CPU s"
    );
    for (name, u) in &r.measured.resources {
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
