//! What the fault tests share: the suite as processes under a steady load
//! of orders that, without faults, would all confirm (stock and money for
//! every one), the faults themselves (a frozen process), and the checks
//! that the faults cost no more than they must.
//!
//! Each test ends with the same verdict: every order settled, stock and
//! money conserved, every saga finished, no dead letters, and no order
//! cancelled but `*_unavailable`, and those only where the order's steps
//! could have overlapped a fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use events::{CancelReason, Order, OrderStatus};
use jetsaga_client::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
use testkit::{Identity, Link, NatsServer, ServiceProcess};
use tokio::task::JoinHandle;

use crate::chaos::{
    check_conservation, check_outcomes, place_timed, random_orders, seed_ample, settle_all,
    Catalogue, Placed, RandomOrder,
};

/// The step timeout of the fault tests unless one says otherwise: half the
/// default, so that a fault bites. A step unanswered for 5 s is asked
/// again, and reserving or charging is given up after 5 + 10 + 20 s
/// (jittered by up to 10%).
pub const STEP_TIMEOUT_MS: &str = "5000";

/// How long after an order is placed a fault can still cost it a step
/// (`*_unavailable`), with steps that time out after `step_timeout`: the
/// budgets of reserving and charging (1 + 2 + 4 timeouts each, jittered
/// by up to 10%), and the steps between them.
pub fn unavailable_reach(step_timeout: Duration) -> Duration {
    (step_timeout * 14).mul_f64(1.1) + Duration::from_secs(10)
}

