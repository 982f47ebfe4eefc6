//! The saga orchestrator: drives each order through reserve stock → charge
//! → commit stock → confirm, and compensates in reverse when a step fails.
//!
//! It listens to the participants' events (`orders.evt.*.*`,
//! `inventory.evt.>`, `payments.evt.>`) and writes the saga log,
//! `saga.log.<order_id>.<command>`, which is at once the saga's state and
//! the participants' command channel. It takes the cancels, retries and
//! aborts (`orders.cmd.cancel`, `saga.cmd.>`), and answers `saga.query.get`
//! and `saga.query.list`.

pub mod domain;
pub mod handlers;
pub mod list;
pub mod metrics;

use std::sync::Arc;

use events::subjects::{self, consumers, streams};
use runtime::config::{parse_or, CommonConfig, ConfigError, Env};
use runtime::service::StartError;
use runtime::{ConsumerSpec, ServiceRuntime, Store};
use tokio_util::sync::CancellationToken;

use crate::handlers::{Events, Saga, Source};

pub const NAME: &str = "saga-orchestrator";

/// The orchestrator's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `SAGA_STEP_TIMEOUT_MS`.
    pub step_timeout: std::time::Duration,
    /// `ORCHESTRATOR_CONCURRENCY`: events handled at once, per consumer.
    pub concurrency: usize,
    /// `SAGA_STEP_MAX_ATTEMPTS`: attempts at reserving or charging before
    /// the saga compensates.
    pub max_attempts: u32,
}

impl Config {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, NAME, "0.0.0.0:8084")?;
        let step_timeout_ms = parse_or(env, "SAGA_STEP_TIMEOUT_MS", 10_000u64)?;
        if step_timeout_ms == 0 {
            return Err(ConfigError::new("SAGA_STEP_TIMEOUT_MS", "must be positive"));
        }
        let concurrency = parse_or(env, "ORCHESTRATOR_CONCURRENCY", 128usize)?;
        if concurrency == 0 {
            return Err(ConfigError::new(
                "ORCHESTRATOR_CONCURRENCY",
                "must be positive",
            ));
        }
        // A saga's last record must outlive the longest wait for its next
        // one (eight step timeouts, jittered), or an unfinished saga would
        // expire between two of its steps.
        if common.retention < std::time::Duration::from_millis(step_timeout_ms) * 16 {
            return Err(ConfigError::new(
                "SAGA_HISTORY_RETENTION_SECONDS",
                "must be at least 16 times SAGA_STEP_TIMEOUT_MS",
            ));
        }
        let max_attempts = parse_or(env, "SAGA_STEP_MAX_ATTEMPTS", 3u32)?;
        if max_attempts == 0 {
            return Err(ConfigError::new(
                "SAGA_STEP_MAX_ATTEMPTS",
                "must be positive",
            ));
        }
        Ok(Self {
            common,
            step_timeout: std::time::Duration::from_millis(step_timeout_ms),
            concurrency,
            max_attempts,
        })
    }
}

/// Runs the orchestrator until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let retention = config.common.retention;
    let rt = ServiceRuntime::start(NAME, config.common, shutdown).await?;
    if rt
        .require_streams(&[
            streams::SAGA,
            streams::ORDERS,
            streams::INVENTORY,
            streams::PAYMENTS,
            streams::DLQ,
        ])
        .await
    {
        let store = Store::with_metrics(rt.js.clone(), streams::SAGA, &rt.metrics)
            .await
            .expect("a stream handle needs no I/O");
        let answers = handlers::Answers {
            orders: Store::new(rt.js.clone(), streams::ORDERS)
                .await
                .expect("a stream handle needs no I/O"),
            inventory: Store::new(rt.js.clone(), streams::INVENTORY)
                .await
                .expect("a stream handle needs no I/O"),
            payments: Store::new(rt.js.clone(), streams::PAYMENTS)
                .await
                .expect("a stream handle needs no I/O"),
        };
        let saga_metrics = metrics::SagaMetrics::register(rt.metrics.registry());
        let saga = Saga::new(
            store.clone(),
            answers,
            saga_metrics.clone(),
            domain::Policy {
                max_attempts: config.max_attempts,
                step_timeout: config.step_timeout,
            },
            rt.clock.clone(),
            retention,
        );
        let consumers = [
            (
                consumers::SAGA_ORDERS,
                vec!["orders.evt.*.*"],
                Source::Orders,
            ),
            (
                consumers::SAGA_INVENTORY,
                vec!["inventory.evt.>"],
                Source::Inventory,
            ),
            (
                consumers::SAGA_PAYMENTS,
                vec!["payments.evt.>"],
                Source::Payments,
            ),
            (
                consumers::SAGA_TIMEOUTS,
                vec!["saga.timeout.>"],
                Source::Timeouts,
            ),
            (
                consumers::SAGA_OPERATOR,
                vec![
                    subjects::CANCEL_ORDER,
                    subjects::RETRY_SAGA,
                    subjects::ABORT_SAGA,
                ],
                Source::Requests,
            ),
        ];
        for ((stream, durable), filters, source) in consumers {
            let mut spec = ConsumerSpec::new(
                stream,
                durable,
                filters.into_iter().map(str::to_owned).collect(),
            );
            spec.concurrency = config.concurrency;
            // A participant's answer is the saga's only way forward: keep
            // retrying it (for hours, at 30 s apart) rather than dead-letter
            // it; only an unreadable one is dead-lettered. A request about
            // a saga that never starts is dead-lettered after its few
            // minutes of deliveries.
            match source {
                Source::Requests => spec.remove_handled = true,
                _ => spec.max_deliver = 1_000,
            }
            rt.consume(spec, Arc::new(Events::new(source, saga.clone())));
        }
        rt.spawn(count_stuck(
            store.clone(),
            saga_metrics,
            rt.shutdown_token().clone(),
        ));
        rt.serve_queries(
            "jetsaga saga orchestrator: the history of each saga, and the list of sagas",
            vec![
                handlers::get_saga_query(store.clone()),
                list::list_query(store),
            ],
        )
        .await?;
    }
    rt.run_until_shutdown().await;
    Ok(())
}

/// How often the stuck sagas are counted (`jetsaga_sagas_stuck`).
const COUNT_STUCK_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Counts the stuck sagas of the whole suite, from the list's entries,
/// every [`COUNT_STUCK_EVERY`], until `shutdown`: every replica reports
/// the same count.
async fn count_stuck(store: Store, metrics: metrics::SagaMetrics, shutdown: CancellationToken) {
    loop {
        match list::open_sagas(&store).await {
            Ok(sagas) => metrics.set_stuck(sagas.iter().filter(|s| s.is_stuck()).count()),
            Err(e) => tracing::warn!(error = %e, "counting the stuck sagas"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(COUNT_STUCK_EVERY) => {}
        }
    }
}
