//! The sagas as they happen: the console follows `orders.evt.>` and keeps
//! the funnel (placed, confirmed, cancelled by reason), the rates and the
//! latencies of the last minute, and the orders that changed last.
//!
//! Every half second, while a browser watches, it sends one snapshot of all
//! of that to every browser at once ([`Live::subscribe`]): a browser that
//! falls behind skips to the newest snapshot, which is whole, so a slow
//! browser never holds the console's memory or anyone else's updates.
//!
//! What it counts is what this console saw since it started: an order is
//! timed from the `placed` event it heard to the end it heard, and counted
//! once however often its events are repeated.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::metrics::ConsoleMetrics;
use events::saga::{ListSagas, ListStatus, MAX_LIST_LIMIT};
use runtime::http::Readiness;

/// The readiness check of the subscription to `orders.evt.>`.
pub const CHECK: &str = "orders.evt";

/// Every order event (docs/contract.md 4.2).
const ORDER_EVENTS: &str = "orders.evt.>";

/// How often a snapshot goes out.
pub const TICK: Duration = Duration::from_millis(500);
/// The rates are averaged over this many whole seconds...
const RATE_SECONDS: usize = 10;
/// ...and the latencies over this many.
const LATENCY_SECONDS: usize = 60;
/// Orders in the live feed.
pub const RECENT: usize = 20;
/// Orders timed at once: beyond that, new ones are counted, not timed.
const MAX_OPEN: usize = 200_000;
/// Finished orders remembered, so that a repeated event is not counted
/// again.
const FINISHED_REMEMBERED: usize = 100_000;
/// An order heard placed but not finished within this long finished while
/// the console was not listening: it is no longer timed.
const OPEN_FOR_AT_MOST: Duration = Duration::from_secs(3600);
/// How often the stuck sagas are counted (`saga.query.list`).
const STUCK_EVERY: Duration = Duration::from_secs(5);

/// The part of an order event the console reads.
#[derive(Debug, Deserialize)]
struct Heard {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// One order in the live feed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Recent {
    pub order_id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339, when the console heard it.
    pub at: String,
}

/// What the overview shows, and what each update sends.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// RFC 3339: when the console started counting.
    pub since: String,
    pub placed: u64,
    pub confirmed: u64,
    pub cancelled: BTreeMap<String, u64>,
    pub cancelled_total: u64,
    pub rejected: u64,
    /// Placed and not yet finished, of those this console heard placed.
    pub in_flight: usize,
    /// Unfinished sagas whose step was asked more than once, and whether
    /// there are more than were counted; `None` while unknown.
    pub stuck: Option<u64>,
    pub stuck_more: bool,
    /// Per second, over the last [`RATE_SECONDS`].
    pub placed_per_second: f64,
    pub finished_per_second: f64,
    /// Placed to finished, over the last [`LATENCY_SECONDS`].
    pub latency: Option<Latency>,
    /// The orders that changed last, newest first.
    pub recent: Vec<Recent>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// One second of the window.
#[derive(Debug)]
struct Second {
    placed: u64,
    finished: u64,
    latency_ms: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Self {
            placed: 0,
            finished: 0,
            latency_ms: Histogram::new_with_bounds(1, 3_600_000, 2).expect("valid bounds"),
        }
    }
}

#[derive(Debug)]
struct Tally {
    since: OffsetDateTime,
    placed: u64,
    confirmed: u64,
    cancelled: BTreeMap<String, u64>,
    rejected: u64,
    open: HashMap<String, Instant>,
    finished: lru::LruCache<String, ()>,
    /// Newest last; the last one is the second under way.
    seconds: VecDeque<Second>,
    second_started: Instant,
    recent: VecDeque<Recent>,
    stuck: Option<(u64, bool)>,
    swept: Instant,
}

