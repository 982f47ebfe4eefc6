//! The `inventory-service` binary: the command line, configuration, logging,
//! signals; then [`inventory_service::run`].

use runtime::cli::{Binary, Fallback, Var};

/// jemalloc, not glibc's malloc: handling a message allocates and frees a
/// few hundred small buffers (JSON, headers, spans), and glibc's bin
/// upkeep took 30% of the orchestrator's CPU at saturation (docs/performance.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What `--help` and `--version` say.
const BINARY: Binary = Binary {
    name: inventory_service::NAME,
    version: env!("CARGO_PKG_VERSION"),
    about: env!("CARGO_PKG_DESCRIPTION"),
    http_addr: "0.0.0.0:8082",
    vars: &[
        Var::new(
            "INVENTORY_CONCURRENCY",
            Fallback::Value("128"),
            "saga steps handled at once",
        ),
        Var::new(
            "INVENTORY_CACHE_SKUS",
            Fallback::Value("100000"),
            "sku levels remembered between writes",
        ),
    ],
};

#[tokio::main]
async fn main() {
    runtime::service::main(
        &BINARY,
        inventory_service::Config::from_env,
        |config| &config.common,
        inventory_service::run,
    )
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_tells_the_defaults_the_configuration_has() {
        runtime::cli::check_documented_defaults(
            &super::BINARY,
            inventory_service::Config::from_env,
        )
        .unwrap();
    }
}
