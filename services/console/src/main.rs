//! The `saga-console` binary: the command line, configuration, logging,
//! signals; then [`saga_console::run`].

use runtime::cli::{Binary, Fallback, Var};

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
    runtime::service::main(
        &BINARY,
        saga_console::Config::from_env,
        |config| &config.common,
        saga_console::run,
    )
    .await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_tells_the_defaults_the_configuration_has() {
        runtime::cli::check_documented_defaults(&super::BINARY, saga_console::Config::from_env)
            .unwrap();
    }
}
