//! The `payment-service` binary: the command line, configuration, logging,
//! signals; then [`payment_service::run`].

use runtime::cli::{Binary, Fallback, Var};

/// jemalloc, not glibc's malloc: handling a message allocates and frees a
/// few hundred small buffers (JSON, headers, spans), and glibc's bin
/// upkeep took 30% of the orchestrator's CPU at saturation (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What `--help` and `--version` say.
const BINARY: Binary = Binary {
    name: payment_service::NAME,
    version: env!("CARGO_PKG_VERSION"),
    about: env!("CARGO_PKG_DESCRIPTION"),
    http_addr: "0.0.0.0:8083",
    vars: &[
        Var::new(
            "PAYMENT_CONCURRENCY",
            Fallback::Value("128"),
            "saga steps handled at once",
        ),
        Var::new(
            "PAYMENT_CACHE_ACCOUNTS",
            Fallback::Value("100000"),
            "balances remembered between writes",
        ),
        Var::new(
            "PAYMENT_GATEWAY_FAILURE_RATE",
            Fallback::Value("0"),
            "share (0.0 to 1.0) of gateway calls that fail transiently (fault injection)",
        ),
        Var::new(
            "PAYMENT_GATEWAY_LATENCY_MS",
            Fallback::Value("0"),
            "latency added to each gateway call (fault injection)",
        ),
        Var::new(
            "PAYMENT_BREAKER_FAILURES",
            Fallback::Value("5"),
            "gateway failures in a row that open the circuit",
        ),
        Var::new(
            "PAYMENT_BREAKER_COOLDOWN_MS",
            Fallback::Value("5000"),
            "how long the circuit stays open before a trial call",
        ),
    ],
};

#[tokio::main]
async fn main() {
    runtime::service::main(
        &BINARY,
        payment_service::Config::from_env,
        |config| &config.common,
        payment_service::run,
    )
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_tells_the_defaults_the_configuration_has() {
        runtime::cli::check_documented_defaults(&super::BINARY, payment_service::Config::from_env)
            .unwrap();
    }
}
