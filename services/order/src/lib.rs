//! The order service: owns orders.
//!
//! It turns `orders.cmd.place` into a `PENDING` order (or a `rejected`
//! event), applies the saga's `confirm_order` and `cancel_order`, and answers
//! `orders.query.get`. Each order is the subject `orders.evt.<order_id>.*`:
//! every event on it carries the whole order, so the last one is the order.

pub mod domain;
pub mod handlers;

use std::sync::Arc;

use events::saga::command;
use events::subjects::{self, consumers, streams};
use runtime::config::{parse_or, CommonConfig, ConfigError, Env};
use runtime::service::StartError;
use runtime::{ConsumerSpec, ServiceRuntime, Store};
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "order-service";

/// The order service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `ORDER_CONCURRENCY`: place commands handled at once.
    pub concurrency: usize,
}

impl Config {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, NAME, "0.0.0.0:8081")?;
        let concurrency = parse_or(env, "ORDER_CONCURRENCY", 128usize)?;
        if concurrency == 0 {
            return Err(ConfigError::new("ORDER_CONCURRENCY", "must be positive"));
        }
        Ok(Self {
            common,
            concurrency,
        })
    }
}

/// Runs the order service until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let retention = config.common.retention;
    let rt = ServiceRuntime::start(NAME, config.common, shutdown).await?;
    if rt
        .require_streams(&[streams::ORDERS, streams::SAGA, streams::DLQ])
        .await
    {
        let store = Store::with_metrics(rt.js.clone(), streams::ORDERS, &rt.metrics)
            .await
            .expect("a stream handle needs no I/O");
        let mut place = ConsumerSpec::new(
            consumers::ORDER_PLACE.0,
            consumers::ORDER_PLACE.1,
            vec![subjects::PLACE_ORDER.to_owned()],
        );
        place.concurrency = config.concurrency;
        place.remove_handled = true;
        rt.consume(
            place,
            Arc::new(handlers::Place::new(store.clone(), retention)),
        );
        let saga = ConsumerSpec::new(
            consumers::ORDER_SAGA.0,
            consumers::ORDER_SAGA.1,
            [command::CONFIRM_ORDER, command::CANCEL_ORDER]
                .map(subjects::saga_command_filter)
                .to_vec(),
        );
        rt.consume(saga, Arc::new(handlers::SagaSteps::new(store.clone())));
        rt.serve_queries(
            "jetsaga orders: the state of each order",
            vec![handlers::get_order_query(store)],
        )
        .await?;
    }
    rt.run_until_shutdown().await;
    Ok(())
}
