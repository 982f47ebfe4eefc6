//! Load generation: place orders at a fixed rate (or as fast as they are
//! acknowledged), follow each to its outcome on `orders.evt.>`, and report
//! throughput, latency percentiles and outcomes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use jetsaga_client::{place_body, Client};
use rand::Rng;
use serde::Serialize;

use crate::progress;

/// Publish acknowledgements awaited at once.
const ACKS_IN_FLIGHT: usize = 2048;

/// One load run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Orders to place (at most, with a duration).
    pub count: usize,
    /// Stop placing after this long.
    pub duration: Option<Duration>,
    pub rate: Option<f64>,
    /// Without a rate: at most this many orders placed and not yet settled
    /// (a closed loop that keeps the suite busy without a backlog that
    /// would run into the step deadlines).
    pub max_in_flight: Option<usize>,
    pub skus: Vec<String>,
    pub customers: Vec<String>,
    pub max_lines: usize,
    pub settle: Duration,
    /// Show a progress bar (on a terminal only).
    pub progress: bool,
}

/// What a load run saw.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub placed: usize,
    pub confirmed: usize,
    pub cancelled: BTreeMap<String, usize>,
    pub unsettled: usize,
    pub seconds: f64,
    /// Orders settled per second, over the whole run.
    pub throughput: f64,
    /// From publishing the command to seeing `confirmed` or `cancelled`.
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// The percentiles, in milliseconds, of a histogram of microseconds.
    pub fn of(micros: &Histogram<u64>) -> Self {
        let ms = |q: f64| micros.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: micros.max() as f64 / 1000.0,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cancelled: usize = self.cancelled.values().sum();
        writeln!(
            f,
            "placed {} orders in {:.1} s: {:.0} sagas/s settled",
            self.placed, self.seconds, self.throughput
        )?;
        write!(f, "  confirmed {}, cancelled {cancelled}", self.confirmed)?;
        if !self.cancelled.is_empty() {
            let reasons: Vec<String> = self
                .cancelled
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        if self.unsettled > 0 {
            write!(f, ", STILL PENDING {}", self.unsettled)?;
        }
        let l = &self.latency_ms;
        write!(
            f,
            "\n  latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max
        )
    }
}

#[derive(Debug, Default)]
struct Tally {
    started: HashMap<String, Instant>,
    confirmed: usize,
    cancelled: BTreeMap<String, usize>,
}

impl Tally {
    fn settled(&self) -> usize {
        self.confirmed + self.cancelled.values().sum::<usize>()
    }
}

/// Places `spec.count` orders and follows them to their outcome.
pub async fn run(client: &Client, spec: &Spec) -> anyhow::Result<Report> {
    anyhow::ensure!(
        !spec.skus.is_empty() && !spec.customers.is_empty(),
        "need skus and customers"
    );
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        600_000_000,
        3,
    )?));
    let outcomes = client.nats().subscribe("orders.evt.*.*").await?;
    client.nats().flush().await?;
    let settled = Arc::new(tokio::sync::Notify::new());
    let collector = tokio::spawn(collect(
        outcomes,
        tally.clone(),
        latencies.clone(),
        settled.clone(),
    ));

    let bar = progress::bar(spec.progress, total(spec), "orders settled");
    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    let mut placed = 0;
    for i in 0..spec.count {
        if spec.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let Some(rate) = spec.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        } else if let Some(max) = spec.max_in_flight {
            loop {
                // Registered before the check, so no settlement is missed.
                let next = settled.notified();
                if i < lock(&tally).settled() + max {
                    break;
                }
                next.await;
            }
        }
        let order_id = format!("load-{run_id}-{i}");
        let body = random_order(spec, &order_id);
        lock(&tally).started.insert(order_id, Instant::now());
        let ack = client
            .send(events::subjects::PLACE_ORDER, Default::default(), body)
            .await?;
        acks.push(ack.into_future());
        placed += 1;
        while acks.len() >= ACKS_IN_FLIGHT {
            acks.next()
                .await
                .context("an ack")?
                .context("placing an order")?;
        }
        if i % 100 == 0 {
            show(&bar, &tally, placed);
        }
    }
    while let Some(ack) = acks.next().await {
        ack.context("placing an order")?;
    }
    let all_placed = Instant::now();
    let mut last_settled = 0;
    let mut last_progress = Instant::now();
    loop {
        let settled = lock(&tally).settled();
        if settled >= placed {
            break;
        }
        if settled > last_settled {
            last_settled = settled;
            last_progress = Instant::now();
        }
        if last_progress.elapsed() > spec.settle && all_placed.elapsed() > spec.settle {
            break;
        }
        show(&bar, &tally, placed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    collector.abort();
    show(&bar, &tally, placed);
    bar.finish_and_clear();
    let tally = lock(&tally);
    let histogram = lock(&latencies);
    Ok(Report {
        placed,
        confirmed: tally.confirmed,
        cancelled: tally.cancelled.clone(),
        unsettled: placed - tally.settled().min(placed),
        seconds: elapsed.as_secs_f64(),
        throughput: tally.settled() as f64 / elapsed.as_secs_f64(),
        latency_ms: Percentiles::of(&histogram),
    })
}

fn random_order(spec: &Spec, order_id: &str) -> bytes::Bytes {
    let mut rng = rand::rng();
    let customer = &spec.customers[rng.random_range(0..spec.customers.len())];
    let lines: Vec<(&str, u32)> = (0..rng.random_range(1..=spec.max_lines))
        .map(|_| {
            (
                spec.skus[rng.random_range(0..spec.skus.len())].as_str(),
                rng.random_range(1..=3),
            )
        })
        .collect();
    place_body(order_id, customer, &lines)
}

/// Counts each order's final event and how long it took.
async fn collect(
    mut events: async_nats::Subscriber,
    tally: Arc<Mutex<Tally>>,
    latencies: Arc<Mutex<Histogram<u64>>>,
    settled: Arc<tokio::sync::Notify>,
) {
    while let Some(message) = events.next().await {
        let subject = message.subject.as_str();
        let outcome = events::subjects::last_token(subject);
        if outcome != "confirmed" && outcome != "cancelled" {
            continue;
        }
        let Some(order_id) = events::subjects::order_id_token(subject) else {
            continue;
        };
        let mut tally = lock(&tally);
        let Some(started) = tally.started.remove(order_id) else {
            continue;
        };
        let micros = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = lock(&latencies).record(micros);
        if outcome == "confirmed" {
            tally.confirmed += 1;
        } else {
            let reason = serde_json::from_slice::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|b| b["reason"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".to_owned());
            *tally.cancelled.entry(reason).or_default() += 1;
        }
        drop(tally);
        settled.notify_one();
    }
}

/// The orders a run will place, when that is known in advance.
fn total(spec: &Spec) -> Option<usize> {
    spec.duration.is_none().then_some(spec.count)
}

/// The bar counts settled orders; its message, the rest of the tally.
fn show(bar: &ProgressBar, tally: &Mutex<Tally>, placed: usize) {
    let tally = lock(tally);
    let cancelled: usize = tally.cancelled.values().sum();
    bar.set_position(tally.settled() as u64);
    bar.set_message(format!(
        "placed {placed}, confirmed {}, cancelled {cancelled}, in flight {}",
        tally.confirmed,
        placed.saturating_sub(tally.settled())
    ));
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
