//! The saga console (docs/contract.md section 8): a web page for people who
//! would rather look than read.
//!
//! It is a client of the suite like `sagactl`, over NATS alone: it follows
//! `orders.evt.>` for the funnel and the live feed ([`live`]), asks
//! `saga.query.list` and `saga.query.get` for the sagas, reads the
//! dead-letter stream, and publishes the operator's commands. It renders
//! every page on the server ([`views`]); the one script it serves only
//! keeps the overview up to date from a server-sent event stream.
//!
//! Who may act is decided twice. The NATS server decides what the
//! console's identity may do at all (`client` only reads; `operator` may
//! also retry, abort and replay). The console decides which people may
//! use that: only those signed in with `CONSOLE_OPERATOR_TOKEN`, and only
//! through a form of its own ([`operator`]). Without the token it is
//! read-only, whatever its identity.

mod live;
mod metrics;
mod operator;
mod pages;
mod timeline;
mod views;

use std::sync::Arc;

use auth::Identity;
use runtime::config::{CommonConfig, ConfigError, Env, NatsAuth};
use runtime::metrics::Metrics;
use runtime::service::StartError;
use runtime::ServiceRuntime;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "saga-console";

/// The shortest operator token accepted: it is the one secret between a
/// browser and the power to abort orders.
pub const MIN_TOKEN_LEN: usize = 16;

/// The console's configuration: the common settings, and its own.
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `CONSOLE_TRACE_URL`: the link to an order's trace in a tracing UI,
    /// with `{trace_id}` and `{order_id}` filled in.
    pub trace_url: Option<String>,
    /// `CONSOLE_OPERATOR_TOKEN`: what a person signs in with to act.
    pub operator_token: Option<Secret>,
    /// The identity its credentials name; `None` when they name none (a
    /// server without accounts, user and password).
    pub identity: Option<Identity>,
}

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Config {
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, NAME, "0.0.0.0:8085")?;
        let trace_url = env
            .var("CONSOLE_TRACE_URL")
            .filter(|url| !url.is_empty())
            .map(|url| {
                let web = url.starts_with("http://") || url.starts_with("https://");
                let templated = url.contains("{trace_id}") || url.contains("{order_id}");
                if web && templated {
                    Ok(url)
                } else {
                    Err(ConfigError::new(
                        "CONSOLE_TRACE_URL",
                        "must be an http:// or https:// URL with {trace_id} or {order_id} in it, \
                         e.g. http://localhost:16686/trace/{trace_id}",
                    ))
                }
            })
            .transpose()?;
        let operator_token = env
            .var("CONSOLE_OPERATOR_TOKEN")
            .filter(|token| !token.is_empty())
            .map(|token| {
                if token.chars().count() < MIN_TOKEN_LEN {
                    Err(ConfigError::new(
                        "CONSOLE_OPERATOR_TOKEN",
                        format!("must be at least {MIN_TOKEN_LEN} characters"),
                    ))
                } else {
                    Ok(Secret(token))
                }
            })
            .transpose()?;
        let identity = match &common.nats_auth {
            NatsAuth::Credentials(path) => {
                let named = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|creds| auth::creds_identity(&creds));
                match named
                    .as_deref()
                    .map(|name| (name, Identity::from_name(name)))
                {
                    None => None,
                    Some((_, Some(identity @ (Identity::Client | Identity::Operator)))) => {
                        Some(identity)
                    }
                    Some((name, _)) => {
                        return Err(ConfigError::new(
                            "NATS_CREDS",
                            format!("names {name:?}: the console connects as client or operator"),
                        ))
                    }
                }
            }
            NatsAuth::None | NatsAuth::UserPassword { .. } => None,
        };
        Ok(Self {
            common,
            trace_url,
            operator_token,
            identity,
        })
    }

    /// Whether the console offers the operator's actions: it has the token
    /// to sign people in with, and an identity that may be allowed them
    /// (an unnamed one is left to the server to refuse).
    pub fn can_act(&self) -> bool {
        self.operator_token.is_some() && self.identity != Some(Identity::Client)
    }
}

/// Runs the console until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    if config.operator_token.is_some() && !config.can_act() {
        tracing::warn!(
            "CONSOLE_OPERATOR_TOKEN is set, but the console connects as client: it only shows"
        );
    }
    let identity = config.identity.map_or("client", Identity::name);
    let metrics = Metrics::new();
    let console_metrics = metrics::ConsoleMetrics::new(metrics.registry());
    let live = Arc::new(live::Live::new());
    let state = |nats: &async_nats::Client| pages::Console {
        client: jetsaga_client::Client::new(nats.clone()),
        live: live.clone(),
        keys: config
            .operator_token
            .as_ref()
            .filter(|_| config.can_act())
            .map(|token| Arc::new(operator::Keys::new(token.expose()))),
        identity: config.identity,
        trace_url: config.trace_url.clone().map(Arc::from),
        metrics: console_metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let rt = ServiceRuntime::start_with(
        NAME,
        identity,
        config.common.clone(),
        metrics,
        |nats| pages::router(state(nats)),
        shutdown.clone(),
    )
    .await?;
    rt.readiness.declare(live::CHECK);
    rt.spawn(live::follow(
        rt.client.clone(),
        live.clone(),
        rt.readiness.clone(),
        console_metrics.clone(),
        shutdown.clone(),
    ));
    rt.spawn(live::tick(live.clone(), shutdown.clone()));
    rt.spawn(live::count_stuck(
        jetsaga_client::Client::new(rt.client.clone()),
        live,
        shutdown,
    ));
    rt.run_until_shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env<'a>(vars: &[(&'a str, &'a str)]) -> HashMap<&'a str, &'a str> {
        vars.iter().copied().collect()
    }

    #[test]
    fn a_trace_url_without_a_placeholder_names_the_variable() {
        let e =
            Config::from_env(&env(&[("CONSOLE_TRACE_URL", "http://jaeger:16686/")])).unwrap_err();
        assert!(e.to_string().contains("CONSOLE_TRACE_URL"), "{e}");
        let e = Config::from_env(&env(&[("CONSOLE_TRACE_URL", "jaeger/{trace_id}")])).unwrap_err();
        assert!(e.to_string().contains("CONSOLE_TRACE_URL"), "{e}");
        let ok = Config::from_env(&env(&[(
            "CONSOLE_TRACE_URL",
            "http://localhost:16686/trace/{trace_id}",
        )]))
        .unwrap();
        assert_eq!(
            ok.trace_url.as_deref(),
            Some("http://localhost:16686/trace/{trace_id}")
        );
    }

    #[test]
    fn a_short_operator_token_is_refused_and_never_shown() {
        let e = Config::from_env(&env(&[("CONSOLE_OPERATOR_TOKEN", "hunter2")])).unwrap_err();
        assert!(e.to_string().contains("CONSOLE_OPERATOR_TOKEN"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let ok =
            Config::from_env(&env(&[("CONSOLE_OPERATOR_TOKEN", "a-long-enough-secret")])).unwrap();
        assert!(!format!("{ok:?}").contains("a-long-enough-secret"));
        assert!(ok.can_act(), "no identity named: the server decides");
    }

    #[test]
    fn defaults_listen_on_8085_read_only() {
        let config = Config::from_env(&env(&[])).unwrap();
        assert_eq!(config.common.http_addr.port(), 8085);
        assert!(!config.can_act());
        assert!(config.trace_url.is_none());
    }
}
