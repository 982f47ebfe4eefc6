//! A three-node nats-server cluster with JetStream, on loopback, secured
//! like [`crate::NatsServer`] (one set of identities for every node), for
//! tests that lose a node.

use std::process::{Child, Command};

use tempfile::TempDir;

use crate::nats::spawn_listening;
use crate::{free_port, nats_server_binary, reap, Security};

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
}

impl NatsCluster {
    pub fn start() -> Self {
        let mut cluster = Self {
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
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster
    }

    /// Every node's client URL, comma-separated (as `NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
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
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
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
