//! The four queries, their error answers, and their registration as NATS
//! micro services.

use std::collections::BTreeSet;

use e2e::{Suite, SETTLE};
use events::saga::SagaState;
use events::OrderStatus;
use futures::StreamExt;
use jetsaga_client::service_error_code;

#[tokio::test]
async fn every_query_answers_for_a_known_id() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 5, 250)], &[("c-1", 10_000)]).await;
    suite
        .client
        .place("o-1", "c-1", &[("sku-1", 2)])
        .await
        .unwrap();
    suite.settled("o-1").await;

    let order: serde_json::Value = raw(&suite, "orders.query.get", r#"{"order_id":"o-1"}"#).await;
    assert_eq!(order["order_id"], "o-1");
    assert_eq!(order["customer_id"], "c-1");
    assert_eq!(order["status"], "CONFIRMED");
    assert_eq!(order["total_cents"], 500);
    assert_eq!(order["items"][0]["sku"], "sku-1");
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["items"][0]["unit_price_cents"], 250);

    let stock: serde_json::Value = raw(&suite, "inventory.query.stock", r#"{"sku":"sku-1"}"#).await;
    assert_eq!(
        stock,
        serde_json::json!({"sku": "sku-1", "available": 3, "reserved": 0, "unit_price_cents": 250})
    );

    let account: serde_json::Value =
        raw(&suite, "payments.query.account", r#"{"customer_id":"c-1"}"#).await;
    assert_eq!(
        account,
        serde_json::json!({"customer_id": "c-1", "balance_cents": 9500})
    );

    let saga = suite.client.saga("o-1").await.unwrap().unwrap();
    assert_eq!(saga.state, SagaState::Confirmed);
    assert!(
        saga.steps.windows(2).all(|w| w[0].at <= w[1].at),
        "history is oldest first"
    );
    assert_eq!(
        suite.client.order("o-1").await.unwrap().unwrap().status,
        OrderStatus::Confirmed
    );
    assert_eq!(suite.balance_of("c-1").await, 9500);
    suite.stop().await;
}

#[tokio::test]
async fn an_unknown_id_is_a_404_and_an_unreadable_request_a_400() {
    let suite = Suite::start().await;
    let queries = [
        ("orders.query.get", r#"{"order_id":"nope"}"#),
        ("inventory.query.stock", r#"{"sku":"nope"}"#),
        ("payments.query.account", r#"{"customer_id":"nope"}"#),
        ("saga.query.get", r#"{"order_id":"nope"}"#),
    ];
    for (subject, unknown) in queries {
        let answer = suite.client.request(subject, unknown.into()).await.unwrap();
        assert_eq!(service_error_code(&answer), Some(404), "{subject}");
        let body: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{subject}");
        assert!(body["error"]["message"].as_str().unwrap().contains("nope"));

        for unreadable in [
            "not json",
            "{}",
            r#"{"order_id": "a.b", "sku": "a.b", "customer_id": "a.b"}"#,
        ] {
            let answer = suite
                .client
                .request(subject, unreadable.into())
                .await
                .unwrap();
            assert_eq!(
                service_error_code(&answer),
                Some(400),
                "{subject} {unreadable}"
            );
            let body: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
            assert_eq!(body["error"]["code"], "bad_request");
        }
    }
    suite.stop().await;
}

#[tokio::test]
async fn the_services_register_as_nats_micro_services() {
    let suite = Suite::start().await;
    let nats = suite.client.nats();
    let inbox = nats.new_inbox();
    let mut answers = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply("$SRV.INFO", inbox, "".into())
        .await
        .unwrap();

    let mut found = BTreeSet::new();
    let mut endpoints = BTreeSet::new();
    while found.len() < 4 {
        let answer = tokio::time::timeout(SETTLE, answers.next())
            .await
            .unwrap()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        found.insert(info["name"].as_str().unwrap().to_owned());
        for endpoint in info["endpoints"].as_array().unwrap() {
            endpoints.insert(endpoint["subject"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(found, BTreeSet::from(e2e::SERVICES.map(str::to_owned)));
    assert_eq!(
        endpoints,
        BTreeSet::from(
            [
                "orders.query.get",
                "inventory.query.stock",
                "payments.query.account",
                "saga.query.get",
                "saga.query.list"
            ]
            .map(str::to_owned)
        )
    );
    suite.stop().await;
}

async fn raw(suite: &Suite, subject: &str, body: &'static str) -> serde_json::Value {
    let answer = suite.client.request(subject, body.into()).await.unwrap();
    assert_eq!(service_error_code(&answer), None, "{subject} failed");
    serde_json::from_slice(&answer.payload).unwrap()
}
