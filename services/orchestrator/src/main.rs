//! The `saga-orchestrator` binary: the command line, configuration, logging,
//! signals; then [`saga_orchestrator::run`].

use runtime::cli::{Binary, Fallback, Var};

/// jemalloc, not glibc's malloc: handling a message allocates and frees a
/// few hundred small buffers (JSON, headers, spans), and glibc's bin
/// upkeep took 30% of the orchestrator's CPU at saturation (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What `--help` and `--version` say.
const BINARY: Binary = Binary {
    name: saga_orchestrator::NAME,
    version: env!("CARGO_PKG_VERSION"),
    about: env!("CARGO_PKG_DESCRIPTION"),
    http_addr: "0.0.0.0:8084",
    vars: &[
        Var::new(
            "SAGA_STEP_TIMEOUT_MS",
            Fallback::Value("10000"),
            "how long a step may stay unanswered before it is asked again",
        ),
        Var::new(
            "SAGA_STEP_MAX_ATTEMPTS",
            Fallback::Value("3"),
            "attempts at reserving or charging before the saga compensates",
        ),
        Var::new(
            "ORCHESTRATOR_CONCURRENCY",
            Fallback::Value("128"),
            "events handled at once, per consumer",
        ),
    ],
};

#[tokio::main]
async fn main() {
    runtime::service::main(
        &BINARY,
        saga_orchestrator::Config::from_env,
        |config| &config.common,
        saga_orchestrator::run,
    )
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_tells_the_defaults_the_configuration_has() {
        runtime::cli::check_documented_defaults(
            &super::BINARY,
            saga_orchestrator::Config::from_env,
        )
        .unwrap();
    }
}
