//! Logging: JSON lines by default (`LOG_FORMAT=text` for people), filtered
//! by `RUST_LOG`, with the fields of the current spans on every line.

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{CommonConfig, LogFormat};

/// Installs the global subscriber. Call once, from `main`.
pub fn init(config: &CommonConfig) {
    // Validated with the configuration: an invalid filter exits 64 first.
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
