//! A real nats-server with JetStream on loopback: a free port (or a chosen
//! one), a temporary store, the suite's identities (and TLS, when asked),
//! killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, reap, workspace_root, LaunchError, Security};

/// How long a nats-server may take to open its port.
const START_WITHIN: Duration = Duration::from_secs(10);

/// The nats-server to run: `$NATS_SERVER_BIN`, else the one the project
/// installs into `.tools/bin` (`scripts/install-nats-server.sh`), else one
/// on `PATH`.
pub fn nats_server_binary() -> Result<PathBuf, LaunchError> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let local = workspace_root().join(".tools/bin/nats-server");
    if local.is_file() {
        return Ok(local);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or(LaunchError::NoNatsServer)
}

/// Who may connect to a server the launcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The suite's identities: a connection without credentials is
    /// refused, and each may do only its own part.
    Secured,
    /// The same, over TLS only, with client certificates.
    SecuredTls,
    /// Anyone, anything: only for measuring JetStream itself, or the cost
    /// of security, never for running the suite as users do.
    Open,
}

/// A nats-server process with JetStream, a temporary store and (but for
/// [`Access::Open`]) the suite's identities. Killed when dropped;
/// [`NatsServer::restart`] brings it back on the same port with the same
/// store.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    security: Option<Security>,
    extra_args: Vec<String>,
    /// Settings of the `jetstream {}` block beyond the store's folder
    /// (`max_file_store`, `sync_interval`), by name.
    jetstream: Vec<(String, String)>,
}

impl NatsServer {
    /// Starts a server on `port` with extra command-line arguments, and
    /// waits until it accepts connections.
    pub fn launch(port: u16, extra_args: &[&str], access: Access) -> Result<Self, LaunchError> {
        let store = tempfile::tempdir().map_err(|source| LaunchError::Spawn {
            what: "nats-server (no temporary folder for its store)".into(),
            source,
        })?;
        let mut server = Self {
            child: None,
            port,
            store,
            security: match access {
                Access::Secured => Some(Security::new(false)?),
                Access::SecuredTls => Some(Security::new(true)?),
                Access::Open => None,
            },
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
            jetstream: Vec::new(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// [`NatsServer::launch`] with settings of the `jetstream {}` block,
    /// such as `("sync_interval", "always")`: every write on disk before it
    /// is acknowledged.
    pub fn launch_with(
        port: u16,
        extra_args: &[&str],
        access: Access,
        jetstream: &[(&str, &str)],
    ) -> Result<Self, LaunchError> {
        let mut server = Self::launch(port, extra_args, access)?;
        if !jetstream.is_empty() {
            server.jetstream = jetstream
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            server.kill();
            server.spawn()?;
        }
        Ok(server)
    }

    /// [`NatsServer::start`] with a JetStream file store of at most
    /// `limit` (`"16MB"`): past it, every write is refused.
    pub fn start_with_store_limit(limit: &str) -> Self {
        Self::launch_with(
            free_port(),
            &[],
            Access::Secured,
            &[("max_file_store", limit)],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sets the store's limit to `limit` while the server runs (a
    /// configuration reload, SIGHUP), as an operator making room does.
    pub fn set_store_limit(&mut self, limit: &str) {
        self.jetstream.retain(|(k, _)| k != "max_file_store");
        self.jetstream
            .push(("max_file_store".to_owned(), limit.to_owned()));
        self.write_conf().unwrap_or_else(|e| panic!("{e}"));
        if let Some(pid) = self.pid() {
            let reloaded = Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(reloaded, "nats-server {pid} takes SIGHUP");
        }
    }

    /// Writes the server's configuration file, if it needs one: the
    /// identities of a secured server, the `jetstream {}` settings.
    fn write_conf(&self) -> Result<Option<PathBuf>, LaunchError> {
        if self.security.is_none() && self.jetstream.is_empty() {
            return Ok(None);
        }
        let conf = self.store.path().join("nats-server.conf");
        write_conf(&conf, self.security.as_ref(), &self.jetstream)?;
        Ok(Some(conf))
    }

    /// [`NatsServer::launch`] on a free port; panics if it cannot (tests).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`NatsServer::start`] with extra command-line arguments.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::launch(free_port(), extra_args, Access::Secured).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server open to anyone, for tests of JetStream machinery on
    /// subjects of their own (never for the suite).
    pub fn start_open() -> Self {
        Self::launch(free_port(), &[], Access::Open).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`NatsServer::start`] with TLS required, client certificates too.
    pub fn start_tls() -> Self {
        Self::launch(free_port(), &[], Access::SecuredTls).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The identities' credentials (and TLS material); `None` for an
    /// [`Access::Open`] server.
    pub fn access(&self) -> Option<&Security> {
        self.security.as_ref()
    }

    /// The identities' credentials (and TLS material) of a secured server.
    pub fn security(&self) -> &Security {
        self.security
            .as_ref()
            .expect("a secured server (Access::Secured or SecuredTls)")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server at once (SIGKILL): no goodbye to the clients.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }

    /// Starts the server again, on the same port with the same store;
    /// panics if it cannot (tests).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    fn spawn(&mut self) -> Result<(), LaunchError> {
        let port = self.port.to_string();
        let mut command = Command::new(nats_server_binary()?);
        if let Some(conf) = self.write_conf()? {
            command.arg("-c").arg(&conf);
        }
        command
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path().join("jetstream"))
            .args(&self.extra_args);
        self.child = Some(spawn_listening(command, "nats-server", self.port)?);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes a nats-server configuration file: the identities of a secured
/// server (none: open), and the settings of its `jetstream {}` block.
pub(crate) fn write_conf(
    conf: &Path,
    security: Option<&Security>,
    jetstream: &[(String, String)],
) -> Result<(), LaunchError> {
    let failed = |source| LaunchError::Spawn {
        what: format!("nats-server (cannot write {})", conf.display()),
        source,
    };
    match security {
        Some(security) => security.write_server_conf(conf)?,
        None => std::fs::write(conf, "").map_err(failed)?,
    }
    if !jetstream.is_empty() {
        let mut text = std::fs::read_to_string(conf).map_err(failed)?;
        text.push_str("jetstream {\n");
        for (name, value) in jetstream {
            text.push_str(&format!("  {name}: {value}\n"));
        }
        text.push_str("}\n");
        std::fs::write(conf, text).map_err(failed)?;
    }
    Ok(())
}

/// Spawns a nats-server `command` (output discarded) and waits until it
/// accepts connections on `port`; kills it if it never does.
pub(crate) fn spawn_listening(
    mut command: Command,
    what: &str,
    port: u16,
) -> Result<Child, LaunchError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            what: what.to_owned(),
            source,
        })?;
    let deadline = Instant::now() + START_WITHIN;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
            reap(child);
            return Err(LaunchError::NoPort {
                what: what.to_owned(),
                port,
                within: START_WITHIN,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}
