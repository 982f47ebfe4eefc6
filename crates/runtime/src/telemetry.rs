//! Logs and traces.
//!
//! - **Logs**: JSON lines by default (`LOG_FORMAT=text` for people),
//!   filtered by `RUST_LOG`. A line written inside a span carries the fields
//!   of every span it is in (`order_id`, `consumer`, `subject`, ...) at the
//!   top level, and the `trace_id` and `span_id` of the innermost one.
//! - **Traces**: every span is an OpenTelemetry span. They are exported over
//!   OTLP (`http/protobuf` or `grpc`, plain or gzip, to `http://` or
//!   `https://` endpoints) only when an endpoint is configured;
//!   without one, spans still get ids (for the logs and for propagation) but
//!   are dropped when they end.
//! - **Propagation**: the W3C trace context (`traceparent`, `tracestate`)
//!   rides in the NATS headers of every message a service publishes
//!   ([`inject`]), and every message handled continues the trace it carries
//!   ([`continue_trace`]), so one order is one trace across the services.
//!
//! Span kinds and attributes follow the OpenTelemetry semantic conventions
//! for messaging: see [`producer_span`] and `consumer::process`.

use std::sync::OnceLock;

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::{Dispatch, Level};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, EnvFilter, Layer};

use crate::config::{CommonConfig, LogFormat, OtlpCompression, OtlpExport, OtlpProtocol};

/// The global subscriber, kept to look up the OpenTelemetry context of a
/// span while formatting a log line (the subscriber cannot be asked for
/// itself from inside its own callbacks).
static DISPATCH: OnceLock<Dispatch> = OnceLock::new();

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] exports what is
/// still buffered.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still buffered, for at most a few seconds: an
    /// unreachable collector must not hold the exit past the grace period.
    pub async fn shutdown(self) {
        const FLUSH: std::time::Duration = std::time::Duration::from_secs(3);
        let provider = self.provider;
        // The batch processor runs on this runtime: wait for it from a
        // thread of its own rather than block a worker.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "flushing the trace exporter");
        }
    }
}

/// Installs the global subscriber and the trace pipeline. Call once, from
/// `main`, inside the Tokio runtime (the exporter runs on it).
pub fn init(config: &CommonConfig) -> Telemetry {
    let mut provider = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut export_error = None;
    if let Some(otlp) = &config.otlp {
        match exporter(otlp) {
            Ok(exporter) => {
                use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
                provider = provider.with_span_processor(
                    BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio)
                        .build(),
                );
            }
            Err(e) => export_error = Some(e.to_string()),
        }
    }
    let exporting = config.otlp.is_some() && export_error.is_none();
    let provider = provider.build();
    let tracer = provider.tracer("jetsaga");

    // Spans are traced whatever RUST_LOG says of the logs. When they are
    // exported, events at info and above become span events; when they are
    // not, nobody would see those, so the layer only gives spans their ids.
    // Nothing here reads OpenTelemetry's "current context" (the trace
    // context is taken from the span, see `inject`), so entering a span
    // need not make its context current, which costs on every poll.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(filter::filter_fn(move |meta| {
            meta.level() <= &Level::INFO && (exporting || meta.is_span())
        }));
    // Validated with the configuration: an invalid filter exits 64 first.
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match config.log_format {
        LogFormat::Json => json_logs().with_filter(filter).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry().with(otel).with(logs).init();
    tracing::dispatcher::get_default(|dispatch| DISPATCH.set(dispatch.clone()).ok());

    match (&config.otlp, export_error) {
        (None, _) => tracing::info!("trace export off: no OTLP endpoint set"),
        (Some(otlp), None) => {
            tracing::info!(
                endpoint = %otlp.endpoint,
                protocol = ?otlp.protocol,
                compression = ?otlp.compression,
                "exporting traces over OTLP"
            );
        }
        (Some(otlp), Some(e)) => {
            tracing::error!(endpoint = %otlp.endpoint, error = %e, "cannot set up trace export; running without it");
        }
    }
    Telemetry { provider }
}

/// The OTLP span exporter. Endpoint, headers and timeout come from the
/// standard `OTEL_EXPORTER_OTLP_*` variables, which the exporter reads
/// itself; compression and TLS are set here from the checked configuration,
/// so that neither depends on what the exporter would make of them.
fn exporter(
    otlp: &OtlpExport,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::{WithHttpConfig, WithTonicConfig};

    // rustls has one crypto provider built in (ring, which async-nats uses
    // too); the HTTP exporter's client needs it installed. Installing twice
    // is harmless: the first one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let compression = match otlp.compression {
        OtlpCompression::None => None,
        OtlpCompression::Gzip => Some(opentelemetry_otlp::Compression::Gzip),
    };
    match otlp.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
            if let Some(compression) = compression {
                builder = builder.with_compression(compression);
            }
            builder.build()
        }
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(compression) = compression {
                builder = builder.with_compression(compression);
            }
            if otlp.is_tls() {
                // Left to itself, the exporter would trust no root at all.
                builder = builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_enabled_roots(),
                );
            }
            builder.build()
        }
    }
}

