//! The payment service: owns customer balances and charges.
//!
//! It applies `payments.cmd.deposit`, the saga's `charge_payment` and
//! `refund_payment`, and answers `payments.query.account`. A balance is the
//! subject `payments.account.<customer_id>` (its last message); what the
//! payment service decided for an order is `payments.evt.<order_id>.*`.

pub mod domain;
pub mod handlers;

use std::sync::Arc;

use events::saga::command;
use events::subjects::{self, streams};
use runtime::config::{parse_or, CommonConfig, ConfigError, Env};
use runtime::service::StartError;
use runtime::{ConsumerSpec, ServiceRuntime, Store};
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "payment-service";

/// The payment service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `PAYMENT_CONCURRENCY`: saga steps handled at once.
    pub concurrency: usize,
    /// `PAYMENT_CACHE_ACCOUNTS`: balances remembered between writes.
    pub cache_capacity: usize,
}

impl Config {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, NAME, "0.0.0.0:8083")?;
        let concurrency = parse_or(env, "PAYMENT_CONCURRENCY", 64usize)?;
        if concurrency == 0 {
            return Err(ConfigError::new("PAYMENT_CONCURRENCY", "must be positive"));
        }
        let cache_capacity = parse_or(env, "PAYMENT_CACHE_ACCOUNTS", 100_000usize)?;
        Ok(Self {
            common,
            concurrency,
            cache_capacity,
        })
    }
}

/// Runs the payment service until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let rt = ServiceRuntime::start(NAME, config.common, shutdown).await?;
    let provisioned = rt
        .ensure_stream(rt.stream_config(
            streams::PAYMENTS,
            &[
                "payments.cmd.>",
                "payments.account.>",
                "payments.evt.>",
                "payments.applied.>",
            ],
        ))
        .await
        && rt
            .ensure_stream(runtime::nats::dead_letter_stream_config(
                rt.config.stream_replicas,
            ))
            .await;
    if provisioned {
        let store = Store::new(rt.js.clone(), streams::PAYMENTS)
            .await
            .expect("a stream handle needs no I/O");
        let accounts = Arc::new(handlers::Accounts::new(
            store.clone(),
            config.cache_capacity,
        ));
        let commands = ConsumerSpec::new(
            streams::PAYMENTS,
            "payment-commands",
            vec!["payments.cmd.>".to_owned()],
        );
        rt.consume(
            commands,
            Arc::new(handlers::Commands::new(accounts.clone())),
        );
        let mut saga = ConsumerSpec::new(
            streams::SAGA,
            "payment-saga",
            [command::CHARGE_PAYMENT, command::REFUND_PAYMENT]
                .map(subjects::saga_command_filter)
                .to_vec(),
        );
        saga.concurrency = config.concurrency;
        rt.consume(saga, Arc::new(handlers::SagaSteps::new(accounts)));
        rt.serve_queries(
            "jetsaga payments: customer balances",
            vec![handlers::get_account_query(store)],
        )
        .await?;
    }
    rt.run_until_shutdown().await;
    Ok(())
}
