//! The `inventory-service` binary: configuration, logging, signals; then [`inventory_service::run`].

use runtime::config::ProcessEnv;
use runtime::service::{config_or_exit, shutdown_on_signals};

#[tokio::main]
async fn main() {
    let config = config_or_exit(inventory_service::Config::from_env(&ProcessEnv));
    runtime::telemetry::init(&config.common);
    let shutdown = shutdown_on_signals();
    if let Err(e) = inventory_service::run(config, shutdown).await {
        tracing::error!(error = %e, "inventory-service failed");
        std::process::exit(1);
    }
}
