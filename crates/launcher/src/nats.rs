//! A real nats-server with JetStream on loopback: a free port (or a chosen
//! one), a temporary store, killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, reap, workspace_root, LaunchError};

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

/// A nats-server process with JetStream and a temporary store. Killed when
/// dropped; [`NatsServer::restart`] brings it back on the same port with the
/// same store.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a server on `port` with extra command-line arguments, and
    /// waits until it accepts connections.
    pub fn launch(port: u16, extra_args: &[&str]) -> Result<Self, LaunchError> {
        let store = tempfile::tempdir().map_err(|source| LaunchError::Spawn {
            what: "nats-server (no temporary folder for its store)".into(),
            source,
        })?;
        let mut server = Self {
            child: None,
            port,
            store,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// [`NatsServer::launch`] on a free port; panics if it cannot (tests).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`NatsServer::start`] with extra command-line arguments.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::launch(free_port(), extra_args).unwrap_or_else(|e| panic!("{e}"))
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
        command
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(self.store.path())
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
