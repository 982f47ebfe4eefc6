//! Test harness: a real nats-server per test, on a free port with a
//! temporary store, killed when dropped; a way to find the project's
//! binaries; and `eventually`, the wait-until-with-a-deadline that replaces
//! every sleep.

mod cluster;
mod http;
mod nats;
mod process;

pub use cluster::NatsCluster;
pub use http::http_get;
pub use nats::{nats_server_binary, NatsServer};
pub use process::{terminate, wait_until_ready};

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// A TCP port free on 127.0.0.1, never handed out twice by this process.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux): a port the OS picked for us and we released could be taken at
/// once by some outgoing connection, and the listener meant for it would
/// fail. The start depends on the process id, so concurrent test binaries
/// rarely meet.
pub fn free_port() -> u16 {
    const FIRST: u16 = 10_000;
    const SPAN: u16 = 20_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

/// Polls `probe` until it returns `Some`, or panics after `timeout` saying
/// what it was waiting for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the root")
        .to_path_buf()
}

/// A binary of the workspace, built by `cargo build` into the same profile
/// folder as the running test.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, which `make test` does)",
        path.display()
    );
    path
}
