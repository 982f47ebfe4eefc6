//! The inventory service: owns stock, prices and reservations.
//!
//! It applies `inventory.cmd.restock`, the saga's `reserve_stock`,
//! `commit_stock` and `release_stock`, and answers `inventory.query.stock`.
//! A sku's levels are the subject `inventory.sku.<sku>` (its last message);
//! what the inventory decided for an order is `inventory.evt.<order_id>.*`.

pub mod domain;
pub mod handlers;

use std::sync::Arc;

use events::saga::command;
use events::subjects::{self, consumers, streams};
use runtime::config::{parse_or, CommonConfig, ConfigError, Env};
use runtime::service::StartError;
use runtime::{ConsumerSpec, ServiceRuntime, Store};
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "inventory-service";

/// The inventory service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `INVENTORY_CONCURRENCY`: saga steps handled at once.
    pub concurrency: usize,
    /// `INVENTORY_CACHE_SKUS`: sku levels remembered between writes.
    pub cache_capacity: usize,
}

impl Config {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, NAME, "0.0.0.0:8082")?;
        let concurrency = parse_or(env, "INVENTORY_CONCURRENCY", 128usize)?;
        if concurrency == 0 {
            return Err(ConfigError::new(
                "INVENTORY_CONCURRENCY",
                "must be positive",
            ));
        }
        let cache_capacity = parse_or(env, "INVENTORY_CACHE_SKUS", 100_000usize)?;
        Ok(Self {
            common,
            concurrency,
            cache_capacity,
        })
    }
}

/// Runs the inventory service until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let retention = config.common.retention;
    let rt = ServiceRuntime::start(NAME, config.common, shutdown).await?;
    if rt
        .require_streams(&[streams::INVENTORY, streams::SAGA, streams::DLQ])
        .await
    {
        let store = Store::with_metrics(rt.js.clone(), streams::INVENTORY, &rt.metrics)
            .await
            .expect("a stream handle needs no I/O");
        let stock = Arc::new(
            handlers::Stock::new(store.clone(), config.cache_capacity).keeping_for(retention),
        );
        let mut commands = ConsumerSpec::new(
            consumers::INVENTORY_COMMANDS.0,
            consumers::INVENTORY_COMMANDS.1,
            vec!["inventory.cmd.>".to_owned()],
        );
        commands.remove_handled = true;
        rt.consume(commands, Arc::new(handlers::Commands::new(stock.clone())));
        let mut saga = ConsumerSpec::new(
            consumers::INVENTORY_SAGA.0,
            consumers::INVENTORY_SAGA.1,
            [
                command::RESERVE_STOCK,
                command::COMMIT_STOCK,
                command::RELEASE_STOCK,
            ]
            .map(subjects::saga_command_filter)
            .to_vec(),
        );
        saga.concurrency = config.concurrency;
        rt.consume(
            saga,
            Arc::new(handlers::SagaSteps::new(stock, rt.metrics.clone())),
        );
        rt.serve_queries(
            "jetsaga inventory: stock levels and prices",
            vec![handlers::get_stock_query(store)],
        )
        .await?;
    }
    rt.run_until_shutdown().await;
    Ok(())
}
