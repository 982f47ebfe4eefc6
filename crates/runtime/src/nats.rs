//! Connecting to NATS and provisioning what a service owns.
//!
//! Provisioning is idempotent (create, or update to the same configuration),
//! so services start in any order, any number of times. A service waits, with
//! backoff, for NATS and for the streams other services own, rather than
//! failing: its `/readyz` says what it is waiting for meanwhile.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::Config as StreamConfig;
use async_nats::jetstream::Context;
use async_nats::{Client, ConnectOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{CommonConfig, NatsAuth};
use crate::http::Readiness;
use crate::retry::Backoff;

/// Opens the connection. It reconnects by itself, forever, after any loss;
/// the initial connection too is retried in the background, so this returns
/// at once even while NATS is down.
pub async fn connect(config: &CommonConfig) -> Result<Client, async_nats::ConnectError> {
    let mut options = ConnectOptions::new()
        .name(&config.service_name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    options = match &config.nats_auth {
        NatsAuth::None => options,
        NatsAuth::Credentials(path) => options.credentials_file(path).await.map_err(|e| {
            async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, e)
        })?,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
    };
    if let Some(ca) = &config.nats_tls_ca {
        options = options.require_tls(true).add_root_certificates(ca.clone());
    }
    options.connect(config.nats_urls.clone()).await
}

/// Creates or updates a stream this service owns, retrying until it works
/// or `shutdown` is cancelled (then `false`).
pub async fn ensure_stream(
    js: &Context,
    config: StreamConfig,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> bool {
    let check = format!("stream {}", config.name);
    readiness.declare(&check);
    let ok = retry_until(shutdown, &check, readiness, || {
        let config = config.clone();
        async move {
            js.create_or_update_stream(config)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    if ok {
        tracing::info!(stream = %config.name, "stream provisioned");
    }
    ok
}

/// Runs `attempt` until it succeeds, with backoff, recording each failure
/// on the readiness check `check`. `false` when `shutdown` came first.
pub async fn retry_until<F, Fut>(
    shutdown: &CancellationToken,
    check: &str,
    readiness: &Readiness,
    mut attempt: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match attempt().await {
            Ok(()) => {
                readiness.ready(check);
                return true;
            }
            Err(why) => {
                tracing::warn!(check, error = %why, "not ready yet, retrying");
                readiness.failing(check, why);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Keeps the streams this service owns in place: every few seconds each is
/// looked up, and one found missing (deleted by hand, or lost with a
/// server's store) fails its `/readyz` check and is provisioned again,
/// empty, so that new work can flow. What it held is gone: that is logged
/// as an error for an operator to look into.
pub async fn watch_streams(
    js: Context,
    owned: Arc<Mutex<Vec<StreamConfig>>>,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    const EVERY: Duration = Duration::from_secs(2);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        let streams = owned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for config in streams {
            let missing = match js.get_stream(&config.name).await {
                Ok(_) => false,
                Err(e) => matches!(
                    e.kind(),
                    GetStreamErrorKind::JetStream(ref api)
                        if api.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                ),
            };
            if !missing {
                // Present, or NATS is down, which the connection check reports.
                continue;
            }
            let check = format!("stream {}", config.name);
            tracing::error!(stream = %config.name, "stream missing: provisioning it again, empty");
            readiness.failing(&check, "stream not found");
            match js.create_or_update_stream(config).await {
                Ok(_) => readiness.ready(&check),
                Err(e) => readiness.failing(&check, e.to_string()),
            }
        }
    }
}
