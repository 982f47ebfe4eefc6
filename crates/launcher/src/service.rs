//! A service binary as a child process: started with its environment,
//! killed with SIGKILL or stopped with SIGTERM, restarted with the same
//! settings, its log kept in a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{binary, free_port, reap, terminate, wait_until_ready, LaunchError, Security};

/// How long a service may take to become ready, by default.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// How many of a service's last log lines an error shows.
const LOG_TAIL: usize = 20;

/// One service binary running as a child process.
#[derive(Debug)]
pub struct ServiceProcess {
    pub name: &'static str,
    /// Its sidecar (`HTTP_ADDR`).
    pub http: SocketAddr,
    binary: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts the binary `name` (beside the running executable) against
    /// `nats_url`, its sidecar on `http`, logging to `<log_dir>/<name>.log`.
    /// Its environment is exactly `NATS_URL`, `HTTP_ADDR` and `env`.
    pub fn launch(
        name: &'static str,
        nats_url: &str,
        http: SocketAddr,
        env: &[(&str, &str)],
        log_dir: &Path,
    ) -> Result<Self, LaunchError> {
        let mut vars: Vec<(String, String)> = vec![
            ("NATS_URL".into(), nats_url.into()),
            ("HTTP_ADDR".into(), http.to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut process = Self {
            name,
            http,
            binary: binary(name)?,
            child: None,
            env: vars,
            log: log_dir.join(format!("{name}.log")),
        };
        process.start()?;
        Ok(process)
    }

    /// For tests: [`ServiceProcess::launch`] on a free port, as its own
    /// identity of `security`, with a short grace period and `info` logs;
    /// panics if it cannot start.
    pub fn spawn(
        name: &'static str,
        nats_url: &str,
        security: &Security,
        extra: &[(&str, &str)],
        log_dir: &Path,
    ) -> Self {
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let identity = security.service_env(name);
        let mut env = vec![("SHUTDOWN_GRACE_SECONDS", "5"), ("RUST_LOG", "info")];
        env.extend(identity.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.extend_from_slice(extra);
        Self::launch(name, nats_url, http, &env, log_dir).unwrap_or_else(|e| panic!("{e}"))
    }

    fn start(&mut self) -> Result<(), LaunchError> {
        let spawn_error = |source| LaunchError::Spawn {
            what: self.name.to_owned(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_error)?;
        let child = Command::new(&self.binary)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(spawn_error)?;
        self.child = Some(child);
        Ok(())
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running (it has not exited, nor been killed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL: no goodbye, no drain.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }

    /// Starts it again with the same settings (after [`ServiceProcess::kill`]);
    /// panics if it cannot (tests).
    pub fn restart(&mut self) {
        self.kill();
        self.start().unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGTERM, then up to `within` for its exit: `None` if it did not
    /// exit in time, in which case it is killed.
    pub async fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let status = terminate(&mut child, within).await;
        if status.is_none() {
            reap(child);
        }
        status
    }

    /// For tests: SIGTERM, then its exit status; panics if it does not
    /// exit within `within`.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.stop(within)
            .await
            .unwrap_or_else(|| panic!("{} did not stop within {within:?}", self.name))
    }

    /// Waits until `/readyz` answers 200; after `within`, says what it
    /// last answered and how its log ends.
    pub async fn ready(&self, within: Duration) -> Result<(), LaunchError> {
        let Err(last) = wait_until_ready(self.http, within).await else {
            return Ok(());
        };
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(LaunchError::NotReady {
            name: self.name.to_owned(),
            within,
            last: match last {
                Some((status, body)) => format!("{status} {body}"),
                None => "nothing".to_owned(),
            },
            log: if tail.is_empty() {
                String::new()
            } else {
                format!("; its log ends:\n{}", tail.join("\n"))
            },
        })
    }

    /// For tests: [`ServiceProcess::ready`] within [`READY_WITHIN`],
    /// panicking with its error.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(READY_WITHIN).await;
    }

    /// For tests: [`ServiceProcess::ready`], panicking with its error.
    pub async fn wait_ready_within(&self, within: Duration) {
        if let Err(e) = self.ready(within).await {
            panic!("{e}");
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where it logs.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
