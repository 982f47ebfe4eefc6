//! The real binaries: they run the saga as processes, log JSON, exit 0 on
//! SIGTERM after a clean drain, exit 64 on invalid configuration or an
//! unknown argument, and answer `--help` and `--version`.

use std::process::Command;
use std::time::Duration;

use e2e::testkit::ServiceProcess;
use e2e::testkit::{binary, eventually, Identity, NatsServer};
use e2e::{SERVICES, SETTLE};
use events::OrderStatus;

#[tokio::test]
async fn the_binaries_run_a_saga_and_exit_zero_on_sigterm() {
    let nats = NatsServer::start();
    e2e::provision(&nats.url(), nats.security(), 1).await;
    let logs = tempfile::tempdir().unwrap();
    let mut processes: Vec<ServiceProcess> = SERVICES
        .iter()
        .map(|name| ServiceProcess::spawn(name, &nats.url(), nats.security(), &[], logs.path()))
        .collect();
    // And the console, as the operator.
    let operator = nats.security().env(Identity::Operator);
    let mut env = vec![("SHUTDOWN_GRACE_SECONDS", "5"), ("RUST_LOG", "info")];
    env.extend(operator.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let console_addr = std::net::SocketAddr::from(([127, 0, 0, 1], e2e::testkit::free_port()));
    processes.push(
        ServiceProcess::launch("saga-console", &nats.url(), console_addr, &env, logs.path())
            .unwrap(),
    );
    for p in &processes {
        p.wait_ready().await;
    }
    let client = e2e::connect_as(&nats.url(), nats.security(), Identity::Operator).await;
    client.restock("sku-1", 5, Some(100)).await.unwrap();
    client.deposit("c-1", 1000).await.unwrap();
    let settled = eventually("an order to settle", SETTLE, || {
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
        settled.status == OrderStatus::Confirmed || settled.reason.is_some(),
        "{settled:?}"
    );
    for path in ["/healthz", "/", "/sagas/o-bin"] {
        let (status, _) = e2e::testkit::http_get(console_addr, path)
            .await
            .expect("the console answers");
        assert_eq!(status, 200, "GET {path}");
    }

    for p in &mut processes {
        let status = p.terminate(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{} exit status", p.name);
        let log = p.log();
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
        ("payment-service", "RUST_LOG", "info,=[bad"),
        ("payment-service", "PAYMENT_GATEWAY_FAILURE_RATE", "1.5"),
        ("saga-console", "CONSOLE_TRACE_URL", "jaeger:16686"),
        ("saga-console", "CONSOLE_OPERATOR_TOKEN", "short"),
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

#[test]
fn every_service_answers_help_and_version_and_refuses_other_arguments() {
    for name in SERVICES.iter().chain(&["saga-console"]) {
        let run = |arg: &str| {
            let output = Command::new(binary(name)).arg(arg).output().unwrap();
            let stdout = String::from_utf8(output.stdout).unwrap();
            let stderr = String::from_utf8(output.stderr).unwrap();
            (output.status.code(), stdout, stderr)
        };
        let (code, stdout, _) = run("--version");
        assert_eq!(code, Some(0), "{name} --version");
        assert_eq!(stdout, format!("{name} {}\n", env!("CARGO_PKG_VERSION")));
        let (code, stdout, _) = run("--help");
        assert_eq!(code, Some(0), "{name} --help");
        assert!(stdout.starts_with(&format!("{name} ")), "{stdout}");
        for var in [
            "NATS_URL=nats://127.0.0.1:4222",
            "HTTP_ADDR=",
            "SHUTDOWN_GRACE_SECONDS=25",
        ] {
            assert!(stdout.contains(var), "{name} --help lists {var}:\n{stdout}");
        }
        let (code, stdout, stderr) = run("--listen");
        assert_eq!(code, Some(64), "{name} --listen");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{name}: one line, got {stderr:?}"
        );
        assert!(stderr.contains("\"--listen\""), "{stderr}");
    }
}

/// Runs `sagactl bench --quick` with `extra` arguments, and returns its
/// JSON report once it has succeeded.
async fn quick_bench(extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = tokio::process::Command::new(binary("sagactl"))
        .args(["bench", "--quick"])
        .args(extra)
        .arg("--out")
        .arg(&json)
        .env_remove("NATS_URL")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "sagactl bench {extra:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// `sagactl bench --quick` runs end to end and reports what it measured:
/// every order confirmed, the server's own counts per saga, the processes'
/// resources. (The figures themselves are the benchmark's business, not a
/// test's: nothing here is timed.)
#[tokio::test]
async fn the_benchmark_runs_and_reports_every_measure() {
    let report = quick_bench(&[]).await;
    let saturation = &report["saturation"];
    assert_eq!(saturation["placed"], 500);
    assert_eq!(saturation["confirmed"], 500, "{saturation}");
    assert_eq!(saturation["unsettled"], 0);
    assert!(saturation["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    // Latency at half the saturation just measured, and of one order alone.
    let half = &report["half_saturation"];
    let offered = half["offered_per_s"].as_f64().unwrap();
    let throughput = saturation["throughput"].as_f64().unwrap();
    assert!((offered - throughput / 2.0).abs() <= 1.0, "{half}");
    assert_eq!(half["report"]["unsettled"], 0, "{half}");
    let alone = &report["alone"];
    assert_eq!(alone["placed"], 50);
    assert_eq!(alone["confirmed"], 50, "{alone}");
    // Each target of docs/performance.md judged in this one run.
    let judged: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["what"].as_str().unwrap())
        .collect();
    for what in [
        "saturation against the atomic saga flow",
        "p99 at half saturation",
        "p50 of one order alone",
        "peak RSS of saga-console",
    ] {
        assert!(
            judged.iter().any(|w| w.starts_with(what)),
            "{what}: {judged:?}"
        );
    }
    for rate in ["publish_per_s", "consume_ack_per_s", "atomic_changes_per_s"] {
        assert!(report["jetstream"][rate].as_f64().unwrap() > 0.0, "{rate}");
    }
    // Every saga of each saga flow reached its last hop, through the server.
    let flows = report["saga_flows"].as_array().unwrap();
    let names: Vec<&str> = flows.iter().map(|f| f["flow"].as_str().unwrap()).collect();
    assert_eq!(names, ["messages", "plain_states", "atomic_changes"]);
    for flow in flows {
        assert_eq!(flow["sagas"], 1000, "{flow}");
        assert!(flow["sagas_per_s"].as_f64().unwrap() > 0.0, "{flow}");
        assert!(flow["latency_ms"]["p50"].as_f64().unwrap() > 0.0, "{flow}");
    }
    // A saga stores at least the order's placed and confirmed events, its
    // saga records and the participants' events; each is delivered.
    let stored = report["per_saga"]["stored_messages"].as_f64().unwrap();
    let deliveries = report["per_saga"]["deliveries"].as_f64().unwrap();
    assert!(
        (8.0..60.0).contains(&stored),
        "{stored} messages stored per saga"
    );
    assert!(
        (5.0..60.0).contains(&deliveries),
        "{deliveries} deliveries per saga"
    );
    // By stream: together they are the saga's whole cost, and the two
    // participants' states went in atomic batches.
    let streams = report["per_saga"]["streams"].as_object().unwrap();
    let names: Vec<&str> = streams.keys().map(String::as_str).collect();
    assert_eq!(names, ["INVENTORY", "ORDERS", "PAYMENTS", "SAGA"]);
    let by_stream: f64 = streams
        .values()
        .map(|s| s["stored_messages"].as_f64().unwrap())
        .sum();
    assert!((by_stream - stored).abs() < 1e-6, "{streams:?}");
    for name in ["INVENTORY", "PAYMENTS"] {
        let batches = streams[name]["atomic_batches"].as_f64().unwrap();
        assert!(batches > 0.0 && batches <= 2.0, "{name}: {batches}");
    }
    assert_eq!(streams["SAGA"]["atomic_batches"], 0.0);
    // How much of the machine the hypervisor took meanwhile.
    for field in ["steal_percent", "run_steal_percent"] {
        let steal = report[field].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&steal), "{field}: {steal}");
    }
    // What the server asked of the disk.
    assert!(
        report["per_saga"]["server_write_syscalls"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let flushes = &report["per_saga"]["disk_flushes"];
    assert!(
        flushes.is_null() || flushes.as_f64().unwrap() >= 0.0,
        "{flushes}"
    );
    // What security costs: secured and plain saturation runs, alternating,
    // every order of each confirmed.
    for side in ["plain", "secured"] {
        let runs = report["security"][side].as_array().unwrap();
        assert_eq!(runs.len(), 2, "{side}");
        for run in runs {
            assert_eq!(run["placed"], 250, "{side}: {run}");
            assert_eq!(run["confirmed"], 250, "{side}: {run}");
        }
    }
    assert!(
        judged.contains(&"saturation secured against plain"),
        "{judged:?}"
    );
    let resources = report["resources"].as_object().unwrap();
    // The console ran beside the services, its live overview open.
    for name in SERVICES.iter().chain(&["saga-console", "nats-server"]) {
        let usage = &resources[*name];
        assert!(
            usage["peak_rss_mib"].as_f64().unwrap() > 1.0,
            "{name}: {usage}"
        );
        assert!(
            usage["cpu_seconds"].as_f64().unwrap() > 0.0,
            "{name}: {usage}"
        );
    }
    assert_eq!(report["ready_ms"].as_object().unwrap().len(), 5);
    assert!(report["targets"].as_array().unwrap().len() >= 9);
}

/// `sagactl bench --quick --cluster` runs the same on a three-node cluster
/// with every stream replicated three times: the flows and the suite
/// alike, each node measured (the security comparison left out).
#[tokio::test]
async fn the_benchmark_runs_on_a_three_node_cluster() {
    let report = quick_bench(&["--cluster", "--security-rounds", "0"]).await;
    assert_eq!(
        report["saturation"]["confirmed"], 500,
        "{}",
        report["saturation"]
    );
    assert_eq!(report["saga_flows"].as_array().unwrap().len(), 3);
    let resources = report["resources"].as_object().unwrap();
    for node in ["nats-server n0", "nats-server n1", "nats-server n2"] {
        let cpu = resources[node]["cpu_seconds"].as_f64().unwrap();
        assert!(cpu > 0.0, "{node}: {}", resources[node]);
    }
    assert!(!resources.contains_key("nats-server"));
    let per_saga = &report["per_saga"];
    // Each stream's leader is named, and each node's CPU counted.
    let nodes = ["n0", "n1", "n2"];
    for (name, stream) in per_saga["streams"].as_object().unwrap() {
        let leader = stream["leader"].as_str().unwrap_or_default();
        assert!(nodes.contains(&leader), "{name}: {stream}");
    }
    let by_node = per_saga["server_cpu_ms_by_node"].as_object().unwrap();
    assert_eq!(by_node.len(), 3, "{by_node:?}");
    // Asked to leave the security comparison out, it does.
    assert!(report["security"].is_null());
    assert!(!report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["what"] == "saturation secured against plain"));
    // Three replicas: every message stored reaches the other two nodes.
    assert!(
        per_saga["nats_messages_in"].as_f64().unwrap()
            > 2.0 * per_saga["stored_messages"].as_f64().unwrap(),
        "{per_saga}"
    );
}

/// `sagactl seed --file` stocks and funds what the file says, refuses a bad
/// file naming the mistake, and `sagactl load --duration` places orders for
/// that long and follows each to its end.
#[tokio::test]
async fn sagactl_seeds_from_a_file_and_loads_for_a_duration() {
    let suite = e2e::Suite::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };

    let bad = file(
        "bad.json",
        r#"{"skus": [{"sku": "sku 01", "stock": 5, "price_cents": 100}]}"#,
    );
    let output = suite.sagactl(&["seed", "--file", &bad]).await;
    assert!(!output.status.success());
    // With --json, the error is JSON on stdout.
    let error = String::from_utf8_lossy(&output.stdout);
    assert!(
        error.contains(&bad) && error.contains("skus[0].sku"),
        "the error names the file and the field: {error}"
    );

    let good = file(
        "seed.json",
        r#"{"skus": [{"sku": "sku-01", "stock": 100000, "price_cents": 250},
                     {"sku": "sku-02", "stock": 100000, "price_cents": 99}],
            "customers": [{"customer_id": "c-01", "balance_cents": 100000000}]}"#,
    );
    let output = suite.sagactl(&["seed", "--file", &good]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(suite.stock_of("sku-01").await, (100_000, 0));
    assert_eq!(suite.balance_of("c-01").await, 100_000_000);

    let output = suite
        .sagactl(&[
            "load",
            "--duration",
            "2",
            "--rate",
            "20",
            "--skus",
            "2",
            "--customers",
            "1",
        ])
        .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let placed = report["placed"].as_u64().unwrap();
    // Paced at 20/s for 2 s: never more than that, and some.
    assert!((1..=41).contains(&placed), "placed {placed}");
    assert_eq!(report["confirmed"].as_u64().unwrap(), placed, "{report}");
    assert_eq!(report["unsettled"], 0);
    suite.stop().await;
}

/// The README's first command: `sagactl demo` runs the suite on a
/// nats-server of its own, places its orders, and keeps running; SIGTERM
/// (as from a supervisor, or `timeout`), like Ctrl-C, stops it with exit 0
/// and stops the nats-server and services it started, whose ports are free
/// again.
#[tokio::test]
async fn the_demo_runs_orders_and_stops_what_it_started_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    // Its `nats` contexts go here, not into the user's configuration.
    let config = tempfile::tempdir().unwrap();
    let mut demo = Stopped(
        Command::new(binary("sagactl"))
            .args(["demo", "--orders", "20"])
            .env("XDG_CONFIG_HOME", config.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read to its end, as a terminal would: a closed stderr would fail the
    // demo's last words.
    let stderr = demo.0.stderr.take().unwrap();
    let (up, said) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut up = Some(up);
        let mut said = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let done = line.contains("Ctrl-C stops everything");
            said.push(line);
            if done {
                let _ = up.take().map(|up| up.send(said.clone()));
            }
        }
    });
    let said = tokio::time::timeout(Duration::from_secs(120), said)
        .await
        .expect("the demo is up and its orders through within 2 minutes")
        .expect("the demo said it keeps running");
    // Everything it started listens on an address it printed.
    let addresses: Vec<std::net::SocketAddr> = said
        .iter()
        .filter_map(|l| {
            let url = l.split_whitespace().nth(1)?;
            let addr = url
                .strip_prefix("http://")
                .or(url.strip_prefix("nats://"))?;
            addr.parse().ok()
        })
        .collect();
    assert_eq!(
        addresses.len(),
        6,
        "nats-server, four services and the console: {said:?}"
    );
    for addr in &addresses {
        assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr} listens");
    }
    // The console's address, and the token to act through it.
    let console = said
        .iter()
        .find(|l| l.starts_with("console "))
        .expect("the demo tells where its console is");
    assert!(
        console.contains("http://127.0.0.1:") && console.contains("operator token "),
        "{console}"
    );
    let console_addr = addresses[5];
    let (status, page) = e2e::testkit::http_get(console_addr, "/")
        .await
        .expect("the console answers");
    assert_eq!(status, 200);
    assert!(page.contains("Overview"), "{page}");

    let status = e2e::testkit::terminate(&mut demo.0, Duration::from_secs(30))
        .await
        .expect("the demo stops within 30 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
    let mut report = String::new();
    std::io::Read::read_to_string(&mut demo.0.stdout.take().unwrap(), &mut report).unwrap();
    assert!(
        report.contains("placed 20 orders") && report.contains("confirmed"),
        "the demo's orders settled: {report}"
    );
    for addr in &addresses {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "{addr} still listens after the demo stopped"
        );
    }
}

/// A child process asked to stop with SIGTERM when the test ends early,
/// so that a failed test leaves nothing behind (a demo stops what it
/// started only when asked).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}
