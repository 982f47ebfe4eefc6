//! Aggregates written by two replicas against a real nats-server: each
//! replica's guesses from memory are checked by the store, and an aggregate
//! the other replica keeps changing is read before each change.

use async_nats::jetstream::stream::Config as StreamConfig;
use runtime::aggregate::{guard, Aggregates};
use runtime::{Append, Store, StoreError};
use testkit::NatsServer;

const COUNTER: &str = "t.counter";

/// One replica: its own connection, store and memory of the stream `T`.
async fn replica(nats: &NatsServer) -> Aggregates<u64> {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let store = Store::new(js, "T").await.unwrap();
    Aggregates::new(store, 100)
}

/// Adds one to the counter as `replica` knows it: the new value, or the
/// store's refusal.
async fn bump(replica: &Aggregates<u64>) -> Result<u64, StoreError> {
    let turn = replica.hold([COUNTER]).await;
    let known = replica.read(COUNTER).await?;
    let next = known.as_ref().map_or(0, |k| k.value) + 1;
    let append = guard(
        Append::json(COUNTER, &next),
        known.as_ref().map(|k| &k.version),
    );
    replica
        .write(turn, vec![(COUNTER.to_owned(), next)], vec![append])
        .await?;
    Ok(next)
}

#[tokio::test]
async fn a_replica_reads_an_aggregate_the_other_keeps_changing_instead_of_guessing() {
    let nats = NatsServer::start_open();
    let client = async_nats::connect(nats.url()).await.unwrap();
    async_nats::jetstream::new(client)
        .create_stream(StreamConfig {
            name: "T".into(),
            subjects: vec!["t.>".into()],
            allow_atomic_publish: true,
            allow_direct: true,
            allow_rollup: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let (a, b) = (replica(&nats).await, replica(&nats).await);

    assert_eq!(bump(&a).await.unwrap(), 1);
    assert_eq!(bump(&b).await.unwrap(), 2, "b reads what it does not know");
    assert!(
        matches!(bump(&a).await, Err(StoreError::Conflict(_))),
        "a guessed from memory, and the store said no"
    );
    assert_eq!(bump(&a).await.unwrap(), 3, "a read the store after losing");
    assert!(
        matches!(bump(&b).await, Err(StoreError::Conflict(_))),
        "b guessed from memory too"
    );
    assert_eq!(bump(&b).await.unwrap(), 4);
    // Both lost a race on the counter: neither guesses any more.
    assert_eq!(
        bump(&a).await.unwrap(),
        5,
        "a read the store, not its memory"
    );
    assert_eq!(bump(&b).await.unwrap(), 6, "so did b");
    assert_eq!(bump(&a).await.unwrap(), 7);
}
