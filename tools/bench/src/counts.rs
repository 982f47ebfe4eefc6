//! What the bench reads off the processes it runs: the services' own
//! metrics (atomic batches, handling times), the server's statistics
//! (messages stored, delivered, in and out), and each process's peak RSS
//! and CPU time from `/proc`; and the machine it runs on.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context;
use futures::StreamExt;
use launcher::{http_get, metrics, ServiceProcess};

use crate::report::{Machine, Resources};

/// A stream's `jetsaga_store_batch_*` totals, as a service reports them.
#[derive(Debug, Clone, Default)]
pub struct BatchCounts {
    pub count: f64,
    pub messages: f64,
    pub seconds: f64,
    pub refused: f64,
}

/// A consumer's `jetsaga_message_handle_duration_seconds` totals.
#[derive(Debug, Clone, Default)]
pub struct HandledCounts {
    pub count: f64,
    pub seconds: f64,
}

/// What the services' own metrics have counted so far.
#[derive(Debug, Default)]
pub struct ServiceCounts {
    /// Atomic batches, by stream.
    pub batches: BTreeMap<String, BatchCounts>,
    /// Messages handled, by consumer.
    pub handled: BTreeMap<String, HandledCounts>,
}

pub async fn service_counts(services: &[ServiceProcess]) -> anyhow::Result<ServiceCounts> {
    let mut counts = ServiceCounts::default();
    for service in services {
        let (_, text) = http_get(service.http, "/metrics")
            .await
            .with_context(|| format!("{} serves /metrics", service.name))?;
        for sample in metrics::parse(&text) {
            let value = sample.value;
            if let Some(consumer) = sample.label("consumer") {
                let entry = counts.handled.entry(consumer.to_owned()).or_default();
                match sample.name.as_str() {
                    "jetsaga_message_handle_duration_seconds_count" => entry.count += value,
                    "jetsaga_message_handle_duration_seconds_sum" => entry.seconds += value,
                    _ => {}
                }
                continue;
            }
            let Some(stream) = sample.label("stream") else {
                continue;
            };
            let entry = counts.batches.entry(stream.to_owned()).or_default();
            match sample.name.as_str() {
                "jetsaga_store_batch_messages_count" => entry.count += value,
                "jetsaga_store_batch_messages_sum" => entry.messages += value,
                "jetsaga_store_batch_duration_seconds_sum" => entry.seconds += value,
                "jetsaga_store_batches_total" if sample.label("outcome") == Some("refused") => {
                    entry.refused += value
                }
                _ => {}
            }
        }
    }
    counts.batches.retain(|_, c| c.count > 0.0);
    Ok(counts)
}

/// The server's totals since it started.
#[derive(Debug, Default)]
pub struct ServerCounts {
    pub stored: u64,
    pub delivered: u64,
    pub in_msgs: u64,
    pub out_msgs: u64,
}

/// Messages stored in jetsaga's streams, deliveries to its consumers, and
/// the server's message totals.
pub async fn server_counts(
    raw: &async_nats::Client,
    monitors: &[SocketAddr],
) -> anyhow::Result<ServerCounts> {
    let js = async_nats::jetstream::new(raw.clone());
    let mut counts = ServerCounts::default();
    for name in runtime::streams::SAGA_STREAMS {
        let mut stream = js.get_stream(name).await?;
        // The last sequence counts every message ever stored, whatever the
        // stream has since discarded.
        counts.stored += stream.info().await?.state.last_sequence;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            counts.delivered += info?.delivered.consumer_sequence;
        }
    }
    // Every node's: on a cluster, the routes between them count too.
    for monitor in monitors {
        let (_, varz) = http_get(*monitor, "/varz")
            .await
            .context("the monitoring port answers")?;
        let varz: serde_json::Value = serde_json::from_str(&varz)?;
        counts.in_msgs += varz["in_msgs"].as_u64().unwrap_or(0);
        counts.out_msgs += varz["out_msgs"].as_u64().unwrap_or(0);
    }
    Ok(counts)
}

/// The CPU seconds of these processes together.
pub fn cpu_seconds(pids: &[u32]) -> anyhow::Result<f64> {
    pids.iter().map(|pid| Ok(usage(*pid)?.cpu_seconds)).sum()
}

/// Peak RSS (the kernel's high-water mark) and CPU time of a process.
pub fn usage(pid: u32) -> anyhow::Result<Resources> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hwm_kib = proc_field(&status, "VmHWM:").context("VmHWM in /proc/<pid>/status")?;
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

/// [`usage`] of a service that must still be running.
pub fn service_usage(service: &ServiceProcess) -> anyhow::Result<Resources> {
    let pid = service
        .pid()
        .with_context(|| format!("{} is not running", service.name))?;
    usage(pid)
}

/// The number after `key` in a `/proc` file of `key: value unit` lines.
fn proc_field(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = proc_field(&meminfo, "MemTotal:").unwrap_or(0.0);
    let nats_server = launcher::nats_server_binary()
        .ok()
        .and_then(|binary| {
            std::process::Command::new(binary)
                .arg("--version")
                .output()
                .ok()
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proc_field_is_the_number_after_its_key() {
        let status = "Name:\tsaga-orchestrator\nVmHWM:\t   28672 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(proc_field(status, "VmHWM:"), Some(28672.0));
        assert_eq!(proc_field(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        let me = usage(std::process::id()).unwrap();
        assert!(me.peak_rss_mib > 0.0);
        assert!(me.cpu_seconds >= 0.0);
    }
}
