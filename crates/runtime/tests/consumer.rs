//! The consumer loop against a real nats-server: what each handler outcome
//! does to the message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use runtime::consumer::{self, ConsumerContext};
use runtime::http::Readiness;
use runtime::metrics::Metrics;
use runtime::{ConsumerSpec, HandleError, Handler};
use testkit::{eventually, NatsServer};
use tokio_util::sync::CancellationToken;

/// Fails every message whose body is "flaky" (transiently), rejects "poison",
/// and accepts the rest; counts what it saw.
#[derive(Default)]
struct Picky {
    seen: AtomicUsize,
    accepted: AtomicUsize,
}

impl Handler for Picky {
    async fn handle(&self, message: &Message) -> Result<(), HandleError> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        match &message.payload[..] {
            b"flaky" => Err(HandleError::Retry("the dependency is down".to_owned())),
            b"poison" => Err(HandleError::Reject("cannot be used".to_owned())),
            _ => {
                self.accepted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

async fn setup(nats: &NatsServer) -> (jetstream::Context, ConsumerContext) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_or_update_stream(async_nats::jetstream::stream::Config {
        name: "WORK".into(),
        subjects: vec!["work.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let dead_letters = runtime::streams::config(
        events::subjects::streams::DLQ,
        runtime::streams::Layout::replicas(1),
    )
    .unwrap();
    js.create_or_update_stream(dead_letters).await.unwrap();
    let metrics = Metrics::new();
    let ctx = ConsumerContext {
        js: js.clone(),
        service: "test-service",
        clock: std::sync::Arc::new(runtime::clock::ServerClock::new(metrics.registry())),
        metrics,
        readiness: Readiness::default(),
    };
    (js, ctx)
}

fn spec() -> ConsumerSpec {
    ConsumerSpec {
        max_deliver: 3,
        retry_base: Duration::from_millis(10),
        retry_cap: Duration::from_millis(50),
        ..ConsumerSpec::new("WORK", "worker", vec!["work.>".to_owned()])
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_then_dead_lettered_with_its_reason() {
    let nats = NatsServer::start_open();
    let (js, ctx) = setup(&nats).await;
    for body in ["flaky", "poison", "fine"] {
        js.publish("work.item", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let handler = Arc::new(Picky::default());
    let shutdown = CancellationToken::new();
    let metrics = ctx.metrics.clone();
    let loop_task = tokio::spawn(consumer::run(
        ctx,
        spec(),
        handler.clone(),
        shutdown.clone(),
    ));

    let dlq = js.get_stream("DLQ").await.unwrap();
    let letters = eventually("two dead letters", Duration::from_secs(10), || {
        let dlq = dlq.clone();
        async move {
            let mut found = Vec::new();
            let mut next = 1;
            while let Ok(m) = dlq
                .direct_get_next_for_subject("dlq.test-service.work.item", Some(next))
                .await
            {
                next = m.sequence + 1;
                found.push(m);
            }
            (found.len() == 2).then_some(found)
        }
    })
    .await;
    let by_body = |body: &str| {
        letters
            .iter()
            .find(|m| &m.payload[..] == body.as_bytes())
            .unwrap()
    };
    let flaky = by_body("flaky");
    assert_eq!(flaky.headers.get("Dlq-Deliveries").unwrap().as_str(), "3");
    let reason = flaky.headers.get("Dlq-Reason").unwrap().as_str();
    assert!(
        reason.contains("gave up after 3 deliveries") && reason.contains("the dependency is down"),
        "{reason}"
    );
    assert_eq!(
        flaky.headers.get("Dlq-Original-Subject").unwrap().as_str(),
        "work.item"
    );
    let poison = by_body("poison");
    assert_eq!(
        poison.headers.get("Dlq-Deliveries").unwrap().as_str(),
        "1",
        "rejected at once"
    );

    // flaky three times, poison once, fine once; nothing comes back after.
    eventually("every delivery", Duration::from_secs(10), || async {
        (handler.seen.load(Ordering::SeqCst) == 5).then_some(())
    })
    .await;
    assert_eq!(handler.accepted.load(Ordering::SeqCst), 1);
    let text = metrics.render();
    for line in [
        "jetsaga_messages_handled_total{consumer=\"worker\",outcome=\"retry\"} 2",
        "jetsaga_messages_handled_total{consumer=\"worker\",outcome=\"dead_letter\"} 2",
        "jetsaga_messages_handled_total{consumer=\"worker\",outcome=\"ok\"} 1",
        "jetsaga_dead_letters_total{consumer=\"worker\"} 2",
    ] {
        assert!(text.contains(line), "metrics lack {line}");
    }

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), loop_task)
        .await
        .unwrap()
        .unwrap();
    let mut consumer = js
        .get_stream("WORK")
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>("worker")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (0, 0),
        "nothing left behind"
    );
}

/// Handles messages slowly, so that shutdown finds work in flight.
struct Slow {
    done: AtomicUsize,
}

impl Handler for Slow {
    async fn handle(&self, _: &Message) -> Result<(), HandleError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_finishes_in_flight_work_and_releases_the_rest() {
    let nats = NatsServer::start_open();
    let (js, ctx) = setup(&nats).await;
    for i in 0..20 {
        js.publish("work.item", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let handler = Arc::new(Slow {
        done: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let spec = ConsumerSpec {
        concurrency: 4,
        ack_wait: Duration::from_secs(1),
        ..spec()
    };
    let loop_task = tokio::spawn(consumer::run(ctx, spec, handler.clone(), shutdown.clone()));
    eventually("work to start", Duration::from_secs(10), || async {
        (handler.done.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), loop_task)
        .await
        .unwrap()
        .unwrap();
    let done = handler.done.load(Ordering::SeqCst);
    assert!(done < 20, "shutdown stopped the intake ({done} done)");

    // What was started was finished and acked; the rest is still there for
    // the next worker (at once, or after the ack wait if it was in transit),
    // nothing is lost.
    let consumer = js
        .get_stream("WORK")
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>("worker")
        .await
        .unwrap();
    let mut remaining = 0;
    let mut rest = consumer
        .batch()
        .max_messages(20)
        .expires(Duration::from_secs(4))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(message)) = rest.next().await {
        message.ack().await.unwrap();
        remaining += 1;
        if done + remaining == 20 {
            break;
        }
    }
    assert_eq!(
        done + remaining,
        20,
        "nothing lost: {done} handled before shutdown, {remaining} after"
    );
}

/// Takes two and a half ack waits over each message.
#[derive(Default)]
struct Lengthy {
    started: AtomicUsize,
    finished: AtomicUsize,
}

const SHORT_ACK_WAIT: Duration = Duration::from_millis(600);

impl Handler for Lengthy {
    async fn handle(&self, _: &Message) -> Result<(), HandleError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        // The work itself: longer than the ack wait.
        tokio::time::sleep(SHORT_ACK_WAIT * 5 / 2).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn work_longer_than_the_ack_wait_is_delivered_once() {
    let nats = NatsServer::start_open();
    let (js, ctx) = setup(&nats).await;
    js.publish("work.item", "slow".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let handler = Arc::new(Lengthy::default());
    let shutdown = CancellationToken::new();
    let spec = ConsumerSpec {
        ack_wait: SHORT_ACK_WAIT,
        ..spec()
    };
    let loop_task = tokio::spawn(consumer::run(ctx, spec, handler.clone(), shutdown.clone()));
    eventually("the work to finish", Duration::from_secs(10), || async {
        (handler.finished.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;

    let consumer = js
        .get_stream("WORK")
        .await
        .unwrap()
        .get_consumer::<jetstream::consumer::pull::Config>("worker")
        .await
        .unwrap();
    let info = eventually("the ack", Duration::from_secs(10), || async {
        let info = consumer.get_info().await.ok()?;
        (info.num_ack_pending == 0).then_some(info)
    })
    .await;
    assert_eq!(
        info.delivered.consumer_sequence, 1,
        "delivered once: never again while in progress"
    );
    assert_eq!(handler.started.load(Ordering::SeqCst), 1, "handled once");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), loop_task)
        .await
        .unwrap()
        .unwrap();
}
