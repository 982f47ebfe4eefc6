//! The end-to-end harness: a real nats-server with the suite's identities
//! (every connection authenticates, and each may do only its own part),
//! the streams provisioned as `admin`, and the four services running
//! in-process (the same `run` their binaries call), each as its own
//! identity; plus what the tests assert with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use events::{Order, OrderStatus};
use jetsaga_client::Client;
use runtime::streams::Layout;
use testkit::{eventually, free_port, wait_until_ready, Identity, NatsServer, Security};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod chaos;
pub mod console;
pub mod faults;

pub use testkit;

/// Runs `sagactl --nats-url <url> <identity's flags> --json <args>` and
/// returns what it did. Asynchronously: the in-process services run on the
/// test's runtime, and a blocking wait would keep them from answering it.
pub async fn sagactl(
    url: &str,
    security: &Security,
    identity: Identity,
    args: &[&str],
) -> std::process::Output {
    tokio::process::Command::new(testkit::binary("sagactl"))
        .env_clear()
        .args(["--nats-url", url, "--json"])
        .args(security.sagactl_args(identity))
        .args(args)
        .output()
        .await
        .expect("sagactl runs")
}

/// Runs `sagactl audit` as `operator` (guarantee 8) and fails, naming
/// each violation, unless the books add up. Returns its report.
pub async fn audit(url: &str, security: &Security) -> serde_json::Value {
    let run = sagactl(url, security, Identity::Operator, &["audit"]).await;
    let report: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("sagactl audit printed no report ({e}): {run:?}"));
    assert!(
        run.status.success() && report["ok"] == true,
        "sagactl audit: {report:#}"
    );
    eprintln!(
        "sagactl audit: {} orders, {} skus, {} accounts read in {:.2} s; the books add up",
        report["orders"], report["skus"], report["accounts"], report["seconds"]
    );
    report
}

/// A client connected as `identity`.
pub async fn connect_as(url: &str, security: &Security, identity: Identity) -> Client {
    Client::connect(&security.connection(url, identity))
        .await
        .unwrap_or_else(|e| panic!("{} connects: {e}", identity.name()))
}

/// Provisions every stream, as `admin`, with `replicas` replicas.
pub async fn provision(url: &str, security: &Security, replicas: usize) {
    provision_as(url, security, Layout::replicas(replicas)).await
}

/// Provisions every stream, as `admin`, laid out as `layout` says (again:
/// updates them to it).
pub async fn provision_as(url: &str, security: &Security, layout: Layout) {
    let admin = connect_as(url, security, Identity::Admin).await;
    runtime::provision::provision(
        &async_nats::jetstream::new(admin.nats().clone()),
        layout,
        false,
    )
    .await
    .expect("the streams are provisioned");
}

/// Provisions every stream of a new cluster with three replicas, as
/// `admin` connected to `url` (one node's, or all of them), once the
/// cluster has elected its leaders; the admin's JetStream context.
pub async fn provision_cluster(url: &str, security: &Security) -> async_nats::jetstream::Context {
    eventually(
        "the streams to be provisioned on the cluster",
        Duration::from_secs(90),
        || async {
            let admin = Client::connect(&security.connection(url, Identity::Admin))
                .await
                .ok()?;
            let js = async_nats::jetstream::new(admin.nats().clone());
            runtime::provision::provision(&js, Layout::replicas(3), false)
                .await
                .ok()?;
            Some(js)
        },
    )
    .await
}

/// How long an order may take to settle in a test.
pub const SETTLE: Duration = Duration::from_secs(30);

/// The four services, by binary name.
pub const SERVICES: [&str; 4] = testkit::SERVICE_NAMES;

/// A nats-server and the four services, running until [`Suite::stop`].
#[derive(Debug)]
pub struct Suite {
    pub nats: NatsServer,
    /// Connected as `operator`: a client that may also restock, deposit,
    /// act on sagas and read every stream.
    pub client: Client,
    /// The sidecar of each service, in the order of [`SERVICES`].
    pub http: [SocketAddr; 4],
    extra: Vec<(String, String)>,
    shutdown: CancellationToken,
    running: HashMap<&'static str, (CancellationToken, JoinHandle<()>)>,
    /// Second replicas ([`Suite::start_replica`]), stopped with the rest.
    replicas: Vec<(CancellationToken, JoinHandle<()>)>,
}

