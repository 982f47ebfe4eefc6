//! Guarantee 6 from outside: every identity tries what it must not do, and
//! the server refuses it (a permissions violation, and nothing stored);
//! an anonymous connection is refused; and the saga still completes for
//! what each identity may do, over TLS with client certificates too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use e2e::testkit::{eventually, Identity};
use e2e::{Suite, SETTLE};
use events::{CancelReason, OrderStatus};
use futures::StreamExt;
use jetsaga_client::{place_body, Client};

/// A connection as one identity that records the server's refusals.
struct Probe {
    identity: Identity,
    client: async_nats::Client,
    refusals: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    async fn connect(suite: &Suite, identity: Identity) -> Self {
        let connection = suite
            .nats
            .security()
            .connection(&suite.nats.url(), identity);
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&refusals);
        let client = connection
            .options("security-probe")
            .await
            .unwrap()
            .event_callback(move |event| {
                let seen = Arc::clone(&seen);
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        seen.lock().unwrap().push(error.to_string());
                    }
                }
            })
            .connect(connection.url_list())
            .await
            .unwrap_or_else(|e| panic!("{} connects: {e}", identity.name()));
        Self {
            identity,
            client,
            refusals,
        }
    }

    /// Waits for the server's permissions violation naming `subject`.
    async fn refused(&self, what: &str, subject: &str) {
        let refusals = Arc::clone(&self.refusals);
        eventually(
            &format!("{} refused: {what} ({subject})", self.identity.name()),
            SETTLE,
            || {
                let refusals = Arc::clone(&refusals);
                async move {
                    refusals
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|e| {
                            e.to_lowercase().contains("permissions violation")
                                && e.contains(subject)
                        })
                        .then_some(())
                }
            },
        )
        .await;
    }

    /// Publishes to `subject` and expects the server to refuse it.
    async fn publish_refused(&self, subject: &str, body: &'static str) {
        self.client
            .publish(subject.to_owned(), Bytes::from_static(body.as_bytes()))
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        self.refused("publish", subject).await;
    }

    /// Subscribes to `subject` and expects the server to refuse it.
    async fn subscribe_refused(&self, subject: &str) {
        let _subscription = self.client.subscribe(subject.to_owned()).await.unwrap();
        self.client.flush().await.unwrap();
        self.refused("subscribe", subject).await;
    }
}

/// The messages stored on `subject` (a filter), read as the operator may.
async fn stored_on(suite: &Suite, stream: &str, subject: &str) -> usize {
    let js = jetstream::new(suite.client.nats().clone());
    let stream = js.get_stream(stream).await.unwrap();
    let mut count = 0;
    let mut next = 1;
    while let Ok(message) = stream
        .direct_get_next_for_subject(subject, Some(next))
        .await
    {
        count += 1;
        next = message.sequence + 1;
    }
    count
}

#[tokio::test]
async fn a_client_cannot_forge_a_payment_and_get_its_order_for_free() {
    let suite = Suite::start().await;
    // Enough money for nothing: only a forged charge could confirm it.
    suite.seed(&[("sku-1", 10, 5_000)], &[("c-poor", 1)]).await;
    let client = Probe::connect(&suite, Identity::Client).await;
    client
        .publish_refused(
            "payments.evt.o-forged.charged",
            r#"{"order_id":"o-forged"}"#,
        )
        .await;
    client
        .publish_refused(
            "orders.evt.o-forged.confirmed",
            r#"{"order_id":"o-forged"}"#,
        )
        .await;
    assert_eq!(
        stored_on(&suite, "PAYMENTS", "payments.evt.o-forged.*").await,
        0
    );

    Client::new(client.client.clone())
        .command(
            "orders.cmd.place",
            async_nats::HeaderMap::new(),
            place_body("o-forged", "c-poor", &[("sku-1", 1)]),
        )
        .await
        .expect("a client may place an order");
    let order = suite.settled("o-forged").await;
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert_eq!(order.reason, Some(CancelReason::InsufficientFunds));
    assert_eq!(suite.balance_of("c-poor").await, 1);
    suite.stop().await;
}

