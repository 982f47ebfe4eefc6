//! Connecting to NATS, and waiting for the streams a service needs.
//!
//! A service never creates a stream: provisioning is a step of its own
//! (`sagactl provision`, as `admin`). A service waits, with backoff, for
//! NATS and for its streams rather than failing, and its `/readyz` names
//! what it is waiting for; a stream that vanishes while it runs is an
//! outage to show (an error, a failing check, a metric an alert watches),
//! never an empty database to start afresh.

use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::Context;
use async_nats::{Client, ConnectOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{CommonConfig, NatsAuth};
use crate::http::Readiness;
use crate::metrics::Metrics;
use crate::retry::Backoff;

/// Opens the connection as `identity` (whose inbox prefix it uses: the
/// only one its credentials let it receive on). It reconnects by itself,
/// forever, after any loss; the initial connection too is retried in the
/// background, so this returns at once even while NATS is down.
pub async fn connect(
    config: &CommonConfig,
    identity: &str,
) -> Result<Client, async_nats::ConnectError> {
    let mut options = ConnectOptions::new()
        .name(&config.service_name)
        .custom_inbox_prefix(events::subjects::inbox_prefix(identity))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        // A server that stops answering (a partition, a frozen process) is
        // given up after two unanswered pings, so that the client moves to
        // another node of a cluster within half a minute, not several.
        .ping_interval(Duration::from_secs(10))
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
    if let Some(client) = &config.nats_tls_client {
        options = options.add_client_certificate(client.cert.clone(), client.key.clone());
    }
    options.connect(config.nats_urls.clone()).await
}

/// Whether stream `name` is there: `Ok(false)` only when the server says
/// it does not exist; an error when it could not be asked.
pub async fn stream_exists(js: &Context, name: &str) -> Result<bool, String> {
    Ok(stream_state(js, name).await?.is_some())
}

/// How full a stream is: its messages and bytes, and its byte limit
/// (`None`: it has none); `None` when it is not there.
pub async fn stream_state(js: &Context, name: &str) -> Result<Option<StreamUse>, String> {
    match js.get_stream(name).await {
        Ok(stream) => {
            let info = stream.cached_info();
            Ok(Some(StreamUse {
                messages: info.state.messages,
                bytes: info.state.bytes,
                limit_bytes: u64::try_from(info.config.max_bytes).ok().filter(|b| *b > 0),
            }))
        }
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(ref api)
                if api.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(e.to_string()),
        },
    }
}

/// What a stream holds, against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamUse {
    pub messages: u64,
    pub bytes: u64,
    pub limit_bytes: Option<u64>,
}

/// The readiness check of a stream.
pub fn stream_check(name: &str) -> String {
    format!("stream {name}")
}

/// What `/readyz` says of a stream that is not there.
const NOT_PROVISIONED: &str = "stream not found: it is provisioned by `sagactl provision`";

/// Waits until every stream of `names` exists, with backoff, naming each
/// one still missing on `/readyz` (and on `jetsaga_stream_present`)
/// meanwhile; `false` when `shutdown` came first.
pub async fn require_streams(
    js: &Context,
    names: &[&'static str],
    readiness: &Readiness,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> bool {
    for name in names {
        readiness.declare(&stream_check(name));
    }
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let mut missing = 0;
        for name in names {
            let check = stream_check(name);
            match stream_exists(js, name).await {
                Ok(true) => {
                    metrics.stream_present(name, true);
                    readiness.ready(&check);
                }
                Ok(false) => {
                    metrics.stream_present(name, false);
                    readiness.failing(&check, NOT_PROVISIONED);
                    missing += 1;
                }
                Err(why) => {
                    readiness.failing(&check, why);
                    missing += 1;
                }
            }
        }
        if missing == 0 {
            tracing::info!(streams = ?names, "streams found");
            return true;
        }
        tracing::warn!(missing, "waiting for streams to be provisioned");
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// Keeps looking at the streams this service needs: every few seconds
/// each is looked up, and one found missing (deleted by hand, or lost with
/// a server's store) is logged as an error, fails its `/readyz` check and
/// shows on `jetsaga_stream_present` until someone provisions it again.
/// It is never re-created here: what it held is gone, and a fresh empty
/// stream would hide that.
pub async fn watch_streams(
    js: Context,
    names: Vec<&'static str>,
    readiness: Readiness,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    const EVERY: Duration = Duration::from_secs(2);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        for name in &names {
            // An error means NATS is down, which the connection check reports.
            let Ok(state) = stream_state(&js, name).await else {
                continue;
            };
            let present = state.is_some();
            metrics.stream_present(name, present);
            if let Some(state) = state {
                metrics.stream_use(name, state);
            }
            let check = stream_check(name);
            if present {
                readiness.ready(&check);
            } else {
                tracing::error!(
                    stream = name,
                    "stream missing: the service waits until it is provisioned again"
                );
                readiness.failing(&check, NOT_PROVISIONED);
            }
        }
    }
}
