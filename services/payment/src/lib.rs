//! The payment service: owns customer balances and charges.
//!
//! It applies `payments.cmd.deposit`, the saga's `charge_payment` and
//! `refund_payment`, and answers `payments.query.account`. A balance is the
//! subject `payments.account.<customer_id>` (its last message); what the
//! payment service decided for an order is `payments.evt.<order_id>.*`.

pub mod breaker;
pub mod domain;
pub mod gateway;
pub mod handlers;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntGaugeVec, Opts};

use events::saga::command;
use events::subjects::{self, consumers, streams};
use runtime::config::{parse_or, CommonConfig, ConfigError, Env};
use runtime::service::StartError;
use runtime::{ConsumerSpec, ServiceRuntime, Store};
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::gateway::{Gateway, WithTimeout};

pub const NAME: &str = "payment-service";

/// The payment service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `PAYMENT_CONCURRENCY`: saga steps handled at once.
    pub concurrency: usize,
    /// `PAYMENT_CACHE_ACCOUNTS`: balances remembered between writes.
    pub cache_capacity: usize,
    /// `PAYMENT_GATEWAY_FAILURE_RATE` and `PAYMENT_GATEWAY_LATENCY_MS`.
    pub gateway: gateway::Simulator,
    /// `PAYMENT_GATEWAY_TIMEOUT_MS`: how long a gateway call may take before
    /// it fails, transiently.
    pub gateway_timeout: Duration,
    /// `PAYMENT_BREAKER_FAILURES`: failures in a row that open the circuit.
    pub breaker_failures: u32,
    /// `PAYMENT_BREAKER_COOLDOWN_MS`: how long it stays open before a trial.
    pub breaker_cooldown: Duration,
}

impl Config {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, NAME, "0.0.0.0:8083")?;
        let concurrency = parse_or(env, "PAYMENT_CONCURRENCY", 128usize)?;
        if concurrency == 0 {
            return Err(ConfigError::new("PAYMENT_CONCURRENCY", "must be positive"));
        }
        let cache_capacity = parse_or(env, "PAYMENT_CACHE_ACCOUNTS", 100_000usize)?;
        let failure_rate = parse_or(env, "PAYMENT_GATEWAY_FAILURE_RATE", 0.0f64)?;
        if !(0.0..=1.0).contains(&failure_rate) {
            return Err(ConfigError::new(
                "PAYMENT_GATEWAY_FAILURE_RATE",
                "must be between 0.0 and 1.0",
            ));
        }
        let latency_ms = parse_or(env, "PAYMENT_GATEWAY_LATENCY_MS", 0u64)?;
        // Well under the saga consumer's ack wait (10 s) and the saga's
        // step deadline (SAGA_STEP_TIMEOUT_MS, 10 s): a hung call fails,
        // and is tried again, long before the step would be asked again.
        let timeout_ms = parse_or(env, "PAYMENT_GATEWAY_TIMEOUT_MS", 3_000u64)?;
        if timeout_ms == 0 {
            return Err(ConfigError::new(
                "PAYMENT_GATEWAY_TIMEOUT_MS",
                "must be positive",
            ));
        }
        let breaker_failures = parse_or(env, "PAYMENT_BREAKER_FAILURES", 5u32)?;
        if breaker_failures == 0 {
            return Err(ConfigError::new(
                "PAYMENT_BREAKER_FAILURES",
                "must be positive",
            ));
        }
        let cooldown_ms = parse_or(env, "PAYMENT_BREAKER_COOLDOWN_MS", 5_000u64)?;
        Ok(Self {
            common,
            concurrency,
            cache_capacity,
            gateway: gateway::Simulator {
                failure_rate,
                latency: Duration::from_millis(latency_ms),
            },
            gateway_timeout: Duration::from_millis(timeout_ms),
            breaker_failures,
            breaker_cooldown: Duration::from_millis(cooldown_ms),
        })
    }
}

/// Runs the payment service, with the simulated gateway of its
/// configuration, until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let gateway = config.gateway;
    run_with_gateway(config, gateway, shutdown).await
}

/// Runs the payment service with `gateway`, each call bounded by
/// `PAYMENT_GATEWAY_TIMEOUT_MS`, until `shutdown` is cancelled.
pub async fn run_with_gateway<G: Gateway>(
    config: Config,
    gateway: G,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let gateway = WithTimeout {
        gateway,
        timeout: config.gateway_timeout,
    };
    let retention = config.common.retention;
    let rt = ServiceRuntime::start(NAME, config.common, shutdown).await?;
    if rt
        .require_streams(&[streams::PAYMENTS, streams::SAGA, streams::DLQ])
        .await
    {
        let store = Store::with_metrics(rt.js.clone(), streams::PAYMENTS, &rt.metrics)
            .await
            .expect("a stream handle needs no I/O");
        let accounts = Arc::new(
            handlers::Accounts::new(store.clone(), config.cache_capacity).keeping_for(retention),
        );
        let mut commands = ConsumerSpec::new(
            consumers::PAYMENT_COMMANDS.0,
            consumers::PAYMENT_COMMANDS.1,
            vec!["payments.cmd.>".to_owned()],
        );
        commands.remove_handled = true;
        rt.consume(
            commands,
            Arc::new(handlers::Commands::new(accounts.clone())),
        );
        let mut saga = ConsumerSpec::new(
            consumers::PAYMENT_SAGA.0,
            consumers::PAYMENT_SAGA.1,
            [command::CHARGE_PAYMENT, command::REFUND_PAYMENT]
                .map(subjects::saga_command_filter)
                .to_vec(),
        );
        saga.concurrency = config.concurrency;
        // A gateway outage should make charges wait, not dead-letter them.
        saga.max_deliver = 50;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "jetsaga_circuit_breaker_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ),
            &["name"],
        )
        .expect("valid metric");
        rt.metrics
            .registry()
            .register(Box::new(breaker_state.clone()))
            .expect("registers once");
        let breaker = Arc::new(Breaker::new(
            config.breaker_failures,
            config.breaker_cooldown,
            breaker_state.with_label_values(&["payment-gateway"]),
        ));
        rt.consume(
            saga,
            Arc::new(handlers::SagaSteps::new(
                accounts,
                gateway,
                breaker,
                rt.metrics.clone(),
                rt.clock.clone(),
            )),
        );
        rt.serve_queries(
            "jetsaga payments: customer balances",
            vec![handlers::get_account_query(store)],
        )
        .await?;
    }
    rt.run_until_shutdown().await;
    Ok(())
}
