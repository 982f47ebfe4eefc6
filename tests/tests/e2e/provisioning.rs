//! `sagactl provision --store-bytes`: each stream that takes atomic
//! batches gets its share of the store as a byte limit it refuses new
//! messages past, and the server refuses limits its store cannot hold.

use e2e::testkit::Identity;
use e2e::Suite;
use events::subjects::streams::{ORDERS, SAGA};
use serde_json::Value;

#[tokio::test]
async fn a_store_size_gives_each_batched_stream_its_share_and_too_large_a_one_is_refused() {
    let suite = Suite::start_unprovisioned(&[]).await;
    let url = suite.nats.url();
    let admin = |args: &'static [&'static str]| {
        e2e::sagactl(&url, suite.nats.security(), Identity::Admin, args)
    };
    let provisioned = admin(&["provision", "--store-bytes", "10MB"]).await;
    assert_eq!(provisioned.status.code(), Some(0), "{provisioned:?}");
    let js = async_nats::jetstream::new(suite.connect_as(Identity::Admin).await.nats().clone());
    let config = |stream: &'static str| {
        let js = js.clone();
        async move {
            js.get_stream(stream)
                .await
                .expect("provisioned")
                .info()
                .await
                .expect("its info")
                .config
                .clone()
        }
    };
    let orders = config(ORDERS).await;
    assert_eq!(orders.max_bytes, 600_000, "6% of 10 MB");
    assert_eq!(
        orders.discard,
        async_nats::jetstream::stream::DiscardPolicy::New
    );
    assert_eq!(config(SAGA).await.max_bytes, -1, "the saga stream has none");

    // Another size is drift, named.
    let check = admin(&["provision", "--check", "--store-bytes", "20MB"]).await;
    assert_eq!(check.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    let differences = report["streams"][0]["differences"].to_string();
    assert!(
        differences.contains("max_bytes: 600000 -> 1200000"),
        "{differences}"
    );

    // Limits the server's store cannot hold are refused, and change
    // nothing.
    let refused = admin(&["provision", "--store-bytes", "1PB"]).await;
    assert_ne!(refused.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(said.contains("insufficient storage"), "{said}");
    assert_eq!(config(ORDERS).await.max_bytes, 600_000);
    suite.stop().await;
}
