//! The time as the NATS server tells it.
//!
//! A saga's deadlines are armed as JetStream schedules, which the server
//! fires by its own clock, and compared with the time when their wake-up is
//! handled; a charge is taken without a read only well before its deadline.
//! Read from each process's own clock, a process whose clock is behind the
//! server's arms wake-ups that fire at once and come back early, again and
//! again until its clock catches up; one ahead arms them late by its skew.
//! So the processes that decide on time use the server's.
//!
//! Every stored message carries the server's time of storing it. Read when
//! the message is delivered, it says the server's time then, late by the
//! delivery's latency: `stored - now` is the server's offset from this
//! process's clock, less that latency. The largest of the recent readings
//! (the fastest delivery) is the estimate, a few milliseconds behind at
//! worst. A backlog only delays readings, never makes them lead.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{Gauge, Registry};
use time::OffsetDateTime;

/// How long a reading stays in the estimate: the clocks drift, and a
/// process's clock may be stepped.
const WINDOW: Duration = Duration::from_secs(30);

/// The server's clock, as read from the messages this process receives.
#[derive(Debug)]
pub struct ServerClock {
    readings: Mutex<Readings>,
    gauge: Gauge,
}

/// The best reading (in seconds) of the current window and of the one
/// before it.
#[derive(Debug)]
struct Readings {
    started: Instant,
    current: Option<f64>,
    previous: Option<f64>,
}

impl ServerClock {
    /// A clock with no reading yet (the process's own time until one comes),
    /// exported as `jetsaga_clock_offset_seconds` in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let gauge = Gauge::new(
            "jetsaga_clock_offset_seconds",
            "How far the NATS server's clock is ahead of this process's \
             (negative: behind), as read from the stored times of the messages \
             it receives. The process decides on the server's time.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(gauge.clone()))
            .expect("metric registers once");
        Self {
            readings: Mutex::new(Readings {
                started: Instant::now(),
                current: None,
                previous: None,
            }),
            gauge,
        }
    }

    /// Takes a reading: a message stored at `stored` (by the server's
    /// clock) is delivered now.
    pub fn observe(&self, stored: OffsetDateTime) {
        let reading = (stored - OffsetDateTime::now_utc()).as_seconds_f64();
        let mut readings = self.lock();
        if readings.started.elapsed() >= WINDOW {
            readings.previous = readings.current.take();
            readings.started = Instant::now();
        }
        readings.current = Some(readings.current.map_or(reading, |best| best.max(reading)));
        let offset = readings.offset();
        drop(readings);
        if let Some(offset) = offset {
            self.gauge.set(offset);
        }
    }

    /// How far the server's clock is ahead of this process's, in seconds
    /// (negative: behind); `None` before the first reading.
    pub fn offset(&self) -> Option<f64> {
        self.lock().offset()
    }

    /// The server's time now, as far as this process can tell (its own,
    /// before the first reading).
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        match self.offset() {
            Some(offset) => now + time::Duration::seconds_f64(offset),
            None => now,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readings> {
        self.readings.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Readings {
    fn offset(&self) -> Option<f64> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_reading_is_the_estimate() {
        let clock = ServerClock::new(&Registry::new());
        assert_eq!(clock.offset(), None);
        let now = OffsetDateTime::now_utc();
        // The server is 300 s ahead; deliveries took 2 s, 10 ms and 40 s
        // (a backlog).
        for latency in [2.0, 0.01, 40.0] {
            clock.observe(now + time::Duration::seconds_f64(300.0 - latency));
        }
        let offset = clock.offset().expect("read");
        assert!((offset - 299.99).abs() < 0.1, "{offset}");
        let server_now = clock.now();
        let ahead = (server_now - OffsetDateTime::now_utc()).as_seconds_f64();
        assert!((ahead - 299.99).abs() < 0.1, "{ahead}");
    }

    #[test]
    fn a_server_behind_reads_negative() {
        let clock = ServerClock::new(&Registry::new());
        clock.observe(OffsetDateTime::now_utc() - time::Duration::minutes(5));
        let offset = clock.offset().expect("read");
        assert!((offset + 300.0).abs() < 1.0, "{offset}");
    }
}