impl Suite {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts everything with extra environment for the services.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        Self::start_only(&SERVICES, extra).await
    }

    /// Starts NATS and only the named services (the others can be started
    /// later with [`Suite::start_service`]).
    pub async fn start_only(services: &[&'static str], extra: &[(&str, &str)]) -> Self {
        Self::start_on(NatsServer::start(), true, services, extra).await
    }

    /// Starts NATS without provisioning its streams, and only the named
    /// services ([`Suite::provision`] provisions them).
    pub async fn start_unprovisioned(services: &[&'static str]) -> Self {
        Self::start_on(NatsServer::start(), false, services, &[]).await
    }

    /// Starts everything on a server that requires TLS and client
    /// certificates.
    pub async fn start_tls() -> Self {
        Self::start_on(NatsServer::start_tls(), true, &SERVICES, &[]).await
    }

    async fn start_on(
        nats: NatsServer,
        provisioned: bool,
        services: &[&'static str],
        extra: &[(&str, &str)],
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        if provisioned {
            provision(&nats.url(), nats.security(), 1).await;
        }
        let client = connect_as(&nats.url(), nats.security(), Identity::Operator).await;
        let mut suite = Self {
            nats,
            client,
            http: [(); 4].map(|()| SocketAddr::from(([127, 0, 0, 1], free_port()))),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            shutdown: CancellationToken::new(),
            running: HashMap::new(),
            replicas: Vec::new(),
        };
        // All at once: they start in any order.
        for service in services {
            suite.launch(service, &[]);
        }
        if provisioned {
            suite.wait_ready().await;
        }
        suite
    }

    /// Provisions every stream, as `admin`.
    pub async fn provision(&self) {
        provision(&self.nats.url(), self.nats.security(), 1).await;
    }

    /// Starts one service (in-process, as its binary would) and waits until
    /// it is ready.
    pub async fn start_service(&mut self, name: &'static str) {
        self.start_service_with(name, &[]).await;
    }

    /// Starts one service with extra environment of its own.
    pub async fn start_service_with(&mut self, name: &'static str, extra: &[(&str, &str)]) {
        self.launch(name, extra);
        wait_ready(self.http_of(name)).await;
    }

    /// Starts one service without waiting for it to be ready.
    pub fn launch(&mut self, name: &'static str, extra: &[(&str, &str)]) {
        let running = self.spawn(name, self.http_of(name), extra);
        self.running.insert(name, running);
    }

    /// Starts another replica of the service `name` beside the running
    /// one, with a sidecar of its own (returned), and waits until it is
    /// ready. It runs until [`Suite::stop`].
    pub async fn start_replica(&mut self, name: &'static str) -> SocketAddr {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let running = self.spawn(name, addr, &[]);
        self.replicas.push(running);
        wait_ready(addr).await;
        addr
    }

    /// Starts a saga-console in-process, connected as `identity`, with
    /// extra environment of its own, and waits until it is ready; it runs
    /// until [`Suite::stop`]. Returns its address.
    pub async fn start_console(
        &mut self,
        identity: Identity,
        extra: &[(&str, &str)],
    ) -> SocketAddr {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let vars = self.environment(
            addr,
            self.nats
                .security()
                .env(identity)
                .into_iter()
                .chain(owned(extra)),
        );
        let config = saga_console::Config::from_env(&borrow(&vars)).expect("valid config");
        let token = self.shutdown.child_token();
        let task = tokio::spawn(expect_clean(saga_console::run(config, token.clone())));
        self.replicas.push((token, task));
        wait_ready(addr).await;
        addr
    }

    /// The environment of a process of the suite run in-process: this
    /// server, its sidecar on `addr`, a short grace, then `layers` in
    /// order (a later value wins).
    fn environment(
        &self,
        addr: SocketAddr,
        layers: impl IntoIterator<Item = (String, String)>,
    ) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("NATS_URL", self.nats.url()),
            ("HTTP_ADDR", addr.to_string()),
            ("SHUTDOWN_GRACE_SECONDS", "5".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        vars.extend(layers);
        vars
    }

    /// Waits until at least `count` sagas are stuck (unfinished, their
    /// current step asked more than once).
    pub async fn stuck(&self, count: usize) {
        let client = &self.client;
        eventually("sagas to be stuck", SETTLE, || async move {
            let stuck = client
                .all_sagas(Some(events::saga::ListStatus::Stuck))
                .await
                .ok()?;
            (stuck.len() >= count).then_some(())
        })
        .await;
    }

    /// Runs the service `name` in-process, as its binary would, with its
    /// sidecar on `addr`.
    fn spawn(
        &self,
        name: &'static str,
        addr: SocketAddr,
        extra: &[(&str, &str)],
    ) -> (CancellationToken, JoinHandle<()>) {
        let vars = self.environment(
            addr,
            self.nats
                .security()
                .service_env(name)
                .into_iter()
                .chain(self.extra.iter().cloned())
                .chain(owned(extra)),
        );
        let env = borrow(&vars);
        let token = self.shutdown.child_token();
        let run = token.clone();
        let task = match name {
            "order-service" => {
                let config = order_service::Config::from_env(&env).expect("valid config");
                tokio::spawn(expect_clean(order_service::run(config, run)))
            }
            "inventory-service" => {
                let config = inventory_service::Config::from_env(&env).expect("valid config");
                tokio::spawn(expect_clean(inventory_service::run(config, run)))
            }
            "payment-service" => {
                let config = payment_service::Config::from_env(&env).expect("valid config");
                tokio::spawn(expect_clean(payment_service::run(config, run)))
            }
            "saga-orchestrator" => {
                let config = saga_orchestrator::Config::from_env(&env).expect("valid config");
                tokio::spawn(expect_clean(saga_orchestrator::run(config, run)))
            }
            other => panic!("no service {other}"),
        };
        (token, task)
    }

    /// A client connected as `identity`.
    pub async fn connect_as(&self, identity: Identity) -> Client {
        connect_as(&self.nats.url(), self.nats.security(), identity).await
    }

    /// Runs sagactl as `operator` against this suite.
    pub async fn sagactl(&self, args: &[&str]) -> std::process::Output {
        sagactl(
            &self.nats.url(),
            self.nats.security(),
            Identity::Operator,
            args,
        )
        .await
    }

    /// Stops one service, as SIGTERM would, and waits until it has.
    pub async fn stop_service(&mut self, name: &str) {
        let running = self.running.remove(name).expect("the service runs");
        stop_running(running).await;
    }

    /// Waits until every running service answers `/readyz` with 200.
    pub async fn wait_ready(&self) {
        for name in self.running.keys() {
            wait_ready(self.http_of(name)).await;
        }
    }

    /// The sidecar address of a service.
    pub fn http_of(&self, service: &str) -> SocketAddr {
        let i = SERVICES
            .iter()
            .position(|s| *s == service)
            .expect("a service name");
        self.http[i]
    }

    /// Stocks skus `(sku, quantity, price)` and funds customers
    /// `(customer, cents)`, and waits until the queries show it all.
    pub async fn seed(&self, skus: &[(&str, u64, u64)], customers: &[(&str, u64)]) {
        for (sku, quantity, price) in skus {
            self.client
                .restock(sku, *quantity, Some(*price))
                .await
                .expect("restock stored");
        }
        for (customer, cents) in customers {
            self.client
                .deposit(customer, *cents)
                .await
                .expect("deposit stored");
        }
        for (sku, quantity, _) in skus {
            eventually(&format!("sku {sku} stocked"), SETTLE, || async move {
                let level = self.client.stock(sku).await.ok().flatten()?;
                (level.available >= *quantity).then_some(())
            })
            .await;
        }
        for (customer, cents) in customers {
            eventually(
                &format!("customer {customer} funded"),
                SETTLE,
                || async move {
                    let account = self.client.account(customer).await.ok().flatten()?;
                    (account.balance_cents.0 >= *cents).then_some(())
                },
            )
            .await;
        }
    }

    /// `(available, reserved)` of a sku.
    pub async fn stock_of(&self, sku: &str) -> (u64, u64) {
        let level = self.client.stock(sku).await.expect("the query answers");
        let level = level.unwrap_or_else(|| panic!("no sku {sku}"));
        (level.available, level.reserved)
    }

    /// A customer's balance, in cents.
    pub async fn balance_of(&self, customer: &str) -> u64 {
        let account = self
            .client
            .account(customer)
            .await
            .expect("the query answers");
        account
            .unwrap_or_else(|| panic!("no account {customer}"))
            .balance_cents
            .0
    }

    /// Waits until the saga of `order_id` is in `state`.
    pub async fn saga_reaches(&self, order_id: &str, state: events::saga::SagaState) {
        eventually(
            &format!("saga {order_id} to reach {state:?}"),
            SETTLE,
            || async move {
                let saga = self.client.saga(order_id).await.ok().flatten()?;
                (saga.state == state).then_some(())
            },
        )
        .await;
    }

    /// Waits until the order is `CONFIRMED` or `CANCELLED`.
    pub async fn settled(&self, order_id: &str) -> Order {
        eventually(
            &format!("order {order_id} to settle"),
            SETTLE,
            || async move {
                let order = self.client.order(order_id).await.ok().flatten()?;
                (order.status != OrderStatus::Pending).then_some(order)
            },
        )
        .await
    }

    /// Stops every service (as SIGTERM would) and waits for them.
    pub async fn stop(mut self) {
        let names: Vec<&'static str> = self.running.keys().copied().collect();
        for name in names {
            self.stop_service(name).await;
        }
        for running in std::mem::take(&mut self.replicas) {
            stop_running(running).await;
        }
    }
}

/// Stops a service run in-process, as SIGTERM would its binary.
async fn stop_running((token, task): (CancellationToken, JoinHandle<()>)) {
    token.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("a service stops within its grace period")
        .expect("no service panicked");
}

async fn wait_ready(addr: SocketAddr) {
    if let Err(last) = wait_until_ready(addr, SETTLE).await {
        panic!("{addr} not ready after {SETTLE:?}; /readyz said {last:?}");
    }
}

fn owned<'a>(vars: &'a [(&str, &str)]) -> impl Iterator<Item = (String, String)> + 'a {
    vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
}

fn borrow(vars: &HashMap<String, String>) -> HashMap<&str, &str> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn expect_clean<E: std::fmt::Display>(run: impl std::future::Future<Output = Result<(), E>>) {
    if let Err(e) = run.await {
        panic!("a service failed: {e}");
    }
}
