//! Waiting on a process of the suite from the outside: for its readiness,
//! and for its exit after SIGTERM.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::http_get;

/// Polls `GET /readyz` on `addr` until it answers 200. After `within`,
/// `Err` with the last answer (`None`: nothing answered).
pub async fn wait_until_ready(
    addr: SocketAddr,
    within: Duration,
) -> Result<(), Option<(u16, String)>> {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        match http_get(addr, "/readyz").await {
            Some((200, _)) => return Ok(()),
            answer => last = answer,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last)
}

/// Sends SIGTERM to `child` and waits for its exit: `None` if it still runs
/// after `within` (or the signal could not be sent).
pub async fn terminate(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !sent {
        return None;
    }
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
