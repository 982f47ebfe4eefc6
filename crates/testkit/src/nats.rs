//! A real nats-server with JetStream, one per test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, workspace_root};

/// The nats-server to run: `$NATS_SERVER_BIN`, else the one the project
/// installs into `.tools/bin` (`scripts/install-nats-server.sh`), else one
/// on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let local = workspace_root().join(".tools/bin/nats-server");
    if local.is_file() {
        return local;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!("no nats-server: run `make tools` (scripts/install-nats-server.sh) or set NATS_SERVER_BIN")
    })
}

/// A nats-server process with JetStream on a free port and a temporary
/// store. Killed when dropped; [`NatsServer::restart`] brings it back on the
/// same port with the same store.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: TempDir,
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra command-line arguments.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_on(free_port(), extra_args)
    }

    /// Starts a server on `port`, with extra command-line arguments.
    pub fn start_on(port: u16, extra_args: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port,
            store: tempfile::tempdir().expect("a temporary folder"),
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.spawn();
        server
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
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not open port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
