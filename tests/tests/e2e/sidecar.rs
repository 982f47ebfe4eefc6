//! `/healthz`, `/readyz` and `/metrics` tell the truth.

use async_nats::HeaderMap;
use e2e::testkit::{eventually, http_get, Identity};
use e2e::{Suite, SERVICES, SETTLE};
use events::OrderStatus;

#[tokio::test]
async fn metrics_count_what_happened() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 1, 100)], &[("c-1", 10_000)]).await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite
        .client
        .place("o-2", "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    suite
        .client
        .command("orders.cmd.place", HeaderMap::new(), "garbage".into())
        .await
        .unwrap();
    assert_eq!(suite.settled("o-1").await.status, OrderStatus::Confirmed);
    assert_eq!(suite.settled("o-2").await.status, OrderStatus::Cancelled);

    let orchestrator = suite.http_of("saga-orchestrator");
    eventually("both sagas to complete", SETTLE, || async move {
        let (_, text) = http_get(orchestrator, "/metrics").await?;
        let done = text.contains("jetsaga_sagas_completed_total{outcome=\"confirmed\"} 1")
            && text.contains("jetsaga_sagas_completed_total{outcome=\"cancelled\"} 1");
        done.then_some(())
    })
    .await;
    let (status, text) = http_get(orchestrator, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    for line in [
        "jetsaga_sagas_started_total 2",
        "jetsaga_sagas_in_flight 0",
        "jetsaga_saga_duration_seconds_count{outcome=\"confirmed\"} 1",
        "jetsaga_messages_handled_total{consumer=\"saga-orders\",outcome=\"ok\"}",
    ] {
        assert!(text.contains(line), "orchestrator metrics lack {line:?}");
    }
    let (_, text) = http_get(suite.http_of("order-service"), "/metrics")
        .await
        .unwrap();
    for line in [
        "jetsaga_messages_handled_total{consumer=\"order-place\",outcome=\"ok\"} 2",
        "jetsaga_messages_handled_total{consumer=\"order-place\",outcome=\"dead_letter\"} 1",
        "jetsaga_dead_letters_total{consumer=\"order-place\"} 1",
        "jetsaga_message_handle_duration_seconds_bucket{consumer=\"order-place\",le=\"0.001\"}",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(line), "order-service metrics lack {line:?}");
    }
    suite.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_nats_connection_and_health_does_not() {
    let mut suite = Suite::start().await;
    for service in SERVICES {
        let (status, body) = http_get(suite.http_of(service), "/readyz").await.unwrap();
        assert_eq!(status, 200, "{service}: {body}");
    }

    suite.nats.kill();
    for service in SERVICES {
        let addr = suite.http_of(service);
        let body = eventually(
            &format!("{service} to report NATS down"),
            SETTLE,
            || async move {
                let (status, body) = http_get(addr, "/readyz").await?;
                (status == 503).then_some(body)
            },
        )
        .await;
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(body["failing"]["nats"].is_string(), "{service}: {body}");
        assert_eq!(
            http_get(addr, "/healthz").await.unwrap().0,
            200,
            "{service} must stay live"
        );
    }

    suite.nats.restart();
    suite.wait_ready().await;
    an_order_goes_through(&suite, "o-after-outage").await;
    suite.stop().await;
}

#[tokio::test]
async fn a_service_waits_unready_for_its_streams_and_never_creates_them() {
    // The orchestrator alone, on a server nobody has provisioned yet.
    let mut suite = Suite::start_unprovisioned(&[]).await;
    suite.launch("saga-orchestrator", &[]);
    let addr = suite.http_of("saga-orchestrator");
    let failing = eventually(
        "the orchestrator to name every stream it waits for",
        SETTLE,
        || async move {
            let (status, body) = http_get(addr, "/readyz").await?;
            let body: serde_json::Value = serde_json::from_str(&body).ok()?;
            let failing = body["failing"].as_object()?.clone();
            let all = ["SAGA", "ORDERS", "INVENTORY", "PAYMENTS", "DLQ"]
                .iter()
                .all(|s| {
                    failing
                        .get(&format!("stream {s}"))
                        .and_then(|why| why.as_str())
                        .is_some_and(|why| why.contains("sagactl provision"))
                });
            (status == 503 && all).then_some(failing)
        },
    )
    .await;
    assert!(!failing.contains_key("nats"), "{failing:?}");
    let (_, metrics) = http_get(addr, "/metrics").await.unwrap();
    assert!(
        metrics.contains("jetsaga_stream_present{stream=\"SAGA\"} 0"),
        "{metrics}"
    );
    let admin = async_nats::jetstream::new(suite.connect_as(Identity::Admin).await.nats().clone());
    assert!(
        admin.get_stream("SAGA").await.is_err(),
        "a service never creates a stream"
    );

    suite.provision().await;
    suite.wait_ready().await;
    for service in ["order-service", "inventory-service", "payment-service"] {
        suite.start_service(service).await;
    }
    an_order_goes_through(&suite, "o-after-provisioning").await;
    suite.stop().await;
}

#[tokio::test]
async fn a_deleted_stream_is_an_outage_until_it_is_provisioned_again() {
    let suite = Suite::start().await;
    let admin = async_nats::jetstream::new(suite.connect_as(Identity::Admin).await.nats().clone());
    admin.delete_stream("INVENTORY").await.unwrap();
    for service in ["inventory-service", "saga-orchestrator"] {
        let addr = suite.http_of(service);
        eventually(
            &format!("{service} to report the INVENTORY stream missing"),
            SETTLE,
            || async move {
                let (status, body) = http_get(addr, "/readyz").await?;
                let (_, metrics) = http_get(addr, "/metrics").await?;
                (status == 503
                    && body.contains("stream INVENTORY")
                    && metrics.contains("jetsaga_stream_present{stream=\"INVENTORY\"} 0"))
                .then_some(())
            },
        )
        .await;
    }
    // Both have seen it missing, and neither brought it back empty.
    assert!(admin.get_stream("INVENTORY").await.is_err());

    suite.provision().await;
    suite.wait_ready().await;
    an_order_goes_through(&suite, "o-after-delete").await;
    suite.stop().await;
}

/// Stocks one sku and funds one customer, places an order, and checks that
/// it is confirmed.
async fn an_order_goes_through(suite: &Suite, order_id: &str) {
    suite.seed(&[("sku-1", 1, 100)], &[("c-1", 10_000)]).await;
    suite
        .client
        .place(order_id, "c-1", &[("sku-1", 1)])
        .await
        .unwrap();
    assert_eq!(suite.settled(order_id).await.status, OrderStatus::Confirmed);
}
