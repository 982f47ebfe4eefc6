//! The connection flags every command shares (docs/contract.md section 9):
//! where the servers are, the identity to connect as, TLS, or a `nats` CLI
//! context holding all of it. A flag (or its variable) wins over the
//! context.

use std::path::PathBuf;

use clap::Args;
use jetsaga_client::Connection;

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// NATS server URL, or a comma-separated list of them [default:
    /// the context's, else nats://127.0.0.1:4222].
    #[arg(long, global = true, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Credentials file of the identity to connect as (`sagactl auth init`
    /// writes one per identity).
    #[arg(long, global = true, env = "NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// CA certificate: when given, the connection requires TLS.
    #[arg(long, global = true, env = "NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate, for servers that verify their clients.
    #[arg(long, global = true, env = "NATS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, global = true, env = "NATS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A `nats` CLI context (a name, or the path of its JSON file): its
    /// server, credentials, TLS files and inbox prefix.
    #[arg(long, global = true, env = "NATS_CONTEXT")]
    pub context: Option<String>,
}

impl ConnectArgs {
    /// The connection these flags describe.
    pub fn connection(&self) -> anyhow::Result<Connection> {
        let mut connection = match &self.context {
            Some(name) => Connection::from_context(name)?,
            None => Connection::new("nats://127.0.0.1:4222"),
        };
        if let Some(urls) = &self.nats_url {
            connection.urls.clone_from(urls);
        }
        if let Some(creds) = &self.creds {
            connection.creds = Some(creds.clone());
            connection.user_password = None;
            // The inbox follows the identity of the credentials given.
            connection.inbox_prefix = None;
        }
        if let Some(ca) = &self.tls_ca {
            connection.tls_ca = Some(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            connection.tls_client = Some((cert.clone(), key.clone()));
        }
        Ok(connection)
    }
}
