//! Dead letters can be listed and re-driven once their cause is fixed, with
//! the client and with `sagactl`.

use std::process::Output;

use async_nats::HeaderMap;
use e2e::testkit::{eventually, Identity};
use e2e::{Suite, SETTLE};
use events::replay::COMMANDS_BY_SERVICE;

#[tokio::test]
async fn a_dead_letter_is_replayed_once_its_cause_is_fixed() {
    let suite = Suite::start().await;
    // A first restock needs a price: this one is dead-lettered.
    suite.client.restock("sku-x", 5, None).await.unwrap();
    let letters = eventually("the dead letter", SETTLE, || async {
        let letters = suite.client.dead_letters("dlq.>").await.ok()?;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].original_subject, "inventory.cmd.restock");
    assert!(
        letters[0].reason.contains("unit_price_cents"),
        "{}",
        letters[0].reason
    );

    // The cause fixed, the letter replayed: applied once, and gone.
    suite.seed(&[("sku-x", 1, 100)], &[]).await;
    suite.client.replay(&letters[0]).await.unwrap();
    eventually("the replayed restock to apply", SETTLE, || async {
        let level = suite.client.stock("sku-x").await.ok()??;
        (level.available == 6).then_some(())
    })
    .await;
    assert!(suite.client.dead_letters("dlq.>").await.unwrap().is_empty());
    suite.stop().await;
}

#[tokio::test]
async fn a_dead_letter_no_service_wrote_is_never_replayed() {
    let suite = Suite::start().await;
    suite.seed(&[("sku-1", 5, 100)], &[]).await;
    let mut known: Vec<&str> = COMMANDS_BY_SERVICE.iter().map(|(s, _)| *s).collect();
    let mut services = e2e::SERVICES.to_vec();
    known.sort_unstable();
    services.sort_unstable();
    assert_eq!(known, services, "the replay check knows every service");

    // A letter under no service's name: nobody may publish there.
    let mut headers = HeaderMap::new();
    headers.insert("Dlq-Original-Subject", "inventory.cmd.restock");
    assert!(
        suite
            .client
            .command(
                "dlq.mallory.inventory.cmd.restock",
                headers,
                r#"{"sku":"sku-1","quantity":1000}"#.into(),
            )
            .await
            .is_err(),
        "the server refuses a dead letter under no service's name"
    );

    // Letters a service could write under its own name (a bug in it, or its
    // credentials stolen) that are still not its to replay: about another
    // subject than the one they name, and a command it does not consume.
    let order_service = suite.connect_as(Identity::OrderService).await;
    let forged = [
        ("dlq.order-service.orders.cmd.place", "does not match"),
        ("dlq.order-service.inventory.cmd.restock", "not a command"),
    ];
    for (subject, _) in forged {
        let mut headers = HeaderMap::new();
        headers.insert("Dlq-Original-Subject", "inventory.cmd.restock");
        headers.insert("Dlq-Reason", "needs a replay");
        order_service
            .command(
                subject,
                headers,
                r#"{"sku":"sku-1","quantity":1000}"#.into(),
            )
            .await
            .unwrap();
    }
    let letters = eventually("the planted letters", SETTLE, || async {
        let letters = suite.client.dead_letters("dlq.>").await.ok()?;
        (letters.len() == forged.len()).then_some(letters)
    })
    .await;
    for (letter, (subject, why)) in letters.iter().zip(forged) {
        assert_eq!(letter.subject, subject);
        let refused = suite
            .client
            .replay(letter)
            .await
            .expect_err("a planted letter is refused");
        let refused = refused.to_string();
        assert!(
            refused.contains(&format!("#{} not replayed", letter.seq)) && refused.contains(why),
            "{refused}"
        );
    }
    // Nothing was published, and the letters stay for an operator to see.
    assert_eq!(suite.stock_of("sku-1").await, (5, 0));
    assert_eq!(suite.client.dead_letters("dlq.>").await.unwrap().len(), 2);
    suite.stop().await;
}

#[tokio::test]
async fn sagactl_lists_and_replays_dead_letters_with_reliable_exit_codes() {
    let suite = Suite::start().await;
    suite.client.deposit("c-1", 0).await.unwrap();
    let listed = eventually("sagactl to list the dead letter", SETTLE, || async {
        let output = suite
            .sagactl(&["dlq", "list", "--service", "payment-service"])
            .await;
        let letters: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        (letters.as_array()?.len() == 1).then_some(letters)
    })
    .await;
    assert_eq!(listed[0]["original_subject"], "payments.cmd.deposit");
    let seq = listed[0]["seq"].as_u64().unwrap().to_string();

    let shown = suite.sagactl(&["dlq", "show", &seq]).await;
    assert_eq!(shown.status.code(), Some(0));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let body: serde_json::Value = serde_json::from_str(shown["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"customer_id": "c-1", "amount_cents": 0}),
        "the body, unchanged"
    );

    let missing: Output = suite.sagactl(&["dlq", "show", "999999"]).await;
    assert_eq!(
        missing.status.code(),
        Some(3),
        "not found: {}",
        String::from_utf8_lossy(&missing.stdout)
    );
    let missing = suite.sagactl(&["get", "no-such-order"]).await;
    assert_eq!(
        missing.status.code(),
        Some(3),
        "not found: {}",
        String::from_utf8_lossy(&missing.stdout)
    );
    assert_eq!(
        suite.sagactl(&["dlq", "replay"]).await.status.code(),
        Some(2),
        "usage"
    );

    // Replayed as it is, it fails again: dead-lettered anew, not lost.
    assert_eq!(
        suite
            .sagactl(&["dlq", "replay", "--all"])
            .await
            .status
            .code(),
        Some(0)
    );
    eventually(
        "the replayed deposit to be dead-lettered again",
        SETTLE,
        || async {
            let letters = suite
                .client
                .dead_letters("dlq.payment-service.>")
                .await
                .ok()?;
            (letters.len() == 1 && letters[0].seq.to_string() != seq).then_some(())
        },
    )
    .await;
    suite.stop().await;
}
