//! Exponential backoff with full jitter, for every retry loop in jetsaga.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the n-th delay (n from 0): `base * 2^n`, at most `cap`.
    pub fn ceiling(base: Duration, cap: Duration, n: u32) -> Duration {
        base.saturating_mul(1u32 << n.min(20)).min(cap)
    }

    /// A random delay between half the ceiling and the ceiling, so retries
    /// of many racing writers spread out instead of colliding again.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = Self::ceiling(self.base, self.cap, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        jitter(ceiling)
    }
}

/// A random duration in `[d/2, d]`.
pub fn jitter(d: Duration) -> Duration {
    let nanos = d.as_nanos().min(u128::from(u64::MAX)) as u64;
    Duration::from_nanos(nanos / 2 + rand::rng().random_range(0..=nanos / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_stay_under_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
    }
}
