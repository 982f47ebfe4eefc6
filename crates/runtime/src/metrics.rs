//! The Prometheus metrics of docs/contract.md section 6 that every service
//! exports, on one registry that the services add their own metrics to.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Buckets from a millisecond to tens of seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Retry,
    DeadLetter,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
        }
    }
}

/// Why a saga step can never be done as the state it acts on stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// A stored state does not decode (a foreign writer, a bug).
    UnreadableState,
    /// Stored states contradict each other (stock held that is not
    /// reserved, a charge with no account).
    InconsistentState,
    /// The change would overflow an amount.
    Overflow,
}

impl Unusable {
    pub const ALL: [Unusable; 3] = [
        Self::UnreadableState,
        Self::InconsistentState,
        Self::Overflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnreadableState => "unreadable_state",
            Self::InconsistentState => "inconsistent_state",
            Self::Overflow => "overflow",
        }
    }
}

/// Sizes of the group committer's atomic batches, in messages, up to the
/// server's limit of 1000.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    handled: IntCounterVec,
    duration: HistogramVec,
    dead_letters: IntCounterVec,
    streams: IntGaugeVec,
    stored: IntGaugeVec,
    stored_messages: IntGaugeVec,
    limits: IntGaugeVec,
    abandoned: IntCounterVec,
    batches: BatchMetrics,
}

/// How the store's atomic batches go, by stream (beyond the contract: for
/// operators tuning the group commit, and for the benchmark).
#[derive(Debug, Clone)]
pub struct BatchMetrics {
    messages: HistogramVec,
    duration: HistogramVec,
    outcomes: IntCounterVec,
}

impl BatchMetrics {
    fn new() -> Self {
        Self {
            messages: HistogramVec::new(
                HistogramOpts::new(
                    "jetsaga_store_batch_messages",
                    "Messages in one atomic batch (changes committed together).",
                )
                .buckets(BATCH_SIZE_BUCKETS.to_vec()),
                &["stream"],
            )
            .expect("valid metric"),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "jetsaga_store_batch_duration_seconds",
                    "From an atomic batch's first message sent to its outcome.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["stream"],
            )
            .expect("valid metric"),
            outcomes: IntCounterVec::new(
                Opts::new(
                    "jetsaga_store_batches_total",
                    "Atomic batches by outcome: stored, refused (a failed \
                     expected-sequence check) or unknown (no answer, or an error).",
                ),
                &["stream", "outcome"],
            )
            .expect("valid metric"),
        }
    }

    /// Records one batch of `messages` on `stream` that took `seconds`.
    pub fn record(&self, stream: &str, messages: usize, seconds: f64, outcome: BatchOutcome) {
        self.messages
            .with_label_values(&[stream])
            .observe(messages as f64);
        self.duration.with_label_values(&[stream]).observe(seconds);
        self.outcomes
            .with_label_values(&[stream, outcome.as_str()])
            .inc();
    }
}

/// What became of an atomic batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Stored,
    Refused,
    Unknown,
}

impl BatchOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Refused => "refused",
            Self::Unknown => "unknown",
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");
        let handled = IntCounterVec::new(
            Opts::new(
                "jetsaga_messages_handled_total",
                "Messages handled, by consumer and outcome.",
            ),
            &["consumer", "outcome"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "jetsaga_message_handle_duration_seconds",
                "Time spent handling one message.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["consumer"],
        )
        .expect("valid metric");
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "jetsaga_dead_letters_total",
                "Messages copied to the dead-letter subject.",
            ),
            &["consumer"],
        )
        .expect("valid metric");
        let streams = IntGaugeVec::new(
            Opts::new(
                "jetsaga_stream_present",
                "1 while a stream the service needs exists, 0 while it is \
                 missing (not provisioned, or deleted): the service is not \
                 ready then.",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let stored = IntGaugeVec::new(
            Opts::new(
                "jetsaga_stream_bytes",
                "Bytes a stream the service needs holds (looked up every few seconds).",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let stored_messages = IntGaugeVec::new(
            Opts::new(
                "jetsaga_stream_messages",
                "Messages a stream the service needs holds.",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let limits = IntGaugeVec::new(
            Opts::new(
                "jetsaga_stream_limit_bytes",
                "The byte limit of a stream the service needs; absent for a \
                 stream without one (the saga stream, whose messages expire).",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let abandoned = IntCounterVec::new(
            Opts::new(
                "jetsaga_saga_steps_abandoned_total",
                "Saga steps given up for good because of the state they act on \
                 (unreadable, inconsistent, or a change that would overflow): \
                 answered as failed to the saga, and dead-lettered.",
            ),
            &["step", "cause"],
        )
        .expect("valid metric");
        let batches = BatchMetrics::new();
        for collector in [
            Box::new(handled.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(dead_letters.clone()),
            Box::new(streams.clone()),
            Box::new(stored.clone()),
            Box::new(stored_messages.clone()),
            Box::new(limits.clone()),
            Box::new(abandoned.clone()),
            Box::new(batches.messages.clone()),
            Box::new(batches.duration.clone()),
            Box::new(batches.outcomes.clone()),
        ] {
            registry.register(collector).expect("metric registers once");
        }
        Self {
            registry,
            handled,
            duration,
            dead_letters,
            streams,
            stored,
            stored_messages,
            limits,
            abandoned,
            batches,
        }
    }

    /// How full a stream the service needs is.
    pub fn stream_use(&self, stream: &str, state: crate::nats::StreamUse) {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.stored
            .with_label_values(&[stream])
            .set(gauge(state.bytes));
        self.stored_messages
            .with_label_values(&[stream])
            .set(gauge(state.messages));
        match state.limit_bytes {
            Some(limit) => self.limits.with_label_values(&[stream]).set(gauge(limit)),
            None => {
                let _ = self.limits.remove_label_values(&[stream]);
            }
        }
    }

    /// Whether a stream the service needs is there.
    pub fn stream_present(&self, stream: &str, present: bool) {
        self.streams
            .with_label_values(&[stream])
            .set(i64::from(present));
    }

    /// The store's batch metrics (see [`crate::Store::with_metrics`]).
    pub fn batches(&self) -> &BatchMetrics {
        &self.batches
    }

    /// The registry, for a service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates a consumer's series at 0, so that the first message, retry
    /// or dead letter shows in rates and increases (and alerts) too.
    pub fn declare_consumer(&self, consumer: &str) {
        for outcome in [Outcome::Ok, Outcome::Retry, Outcome::DeadLetter] {
            self.handled
                .with_label_values(&[consumer, outcome.as_str()]);
        }
        self.duration.with_label_values(&[consumer]);
        self.dead_letters.with_label_values(&[consumer]);
    }

    /// Creates the series of the saga steps a service takes at 0, for each
    /// cause, so that the first step abandoned shows in increases too.
    pub fn declare_steps(&self, steps: &[&str]) {
        for step in steps {
            for cause in Unusable::ALL {
                self.abandoned.with_label_values(&[step, cause.as_str()]);
            }
        }
    }

    /// Counts a saga step given up for good: it can never be done as the
    /// state it acts on stands, so an operator must look.
    pub fn step_abandoned(&self, step: &str, cause: Unusable) {
        self.abandoned
            .with_label_values(&[step, cause.as_str()])
            .inc();
    }

    pub fn record(&self, consumer: &str, outcome: Outcome, seconds: f64) {
        self.handled
            .with_label_values(&[consumer, outcome.as_str()])
            .inc();
        self.duration
            .with_label_values(&[consumer])
            .observe(seconds);
        if outcome == Outcome::DeadLetter {
            self.dead_letters.with_label_values(&[consumer]).inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
