//! The services as real processes: spawned from the built binaries, killed
//! with SIGKILL or stopped with SIGTERM, restarted with the same settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::testkit::{binary, free_port, terminate, wait_until_ready};
use crate::SETTLE;

/// One service binary running as a child process.
#[derive(Debug)]
pub struct ServiceProcess {
    pub name: &'static str,
    pub http: SocketAddr,
    child: Option<Child>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `name` against `nats_url`, logging to `<log_dir>/<name>.log`.
    pub fn spawn(
        name: &'static str,
        nats_url: &str,
        extra: &[(&str, &str)],
        log_dir: &Path,
    ) -> Self {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut env: Vec<(String, String)> = vec![
            ("NATS_URL".into(), nats_url.into()),
            ("HTTP_ADDR".into(), http.to_string()),
            ("SHUTDOWN_GRACE_SECONDS".into(), "5".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut process = Self {
            name,
            http,
            child: None,
            env,
            log: log_dir.join(format!("{name}.log")),
        };
        process.start();
        process
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the log file opens");
        let child = Command::new(binary(self.name))
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the service binary starts");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no goodbye, no drain.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same settings (after [`ServiceProcess::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// SIGTERM, then waits for the exit (at most `within`).
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        terminate(&mut child, within)
            .await
            .unwrap_or_else(|| panic!("{} did not stop within {within:?}", self.name))
    }

    /// Waits until `/readyz` answers 200; panics with what it last said,
    /// and the end of the service's log, if it never does.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(SETTLE).await;
    }

    /// [`ServiceProcess::wait_ready`], with another deadline.
    pub async fn wait_ready_within(&self, within: Duration) {
        let Err(last) = wait_until_ready(self.http, within).await else {
            return;
        };
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        panic!(
            "{} not ready after {within:?}; /readyz said {last:?}; log ends:\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
