//! The `order-service` binary: configuration, logging, signals; then [`order_service::run`].

use runtime::config::ProcessEnv;
use runtime::service::{config_or_exit, shutdown_on_signals};

#[tokio::main]
async fn main() {
    let config = config_or_exit(order_service::Config::from_env(&ProcessEnv));
    runtime::telemetry::init(&config.common);
    let shutdown = shutdown_on_signals();
    if let Err(e) = order_service::run(config, shutdown).await {
        tracing::error!(error = %e, "order-service failed");
        std::process::exit(1);
    }
}
