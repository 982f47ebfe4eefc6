//! A service's lifecycle: start (connect, sidecar), provision, run its
//! consumers and queries, and shut down cleanly when asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;
use async_nats::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::CommonConfig;
use crate::consumer::{self, ConsumerContext, ConsumerSpec, Handler};
use crate::http::{self, Readiness};
use crate::metrics::Metrics;
use crate::query::{self, Query};
use crate::{nats, streams};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Http {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the NATS connection: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("cannot register the queries: {0}")]
    Queries(async_nats::Error),
}

/// Everything a running service shares between its parts.
#[derive(Debug)]
pub struct ServiceRuntime {
    /// The binary's name, used in dead-letter subjects.
    pub name: &'static str,
    pub config: CommonConfig,
    pub client: Client,
    pub js: Context,
    pub metrics: Metrics,
    pub readiness: Readiness,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sidecar: tokio::task::JoinHandle<()>,
    /// The streams provisioned by this service, kept in place by
    /// [`nats::watch_streams`].
    owned_streams: Arc<Mutex<Vec<StreamConfig>>>,
}

impl ServiceRuntime {
    /// Starts the HTTP sidecar and the NATS connection (which keeps trying
    /// in the background while NATS is down).
    pub async fn start(
        name: &'static str,
        config: CommonConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let client = nats::connect(&config).await?;
        let js = async_nats::jetstream::new(client.clone());
        let sidecar = http::serve(
            config.http_addr,
            client.clone(),
            readiness.clone(),
            metrics.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|source| StartError::Http {
            addr: config.http_addr,
            source,
        })?;
        tracing::info!(service = name, http = %config.http_addr, "service starting");
        let owned_streams = Arc::default();
        let tasks = TaskTracker::new();
        tasks.spawn(nats::watch_streams(
            js.clone(),
            Arc::clone(&owned_streams),
            readiness.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            name,
            config,
            client,
            js,
            metrics,
            readiness,
            shutdown,
            tasks,
            sidecar,
            owned_streams,
        })
    }

    /// Creates or updates the streams this service owns (names of
    /// [`streams::ALL`]), with this service's replica count; `false` on
    /// shutdown.
    pub async fn provision(&self, names: &[&str]) -> bool {
        for name in names {
            let config = streams::config(name, self.config.stream_replicas)
                .unwrap_or_else(|| panic!("{name} is not one of the suite's streams"));
            if !nats::ensure_stream(&self.js, config.clone(), &self.readiness, &self.shutdown).await
            {
                return false;
            }
            self.owned_streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(config);
        }
        true
    }

    /// Runs a consumer until shutdown.
    pub fn consume<H: Handler>(&self, spec: ConsumerSpec, handler: Arc<H>) {
        let ctx = ConsumerContext {
            js: self.js.clone(),
            service: self.name,
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
        };
        self.tasks
            .spawn(consumer::run(ctx, spec, handler, self.shutdown.clone()));
    }

    /// Serves queries as the micro service named after this binary.
    pub async fn serve_queries(
        &self,
        description: &str,
        queries: Vec<Query>,
    ) -> Result<(), StartError> {
        query::serve(
            self.client.clone(),
            self.name,
            description,
            queries,
            self.shutdown.clone(),
            &self.tasks,
        )
        .await
        .map_err(StartError::Queries)
    }

    /// Spawns a task that ends with the service.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Waits for shutdown, then: stops taking messages and queries, lets
    /// in-flight work finish (within the grace period; what is left is
    /// redelivered, never lost), and drains the connection.
    pub async fn run_until_shutdown(self) {
        self.shutdown.cancelled().await;
        tracing::info!(service = self.name, "shutting down");
        let grace = self.config.shutdown_grace;
        // Keep a little of the grace period for the drain.
        let work_grace = grace.saturating_sub(Duration::from_secs(2)).max(grace / 2);
        self.tasks.close();
        if tokio::time::timeout(work_grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("in-flight work outlived the grace period; it will be redelivered");
        }
        match tokio::time::timeout(Duration::from_secs(2), self.client.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "draining the NATS connection"),
            Err(_) => tracing::warn!("draining the NATS connection timed out"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sidecar).await;
        tracing::info!(service = self.name, "stopped");
    }
}

/// A token cancelled on SIGTERM or SIGINT. For `main` only: the libraries
/// never install signal handlers.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can listen for SIGTERM");
    let mut int = signal(SignalKind::interrupt()).expect("can listen for SIGINT");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Exit code for invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// Parses configuration in `main`, or prints the one-line error naming the
/// variable and exits 64, before anything else happens.
pub fn config_or_exit<T>(config: Result<T, crate::config::ConfigError>) -> T {
    config.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(EXIT_CONFIG)
    })
}
