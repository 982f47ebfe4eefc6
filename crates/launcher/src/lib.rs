//! Starts the suite as processes, the one way the demo, the benchmark and
//! the tests all do it: a nats-server with JetStream (one node or a
//! three-node cluster) on a free port with a temporary store, the service
//! binaries as child processes, and the means to watch them from outside
//! (`/readyz`, `/metrics`, SIGTERM and the exit).
//!
//! Every server it starts is secured: every connection authenticates as
//! one of the suite's identities and may do only what that identity may
//! ([`Security`]).
//!
//! Every start is fallible and says what went wrong ([`LaunchError`]);
//! the tests' panicking shorthands (`NatsServer::start`, ...) are thin
//! wrappers over it.

mod cluster;
mod http;
mod link;
pub mod metrics;
mod nats;
mod security;
mod service;
mod wait;

pub use auth::Identity;
pub use cluster::NatsCluster;
pub use http::http_get;
pub use link::Link;
pub use nats::{nats_server_binary, Access, NatsServer};
pub use security::Security;
pub use service::ServiceProcess;
pub use wait::{terminate, wait_until_ready};

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// The four services of the suite: binary name and default sidecar port
/// (the contract's default `HTTP_ADDR`), in the order of the saga.
pub const SERVICES: [(&str, u16); 4] = [
    ("order-service", 8081),
    ("inventory-service", 8082),
    ("payment-service", 8083),
    ("saga-orchestrator", 8084),
];

/// The web console (docs/contract.md section 8): not a service of the
/// saga, a client of it, with the same sidecar.
pub const CONSOLE: (&str, u16) = ("saga-console", 8085);

/// The names of [`SERVICES`].
pub const SERVICE_NAMES: [&str; 4] = [SERVICES[0].0, SERVICES[1].0, SERVICES[2].0, SERVICES[3].0];

/// Why a process of the suite could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "no nats-server: run `make tools` (scripts/install-nats-server.sh) or set NATS_SERVER_BIN"
    )]
    NoNatsServer,
    #[error("{} is missing: build the binaries first (`cargo build --bins`)", .0.display())]
    MissingBinary(PathBuf),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not open port {port} within {within:?}")]
    NoPort {
        what: String,
        port: u16,
        within: Duration,
    },
    #[error("{name} not ready after {within:?}; /readyz said {last}{log}")]
    NotReady {
        name: String,
        within: Duration,
        last: String,
        /// The end of its log, when it has one.
        log: String,
    },
}

/// A TCP port free on 127.0.0.1, never handed out twice by this process.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux): a port the OS picked for us and we released could be taken at
/// once by some outgoing connection, and the listener meant for it would
/// fail. The start depends on the process id, scattered (processes
/// started together have ids a few apart, and walking from neighbouring
/// starts, one would hand out the ports the other had checked but not yet
/// bound), so concurrent processes rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u16 = 10_000;
    const SPAN: u16 = 20_000;
    /// Odd and prime to SPAN's factors: ids one apart start 7,919 apart.
    const SCATTER: u32 = 7_919;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(SCATTER) % u32::from(SPAN)) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if port_is_free(port) {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

/// `preferred` when nothing listens on it, else a [`free_port`]: the demo
/// takes the well-known ports when it can, so the README's recipes work.
pub fn preferred_port(preferred: u16) -> u16 {
    if port_is_free(preferred) {
        preferred
    } else {
        free_port()
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Kills a child process at once (SIGKILL) and waits for it, so that it
/// leaves no zombie behind.
fn reap(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The workspace's root folder (where `.tools/` is installed).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/launcher sits two levels below the root")
        .to_path_buf()
}

/// A binary of the workspace, from the folder of the running executable:
/// `target/<profile>/` for a tool such as `sagactl`, and the same folder
/// for a test (which runs from `target/<profile>/deps/`).
pub fn binary(name: &str) -> Result<PathBuf, LaunchError> {
    let path = bin_dir()
        .map_err(|source| LaunchError::Spawn {
            what: name.to_owned(),
            source,
        })?
        .join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LaunchError::MissingBinary(path))
    }
}

fn bin_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    Ok(dir)
}
