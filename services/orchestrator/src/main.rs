//! The `saga-orchestrator` binary: configuration, logging, signals; then [`saga_orchestrator::run`].

use runtime::config::ProcessEnv;
use runtime::service::{config_or_exit, shutdown_on_signals};

#[tokio::main]
async fn main() {
    let config = config_or_exit(saga_orchestrator::Config::from_env(&ProcessEnv));
    runtime::telemetry::init(&config.common);
    let shutdown = shutdown_on_signals();
    if let Err(e) = saga_orchestrator::run(config, shutdown).await {
        tracing::error!(error = %e, "saga-orchestrator failed");
        std::process::exit(1);
    }
}