fn json_logs<S>() -> json_subscriber::JsonLayer<S, fn() -> std::io::Stderr>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let mut layer = json_subscriber::JsonLayer::stderr();
    layer
        .with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
        .with_level("level")
        .with_target("target")
        .with_flattened_event()
        .with_top_level_flattened_span_list();
    layer.add_from_span("trace_id", |span| {
        let cx = otel_context(&span.id())?;
        Some(cx.span().span_context().trace_id().to_string())
    });
    layer.add_from_span("span_id", |span| {
        let cx = otel_context(&span.id())?;
        Some(cx.span().span_context().span_id().to_string())
    });
    layer
}

fn otel_context(id: &tracing::span::Id) -> Option<opentelemetry::Context> {
    let cx = tracing_opentelemetry::get_otel_context(id, DISPATCH.get()?)?;
    cx.span().span_context().is_valid().then_some(cx)
}

/// Writes the trace context of `span` into `headers` (`traceparent`, and
/// `tracestate` when there is one), replacing any there.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

/// Makes `span` (not yet entered) a child of the trace context carried in
/// `headers`, if there is a valid one; otherwise it starts a trace.
pub fn continue_trace(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else { return };
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        // Fails only once the span has started, which it has not.
        let _ = span.set_parent(cx);
    }
}

/// A `send` span (kind producer) for a write of `count` messages to
/// `subject`'s stream, child of the current span.
pub fn producer_span(subject: &str, count: usize) -> tracing::Span {
    let template = events::subjects::template(subject);
    let span = tracing::info_span!(
        "send",
        otel.name = %format_args!("send {template}"),
        otel.kind = "producer",
    );
    describe_messaging(&span, "send", subject, template);
    if count > 1 {
        span.set_attribute(
            "messaging.batch.message_count",
            i64::try_from(count).unwrap_or(i64::MAX),
        );
    }
    if let Some(order_id) = events::subjects::order_id_of(subject) {
        span.set_attribute("order_id", order_id.to_owned());
    }
    span
}

/// The OpenTelemetry messaging attributes every jetsaga span carries: the
/// system, the operation (`send`, `process`), and the subject with its
/// low-cardinality template.
pub fn describe_messaging(
    span: &tracing::Span,
    operation: &'static str,
    subject: &str,
    template: String,
) {
    span.set_attribute("messaging.system", "nats");
    span.set_attribute("messaging.operation.type", operation);
    span.set_attribute("messaging.operation.name", operation);
    span.set_attribute("messaging.destination.name", subject.to_owned());
    span.set_attribute("messaging.destination.template", template);
}

/// Records the order the current span is about: in its log lines (where
/// the span declares an `order_id` field) and on its trace span.
pub fn record_order_id(order_id: &str) {
    let span = tracing::Span::current();
    span.record("order_id", order_id);
    span.set_attribute("order_id", order_id.to_owned());
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_round_trips_through_nats_headers() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", traceparent);
        incoming.insert("tracestate", "vendor=1");
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&incoming));
        let mut outgoing = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut outgoing));
        assert_eq!(
            outgoing.get("traceparent").map(|v| v.as_str()),
            Some(traceparent)
        );
        assert_eq!(
            outgoing.get("tracestate").map(|v| v.as_str()),
            Some("vendor=1")
        );
    }

    /// Every transport the configuration accepts can be built: gzip and
    /// TLS are compiled in, and the HTTP client finds its crypto provider.
    #[tokio::test]
    async fn every_protocol_compression_and_scheme_builds_an_exporter() {
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            for compression in [OtlpCompression::None, OtlpCompression::Gzip] {
                for endpoint in ["http://127.0.0.1:4318", "https://otlp.example:443"] {
                    let otlp = OtlpExport {
                        endpoint: endpoint.into(),
                        protocol,
                        compression,
                    };
                    if let Err(e) = exporter(&otlp) {
                        panic!("{otlp:?}: {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        let mut incoming = HeaderMap::new();
        incoming.insert("traceparent", "not-a-trace");
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&incoming));
        assert!(!cx.span().span_context().is_valid());
    }
}
