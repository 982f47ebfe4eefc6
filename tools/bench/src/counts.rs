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

/// One stream's totals since it was made.
#[derive(Debug, Clone, Default)]
pub struct StreamCounts {
    /// Every message ever stored, whatever the stream has since discarded.
    pub stored: u64,
    /// Deliveries to the stream's consumers.
    pub delivered: u64,
    /// The node that leads it, on a cluster.
    pub leader: Option<String>,
}

/// The server's totals since it started.
#[derive(Debug, Default)]
pub struct ServerCounts {
    pub streams: BTreeMap<String, StreamCounts>,
    pub in_msgs: u64,
    pub out_msgs: u64,
}

impl ServerCounts {
    pub fn stored(&self) -> u64 {
        self.streams.values().map(|s| s.stored).sum()
    }

    pub fn delivered(&self) -> u64 {
        self.streams.values().map(|s| s.delivered).sum()
    }
}

/// Messages stored in each of jetsaga's streams, deliveries to its
/// consumers, and the server's message totals.
pub async fn server_counts(
    raw: &async_nats::Client,
    monitors: &[SocketAddr],
) -> anyhow::Result<ServerCounts> {
    let js = async_nats::jetstream::new(raw.clone());
    let mut counts = ServerCounts::default();
    for name in runtime::streams::SAGA_STREAMS {
        let mut stream = js.get_stream(name).await?;
        let info = stream.info().await?;
        let mut totals = StreamCounts {
            stored: info.state.last_sequence,
            delivered: 0,
            leader: info.cluster.as_ref().and_then(|c| c.leader.clone()),
        };
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            totals.delivered += info?.delivered.consumer_sequence;
        }
        counts.streams.insert(name.to_owned(), totals);
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

/// What the server asked of the disk: its processes' write system calls,
/// and the flushes (fsyncs reaching the device) the disk under the
/// temporary directory, which holds the store, completed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskCounts {
    pub write_syscalls: u64,
    /// `None` where the kernel does not count flushes (before 5.5), or
    /// the device is not found.
    pub flushes: Option<u64>,
}

impl DiskCounts {
    pub fn read(pids: &[u32]) -> anyhow::Result<Self> {
        let mut write_syscalls = 0;
        for pid in pids {
            let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
                .with_context(|| format!("reading /proc/{pid}/io"))?;
            write_syscalls += proc_field(&io, "syscw:").context("syscw in /proc/<pid>/io")? as u64;
        }
        Ok(Self {
            write_syscalls,
            flushes: device_flushes(&std::env::temp_dir()),
        })
    }

    /// The flushes completed since `earlier`, per `each` (a saga).
    pub fn flushes_since(&self, earlier: &Self, each: f64) -> Option<f64> {
        let (now, then) = self.flushes.zip(earlier.flushes)?;
        Some(now.saturating_sub(then) as f64 / each)
    }
}

/// Flush requests completed by the block device holding `path`: the
/// 16th field of its `stat` in sysfs, counted on the whole disk when
/// `path` is on a partition.
fn device_flushes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    // The kernel's encoding of a dev_t.
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let device = std::path::PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let disk = if device.join("partition").exists() {
        device.join("..")
    } else {
        device
    };
    let stat = std::fs::read_to_string(disk.join("stat")).ok()?;
    stat.split_whitespace().nth(15)?.parse().ok()
}

/// The machine's CPU time so far, from the first line of `/proc/stat`:
/// all of it, and the part stolen by the hypervisor for other machines.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTime {
    pub total: u64,
    pub steal: u64,
}

impl MachineTime {
    pub fn read() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        Self::parse(&stat).context("the cpu line of /proc/stat")
    }

    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already in user and nice).
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        Some(Self {
            total: ticks.iter().sum(),
            steal: *ticks.get(7)?,
        })
    }

    /// The share of the time since `earlier` that was stolen, in percent.
    pub fn steal_percent_since(&self, earlier: &Self) -> f64 {
        let total = self.total.saturating_sub(earlier.total).max(1);
        self.steal.saturating_sub(earlier.steal) as f64 * 100.0 / total as f64
    }
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
    fn stolen_time_is_the_eighth_number_of_the_cpu_line() {
        let then = MachineTime::parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n").unwrap();
        let now = MachineTime::parse("cpu  200 0 100 1500 20 0 0 140 0 0\n").unwrap();
        assert_eq!(then.steal, 40);
        assert_eq!(now.steal_percent_since(&then), 100.0 * 100.0 / 960.0);
        assert!(MachineTime::parse("intr 1 2 3\n").is_none());
    }

    #[test]
    fn this_process_counts_its_writes() {
        let before = DiskCounts::read(&[std::process::id()]).unwrap();
        std::fs::write(
            std::env::temp_dir().join(format!("bench-counts-{}", std::process::id())),
            b"x",
        )
        .unwrap();
        let after = DiskCounts::read(&[std::process::id()]).unwrap();
        assert!(after.write_syscalls > before.write_syscalls);
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("bench-counts-{}", std::process::id())),
        );
    }

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        let me = usage(std::process::id()).unwrap();
        assert!(me.peak_rss_mib > 0.0);
        assert!(me.cpu_seconds >= 0.0);
    }
}
