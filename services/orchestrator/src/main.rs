//! The `saga-orchestrator` binary: configuration, logging, signals; then [`saga_orchestrator::run`].

use runtime::config::ProcessEnv;
use runtime::service::{config_or_exit, shutdown_on_signals};

/// jemalloc, not glibc's malloc: handling a message allocates and frees a
/// few hundred small buffers (JSON, headers, spans), and glibc's bin
/// upkeep was 30% of the orchestrator's CPU (README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let config = config_or_exit(saga_orchestrator::Config::from_env(&ProcessEnv));
    let telemetry = runtime::telemetry::init(&config.common);
    let shutdown = shutdown_on_signals();
    let result = saga_orchestrator::run(config, shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "saga-orchestrator failed");
    }
    // The last spans of the run are exported before the process ends.
    telemetry.shutdown().await;
    if result.is_err() {
        std::process::exit(1);
    }
}