/// The live state, shared by the follower, the ticker and the pages.
#[derive(Debug)]
pub struct Live {
    tally: Mutex<Tally>,
    updates: broadcast::Sender<Arc<str>>,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    pub fn new() -> Self {
        let now = Instant::now();
        let (updates, _) = broadcast::channel(4);
        Self {
            tally: Mutex::new(Tally {
                since: OffsetDateTime::now_utc(),
                placed: 0,
                confirmed: 0,
                cancelled: BTreeMap::new(),
                rejected: 0,
                open: HashMap::new(),
                finished: lru::LruCache::new(
                    NonZeroUsize::new(FINISHED_REMEMBERED).expect("positive"),
                ),
                seconds: VecDeque::from([Second::new()]),
                second_started: now,
                recent: VecDeque::new(),
                stuck: None,
                swept: now,
            }),
            updates,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshots to come, as JSON.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.updates.subscribe()
    }

    /// What the overview shows now.
    pub fn snapshot(&self) -> Snapshot {
        let mut tally = self.lock();
        tally.roll(Instant::now());
        tally.snapshot()
    }

    /// Takes in one order event as heard, at `now`; the event's type, when
    /// it was one the funnel counts.
    fn hear(&self, body: &[u8], now: Instant) -> Option<&'static str> {
        let heard: Heard = serde_json::from_slice(body).ok()?;
        let mut tally = self.lock();
        tally.roll(now);
        let at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        match heard.kind.as_str() {
            "rejected" => {
                tally.rejected += 1;
                Some("rejected")
            }
            "placed" => {
                let id = heard.order_id?;
                if tally.open.contains_key(&id) || tally.finished.contains(&id) {
                    return None;
                }
                tally.placed += 1;
                tally.current().placed += 1;
                if tally.open.len() < MAX_OPEN {
                    tally.open.insert(id.clone(), now);
                }
                tally.show(Recent {
                    order_id: id,
                    status: "PENDING",
                    reason: None,
                    at,
                });
                Some("placed")
            }
            kind @ ("confirmed" | "cancelled") => {
                let id = heard.order_id?;
                if tally.finished.put(id.clone(), ()).is_some() {
                    return None;
                }
                let (status, kind) = if kind == "confirmed" {
                    tally.confirmed += 1;
                    ("CONFIRMED", "confirmed")
                } else {
                    let reason = heard.reason.clone().unwrap_or_else(|| "unknown".to_owned());
                    *tally.cancelled.entry(reason).or_default() += 1;
                    ("CANCELLED", "cancelled")
                };
                let second = tally.seconds.len() - 1;
                tally.seconds[second].finished += 1;
                if let Some(placed) = tally.open.remove(&id) {
                    let ms = now.saturating_duration_since(placed).as_millis();
                    let ms = u64::try_from(ms).unwrap_or(u64::MAX).clamp(1, 3_600_000);
                    tally.seconds[second].latency_ms.saturating_record(ms);
                }
                tally.show(Recent {
                    order_id: id,
                    status,
                    reason: heard.reason,
                    at,
                });
                Some(kind)
            }
            _ => None,
        }
    }

    fn set_stuck(&self, stuck: Option<(u64, bool)>) {
        self.lock().stuck = stuck;
    }
}

impl Tally {
    fn current(&mut self) -> &mut Second {
        self.seconds
            .back_mut()
            .expect("always one second under way")
    }

    /// Starts the seconds that began since the last call, keeping the
    /// window's worth; and now and then forgets orders timed too long.
    fn roll(&mut self, now: Instant) {
        while now.saturating_duration_since(self.second_started) >= Duration::from_secs(1) {
            self.second_started += Duration::from_secs(1);
            self.seconds.push_back(Second::new());
            if self.seconds.len() > LATENCY_SECONDS + 1 {
                self.seconds.pop_front();
            }
            // After a long quiet (nothing heard, nobody watching), start
            // the window afresh rather than one second at a time.
            if now.saturating_duration_since(self.second_started) > Duration::from_secs(120) {
                self.seconds = VecDeque::from([Second::new()]);
                self.second_started = now;
            }
        }
        if now.saturating_duration_since(self.swept) > Duration::from_secs(60) {
            self.swept = now;
            self.open
                .retain(|_, placed| now.saturating_duration_since(*placed) < OPEN_FOR_AT_MOST);
        }
    }

    /// Puts an order at the top of the feed, once.
    fn show(&mut self, recent: Recent) {
        self.recent.retain(|r| r.order_id != recent.order_id);
        self.recent.push_front(recent);
        self.recent.truncate(RECENT);
    }

    fn snapshot(&self) -> Snapshot {
        // The second under way is not whole: rates use the ones before it.
        let whole = self.seconds.len().saturating_sub(1);
        let rated: Vec<&Second> = self
            .seconds
            .iter()
            .take(whole)
            .skip(whole.saturating_sub(RATE_SECONDS))
            .collect();
        let per_second = |count: u64| {
            if rated.is_empty() {
                0.0
            } else {
                count as f64 / rated.len() as f64
            }
        };
        let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000, 2).expect("valid");
        for second in &self.seconds {
            latency.add(&second.latency_ms).expect("same bounds");
        }
        Snapshot {
            since: self.since.format(&Rfc3339).unwrap_or_default(),
            placed: self.placed,
            confirmed: self.confirmed,
            cancelled_total: self.cancelled.values().sum(),
            cancelled: self.cancelled.clone(),
            rejected: self.rejected,
            in_flight: self.open.len(),
            stuck: self.stuck.map(|(count, _)| count),
            stuck_more: self.stuck.is_some_and(|(_, more)| more),
            placed_per_second: per_second(rated.iter().map(|s| s.placed).sum()),
            finished_per_second: per_second(rated.iter().map(|s| s.finished).sum()),
            latency: (!latency.is_empty()).then(|| Latency {
                count: latency.len(),
                p50_ms: latency.value_at_quantile(0.50),
                p90_ms: latency.value_at_quantile(0.90),
                p99_ms: latency.value_at_quantile(0.99),
                max_ms: latency.max(),
            }),
            recent: self.recent.iter().cloned().collect(),
        }
    }
}