/// A folder for the services' logs: kept where `JETSAGA_TEST_LOGS` says,
/// to read after a failure, else removed with the test.
pub fn logs_dir() -> tempfile::TempDir {
    match std::env::var_os("JETSAGA_TEST_LOGS") {
        Some(dir) => tempfile::Builder::new()
            .prefix("faults-")
            .disable_cleanup(true)
            .tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a folder for the logs")
}

/// When a fault began and ended, and what it was.
#[derive(Debug, Clone)]
pub struct Window {
    pub what: String,
    pub from: Instant,
    pub to: Instant,
}

/// Sends `signal` (`STOP`, `CONT`, ...) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Freezes the process `pid` (SIGSTOP) for `duration`, then resumes it
/// (SIGCONT): to the network it is alive, its connections open, but it
/// answers nothing meanwhile.
pub async fn freeze(pid: u32, what: &str, duration: Duration) -> Window {
    let from = Instant::now();
    signal(pid, "STOP");
    // The length of the freeze is the fault itself.
    tokio::time::sleep(duration).await;
    signal(pid, "CONT");
    Window {
        what: format!("{what} frozen for {duration:?}"),
        from,
        to: Instant::now(),
    }
}

/// The suite as processes on one nats-server, seeded with stock and money
/// for every order, and the orders to place.
#[derive(Debug)]
pub struct Run {
    pub nats: NatsServer,
    pub services: Vec<ServiceProcess>,
    /// The links of the services started behind one, by name.
    pub links: Vec<(&'static str, Link)>,
    /// `SAGA_STEP_TIMEOUT_MS`, as the services have it.
    pub step_timeout: Duration,
    /// The services' environment beside their identity.
    env: Vec<(String, String)>,
    pub client: Client,
    pub catalogue: Catalogue,
    pub orders: Vec<RandomOrder>,
    logs: tempfile::TempDir,
}

impl Run {
    /// Starts nats-server and the four services (each with `env` beside the
    /// fault tests' step timeout), seeds the catalogue and draws `orders`
    /// orders from `seed`.
    pub async fn start(env: &[(&str, &str)], orders: usize, seed: u64) -> Self {
        Self::on(NatsServer::start(), env, orders, seed, &[]).await
    }

    /// As [`Run::start`], on a nats-server started by the caller, with the
    /// services of `linked` connected to it through a [`Link`] each, to cut.
    pub async fn on(
        nats: NatsServer,
        env: &[(&str, &str)],
        orders: usize,
        seed: u64,
        linked: &[&str],
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        crate::provision(&nats.url(), nats.security(), 1).await;
        let logs = logs_dir();
        let mut all = vec![
            ("SAGA_STEP_TIMEOUT_MS", STEP_TIMEOUT_MS),
            ("RUST_LOG", "warn"),
        ];
        all.extend_from_slice(env);
        let step_timeout = all
            .iter()
            .rev()
            .find(|(k, _)| *k == "SAGA_STEP_TIMEOUT_MS")
            .and_then(|(_, v)| v.parse().ok())
            .map(Duration::from_millis)
            .expect("a step timeout");
        let server = SocketAddr::from(([127, 0, 0, 1], nats.port()));
        let mut links = Vec::new();
        let mut services = Vec::new();
        for name in crate::SERVICES {
            let url = if linked.contains(&name) {
                let link = Link::start(server).await.expect("a link");
                let url = link.url();
                links.push((name, link));
                url
            } else {
                nats.url()
            };
            services.push(ServiceProcess::spawn(
                name,
                &url,
                nats.security(),
                &all,
                logs.path(),
            ));
        }
        for service in &services {
            service.wait_ready().await;
        }
        let client = crate::connect_as(&nats.url(), nats.security(), Identity::Operator).await;
        let catalogue = seed_ample(&client, &mut rng).await;
        let orders = random_orders(&catalogue, &mut rng, orders);
        Self {
            nats,
            services,
            links,
            step_timeout,
            env: all
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            client,
            catalogue,
            orders,
            logs,
        }
    }

    /// The running service `name`.
    pub fn service(&mut self, name: &str) -> &mut ServiceProcess {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Starts one more replica of the service `name`, as the others were
    /// started, and waits until it is ready.
    pub async fn add_replica(&mut self, name: &'static str) {
        self.add_replica_with(name, &[]).await;
    }

    /// [`Run::add_replica`], with `extra` in its environment.
    pub async fn add_replica_with(&mut self, name: &'static str, extra: &[(&str, &str)]) {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(extra);
        let replica = ServiceProcess::spawn(
            name,
            &self.nats.url(),
            self.nats.security(),
            &env,
            self.logs.path(),
        );
        replica.wait_ready().await;
        self.services.push(replica);
    }

    /// Stops every replica of the service `name` (SIGKILL).
    pub fn remove(&mut self, name: &str) {
        self.services.retain(|s| s.name != name);
    }

    /// The link between the service `name` and NATS.
    pub fn link(&self, name: &str) -> &Link {
        self.links
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, link)| link)
            .unwrap_or_else(|| panic!("{name} has no link"))
    }

    /// Starts placing every order at `per_second`; the task says when each
    /// was first sent, and what refused a send.
    pub fn load(&self, per_second: f64) -> JoinHandle<Placed> {
        tokio::spawn(place_timed(
            self.client.clone(),
            self.orders.clone(),
            per_second,
        ))
    }

    /// Waits for the load, then for every order to settle, and checks the
    /// verdict of the module's header against the fault `windows`. Returns
    /// what happened, also printed under `label`.
    pub async fn verdict(
        &self,
        label: &str,
        load: JoinHandle<Placed>,
        windows: &[Window],
    ) -> Tally {
        let Placed { sent, refusals } = load.await.expect("the load ran");
        assert_eq!(sent.len(), self.orders.len(), "every order was accepted");
        for service in &self.services {
            service.wait_ready().await;
        }
        let settling = Instant::now();
        let settled = settle_all(&self.client, &self.orders).await;
        let settle_seconds = settling.elapsed().as_secs_f64();
        check_conservation(&self.client, &self.catalogue, &settled).await;
        check_outcomes(&self.client, &self.orders).await;
        crate::audit(&self.nats.url(), self.nats.security()).await;
        let mut tally = Tally::of(&settled, settle_seconds);
        tally.refusals = refusals;
        eprintln!("{label}: {tally}; faults: {windows:?}");
        check_cancels(
            &settled,
            &sent,
            windows,
            unavailable_reach(self.step_timeout),
        );
        tally
    }
}

/// Every cancel is one a fault could cause, `inventory_unavailable` or
/// `payment_unavailable` (stock and money were ample), and only for an
/// order whose steps could have overlapped a fault: placed at most `reach`
/// before it began, and before it ended.
pub fn check_cancels(settled: &[Order], sent: &[Instant], windows: &[Window], reach: Duration) {
    for (order, sent) in settled.iter().zip(sent) {
        if order.status != OrderStatus::Cancelled {
            continue;
        }
        let reason = order.reason;
        assert!(
            matches!(
                reason,
                Some(CancelReason::InventoryUnavailable | CancelReason::PaymentUnavailable)
            ),
            "{} cancelled {reason:?} though stock and money were ample",
            order.order_id
        );
        let overlapped = windows
            .iter()
            .any(|w| w.from <= *sent + reach && w.to >= *sent);
        assert!(
            overlapped,
            "{} cancelled {reason:?}, but no fault overlapped its steps",
            order.order_id
        );
    }
}

/// The environment that runs a service with its clock moved by `offset`
/// (libfaketime's syntax: `"+5m"`, `"-300s"`): Debian's libfaketime,
/// installed into `.tools/faketime` by `scripts/install-faketime.sh`,
/// preloaded.
pub fn skewed(offset: &str) -> Vec<(String, String)> {
    let tools = testkit::workspace_root().join(".tools/faketime");
    let library = find(&tools, "libfaketime.so.1").unwrap_or_else(|| {
        panic!(
            "no libfaketime.so.1 under {}: run scripts/install-faketime.sh",
            tools.display()
        )
    });
    vec![
        ("LD_PRELOAD".to_owned(), library.display().to_string()),
        ("FAKETIME".to_owned(), offset.to_owned()),
        // Read the offset once, not from a file on every call.
        ("FAKETIME_NO_CACHE".to_owned(), "0".to_owned()),
    ]
}

fn find(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Orders placed, confirmed, cancelled by reason, and how long they took
/// to settle once the load was over.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub placed: usize,
    pub confirmed: usize,
    pub cancelled: BTreeMap<String, usize>,
    pub settle_seconds: f64,
    /// Each time the client's `place` was refused (then sent again).
    pub refusals: Vec<String>,
}

impl Tally {
    pub fn of(settled: &[Order], settle_seconds: f64) -> Self {
        let mut cancelled = BTreeMap::new();
        for order in settled {
            if order.status == OrderStatus::Cancelled {
                let reason = order.reason.map_or("none", |r| r.as_str());
                *cancelled.entry(reason.to_owned()).or_default() += 1;
            }
        }
        Self {
            placed: settled.len(),
            confirmed: settled
                .iter()
                .filter(|o| o.status == OrderStatus::Confirmed)
                .count(),
            cancelled,
            settle_seconds,
            refusals: Vec::new(),
        }
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} orders, {} confirmed, cancelled {:?}, settled {:.1} s after the load, {} sends refused",
            self.placed,
            self.confirmed,
            self.cancelled,
            self.settle_seconds,
            self.refusals.len()
        )
    }
}

