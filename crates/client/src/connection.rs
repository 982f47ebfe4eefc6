//! How a client reaches a deployment: the servers, the identity it connects
//! as (a credentials file), TLS, and its inbox prefix; from flags, or from
//! a `nats` CLI context (docs/contract.md section 9).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ClientError;

/// Where and as whom to connect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// One URL or a comma-separated list of them.
    pub urls: String,
    /// A credentials file (`NATS_CREDS`).
    pub creds: Option<PathBuf>,
    /// A user and password, for servers configured that way.
    pub user_password: Option<(String, String)>,
    /// When set, TLS is required and this CA trusted.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key (mutual TLS).
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Where replies come; by default `_INBOX.<identity>` for the identity
    /// the credentials file names (the only inbox its permissions allow),
    /// else `_INBOX`.
    pub inbox_prefix: Option<String>,
}

/// The part of a `nats` CLI context (`~/.config/nats/context/<name>.json`)
/// that says how to connect.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Context {
    url: String,
    creds: String,
    user: String,
    password: String,
    ca: String,
    cert: String,
    key: String,
    inbox_prefix: String,
}

impl Connection {
    pub fn new(urls: impl Into<String>) -> Self {
        Self {
            urls: urls.into(),
            ..Self::default()
        }
    }

    /// Connects as the identity of a credentials file.
    pub fn creds(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds = Some(path.into());
        self
    }

    /// Requires TLS, trusting `ca`.
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }

    /// Presents a client certificate.
    pub fn tls_client(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_client = Some((cert.into(), key.into()));
        self
    }

    /// The `nats` CLI context `name`, from `$XDG_CONFIG_HOME/nats/context`
    /// (else `~/.config/nats/context`), or a path to its JSON file.
    pub fn from_context(name: &str) -> Result<Self, ClientError> {
        let path = context_path(name)?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ClientError::Config(format!("nats context {name} ({}): {e}", path.display()))
        })?;
        let context: Context = serde_json::from_str(&text).map_err(|e| {
            ClientError::Config(format!("nats context {name} ({}): {e}", path.display()))
        })?;
        let file = |s: String| (!s.is_empty()).then(|| expand_home(&s));
        Ok(Self {
            urls: if context.url.is_empty() {
                "nats://127.0.0.1:4222".to_owned()
            } else {
                context.url
            },
            creds: file(context.creds),
            user_password: (!context.user.is_empty()).then_some((context.user, context.password)),
            tls_ca: file(context.ca),
            tls_client: file(context.cert).zip(file(context.key)),
            inbox_prefix: (!context.inbox_prefix.is_empty()).then_some(context.inbox_prefix),
        })
    }

    /// The options of the connection this describes.
    pub async fn options(&self, name: &str) -> Result<async_nats::ConnectOptions, ClientError> {
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5));
        let mut prefix = self.inbox_prefix.clone();
        if let Some(path) = &self.creds {
            if prefix.is_none() {
                prefix = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|text| auth::creds_identity(&text))
                    .map(|identity| events::subjects::inbox_prefix(&identity));
            }
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| ClientError::Config(format!("credentials {}: {e}", path.display())))?;
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(prefix) = prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(ca) = &self.tls_ca {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }

    /// The server URLs, as a list.
    pub fn url_list(&self) -> Vec<String> {
        self.urls
            .split(',')
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }
}

fn context_path(name: &str) -> Result<PathBuf, ClientError> {
    if name.ends_with(".json") || name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
        .ok_or_else(|| {
            ClientError::Config("no XDG_CONFIG_HOME or HOME to find nats contexts in".into())
        })?;
    Ok(config.join("nats/context").join(format!("{name}.json")))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_cli_context_gives_the_servers_the_identity_and_tls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jetsaga-operator.json");
        std::fs::write(
            &path,
            r#"{"description":"x","url":"nats://a:4222,nats://b:4222","creds":"/auth/operator.creds",
                "ca":"/auth/tls/ca.pem","cert":"/auth/tls/operator.pem","key":"/auth/tls/operator-key.pem",
                "inbox_prefix":"_INBOX.operator","nsc":""}"#,
        )
        .unwrap();
        let c = Connection::from_context(path.to_str().unwrap()).unwrap();
        assert_eq!(c.url_list(), ["nats://a:4222", "nats://b:4222"]);
        assert_eq!(c.creds, Some(PathBuf::from("/auth/operator.creds")));
        assert_eq!(c.tls_ca, Some(PathBuf::from("/auth/tls/ca.pem")));
        assert_eq!(
            c.tls_client,
            Some((
                PathBuf::from("/auth/tls/operator.pem"),
                PathBuf::from("/auth/tls/operator-key.pem")
            ))
        );
        assert_eq!(c.inbox_prefix.as_deref(), Some("_INBOX.operator"));
    }

    #[test]
    fn a_missing_or_broken_context_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = Connection::from_context(missing.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("nope.json"), "{err}");
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{").unwrap();
        let err = Connection::from_context(broken.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("broken.json"), "{err}");
    }
}