/// Follows `orders.evt.>` until shutdown, subscribing again whenever the
/// subscription ends (the connection keeps it across reconnects).
pub async fn follow(
    nats: async_nats::Client,
    live: Arc<Live>,
    readiness: Readiness,
    metrics: ConsoleMetrics,
    shutdown: CancellationToken,
) {
    let mut backoff =
        runtime::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    while !shutdown.is_cancelled() {
        let mut events = match nats.subscribe(ORDER_EVENTS).await {
            Ok(events) => events,
            Err(e) => {
                readiness.failing(CHECK, format!("cannot follow orders.evt.>: {e}"));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => continue,
                }
            }
        };
        readiness.ready(CHECK);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = events.next() => match message {
                    Some(message) => {
                        if let Some(kind) = live.hear(&message.payload, Instant::now()) {
                            metrics.order_events.with_label_values(&[kind]).inc();
                        }
                    }
                    None => break,
                },
            }
        }
        readiness.failing(CHECK, "the subscription to orders.evt.> ended");
    }
}

/// Sends a snapshot every [`TICK`] while anyone watches.
pub async fn tick(live: Arc<Live>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if live.updates.receiver_count() == 0 {
            continue;
        }
        let snapshot = live.snapshot();
        let json: Arc<str> = serde_json::to_string(&snapshot)
            .expect("a snapshot serializes")
            .into();
        // No receiver left since the count: nothing to do.
        let _ = live.updates.send(json);
    }
}

/// Counts the stuck sagas every few seconds.
pub async fn count_stuck(
    client: jetsaga_client::Client,
    live: Arc<Live>,
    shutdown: CancellationToken,
) {
    let request = ListSagas {
        status: Some(ListStatus::Stuck),
        limit: Some(MAX_LIST_LIMIT),
        after: None,
    };
    loop {
        let stuck = match client.list_sagas(&request).await {
            Ok(page) => Some((page.sagas.len() as u64, page.next.is_some())),
            Err(e) => {
                tracing::debug!(error = %e, "cannot count the stuck sagas");
                None
            }
        };
        live.set_stuck(stuck);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(STUCK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, id: &str, reason: Option<&str>) -> Vec<u8> {
        serde_json::json!({"type": kind, "order_id": id, "reason": reason})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_funnel_counts_each_order_once_and_times_it() {
        let live = Live::new();
        let t0 = Instant::now();
        live.hear(&event("placed", "o-1", None), t0);
        live.hear(&event("placed", "o-1", None), t0);
        live.hear(&event("placed", "o-2", None), t0);
        live.hear(
            &event("confirmed", "o-1", None),
            t0 + Duration::from_millis(40),
        );
        live.hear(
            &event("confirmed", "o-1", None),
            t0 + Duration::from_millis(90),
        );
        live.hear(
            &event("cancelled", "o-2", Some("out_of_stock")),
            t0 + Duration::from_millis(80),
        );
        live.hear(
            br#"{"type":"rejected","order_id":null,"errors":["no items"]}"#,
            t0,
        );
        live.hear(b"not json", t0);
        let snapshot = live.lock().snapshot();
        assert_eq!(snapshot.placed, 2);
        assert_eq!(snapshot.confirmed, 1);
        assert_eq!(snapshot.cancelled.get("out_of_stock"), Some(&1));
        assert_eq!(snapshot.cancelled_total, 1);
        assert_eq!(snapshot.rejected, 1);
        assert_eq!(snapshot.in_flight, 0);
        let latency = snapshot.latency.expect("two orders timed");
        assert_eq!(latency.count, 2);
        assert!((40..=41).contains(&latency.p50_ms), "{latency:?}");
        assert!((80..=81).contains(&latency.max_ms), "{latency:?}");
        let feed: Vec<_> = snapshot
            .recent
            .iter()
            .map(|r| (r.order_id.as_str(), r.status))
            .collect();
        assert_eq!(feed, [("o-2", "CANCELLED"), ("o-1", "CONFIRMED")]);
    }

    #[test]
    fn rates_are_over_whole_seconds_and_the_window_slides() {
        let live = Live::new();
        let t0 = live.lock().second_started;
        for i in 0..30 {
            live.hear(&event("placed", &format!("o-{i}"), None), t0);
        }
        {
            let mut tally = live.lock();
            tally.roll(t0 + Duration::from_millis(1500));
            let snapshot = tally.snapshot();
            assert_eq!(snapshot.placed_per_second, 30.0);
        }
        let mut tally = live.lock();
        tally.roll(t0 + Duration::from_secs(LATENCY_SECONDS as u64 + 5));
        assert_eq!(tally.snapshot().placed_per_second, 0.0);
        assert!(tally.seconds.len() <= LATENCY_SECONDS + 1);
        assert_eq!(tally.snapshot().placed, 30, "the funnel is not windowed");
    }

    #[test]
    fn the_feed_keeps_the_latest_orders_once_each() {
        let live = Live::new();
        let t0 = Instant::now();
        for i in 0..(RECENT + 5) {
            live.hear(&event("placed", &format!("o-{i}"), None), t0);
        }
        live.hear(&event("confirmed", "o-24", None), t0);
        let recent = live.lock().snapshot().recent;
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].order_id, "o-24");
        assert_eq!(recent[0].status, "CONFIRMED");
        assert_eq!(recent.iter().filter(|r| r.order_id == "o-24").count(), 1);
    }
}
