//! The real binaries: they run the saga as processes, log JSON, exit 0 on
//! SIGTERM after a clean drain, and exit 64 on invalid configuration.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::testkit::{binary, eventually, free_port, http_get, NatsServer};
use e2e::{SERVICES, SETTLE};
use events::OrderStatus;
use jetsaga_client::Client;

struct Process {
    name: &'static str,
    child: Child,
    http: SocketAddr,
    log: tempfile_path::Log,
}

mod tempfile_path {
    /// A file a child process logs to, removed when dropped.
    pub struct Log(pub std::path::PathBuf);

    impl Drop for Log {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn spawn(name: &'static str, nats_url: &str) -> Process {
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = tempfile_path::Log(
        std::env::temp_dir().join(format!("jetsaga-{name}-{}.log", free_port())),
    );
    let child = Command::new(binary(name))
        .env_clear()
        .env("NATS_URL", nats_url)
        .env("HTTP_ADDR", http.to_string())
        .env("SHUTDOWN_GRACE_SECONDS", "5")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log.0).unwrap())
        .spawn()
        .unwrap();
    Process {
        name,
        child,
        http,
        log,
    }
}

#[tokio::test]
async fn the_binaries_run_a_saga_and_exit_zero_on_sigterm() {
    let nats = NatsServer::start();
    let mut processes: Vec<Process> = SERVICES
        .iter()
        .map(|name| spawn(name, &nats.url()))
        .collect();
    for p in &processes {
        let addr = p.http;
        eventually(&format!("{} ready", p.name), SETTLE, || async move {
            matches!(http_get(addr, "/readyz").await, Some((200, _))).then_some(())
        })
        .await;
    }
    let client = Client::connect(&nats.url()).await.unwrap();
    client.restock("sku-1", 5, Some(100)).await.unwrap();
    client.deposit("c-1", 1000).await.unwrap();
    let confirmed = eventually("an order to be confirmed", SETTLE, || {
        let client = client.clone();
        async move {
            // Placed again until the seed is in: a duplicate creates nothing.
            client.place("o-bin", "c-1", &[("sku-1", 1)]).await.ok()?;
            let order = client.order("o-bin").await.ok()??;
            (order.status != OrderStatus::Pending).then_some(order)
        }
    })
    .await;
    assert!(
        confirmed.status == OrderStatus::Confirmed || confirmed.reason.is_some(),
        "{confirmed:?}"
    );

    for p in &mut processes {
        let pid = p.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} did not stop",
                p.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0), "{} exit status", p.name);
        let log = std::fs::read_to_string(&p.log.0).unwrap();
        assert!(log.lines().count() > 2, "{} logged nothing", p.name);
        for line in log.lines() {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {line}", p.name));
            assert!(
                entry["level"].is_string() && entry["timestamp"].is_string(),
                "{line}"
            );
        }
        assert!(
            log.contains("\"stopped\""),
            "{} did not log a clean stop",
            p.name
        );
    }
}

#[test]
fn invalid_configuration_exits_64_naming_the_variable() {
    let cases = [
        ("order-service", "HTTP_ADDR", "not-an-address"),
        ("inventory-service", "STREAM_REPLICAS", "many"),
        ("payment-service", "LOG_FORMAT", "xml"),
        ("saga-orchestrator", "SAGA_STEP_TIMEOUT_MS", "soon"),
        ("saga-orchestrator", "NATS_URL", "http://[::1"),
    ];
    for (name, var, value) in cases {
        let output = Command::new(binary(name))
            .env_clear()
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{name} with {var}={value}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            stderr.lines().count(),
            1,
            "{name}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(var),
            "{name}: {stderr:?} does not name {var}"
        );
    }
}
