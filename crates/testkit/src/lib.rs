//! Test harness: the suite's processes as [`launcher`] starts them (a real
//! nats-server per test, on a free port with a temporary store, killed
//! when dropped; the service binaries), the one Prometheus parser, and
//! `eventually`, the wait-until-with-a-deadline that replaces every sleep.

pub use launcher::{
    free_port, http_get, metrics, nats_server_binary, terminate, wait_until_ready, workspace_root,
    Identity, Link, NatsCluster, NatsServer, Security, ServiceProcess, SERVICE_NAMES,
};

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, or panics after `timeout` saying
/// what it was waiting for.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(timeout, probe)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `probe` until it returns `Some`, for at most `timeout`: `None`
/// then, for a caller that has more to say than [`eventually`] does.
pub async fn within<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// A binary of the workspace, built by `cargo build` into the same profile
/// folder as the running test; panics, saying how to build it, if missing.
pub fn binary(name: &str) -> PathBuf {
    launcher::binary(name).unwrap_or_else(|e| panic!("{e} (`make test` does)"))
}
