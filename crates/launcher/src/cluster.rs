//! A three-node nats-server cluster with JetStream, on loopback, secured
//! like [`crate::NatsServer`] (one set of identities for every node), for
//! tests that lose a node.

use std::net::SocketAddr;
use std::process::{Child, Command};

use tempfile::TempDir;

use crate::nats::spawn_listening;
use crate::{free_port, nats_server_binary, reap, Link, Security};

#[derive(Debug)]
struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    store: TempDir,
    child: Option<Child>,
}

/// Three nats-server processes routed into one JetStream cluster; each
/// killed when dropped. For tests: a node that cannot start panics.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<Node>,
    security: Security,
    /// With [`NatsCluster::start_linked`]: `links[i][j]` carries the routes
    /// node `i` dials to node `j`.
    links: Vec<Vec<Option<Link>>>,
}

impl NatsCluster {
    pub fn start() -> Self {
        Self::new().spawned()
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
        Self {
            nodes: (0..3)
                .map(|i| Node {
                    name: format!("n{i}"),
                    port: free_port(),
                    cluster_port: free_port(),
                    store: tempfile::tempdir().expect("a temporary folder"),
                    child: None,
                })
                .collect(),
            security: Security::new(false).unwrap_or_else(|e| panic!("{e}")),
            links: Vec::new(),
        }
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
        &self.security
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
        self.security
            .write_server_conf(&conf)
            .unwrap_or_else(|e| panic!("{e}"));
        let binary = nats_server_binary().unwrap_or_else(|e| panic!("{e}"));
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
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
        let child: Child = spawn_listening(command, &format!("nats-server {i}"), node.port)
            .unwrap_or_else(|e| panic!("{e}"));
        self.nodes[i].child = Some(child);
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
