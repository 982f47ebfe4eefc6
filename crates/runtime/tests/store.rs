//! The store's group commit against a real nats-server: concurrent changes
//! stored together keep their own sequences and their own checks.

use async_nats::jetstream::stream::Config as StreamConfig;
use bytes::Bytes;
use futures::future::join_all;
use runtime::{Append, Store, StoreError};
use testkit::NatsServer;

async fn store(nats: &NatsServer) -> (async_nats::jetstream::Context, Store) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(StreamConfig {
        name: "T".into(),
        subjects: vec!["t.>".into()],
        allow_atomic_publish: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let store = Store::new(js.clone(), "T").await.unwrap();
    (js, store)
}

/// A change like a reservation: a state and the event announcing it.
fn change(i: usize, state_seq: u64) -> Vec<Append> {
    vec![
        Append::raw(format!("t.state.{i}"), Bytes::from(format!("state {i}")))
            .expect_last(state_seq),
        Append::raw(format!("t.event.{i}"), Bytes::from(format!("event {i}"))).expect_last(0),
    ]
}

#[tokio::test]
async fn concurrent_changes_each_get_their_own_sequences() {
    let nats = NatsServer::start();
    let (js, store) = store(&nats).await;
    let outcomes = join_all((0..300).map(|i| {
        let store = store.clone();
        async move { (i, store.commit(change(i, 0)).await.unwrap()) }
    }))
    .await;
    let mut all_seqs = Vec::new();
    let stream = js.get_stream("T").await.unwrap();
    for (i, seqs) in outcomes {
        assert_eq!(seqs.len(), 2);
        assert_eq!(seqs[1], seqs[0] + 1, "a change is stored contiguously");
        // The sequences returned are where this change's messages are.
        let state = stream.get_raw_message(seqs[0]).await.unwrap();
        let event = stream.get_raw_message(seqs[1]).await.unwrap();
        assert_eq!(state.subject.as_str(), format!("t.state.{i}"));
        assert_eq!(event.payload, Bytes::from(format!("event {i}")));
        all_seqs.extend(seqs);
    }
    all_seqs.sort_unstable();
    all_seqs.dedup();
    assert_eq!(all_seqs.len(), 600, "no sequence handed out twice");
    let mut stream = js.get_stream("T").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 600);
}

#[tokio::test]
async fn a_stale_change_is_refused_alone_and_the_rest_of_its_group_is_stored() {
    let nats = NatsServer::start();
    let (js, store) = store(&nats).await;
    // Every change expects its state subject to be empty but change 7,
    // which expects a sequence that never was: it must fail, alone, even
    // when it is grouped with the others.
    let outcomes = join_all((0..100).map(|i| {
        let store = store.clone();
        async move {
            let seq = if i == 7 { 999 } else { 0 };
            (i, store.commit(change(i, seq)).await)
        }
    }))
    .await;
    for (i, outcome) in outcomes {
        match (i, outcome) {
            (7, Err(StoreError::Conflict(_))) => {}
            (7, other) => panic!("the stale change was not refused: {other:?}"),
            (_, Ok(seqs)) => assert_eq!(seqs.len(), 2),
            (i, Err(e)) => panic!("change {i} failed with its group: {e}"),
        }
    }
    let mut stream = js.get_stream("T").await.unwrap();
    let stored = stream.info().await.unwrap().state.messages;
    assert_eq!(
        stored, 198,
        "99 changes of 2 messages, nothing of the stale one"
    );
}
