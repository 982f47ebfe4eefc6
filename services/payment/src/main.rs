//! The `payment-service` binary: configuration, logging, signals; then [`payment_service::run`].

use runtime::config::ProcessEnv;
use runtime::service::{config_or_exit, shutdown_on_signals};

#[tokio::main]
async fn main() {
    let config = config_or_exit(payment_service::Config::from_env(&ProcessEnv));
    runtime::telemetry::init(&config.common);
    let shutdown = shutdown_on_signals();
    if let Err(e) = payment_service::run(config, shutdown).await {
        tracing::error!(error = %e, "payment-service failed");
        std::process::exit(1);
    }
}
