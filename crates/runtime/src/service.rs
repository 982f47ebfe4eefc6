//! A service's lifecycle: start (connect, sidecar), provision, run its
//! consumers and queries, and shut down cleanly when asked.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::Client;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::ServerClock;
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
    /// The server's time, read from the messages the consumers receive.
    pub clock: Arc<ServerClock>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    sidecar: tokio::task::JoinHandle<()>,
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
        Self::start_with(
            name,
            name,
            config,
            metrics,
            |_| axum::Router::new(),
            shutdown,
        )
        .await
    }

    /// [`Self::start`] for a program that connects as another identity
    /// than its name (the console: `client` or `operator`) and serves
    /// routes of its own beside the sidecar's: those `routes` makes of the
    /// connection.
    pub async fn start_with(
        name: &'static str,
        identity: &str,
        config: CommonConfig,
        metrics: Metrics,
        routes: impl FnOnce(&Client) -> axum::Router,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let clock = Arc::new(ServerClock::new(metrics.registry()));
        let readiness = Readiness::default();
        let client = nats::connect(&config, identity).await?;
        let js = async_nats::jetstream::new(client.clone());
        let sidecar = http::serve(
            config.http_addr,
            client.clone(),
            readiness.clone(),
            metrics.clone(),
            routes(&client),
            shutdown.clone(),
        )
        .await
        .map_err(|source| StartError::Http {
            addr: config.http_addr,
            source,
        })?;
        tracing::info!(service = name, http = %config.http_addr, "service starting");
        let tasks = TaskTracker::new();
        Ok(Self {
            name,
            config,
            client,
            js,
            metrics,
            readiness,
            clock,
            shutdown,
            tasks,
            sidecar,
        })
    }

    /// Waits until every stream in `names` (of [`streams::ALL`]) has been
    /// provisioned, then keeps watching them for as long as the service
    /// runs; `false` on shutdown.
    pub async fn require_streams(&self, names: &[&'static str]) -> bool {
        for name in names {
            assert!(
                streams::ALL.contains(name),
                "{name} is not one of the suite's streams"
            );
        }
        if !nats::require_streams(
            &self.js,
            names,
            &self.readiness,
            &self.metrics,
            &self.shutdown,
        )
        .await
        {
            return false;
        }
        self.tasks.spawn(nats::watch_streams(
            self.js.clone(),
            names.to_vec(),
            self.readiness.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        ));
        true
    }

    /// Runs a consumer until shutdown.
    pub fn consume<H: Handler>(&self, spec: ConsumerSpec, handler: Arc<H>) {
        let ctx = ConsumerContext {
            js: self.js.clone(),
            service: self.name,
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            clock: self.clock.clone(),
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

/// A binary's whole `main`: its command line (`--help`, `--version`), its
/// configuration (exit 64 naming the variable), logs and traces, the
/// signals; then `run` until a signal, the last spans exported; exit 1 if
/// it failed.
pub async fn main<C, F, Fut>(
    binary: &crate::cli::Binary,
    from_env: impl FnOnce(&crate::config::ProcessEnv) -> Result<C, crate::config::ConfigError>,
    common: impl FnOnce(&C) -> &CommonConfig,
    run: F,
) where
    F: FnOnce(C, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), StartError>>,
{
    crate::cli::handle_args(binary);
    let config = config_or_exit(from_env(&crate::config::ProcessEnv));
    let telemetry = crate::telemetry::init(common(&config));
    let shutdown = shutdown_on_signals();
    let result = run(config, shutdown).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "{} failed", binary.name);
    }
    // The last spans of the run are exported before the process ends.
    telemetry.shutdown().await;
    if result.is_err() {
        std::process::exit(1);
    }
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
