//! The orchestrator's saga metrics (docs/contract.md section 6).

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct SagaMetrics {
    started: IntCounter,
    completed: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    timeouts: IntCounterVec,
    operator_actions: IntCounterVec,
    stuck: IntGauge,
}

impl SagaMetrics {
    pub fn register(registry: &Registry) -> Self {
        let started =
            IntCounter::new("jetsaga_sagas_started_total", "Sagas started.").expect("valid metric");
        let completed = IntCounterVec::new(
            Opts::new(
                "jetsaga_sagas_completed_total",
                "Sagas completed, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "jetsaga_saga_duration_seconds",
                "From order placed to saga completed.",
            )
            .buckets(runtime::metrics::LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "jetsaga_sagas_in_flight",
            "Sagas this orchestrator started and has not seen complete.",
        )
        .expect("valid metric");
        let timeouts = IntCounterVec::new(
            Opts::new(
                "jetsaga_saga_step_timeouts_total",
                "Saga steps unanswered past their deadline, by step.",
            ),
            &["step"],
        )
        .expect("valid metric");
        let operator_actions = IntCounterVec::new(
            Opts::new(
                "jetsaga_saga_operator_actions_total",
                "Cancels, retries and aborts that changed a saga, by action.",
            ),
            &["action"],
        )
        .expect("valid metric");
        let stuck = IntGauge::new(
            "jetsaga_sagas_stuck",
            "Unfinished sagas whose current step was asked more than once.",
        )
        .expect("valid metric");
        for collector in [
            Box::new(started.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(completed.clone()),
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(timeouts.clone()),
            Box::new(operator_actions.clone()),
            Box::new(stuck.clone()),
        ] {
            registry.register(collector).expect("metric registers once");
        }
        // Every series exists from the start, at 0, so that rates and
        // increases see the first saga, timeout or cancellation too.
        for outcome in ["confirmed", "cancelled"] {
            completed.with_label_values(&[outcome]);
            duration.with_label_values(&[outcome]);
        }
        {
            use events::saga::command::*;
            for step in [
                RESERVE_STOCK,
                CHARGE_PAYMENT,
                COMMIT_STOCK,
                CONFIRM_ORDER,
                REFUND_PAYMENT,
                RELEASE_STOCK,
                CANCEL_ORDER,
            ] {
                timeouts.with_label_values(&[step]);
            }
        }
        for action in events::saga::OperatorAction::ALL {
            operator_actions.with_label_values(&[action.name()]);
        }
        Self {
            started,
            completed,
            duration,
            in_flight,
            timeouts,
            operator_actions,
            stuck,
        }
    }

    pub fn operator_action(&self, action: &str) {
        self.operator_actions.with_label_values(&[action]).inc();
    }

    pub fn set_stuck(&self, sagas: usize) {
        self.stuck.set(i64::try_from(sagas).unwrap_or(i64::MAX));
    }

    pub fn step_timed_out(&self, step: &str) {
        self.timeouts.with_label_values(&[step]).inc();
    }

    pub fn saga_started(&self) {
        self.started.inc();
        self.in_flight.inc();
    }

    pub fn saga_completed(&self, outcome: &str, seconds: Option<f64>) {
        self.completed.with_label_values(&[outcome]).inc();
        if let Some(seconds) = seconds {
            self.duration.with_label_values(&[outcome]).observe(seconds);
        }
        self.in_flight.dec();
    }
}