#[tokio::test]
async fn each_identity_is_refused_everything_it_is_not_given() {
    let suite = Suite::start().await;
    let forbidden: [(Identity, &[&str], &[&str]); 7] = [
        (
            Identity::Client,
            &[
                "inventory.cmd.restock",
                "payments.cmd.deposit",
                "saga.cmd.abort",
                "saga.log.o-1.charge",
                "inventory.sku.sku-1",
                "payments.account.c-1",
                "dlq.payment-service.saga.log.o-1.charge",
                "$JS.API.STREAM.INFO.SAGA",
            ],
            &["saga.log.>", "_INBOX.order-service.>", "_INBOX.>", ">"],
        ),
        (
            Identity::Operator,
            &[
                "orders.evt.o-1.confirmed",
                "payments.evt.o-1.charged",
                "saga.log.o-1.charge",
                "inventory.sku.sku-1",
                "dlq.order-service.orders.cmd.place",
                "$JS.API.CONSUMER.CREATE.DLQ.mine",
            ],
            &["_INBOX.admin.>", "saga.log.>"],
        ),
        (
            Identity::OrderService,
            &[
                "inventory.sku.sku-1",
                "payments.evt.o-1.charged",
                "saga.log.o-1.confirm",
                "orders.cmd.place",
                "dlq.payment-service.x",
            ],
            &["_INBOX.client.>", "payments.evt.>"],
        ),
        (
            Identity::InventoryService,
            &[
                "payments.account.c-1",
                "orders.evt.o-1.confirmed",
                "saga.log.o-1.release",
                "inventory.cmd.restock",
            ],
            &["_INBOX.operator.>"],
        ),
        (
            Identity::PaymentService,
            &[
                "payments.cmd.deposit",
                "saga.log.o-1.refund",
                "inventory.evt.o-1.reserved",
                "$JS.API.CONSUMER.CREATE.SAGA.inventory-saga",
            ],
            &["_INBOX.saga-orchestrator.>"],
        ),
        (
            Identity::SagaOrchestrator,
            &[
                "orders.evt.o-1.confirmed",
                "payments.evt.o-1.charged",
                "inventory.sku.sku-1",
                "saga.cmd.abort",
            ],
            &["_INBOX.payment-service.>"],
        ),
        (
            Identity::Admin,
            &["orders.cmd.place", "saga.log.o-1.charge"],
            &["orders.evt.>"],
        ),
    ];
    for (identity, publish, subscribe) in forbidden {
        let probe = Probe::connect(&suite, identity).await;
        for subject in publish {
            probe.publish_refused(subject, "{}").await;
        }
        for subject in subscribe {
            probe.subscribe_refused(subject).await;
        }
    }
    // Not one of those publishes was stored.
    assert_eq!(stored_on(&suite, "SAGA", "saga.log.>").await, 0);
    assert_eq!(stored_on(&suite, "INVENTORY", ">").await, 0);
    assert_eq!(stored_on(&suite, "PAYMENTS", ">").await, 0);
    assert_eq!(stored_on(&suite, "ORDERS", ">").await, 0);
    assert_eq!(stored_on(&suite, "DLQ", ">").await, 0);
    suite.stop().await;
}

#[tokio::test]
async fn no_identity_but_admin_may_delete_or_purge_a_stream() {
    let suite = Suite::start().await;
    for identity in [
        Identity::OrderService,
        Identity::InventoryService,
        Identity::PaymentService,
        Identity::SagaOrchestrator,
        Identity::Client,
        Identity::Operator,
    ] {
        let probe = Probe::connect(&suite, identity).await;
        for api in [
            "$JS.API.STREAM.DELETE.ORDERS",
            "$JS.API.STREAM.PURGE.PAYMENTS",
            "$JS.API.STREAM.UPDATE.SAGA",
            "$JS.API.CONSUMER.DELETE.SAGA.payment-saga",
        ] {
            probe.publish_refused(api, "").await;
        }
    }
    let admin = jetstream::new(suite.connect_as(Identity::Admin).await.nats().clone());
    for stream in ["ORDERS", "PAYMENTS", "SAGA"] {
        assert!(
            admin.get_stream(stream).await.is_ok(),
            "{stream} is still there"
        );
    }
    admin
        .get_stream("DLQ")
        .await
        .unwrap()
        .purge()
        .await
        .expect("admin may purge");
    suite.stop().await;
}

