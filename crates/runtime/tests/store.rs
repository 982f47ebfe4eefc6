//! The store's group commit against a real nats-server: concurrent changes
//! stored together keep their own sequences and their own checks.

use async_nats::jetstream::stream::Config as StreamConfig;
use bytes::Bytes;
use futures::future::join_all;
use runtime::metrics::Metrics;
use runtime::store::Queued;
use runtime::{Append, Store, StoreError};
use testkit::{metrics, NatsServer};

/// The test stream `T` and a store of it that counts its batches in
/// `metrics`.
async fn store(nats: &NatsServer) -> (async_nats::jetstream::Context, Store, Metrics) {
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
    let metrics = Metrics::new();
    let store = Store::with_metrics(js.clone(), "T", &metrics)
        .await
        .unwrap();
    (js, store, metrics)
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
    let nats = NatsServer::start_open();
    let (js, store, metrics) = store(&nats).await;
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
    assert_eq!(stored_messages(&js).await, 600);
    let batches = Batches::of(&metrics);
    assert!(
        batches.grouped > 0 && batches.count < 300,
        "changes were stored together: {batches:?}"
    );
    assert_eq!(batches.messages, 600, "each message in one batch");
}

#[tokio::test]
async fn a_stale_change_is_refused_alone_and_the_rest_of_its_group_is_stored_together() {
    let nats = NatsServer::start_open();
    let (js, store, metrics) = store(&nats).await;
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
    let stored = stored_messages(&js).await;
    assert_eq!(
        stored, 198,
        "99 changes of 2 messages, nothing of the stale one"
    );
    // The stale change was grouped with others: that batch was refused,
    // the store read back told the stale change from the others, and the
    // others were stored together again, not one batch each.
    let batches = Batches::of(&metrics);
    assert!(batches.grouped > 0, "a group formed: {batches:?}");
    assert_eq!(
        batches.refused, 1,
        "only the first batch was refused: {batches:?}"
    );
    assert!(
        batches.stored < 99,
        "the rest of the group was stored together: {batches:?}"
    );
}

/// A change of the counter on `t.state.hot` to `value`, announced on its
/// own event subject.
fn count(value: usize) -> Vec<Append> {
    vec![
        Append::raw("t.state.hot", Bytes::from(value.to_string())),
        Append::raw(format!("t.event.{value}"), Bytes::from("counted")).expect_last(0),
    ]
}

/// [`count`], stored only right after the hot state's sequence `seq`.
fn count_on(value: usize, seq: u64) -> Vec<Append> {
    let mut appends = count(value);
    appends[0] = appends[0].clone().expect_last(seq);
    appends
}

/// [`count`], stored only right after `queued`, a change of the hot state.
fn count_after(value: usize, queued: &Queued) -> Vec<Append> {
    let mut appends = count(value);
    appends[0] = appends[0].clone().expect_after(queued);
    appends
}

