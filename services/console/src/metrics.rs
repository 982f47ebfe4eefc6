//! The console's own metrics, beside those every service exports.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Buckets for rendering a page: a tenth of a millisecond to seconds (a
/// page waits on its queries).
const RENDER_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Clone)]
pub struct ConsoleMetrics {
    /// `jetsaga_console_requests_total{route, code}`.
    pub requests: IntCounterVec,
    /// `jetsaga_console_request_duration_seconds{route}`: from the request
    /// to the response's head, queries included.
    pub duration: HistogramVec,
    /// `jetsaga_console_render_seconds{page}`: making a page's HTML, the
    /// console's own work, apart from the queries.
    pub render: HistogramVec,
    /// `jetsaga_console_live_streams`: browsers following the overview.
    pub live_streams: IntGauge,
    /// `jetsaga_console_order_events_total{type}`: what the funnel counts.
    pub order_events: IntCounterVec,
    /// `jetsaga_console_operator_actions_total{action, outcome}`: what
    /// people signed in as operator asked, and whether it was sent.
    pub actions: IntCounterVec,
}

impl ConsoleMetrics {
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "jetsaga_console_requests_total",
                "HTTP requests the console answered, by route and status code",
            ),
            &["route", "code"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "jetsaga_console_request_duration_seconds",
                "Time to answer an HTTP request, its NATS queries included",
            )
            .buckets(RENDER_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let render = HistogramVec::new(
            HistogramOpts::new(
                "jetsaga_console_render_seconds",
                "Time to make a page's HTML once its queries have answered",
            )
            .buckets(RENDER_BUCKETS.to_vec()),
            &["page"],
        )
        .expect("valid metric");
        let live_streams = IntGauge::new(
            "jetsaga_console_live_streams",
            "Browsers following the live overview",
        )
        .expect("valid metric");
        let order_events = IntCounterVec::new(
            Opts::new(
                "jetsaga_console_order_events_total",
                "Order events the console followed, by type",
            ),
            &["type"],
        )
        .expect("valid metric");
        let actions = IntCounterVec::new(
            Opts::new(
                "jetsaga_console_operator_actions_total",
                "Actions asked through the console, by action and outcome (sent, failed)",
            ),
            &["action", "outcome"],
        )
        .expect("valid metric");
        for metric in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(render.clone()),
            Box::new(live_streams.clone()),
            Box::new(order_events.clone()),
            Box::new(actions.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        Self {
            requests,
            duration,
            render,
            live_streams,
            order_events,
            actions,
        }
    }
}
