//! The suite under measurement: its own nats-server (temporary store, the
//! monitoring port on, secured as deployed unless asked otherwise) and the
//! four release services beside this binary, each as its own identity,
//! started by the same launcher as the demo and the tests; and the console,
//! as `operator`, with a browser's live overview open on it all along, so
//! that its cost under load is measured too.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jetsaga_client::Connection;
use launcher::{
    free_port, http_get, Access, Identity, NatsCluster, NatsServer, Security, ServiceProcess,
    CONSOLE, SERVICE_NAMES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a service may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long provisioning may wait for a cluster's JetStream.
const PROVISION_WITHIN: Duration = Duration::from_secs(60);
/// How long a service may take to stop on SIGTERM.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// What the benchmark runs on: one nats-server, or a three-node cluster on
/// loopback with every stream replicated three times (the prod overlay's
/// shape).
#[derive(Debug)]
pub enum Server {
    One(NatsServer, SocketAddr),
    Cluster(NatsCluster),
}

impl Server {
    /// Starts one server, or the cluster, with `jetstream` settings of
    /// each node's `jetstream {}` block and its monitoring port on.
    pub fn launch(
        cluster: bool,
        access: Access,
        jetstream: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        if cluster {
            return Ok(Self::Cluster(NatsCluster::launch(access, jetstream)?));
        }
        let monitor = free_port();
        let nats = NatsServer::launch_with(
            free_port(),
            &["-m", &monitor.to_string()],
            access,
            jetstream,
        )?;
        Ok(Self::One(nats, SocketAddr::from(([127, 0, 0, 1], monitor))))
    }

    /// The client URL, or every node's, comma-separated.
    pub fn url(&self) -> String {
        match self {
            Self::One(nats, _) => nats.url(),
            Self::Cluster(cluster) => cluster.urls(),
        }
    }

    pub fn access(&self) -> Option<&Security> {
        match self {
            Self::One(nats, _) => nats.access(),
            Self::Cluster(cluster) => cluster.access(),
        }
    }

    /// The replicas of each stream: one a node.
    pub fn replicas(&self) -> usize {
        match self {
            Self::One(..) => 1,
            Self::Cluster(_) => 3,
        }
    }

    /// Each node's process, by name (`nats-server`, or `nats-server n0`...).
    pub fn processes(&self) -> Vec<(String, u32)> {
        match self {
            Self::One(nats, _) => nats
                .pid()
                .map(|pid| ("nats-server".to_owned(), pid))
                .into_iter()
                .collect(),
            Self::Cluster(cluster) => cluster
                .pids()
                .into_iter()
                .enumerate()
                .map(|(i, pid)| (format!("nats-server n{i}"), pid))
                .collect(),
        }
    }

    /// Each node's monitoring address (`/varz`).
    pub fn monitors(&self) -> Vec<SocketAddr> {
        match self {
            Self::One(_, monitor) => vec![*monitor],
            Self::Cluster(cluster) => cluster.monitors(),
        }
    }
}

#[derive(Debug)]
pub struct Suite {
    pub nats: Server,
    pub services: Vec<ServiceProcess>,
    /// The console, once started, and what reads its live stream.
    pub console: Option<(ServiceProcess, tokio::task::JoinHandle<()>)>,
    pub logs: PathBuf,
}

impl Suite {
    /// Starts nats-server (or the cluster, `cluster`), with `jetstream`
    /// settings of its `jetstream {}` block; the services come with
    /// [`Suite::start_services`].
    pub fn start_server(
        cluster: bool,
        access: Access,
        jetstream: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let nats = Server::launch(cluster, access, jetstream)?;
        anyhow::ensure!(!nats.processes().is_empty(), "nats-server runs");
        let logs = std::env::temp_dir().join(format!("jetsaga-bench-{}", std::process::id()));
        std::fs::create_dir_all(&logs)?;
        eprintln!(
            "nats-server {} (monitoring {:?}); logs in {}",
            nats.url(),
            nats.monitors(),
            logs.display()
        );
        Ok(Self {
            nats,
            services: Vec::new(),
            console: None,
            logs,
        })
    }

    /// Starts the four services at once, as `docker compose up` does, with
    /// `env`, and waits until each is ready: how long each took from the
    /// start, in milliseconds.
    pub async fn start_services(
        &mut self,
        env: &[(&str, &str)],
    ) -> anyhow::Result<BTreeMap<String, f64>> {
        let started = Instant::now();
        for name in SERVICE_NAMES {
            let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let identity = self
                .nats
                .access()
                .map(|security| security.service_env(name))
                .unwrap_or_default();
            let replicas = self.nats.replicas().to_string();
            let mut env = env.to_vec();
            env.push(("STREAM_REPLICAS", &replicas));
            env.extend(identity.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let service = ServiceProcess::launch(name, &self.nats.url(), http, &env, &self.logs)?;
            self.services.push(service);
        }
        let mut ready_ms = BTreeMap::new();
        for service in &self.services {
            let ready = match ready_after(service.http, started, READY_WITHIN).await {
                Some(ready) => ready,
                None => {
                    // One last look, for what it says and how its log ends.
                    service.ready(Duration::from_secs(1)).await?;
                    started.elapsed()
                }
            };
            ready_ms.insert(service.name.to_owned(), ready.as_secs_f64() * 1000.0);
        }
        Ok(ready_ms)
    }

    /// Starts the console as `operator` (as anyone, on an open server),
    /// and opens its live overview as a browser would, reading every
    /// snapshot until the run ends; how long it took to be ready, in
    /// milliseconds.
    pub async fn start_console(&mut self, env: &[(&str, &str)]) -> anyhow::Result<f64> {
        let started = Instant::now();
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let identity = self
            .nats
            .access()
            .map(|security| security.env(Identity::Operator))
            .unwrap_or_default();
        let mut env = env.to_vec();
        env.extend(identity.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let console = ServiceProcess::launch(CONSOLE.0, &self.nats.url(), http, &env, &self.logs)?;
        let ready = match ready_after(http, started, READY_WITHIN).await {
            Some(ready) => ready,
            None => {
                console.ready(Duration::from_secs(1)).await?;
                started.elapsed()
            }
        };
        let watcher = tokio::spawn(watch_live(http));
        self.console = Some((console, watcher));
        Ok(ready.as_secs_f64() * 1000.0)
    }

    /// Provisions the streams (as `admin`, on a secured server).
    /// A cluster takes a few seconds to elect its JetStream leader: until
    /// then, provisioning is tried again.
    pub async fn provision(&self) -> anyhow::Result<()> {
        let admin = self.connect(Identity::Admin).await?;
        let js = async_nats::jetstream::new(admin);
        let layout = runtime::streams::Layout::replicas(self.nats.replicas());
        let deadline = Instant::now() + PROVISION_WITHIN;
        loop {
            match runtime::provision::provision(&js, layout, false).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("provisioning, again in a second: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A connection as `identity` (as anyone, on an open server).
    pub async fn connect(&self, identity: Identity) -> anyhow::Result<async_nats::Client> {
        let url = self.nats.url();
        let connection = match self.nats.access() {
            Some(security) => security.connection(&url, identity),
            None => Connection::new(url),
        };
        Ok(connection
            .options("jetsaga-bench")
            .await?
            .connect(connection.url_list())
            .await?)
    }

    /// SIGTERM to every service, then the server goes.
    pub async fn stop(mut self) {
        if let Some((mut console, watcher)) = self.console.take() {
            watcher.abort();
            console.stop(STOP_WITHIN).await;
        }
        for service in &mut self.services {
            service.stop(STOP_WITHIN).await;
        }
    }
}

/// Reads the console's live stream (`/live`) and drops it, as an open
/// overview does, until the stream ends.
async fn watch_live(console: SocketAddr) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(console).await else {
        return;
    };
    let request =
        format!("GET /live HTTP/1.1\r\nHost: {console}\r\nAccept: text/event-stream\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut buffer = vec![0u8; 16 * 1024];
    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
}

/// Polls `/readyz` closely, for a start-up time worth reporting: the time
/// from `started` to the first 200 (`None` if none came within `within`).
async fn ready_after(addr: SocketAddr, started: Instant, within: Duration) -> Option<Duration> {
    while started.elapsed() < within {
        if let Some((200, _)) = http_get(addr, "/readyz").await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
