//! A three-node nats-server cluster with JetStream, on loopback, secured
//! like [`crate::NatsServer`] (one set of identities for every node), for
//! tests that lose a node and for the benchmark on the prod overlay's
//! shape.

use std::net::SocketAddr;
use std::process::{Child, Command};

use tempfile::TempDir;

use crate::nats::spawn_listening;
use crate::{free_port, nats_server_binary, reap, Access, LaunchError, Link, Security};

#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    /// Its monitoring port (`/varz`, `/jsz`).
    monitor_port: u16,
    store: TempDir,
    child: Option<Child>,
}

/// Three nats-server processes routed into one JetStream cluster; each
/// killed when dropped. For tests: a node that cannot start panics.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    /// `None` on an open cluster, for measuring JetStream alone.
    security: Option<Security>,
    /// Settings of each node's `jetstream {}` block (`sync_interval`).
    jetstream: Vec<(String, String)>,
    /// With [`NatsCluster::start_linked`]: `links[i][j]` carries the routes
    /// node `i` dials to node `j`.
    links: Vec<Vec<Option<Link>>>,
}

impl NatsCluster {
    pub fn start() -> Self {
        Self::launch(Access::Secured, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the three nodes with `access` (secured, or open; not TLS)
    /// and `jetstream` settings for each node's `jetstream {}` block, and
    /// waits until each accepts connections.
    pub fn launch(access: Access, jetstream: &[(&str, &str)]) -> Result<Self, LaunchError> {
        let mut cluster = Self::with(access)?;
        cluster.jetstream = jetstream
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        for i in 0..3 {
            cluster.try_spawn(i)?;
        }
        Ok(cluster)
    }

    /// A cluster whose routes go through [`Link`]s, so that a node can be
    /// cut off from the others ([`NatsCluster::isolate`]) while its
    /// clients still reach it. On the current tokio runtime.
    pub async fn start_linked() -> Self {
        let mut cluster = Self::new();
        for i in 0..3 {
            let mut row = Vec::new();
            for j in 0..3 {
                row.push(if i == j {
                    None
                } else {
                    let target = SocketAddr::from(([127, 0, 0, 1], cluster.nodes[j].cluster_port));
                    Some(Link::start(target).await.expect("a link"))
                });
            }
            cluster.links.push(row);
        }
        cluster.spawned()
    }

    /// Cuts every route between node `i` and the others, both ways.
    pub fn isolate(&self, i: usize) {
        self.each_link_of(i, Link::cut);
    }

    /// Heals the routes [`NatsCluster::isolate`] cut.
    pub fn rejoin(&self, i: usize) {
        self.each_link_of(i, Link::heal);
    }

    fn each_link_of(&self, i: usize, f: impl Fn(&Link)) {
        assert!(
            !self.links.is_empty(),
            "a cluster started with start_linked"
        );
        for j in 0..3 {
            for link in [&self.links[i][j], &self.links[j][i]].into_iter().flatten() {
                f(link);
            }
        }
    }

    fn spawned(mut self) -> Self {
        for i in 0..3 {
            self.spawn(i);
        }
        self
    }

    fn new() -> Self {
        Self::with(Access::Secured).unwrap_or_else(|e| panic!("{e}"))
    }

    fn with(access: Access) -> Result<Self, LaunchError> {
        let security = match access {
            Access::Secured => Some(Security::new(false)?),
            Access::Open => None,
            Access::SecuredTls => {
                return Err(LaunchError::Spawn {
                    what: "a nats-server cluster".into(),
                    source: std::io::Error::other("TLS is not offered on the loopback cluster"),
                })
            }
        };
        let mut nodes = Vec::new();
        for i in 0..3 {
            nodes.push(Node {
                name: format!("n{i}"),
                port: free_port(),
                cluster_port: free_port(),
                monitor_port: free_port(),
                store: tempfile::tempdir().map_err(|source| LaunchError::Spawn {
                    what: "nats-server (no temporary folder for its store)".into(),
                    source,
                })?,
                child: None,
            });
        }
        Ok(Self {
            nodes,
            security,
            jetstream: Vec::new(),
            links: Vec::new(),
        })
    }

    /// Every node's client URL, comma-separated (as `NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL alone.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// The identities' credentials.
    pub fn security(&self) -> &Security {
        self.security
            .as_ref()
            .expect("a secured cluster (NatsCluster::start)")
    }

    /// The identities' credentials; `None` on an open cluster.
    pub fn access(&self) -> Option<&Security> {
        self.security.as_ref()
    }

    /// Each running node's process id.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    /// Each node's monitoring address.
    pub fn monitors(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .map(|n| SocketAddr::from(([127, 0, 0, 1], n.monitor_port)))
            .collect()
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(child) = self.nodes[i].child.take() {
            reap(child);
        }
    }

    /// Starts node `i` again, with its store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    fn spawn(&mut self, i: usize) {
        self.try_spawn(i).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_spawn(&mut self, i: usize) -> Result<(), LaunchError> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(
                |(j, n)| match self.links.get(i).and_then(|row| row[j].as_ref()) {
                    Some(link) => link.url(),
                    None => format!("nats://127.0.0.1:{}", n.cluster_port),
                },
            )
            .collect();
        let node = &self.nodes[i];
        let conf = node.store.path().join("nats-server.conf");
        crate::nats::write_conf(&conf, self.security.as_ref(), &self.jetstream)?;
        let mut command = Command::new(nats_server_binary()?);
        command
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["-n", &node.name, "--cluster_name", "jetsaga"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
            ])
            .args(["--routes", &routes.join(",")])
            // Linked, a node must not learn the others' own addresses and
            // route around the links: it advertises none that answers.
            .args(if self.links.is_empty() {
                vec![]
            } else {
                vec!["--cluster_advertise", "127.0.0.1:9"]
            })
            .args(["-js", "-sd"])
            .arg(node.store.path().join("jetstream"));
        let child: Child = spawn_listening(command, &format!("nats-server {i}"), node.port)?;
        self.nodes[i].child = Some(child);
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
