//! The `saga-console` binary: the command line, configuration, logging,
//! signals; then [`saga_console::run`].

use runtime::cli::{Binary, Fallback, Var};
use runtime::config::ProcessEnv;
use runtime::service::{config_or_exit, shutdown_on_signals};

/// jemalloc, as in the services: the console's pages and snapshots are
/// many short-lived buffers too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What `--help` and `--version` say.
const BINARY: Binary = Binary {
    name: saga_console::NAME,
    version: env!("CARGO_PKG_VERSION"),
    about: env!("CARGO_PKG_DESCRIPTION"),
    http_addr: "0.0.0.0:8085",
    vars: &[
        Var::new(
            "CONSOLE_OPERATOR_TOKEN",
            Fallback::Unset,
            "the secret a person signs in with to retry, abort, cancel and replay \
             (at least 16 characters); unset: read-only",
        ),
        Var::new(
            "CONSOLE_TRACE_URL",
            Fallback::Unset,
            "link to an order's trace, with {trace_id} or {order_id} in it \
             (Jaeger: http://localhost:16686/trace/{trace_id})",
        ),
    ],
};

#[tokio::main]
async fn main() {
    runtime::cli::handle_args(&BINARY);
    let config = config_or_exit(saga_console::Config::from_env(&ProcessEnv));
    let telemetry = runtime::telemetry::init(&config.common);
    let shutdown = shutdown_on_signals();
    let result = saga_console::run(config, shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "saga-console failed");
    }
    telemetry.shutdown().await;
    if result.is_err() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_tells_the_defaults_the_configuration_has() {
        runtime::cli::check_documented_defaults(&super::BINARY, saga_console::Config::from_env)
            .unwrap();
    }
}