/// How many messages the test stream holds.
async fn stored_messages(js: &async_nats::jetstream::Context) -> u64 {
    let mut stream = js.get_stream("T").await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// The value stored last on `t.state.hot`.
async fn hot_value(js: &async_nats::jetstream::Context) -> String {
    let stream = js.get_stream("T").await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject("t.state.hot")
        .await
        .unwrap();
    String::from_utf8(last.payload.to_vec()).unwrap()
}

#[tokio::test]
async fn changes_built_on_queued_ones_are_stored_in_order_without_waiting() {
    let nats = NatsServer::start_open();
    let (js, store, metrics) = store(&nats).await;
    // Fifty writers of one aggregate, each deciding on the one before it
    // while that one is still queued: nothing waits for a write.
    let mut queued = Vec::new();
    let first = store
        .queue(
            count(0)
                .into_iter()
                .enumerate()
                .map(|(i, a)| if i == 0 { a.expect_last(0) } else { a })
                .collect(),
        )
        .await
        .unwrap();
    let mut previous = first.messages[0].clone();
    queued.push(first);
    for value in 1..50 {
        let mut appends = count(value);
        appends[0] = appends[0].clone().expect_after(&previous);
        let change = store.queue(appends).await.unwrap();
        previous = change.messages[0].clone();
        queued.push(change);
    }
    let mut last_state = 0;
    for (value, change) in queued.into_iter().enumerate() {
        let seqs = change
            .stored()
            .await
            .unwrap_or_else(|e| panic!("change {value}: {e}"));
        assert!(
            seqs[0] > last_state,
            "change {value} is stored after the one it built on"
        );
        last_state = seqs[0];
    }
    assert_eq!(hot_value(&js).await, "49");
    let batches = Batches::of(&metrics);
    assert!(
        batches.grouped > 0 && batches.count < 50,
        "the chain was stored in groups, not a batch each: {batches:?}"
    );
    // And one built on a write already stored is checked against its
    // sequence like any other.
    let mut appends = count(50);
    appends[0] = appends[0].clone().expect_after(&previous);
    store.commit(appends).await.unwrap();
    assert_eq!(hot_value(&js).await, "50");
}

#[tokio::test]
async fn a_change_built_on_a_refused_one_is_refused_too_and_others_are_stored() {
    let nats = NatsServer::start_open();
    let (js, store, _) = store(&nats).await;
    store.commit(count(0)).await.unwrap();
    // A stale change (it expects the hot state empty), one built on it,
    // one built on that, and an unrelated change, queued back to back:
    // in one group or several, only the unrelated one is stored.
    let mut stale = count(1);
    stale[0] = stale[0].clone().expect_last(0);
    let stale = store.queue(stale).await.unwrap();
    let mut second = count(2);
    second[0] = second[0].clone().expect_after(&stale.messages[0]);
    let second = store.queue(second).await.unwrap();
    let mut third = count(3);
    third[0] = third[0].clone().expect_after(&second.messages[0]);
    let third = store.queue(third).await.unwrap();
    let unrelated = store.queue(change(9, 0)).await.unwrap();

    for (name, change) in [("stale", stale), ("second", second), ("third", third)] {
        match change.stored().await {
            Err(StoreError::Conflict(_)) => {}
            other => panic!("the {name} change was not refused: {other:?}"),
        }
    }
    assert_eq!(unrelated.stored().await.unwrap().len(), 2);
    assert_eq!(
        hot_value(&js).await,
        "0",
        "nothing built on the stale change was stored"
    );
    assert_eq!(stored_messages(&js).await, 4);
}

#[tokio::test]
async fn a_loser_of_a_refused_group_hears_of_it_only_once_what_it_built_on_is_stored() {
    let nats = NatsServer::start_open();
    let (js, store, metrics) = store(&nats).await;
    let start = store.commit(count(0)).await.unwrap()[0];
    // Three changes queued back to back form one group: an unrelated one,
    // a good change of the hot state, and one built on it that also holds
    // a stale check. The group is refused; the other two are stored
    // again. Had the loser been told at once, its writer would read the
    // hot state while the change it built on was still in flight, and
    // decide on a state already gone.
    let unrelated = store.queue(change(5, 0)).await.unwrap();
    let good = store.queue(count_on(1, start)).await.unwrap();
    let mut loser = count_after(2, &good.messages[0]);
    loser.push(Append::raw("t.state.x", Bytes::from("x")).expect_last(999));
    let loser = store.queue(loser).await.unwrap();
    let built_on = good.messages[0].clone();

    match loser.stored().await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("the stale change was not refused: {other:?}"),
    }
    assert!(
        matches!(built_on.outcome(), Some(Some(_))),
        "the loser heard of its refusal while the change it built on was in flight"
    );
    unrelated.stored().await.unwrap();
    good.stored().await.unwrap();
    assert_eq!(hot_value(&js).await, "1");
    // The three were refused together (7 messages), then the other two
    // stored together again.
    let batches = Batches::of(&metrics);
    assert_eq!(batches.refused, 1, "{batches:?}");
    assert_eq!(batches.messages, 2 + 7 + 4, "{batches:?}");
}

#[tokio::test]
async fn a_change_refused_before_its_group_is_sent_hears_of_it_once_the_group_is_stored() {
    let nats = NatsServer::start_open();
    let (_js, store, _) = store(&nats).await;
    let start = store.commit(count(0)).await.unwrap()[0];
    // A change of `t.state.x` that is refused: whatever builds on it is
    // refused when its group is planned, before anything is sent.
    let failed = store
        .queue(vec![
            Append::raw("t.state.x", Bytes::from("x")).expect_last(999),
            Append::raw("t.event.x", Bytes::from("x")).expect_last(0),
        ])
        .await
        .unwrap();
    assert!(failed.messages[0].clone().settled().await.is_none());
    // Then, back to back: a good change of the hot state, and one built
    // on both it and the refused change.
    let good = store.queue(count_on(1, start)).await.unwrap();
    let mut doomed = count_after(2, &good.messages[0]);
    doomed.push(Append::raw("t.state.x", Bytes::from("y")).expect_after(&failed.messages[0]));
    let doomed = store.queue(doomed).await.unwrap();
    let built_on = good.messages[0].clone();

    match doomed.stored().await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("the change built on a refused one was stored: {other:?}"),
    }
    assert!(
        matches!(built_on.outcome(), Some(Some(_))),
        "refused while the change it built on was in flight"
    );
    good.stored().await.unwrap();
}

