//! `/healthz`, `/readyz` and `/metrics` tell the truth.

use async_nats::HeaderMap;
use e2e::testkit::{eventually, http_get};
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
async fn readiness_names_the_streams_a_service_waits_for() {
    // The orchestrator alone: the streams it reads are not there until
    // their owners start, and /readyz says which consumers wait for them.
    let mut suite = Suite::start_only(&[], &[]).await;
    suite.launch("saga-orchestrator", &[]);
    let addr = suite.http_of("saga-orchestrator");
    let failing = eventually(
        "the orchestrator to report its unbound consumers",
        SETTLE,
        || async move {
            let (status, body) = http_get(addr, "/readyz").await?;
            let body: serde_json::Value = serde_json::from_str(&body).ok()?;
            let failing = body["failing"].as_object()?.clone();
            // Every stream it reads is named, not just the first.
            let named = |stream: &str| {
                failing.iter().any(|(check, why)| {
                    check.starts_with("consumer ") && why.to_string().contains(stream)
                })
            };
            (status == 503 && named("ORDERS") && named("INVENTORY") && named("PAYMENTS"))
                .then_some(failing)
        },
    )
    .await;
    assert!(
        !failing.contains_key("nats") && !failing.contains_key("stream SAGA"),
        "only what is missing fails: {failing:?}"
    );

    for service in ["order-service", "inventory-service", "payment-service"] {
        suite.start_service(service).await;
    }
    suite.wait_ready().await;
    suite.stop().await;
}

#[tokio::test]
async fn a_deleted_stream_is_provisioned_again_and_work_resumes() {
    let suite = Suite::start().await;
    let js = async_nats::jetstream::new(suite.client.nats().clone());
    js.delete_stream("INVENTORY").await.unwrap();
    eventually(
        "the inventory service to re-create its stream",
        SETTLE,
        || {
            let js = js.clone();
            async move { js.get_stream("INVENTORY").await.ok().map(|_| ()) }
        },
    )
    .await;
    // The consumers on it (the inventory service's and the orchestrator's)
    // bind again, and an order goes through.
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
