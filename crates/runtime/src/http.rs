//! The HTTP sidecar every service runs on `HTTP_ADDR`: liveness, readiness
//! and metrics (docs/contract.md section 3).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_nats::connection::State;
use axum::extract::State as Extract;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// The named checks `/readyz` reports, each set by the part of the service
/// it is about (a stream provisioned, a consumer bound, ...).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, Result<(), String>>>>,
}

impl Readiness {
    /// Declares a check, failing until it is set ready.
    pub fn declare(&self, name: &str) {
        self.set(name, Err("not yet checked".to_owned()));
    }

    pub fn set(&self, name: &str, state: Result<(), String>) {
        self.lock().insert(name.to_owned(), state);
    }

    pub fn ready(&self, name: &str) {
        self.set(name, Ok(()));
    }

    pub fn failing(&self, name: &str, why: impl Into<String>) {
        self.set(name, Err(why.into()));
    }

    /// The failing checks, by name.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.lock()
            .iter()
            .filter_map(|(name, state)| state.as_ref().err().map(|e| (name.clone(), e.clone())))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Result<(), String>>> {
        self.checks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Clone)]
struct Sidecar {
    client: async_nats::Client,
    readiness: Readiness,
    metrics: Metrics,
}

/// Binds `addr` now (so a port in use fails the start) and serves until
/// `shutdown` is cancelled: the sidecar's three paths, and the service's
/// own `routes` beside them (none but the console's has any).
pub async fn serve(
    addr: SocketAddr,
    client: async_nats::Client,
    readiness: Readiness,
    metrics: Metrics,
    routes: Router,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Sidecar {
            client,
            readiness,
            metrics,
        })
        .merge(routes);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the HTTP sidecar stopped");
        }
    }))
}

async fn readyz(Extract(sidecar): Extract<Sidecar>) -> impl IntoResponse {
    let mut failures = sidecar.readiness.failures();
    if sidecar.client.connection_state() != State::Connected {
        failures.insert("nats".to_owned(), "not connected to NATS".to_owned());
    }
    if failures.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "failing": failures})),
        )
    }
}

async fn metrics_text(Extract(sidecar): Extract<Sidecar>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        sidecar.metrics.render(),
    )
}