#[tokio::test]
async fn two_changes_checking_the_same_wildcard_never_both_pass() {
    let nats = NatsServer::start_open();
    let (js, store, _) = store(&nats).await;
    // Two answers for one order, each expecting the order to have none
    // yet: a batch is checked against the stream before it, so were they
    // to share one, both would be stored.
    let answer = |state: usize| {
        vec![
            Append::raw(format!("t.state.{state}"), Bytes::from("held")).expect_last(0),
            Append::raw("t.event.o-1.reserved", Bytes::from(state.to_string()))
                .expect_last_on("t.event.o-1.*", 0),
        ]
    };
    let mut queued = Vec::new();
    for state in 0..20 {
        queued.push(store.queue(answer(state)).await.unwrap());
    }
    let mut stored = 0;
    for change in queued {
        match change.stored().await {
            Ok(_) => stored += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(stored, 1, "one answer per order");
    assert_eq!(stored_messages(&js).await, 2);
}

/// The label of the test stream's series.
const STREAM: (&str, &str) = ("stream", "T");

/// The value of the series `name` with every one of `labels`, in the
/// exposition `text`; panics, showing it, if there is none.
fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics::value(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

/// How a store's atomic batches went, from its metrics.
#[derive(Debug)]
struct Batches {
    count: u64,
    messages: u64,
    /// Batches of more than 2 messages: of more than one change, in tests
    /// whose changes are 2 messages each.
    grouped: u64,
    stored: u64,
    refused: u64,
}

impl Batches {
    fn of(metrics: &Metrics) -> Self {
        let text = metrics.render();
        let value = |name| series(&text, name, &[STREAM]);
        // An outcome not seen yet has no series.
        let outcome = |o| {
            metrics::value(
                &text,
                "jetsaga_store_batches_total",
                &[STREAM, ("outcome", o)],
            )
            .unwrap_or(0.0)
        };
        let count = value("jetsaga_store_batch_messages_count");
        let small = series(
            &text,
            "jetsaga_store_batch_messages_bucket",
            &[STREAM, ("le", "2")],
        );
        Self {
            count: count as u64,
            messages: value("jetsaga_store_batch_messages_sum") as u64,
            grouped: (count - small) as u64,
            stored: outcome("stored") as u64,
            refused: outcome("refused") as u64,
        }
    }
}

#[tokio::test]
async fn every_atomic_batch_is_counted_with_its_size_and_outcome() {
    let nats = NatsServer::start_open();
    let (js, store, metrics) = store(&nats).await;
    // One at a time, so each change is a batch of its own.
    store.commit(change(1, 0)).await.unwrap();
    store.commit(change(2, 0)).await.unwrap();
    let stale = store.commit(change(3, 999)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    // A single message is a plain publish, not a batch.
    store
        .commit(vec![Append::raw("t.single", Bytes::from("one"))])
        .await
        .unwrap();

    let text = metrics.render();
    let value = |name, labels: &[(&str, &str)]| series(&text, name, labels);
    assert_eq!(value("jetsaga_store_batch_messages_count", &[STREAM]), 3.0);
    assert_eq!(value("jetsaga_store_batch_messages_sum", &[STREAM]), 6.0);
    assert_eq!(
        value("jetsaga_store_batch_duration_seconds_count", &[STREAM]),
        3.0
    );
    assert!(value("jetsaga_store_batch_duration_seconds_sum", &[STREAM]) > 0.0);
    let outcome = |o| value("jetsaga_store_batches_total", &[STREAM, ("outcome", o)]);
    assert_eq!(outcome("stored"), 2.0);
    assert_eq!(outcome("refused"), 1.0);
    assert_eq!(stored_messages(&js).await, 5);
}
