//! A circuit breaker around the payment gateway.
//!
//! Closed: calls go through; `failures` failures in a row open it. Open:
//! no call goes through for `cooldown`, and the payment service stops
//! taking saga steps (backpressure) instead of declining orders. Then
//! half-open: one trial call; its success closes the breaker, its failure
//! opens it again. The state is exported as `jetsaga_circuit_breaker_state`
//! (0 closed, 1 half-open, 2 open).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::IntGauge;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
    gauge: IntGauge,
}

/// Permission for one call; report its outcome with [`Breaker::record`].
#[derive(Debug)]
#[must_use = "report the call's outcome"]
pub struct Permit {
    trial: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration, gauge: IntGauge) -> Self {
        gauge.set(0);
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
            gauge,
        }
    }

    /// A permit for one call, or how long to wait before asking again.
    pub fn permit(&self) -> Result<Permit, Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Permit { trial: false }),
            State::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(until - now);
                }
                self.set(
                    &mut state,
                    State::HalfOpen {
                        trial_in_flight: true,
                    },
                );
                Ok(Permit { trial: true })
            }
            State::HalfOpen {
                trial_in_flight: true,
            } => Err(self.cooldown / 4),
            State::HalfOpen {
                trial_in_flight: false,
            } => {
                self.set(
                    &mut state,
                    State::HalfOpen {
                        trial_in_flight: true,
                    },
                );
                Ok(Permit { trial: true })
            }
        }
    }

    /// When a failed call is worth trying again: once the circuit may let
    /// one through.
    pub fn retry_in(&self) -> Duration {
        self.open_for().unwrap_or(self.cooldown / 4)
    }

    /// How long the breaker stays open, if it is.
    pub fn open_for(&self) -> Option<Duration> {
        match *self.lock() {
            State::Open { until } => until.checked_duration_since(Instant::now()),
            _ => None,
        }
    }

    /// Reports how the permitted call went.
    pub fn record(&self, permit: Permit, succeeded: bool) {
        let mut state = self.lock();
        let next = match (*state, succeeded) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false)
                if !permit.trial && failures + 1 < self.threshold =>
            {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // A late failure while already open changes nothing.
            (State::Open { until }, false) if !permit.trial => State::Open { until },
            (_, false) => {
                tracing::warn!(cooldown = ?self.cooldown, "payment gateway circuit opens");
                State::Open {
                    until: Instant::now() + self.cooldown,
                }
            }
        };
        self.set(&mut state, next);
    }

    fn set(&self, state: &mut State, next: State) {
        if matches!(next, State::Closed { .. }) && !matches!(*state, State::Closed { .. }) {
            tracing::info!("payment gateway circuit closes");
        }
        *state = next;
        self.gauge.set(match next {
            State::Closed { .. } => 0,
            State::HalfOpen { .. } => 1,
            State::Open { .. } => 2,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cooldown: Duration) -> Breaker {
        Breaker::new(3, cooldown, IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn it_opens_after_consecutive_failures_only() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..2 {
            b.record(b.permit().unwrap(), false);
        }
        b.record(b.permit().unwrap(), true);
        for _ in 0..2 {
            b.record(b.permit().unwrap(), false);
        }
        assert!(b.permit().is_ok(), "a success in between resets the count");
        b.record(b.permit().unwrap(), false);
        assert!(b.permit().is_err());
        assert_eq!(b.gauge.get(), 2);
        assert!(b.open_for().is_some());
    }

    #[test]
    fn after_the_cooldown_one_trial_decides() {
        let b = breaker(Duration::ZERO);
        for _ in 0..3 {
            b.record(b.permit().unwrap(), false);
        }
        let trial = b.permit().expect("the cooldown is over: a trial");
        assert_eq!(b.gauge.get(), 1);
        assert!(b.permit().is_err(), "one trial at a time");
        b.record(trial, true);
        assert_eq!(b.gauge.get(), 0);
        assert!(b.permit().is_ok());
    }

    #[test]
    fn a_failed_trial_opens_it_again() {
        let b = breaker(Duration::from_millis(0));
        for _ in 0..3 {
            b.record(b.permit().unwrap(), false);
        }
        let trial = b.permit().unwrap();
        b.record(trial, false);
        assert_eq!(b.gauge.get(), 2);
    }
}
