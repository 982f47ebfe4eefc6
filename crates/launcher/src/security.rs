//! The identities (and, when asked, the TLS material) of a nats-server the
//! launcher starts: written by the same `auth::init` as `sagactl auth init`
//! into a temporary folder, included by the server's configuration, and
//! handed to each process as the environment of docs/contract.md section 2.
//! Every server the launcher starts is secured this way, so whatever runs
//! on it (the tests, the demo, the benchmark) runs with least privilege.

use std::path::{Path, PathBuf};

use auth::{Identity, InitOptions, Material};
use jetsaga_client::Connection;
use tempfile::TempDir;

use crate::LaunchError;

#[derive(Debug)]
pub struct Security {
    material: Material,
    tls: bool,
    _dir: TempDir,
}

impl Security {
    /// Fresh keys, and with `tls` a CA and certificates.
    pub fn new(tls: bool) -> Result<Self, LaunchError> {
        let dir = tempfile::tempdir().map_err(|source| LaunchError::Spawn {
            what: "nats-server (no temporary folder for its credentials)".into(),
            source,
        })?;
        let material = auth::init(&InitOptions {
            out: dir.path().to_owned(),
            tls,
            tls_hosts: Vec::new(),
        })
        .map_err(|e| LaunchError::Spawn {
            what: "nats-server (cannot write its credentials)".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Self {
            material,
            tls,
            _dir: dir,
        })
    }

    pub fn material(&self) -> &Material {
        &self.material
    }

    /// Whether clients must use TLS, with a client certificate.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The credentials file of `identity`.
    pub fn creds(&self, identity: Identity) -> PathBuf {
        self.material.creds(identity)
    }

    /// `NATS_CREDS`, and with TLS `NATS_TLS_CA`, `NATS_TLS_CERT` and
    /// `NATS_TLS_KEY`, for a process running as `identity`.
    pub fn env(&self, identity: Identity) -> Vec<(String, String)> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut env = vec![("NATS_CREDS".to_owned(), path(self.creds(identity)))];
        if self.tls {
            let (cert, key) = self.material.tls_client(identity);
            env.extend([
                ("NATS_TLS_CA".to_owned(), path(self.material.tls_ca())),
                ("NATS_TLS_CERT".to_owned(), path(cert)),
                ("NATS_TLS_KEY".to_owned(), path(key)),
            ]);
        }
        env
    }

    /// How a client reaches the server(s) at `url` as `identity`: its
    /// credentials and, with TLS, the CA and its client certificate.
    pub fn connection(&self, url: &str, identity: Identity) -> Connection {
        let mut connection = Connection::new(url).creds(self.creds(identity));
        if self.tls {
            let (cert, key) = self.material.tls_client(identity);
            connection = connection
                .tls_ca(self.material.tls_ca())
                .tls_client(cert, key);
        }
        connection
    }

    /// The same, for the service binary `name`.
    pub fn service_env(&self, name: &str) -> Vec<(String, String)> {
        let identity =
            Identity::from_name(name).unwrap_or_else(|| panic!("{name} is not an identity"));
        self.env(identity)
    }

    /// `sagactl`'s connection flags for `identity`.
    pub fn sagactl_args(&self, identity: Identity) -> Vec<String> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut args = vec!["--creds".to_owned(), path(self.creds(identity))];
        if self.tls {
            let (cert, key) = self.material.tls_client(identity);
            args.extend([
                "--tls-ca".to_owned(),
                path(self.material.tls_ca()),
                "--tls-cert".to_owned(),
                path(cert),
                "--tls-key".to_owned(),
                path(key),
            ]);
        }
        args
    }

    /// Writes a server configuration `file` that includes the identities
    /// (a copy of `auth.conf` beside it: nats-server resolves an include
    /// relative to the including file) and, with TLS, requires it of every
    /// client, with a certificate signed by the deployment's CA.
    pub fn write_server_conf(&self, file: &Path) -> Result<(), LaunchError> {
        let failed = |source| LaunchError::Spawn {
            what: format!("nats-server (cannot write {})", file.display()),
            source,
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::copy(self.material.auth_conf(), dir.join("auth.conf")).map_err(failed)?;
        let quoted = |p: PathBuf| format!("{:?}", p.to_string_lossy());
        let mut conf = "include auth.conf\n".to_owned();
        if self.tls {
            let (cert, key) = self.material.tls_server();
            conf.push_str(&format!(
                "tls {{\n  cert_file: {}\n  key_file: {}\n  ca_file: {}\n  verify: true\n}}\n",
                quoted(cert),
                quoted(key),
                quoted(self.material.tls_ca()),
            ));
        }
        std::fs::write(file, conf).map_err(failed)
    }
}