#[tokio::test]
async fn a_connection_without_credentials_is_refused() {
    let suite = Suite::start().await;
    let anonymous = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(suite.nats.url())
        .await;
    let error = anonymous.expect_err("an anonymous connection is refused");
    assert!(
        error.to_string().to_lowercase().contains("authorization"),
        "{error}"
    );
    suite.stop().await;
}

#[tokio::test]
async fn a_client_places_queries_and_watches_an_order_with_its_own_rights() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 5, 100)], &[("c-1", 10_000)]).await;
    let client = suite.connect_as(Identity::Client).await;
    let mut events = client.nats().subscribe("orders.evt.>").await.unwrap();
    client
        .place("o-client", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    // Every order event arrives here; the confirmation comes among them.
    let confirmed = tokio::time::timeout(SETTLE, async {
        while let Some(message) = events.next().await {
            if message.subject.as_str() == "orders.evt.o-client.confirmed" {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(confirmed, Ok(true), "the client sees its order confirmed");
    let order = client.order("o-client").await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Confirmed);
    assert!(client.stock("sku-1").await.unwrap().is_some());
    assert!(client.account("c-1").await.unwrap().is_some());
    assert!(client.saga("o-client").await.unwrap().is_some());
    suite.stop().await;
}

#[tokio::test]
async fn the_saga_runs_over_tls_with_client_certificates() {
    let suite = Suite::start_tls().await;
    suite.seed(&[("sku-1", 5, 100)], &[("c-1", 10_000)]).await;
    suite
        .client
        .place("o-tls", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    assert_eq!(suite.settled("o-tls").await.status, OrderStatus::Confirmed);

    // Without a client certificate, or without TLS, nobody gets in.
    let security = suite.nats.security();
    let no_cert = jetsaga_client::Connection::new(suite.nats.url())
        .creds(security.creds(Identity::Operator))
        .tls_ca(security.material().tls_ca());
    assert!(Client::connect(&no_cert).await.is_err());
    let no_tls =
        jetsaga_client::Connection::new(suite.nats.url()).creds(security.creds(Identity::Operator));
    assert!(Client::connect(&no_tls).await.is_err());
    suite.stop().await;
}

#[tokio::test]
async fn a_refused_action_is_reported_as_refused_not_as_a_timeout() {
    // Nothing provisioned yet: provisioning has work to do.
    let suite = Suite::start_unprovisioned(&[]).await;
    let url = suite.nats.url();
    let sagactl = |identity: Identity, args: &'static [&'static str]| {
        e2e::sagactl(&url, suite.nats.security(), identity, args)
    };
    let output = sagactl(Identity::Operator, &["provision"]).await;
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("refused") && said.contains("admin identity"),
        "{said}"
    );
    let check = sagactl(Identity::Admin, &["provision", "--check"]).await;
    assert_eq!(check.status.code(), Some(1), "five streams missing");
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["streams"][0]["change"], "create");
    let provisioned = sagactl(Identity::Admin, &["provision"]).await;
    assert_eq!(provisioned.status.code(), Some(0));
    let again = sagactl(Identity::Admin, &["provision", "--check"]).await;
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );

    let client = suite.connect_as(Identity::Client).await;
    let error = client
        .restock("sku-1", 5, Some(100))
        .await
        .expect_err("a client may not restock");
    assert!(
        matches!(error, jetsaga_client::ClientError::Refused { ref subject, .. } if subject == "inventory.cmd.restock"),
        "{error}"
    );
    suite.stop().await;
}