/// The atomic batches of `stream` stored in part: the id of each batch
/// that has no commit among its stored messages. Reads the stream from its
/// first message to its end with an ordered consumer: the end is the
/// message after which none is pending, or, when the stream's last
/// messages are removed while it reads (handled commands, expired facts),
/// a consumer that has nothing more to deliver.
pub async fn torn_batches(js: &async_nats::jetstream::Context, stream: &str) -> Vec<String> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    use futures::StreamExt;

    let mut handle = js.get_stream(stream).await.expect("the stream is there");
    let stored = handle.info().await.expect("its info").state.messages;
    let mut batches: BTreeMap<String, (u64, Option<u64>)> = BTreeMap::new();
    if stored > 0 {
        let mut messages = handle
            .create_consumer(OrderedConfig::default())
            .await
            .expect("an ordered consumer")
            .messages()
            .await
            .expect("its messages");
        // An ordered consumer pushes what the stream holds without being
        // asked; silence this long means there is nothing left to push.
        while let Ok(next) = tokio::time::timeout(Duration::from_secs(5), messages.next()).await {
            let message = next.expect("the consumer goes on").expect("a message");
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            if let Some(id) = header("Nats-Batch-Id") {
                let (count, commit) = batches.entry(id).or_default();
                *count += 1;
                if header("Nats-Batch-Commit").is_some() {
                    *commit = header("Nats-Batch-Sequence").and_then(|s| s.parse().ok());
                }
            }
            if message.info().expect("a JetStream message").pending == 0 {
                break;
            }
        }
    }
    batches
        .into_iter()
        // A batch stored in part loses its tail, commit included; one whose
        // commit is there may miss earlier messages that later states
        // rolled up.
        .filter(|(_, (_, commit))| commit.is_none())
        .map(|(id, _)| id)
        .collect()
}
