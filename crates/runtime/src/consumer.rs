//! The consumer loop every service runs its handlers in.
//!
//! One durable pull consumer per job. Work is bounded: a handler runs only
//! while it holds one of `concurrency` permits, and the next message is
//! pulled only when a permit is free, so a slow step slows intake instead of
//! growing memory (backpressure). Each handler result maps to exactly one
//! JetStream action:
//!
//! | result | action |
//! | --- | --- |
//! | `Ok` | ack |
//! | [`HandleError::Retry`] | nak with a growing, jittered delay; dead letter after `max_deliver` deliveries |
//! | [`HandleError::Contended`] | the same, with delays of at most [`CONTENDED_CAP`] |
//! | [`HandleError::Reject`] | copy to `dlq.<service>.<subject>`, then term |
//!
//! A message is acked only after its effects are stored, so a crash at any
//! point means a redelivery, and handlers are idempotent. A consumer of
//! commands ([`ConsumerSpec::remove_handled`]) also removes each one from
//! its stream once it is done with it, handled or dead-lettered: what a
//! command caused is stored elsewhere, so it need not stay. While a handler
//! runs, the loop sends in-progress acknowledgements, so a message is never
//! redelivered because its handling outlasts the ack wait.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{Config as PullConfig, Stream as Messages};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::{AckKind, Message};
use async_nats::jetstream::Context;
use async_nats::{HeaderMap, HeaderName};
use events::commands::{check_msg_id, MsgIdTooLong};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::clock::ServerClock;
use crate::http::Readiness;
use crate::metrics::{Metrics, Outcome};
use crate::retry::Backoff;
use crate::store::StoreError;
use crate::telemetry;

/// Why a handler did not finish a message.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth trying again later (NATS unavailable, a write conflict that
    /// kept recurring, a dependency down).
    #[error("{0}")]
    Retry(String),
    /// Worth trying again after this long (a dependency says when it
    /// expects to be back), whatever the delivery count.
    #[error("{1}")]
    RetryAfter(Duration, String),
    /// A write kept losing to racing ones: worth trying again soon. A race
    /// is over in milliseconds; the long backoff of an outage would only
    /// spend the saga's deadline while its step waits.
    #[error("{0}")]
    Contended(String),
    /// The message can never be handled (unreadable, wrong shape).
    #[error("{0}")]
    Reject(String),
}

impl From<StoreError> for HandleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => Self::Contended(e.to_string()),
            StoreError::Unavailable(_) => Self::Retry(e.to_string()),
            StoreError::Corrupt { .. } => Self::Reject(e.to_string()),
        }
    }
}

/// Handles one message. Must be idempotent: any message may come again.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, message: &Message) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// `Some(d)` while the handler cannot do any work (a dependency is
    /// known to be down): the loop takes no new message for about `d`.
    fn paused(&self) -> Option<Duration> {
        None
    }
}

/// One durable consumer and how hard to work it.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: &'static str,
    /// The durable name, also the `consumer` label of the metrics.
    pub durable: &'static str,
    pub filter_subjects: Vec<String>,
    /// Handlers running at once, and messages pulled ahead.
    pub concurrency: usize,
    /// Deliveries before a message that keeps failing is dead-lettered.
    pub max_deliver: i64,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// The first nak delay; it doubles with each delivery, up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Removes each message from its stream once it is handled or
    /// dead-lettered, before it is acknowledged: for commands, whose
    /// effects are stored elsewhere (a redelivery after the removal cannot
    /// happen, and one before it finds the effects).
    pub remove_handled: bool,
}

impl ConsumerSpec {
    pub fn new(stream: &'static str, durable: &'static str, filters: Vec<String>) -> Self {
        Self {
            stream,
            durable,
            filter_subjects: filters,
            concurrency: 64,
            max_deliver: 10,
            ack_wait: Duration::from_secs(10),
            retry_base: Duration::from_millis(250),
            retry_cap: Duration::from_secs(30),
            remove_handled: false,
        }
    }

    fn pull_config(&self) -> PullConfig {
        PullConfig {
            durable_name: Some(self.durable.to_owned()),
            description: Some(format!("jetsaga: {}", self.durable)),
            filter_subjects: self.filter_subjects.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait,
            // The loop dead-letters by itself at `max_deliver`: the server's
            // limit stays above it so that nothing is dropped silently.
            max_deliver: -1,
            max_ack_pending: i64::try_from(self.concurrency * 4).unwrap_or(i64::MAX),
            ..Default::default()
        }
    }
}

/// What the loop needs of the service around it.
#[derive(Debug, Clone)]
pub struct ConsumerContext {
    pub js: Context,
    /// The binary's name: the `<service>` of `dlq.<service>.<subject>`.
    pub service: &'static str,
    pub metrics: Metrics,
    pub readiness: Readiness,
    /// Read from every message's stored time.
    pub clock: Arc<ServerClock>,
}

/// Binds the consumer and feeds its messages to `handler` until `shutdown`;
/// then stops pulling, releases what it pulled but did not start, and
/// returns once the handlers in flight have finished.
pub async fn run<H: Handler>(
    ctx: ConsumerContext,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let check = format!("consumer {}", spec.durable);
    ctx.readiness.declare(&check);
    ctx.metrics.declare_consumer(spec.durable);
    let permits = Arc::new(Semaphore::new(spec.concurrency));
    let in_flight = TaskTracker::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    'bind: while !shutdown.is_cancelled() {
        let mut messages = match open(&ctx.js, &spec).await {
            Ok(messages) => {
                ctx.readiness.ready(&check);
                backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
                tracing::info!(consumer = spec.durable, "consumer bound");
                messages
            }
            Err(why) => {
                tracing::warn!(consumer = spec.durable, error = %why, "cannot bind consumer, retrying");
                ctx.readiness.failing(&check, why);
                tokio::select! {
                    () = shutdown.cancelled() => break 'bind,
                    () = tokio::time::sleep(backoff.next_delay()) => continue 'bind,
                }
            }
        };
        loop {
            if let Some(pause) = handler.paused() {
                tracing::debug!(
                    consumer = spec.durable,
                    ?pause,
                    "paused: taking no new messages"
                );
                tokio::select! {
                    () = shutdown.cancelled() => {
                        release_prefetched(&mut messages).await;
                        break 'bind;
                    }
                    () = tokio::time::sleep(pause.min(Duration::from_secs(1))) => continue,
                }
            }
            let permit = tokio::select! {
                () = shutdown.cancelled() => {
                    release_prefetched(&mut messages).await;
                    break 'bind;
                }
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            };
            let next = tokio::select! {
                () = shutdown.cancelled() => {
                    release_prefetched(&mut messages).await;
                    break 'bind;
                }
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let (ctx, spec, handler) = (ctx.clone(), spec.clone(), handler.clone());
                    in_flight.spawn(async move {
                        process(&ctx, &spec, handler.as_ref(), message).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(consumer = spec.durable, error = %e, "consumer stream failed, rebinding");
                    ctx.readiness.failing(&check, e.to_string());
                    tokio::select! {
                        () = shutdown.cancelled() => break 'bind,
                        () = tokio::time::sleep(backoff.next_delay()) => continue 'bind,
                    }
                }
                None => continue 'bind,
            }
        }
    }
    in_flight.close();
    in_flight.wait().await;
    tracing::info!(consumer = spec.durable, "consumer stopped");
}

async fn open(js: &Context, spec: &ConsumerSpec) -> Result<Messages, String> {
    let stream = js
        .get_stream_no_info(spec.stream)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(spec.pull_config())
        .await
        .map_err(|e| format!("stream {}: {e}", spec.stream))?;
    consumer
        .stream()
        .max_messages_per_batch(spec.concurrency)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// Naks, without delay and confirmed by the server, the messages already
/// pulled but not started, so another replica takes them now rather than
/// after the ack wait. Waits a moment for those still in transit; any the
/// server hands over later wait out the ack wait instead. A released
/// message can come straight back to this same pull: then the release is
/// over (it must not count deliveries in a loop).
async fn release_prefetched(messages: &mut Messages) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut released = std::collections::HashSet::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, messages.next()).await {
        let seq = stream_sequence(&message);
        let again = !released.insert(seq);
        if let Err(e) = message.double_ack_with(AckKind::Nak(None)).await {
            tracing::debug!(error = %e, "could not release a prefetched message");
        }
        if again {
            break;
        }
    }
}

async fn process<H: Handler>(
    ctx: &ConsumerContext,
    spec: &ConsumerSpec,
    handler: &H,
    message: Message,
) {
    let started = Instant::now();
    let (delivered, stream_seq) = match message.info() {
        Ok(info) => {
            ctx.clock.observe(info.published);
            (info.delivered, info.stream_sequence)
        }
        Err(_) => (1, 0),
    };
    let span = consumer_span(spec, &message, stream_seq, delivered);
    let outcome = async {
        if delivered > spec.max_deliver {
            let why = format!("gave up after {} deliveries", delivered - 1);
            return dead_letter(ctx, spec, &message, &why, delivered, stream_seq).await;
        }
        match in_progress(&message, spec.ack_wait, handler.handle(&message)).await {
            Ok(()) => {
                remove(ctx, spec, stream_seq).await;
                if let Err(e) = message.ack().await {
                    // The effects are stored; the redelivery will find them.
                    tracing::warn!(error = %e, "ack failed");
                }
                Outcome::Ok
            }
            Err(
                HandleError::Retry(why)
                | HandleError::RetryAfter(_, why)
                | HandleError::Contended(why),
            ) if delivered >= spec.max_deliver => {
                let why = format!("gave up after {delivered} deliveries: {why}");
                dead_letter(ctx, spec, &message, &why, delivered, stream_seq).await
            }
            Err(HandleError::Retry(why)) => {
                let delay = retry_delay(spec.retry_base, spec.retry_cap, delivered);
                tracing::warn!(error = %why, ?delay, "handling failed, will retry");
                nak(&message, Some(delay)).await;
                Outcome::Retry
            }
            Err(HandleError::Contended(why)) => {
                let cap = spec.retry_cap.min(CONTENDED_CAP);
                let delay = retry_delay(spec.retry_base.min(cap), cap, delivered);
                tracing::warn!(error = %why, ?delay, "handling failed, will retry");
                nak(&message, Some(delay)).await;
                Outcome::Retry
            }
            Err(HandleError::RetryAfter(delay, why)) => {
                tracing::warn!(error = %why, ?delay, "handling failed, will retry");
                nak(&message, Some(delay)).await;
                Outcome::Retry
            }
            Err(HandleError::Reject(why)) => {
                dead_letter(ctx, spec, &message, &why, delivered, stream_seq).await
            }
        }
    }
    .instrument(span)
    .await;
    ctx.metrics
        .record(spec.durable, outcome, started.elapsed().as_secs_f64());
}

/// The longest pause before a message whose write kept losing races is
/// tried again.
pub const CONTENDED_CAP: Duration = Duration::from_secs(2);

/// The pause before the `delivered`-th delivery's retry: from `base`,
/// doubling per delivery up to `cap`, jittered.
fn retry_delay(base: Duration, cap: Duration, delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1)).unwrap_or(u32::MAX);
    crate::retry::jitter(Backoff::ceiling(base, cap, exponent))
}

/// Runs `work`, the handling of `message`, telling the server every third
/// of the ack wait that the message is still being worked on (an
/// in-progress acknowledgement, which restarts the ack wait), until the
/// work is done. So work that outlasts the ack wait (a slow dependency, a
/// hot aggregate's turn) is not redelivered meanwhile, to be done twice at
/// once. A handler still busy after the ack wait is logged once: every
/// dependency it waits on must have a timeout of its own.
async fn in_progress<T>(message: &Message, ack_wait: Duration, work: impl Future<Output = T>) -> T {
    let every = (ack_wait / 3).max(Duration::from_millis(10));
    let started = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval_at(started + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return done,
            _ = ticks.tick() => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress acknowledgement failed");
                }
                if !warned && started.elapsed() >= ack_wait {
                    warned = true;
                    tracing::warn!(?ack_wait, "still handling the message after the ack wait");
                }
            }
        }
    }
}

/// The `process` span (kind consumer) of one delivery: a child of the
/// trace context the message carries, named and described as the
/// OpenTelemetry messaging conventions ask. Its fields are on every log
/// line written while handling the message.
fn consumer_span(
    spec: &ConsumerSpec,
    message: &Message,
    stream_seq: u64,
    delivered: i64,
) -> tracing::Span {
    let subject = message.subject.as_str();
    // The consumer's own filter is the low-cardinality name of what it reads.
    let template = spec
        .filter_subjects
        .iter()
        .find(|filter| subject_matches(filter, subject))
        .cloned()
        .unwrap_or_else(|| events::subjects::template(subject));
    let span = tracing::info_span!(
        "process",
        otel.name = %format_args!("process {template}"),
        otel.kind = "consumer",
        consumer = spec.durable,
        subject,
        stream_seq,
        delivered,
        order_id = tracing::field::Empty,
    );
    telemetry::continue_trace(&span, message.headers.as_ref());
    telemetry::describe_messaging(&span, "process", subject, template);
    span.set_attribute("messaging.consumer.group.name", spec.durable);
    span.set_attribute("messaging.message.id", stream_seq.to_string());
    span.set_attribute("messaging.message.delivery_count", delivered);
    if let Some(order_id) = events::subjects::order_id_of(subject) {
        span.record("order_id", order_id);
        span.set_attribute("order_id", order_id.to_owned());
    }
    span
}

/// Whether a subject matches a NATS filter (`*` one token, `>` the rest).
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for want in filter.split('.') {
        match (want, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (want, Some(token)) if want == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

async fn nak(message: &Message, delay: Option<Duration>) {
    if let Err(e) = message.ack_with(AckKind::Nak(delay)).await {
        tracing::warn!(error = %e, "nak failed; the message comes back after the ack wait");
    }
}

/// Copies the message, body unchanged, to `dlq.<service>.<subject>` and terms
/// it. If the copy cannot be stored the message is naked instead: a dead
/// letter is never dropped.
async fn dead_letter(
    ctx: &ConsumerContext,
    spec: &ConsumerSpec,
    message: &Message,
    reason: &str,
    delivered: i64,
    stream_seq: u64,
) -> Outcome {
    tracing::error!(reason, "dead-lettering message");
    let subject = events::subjects::dead_letter(ctx.service, &message.subject);
    let mut headers = dead_letter_headers(message, spec, reason, delivered);
    let span = telemetry::producer_span(&subject, 1);
    // The dead letter continues the trace of the message it holds.
    telemetry::inject(&span, &mut headers);
    let stored = async {
        match ctx
            .js
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(|ack| ack.sequence).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
    .instrument(span.clone())
    .await;
    match stored {
        Ok(seq) => {
            span.set_attribute("messaging.message.id", seq.to_string());
            remove(ctx, spec, stream_seq).await;
            if let Err(e) = message.ack_with(AckKind::Term).await {
                tracing::warn!(error = %e, "term failed; a redelivery dead-letters it again, deduplicated");
            }
            Outcome::DeadLetter
        }
        Err(e) => {
            tracing::error!(error = %e, "could not store the dead letter, will retry");
            nak(message, Some(spec.retry_cap)).await;
            Outcome::Retry
        }
    }
}

/// Removes the message at `stream_seq` from the consumer's stream, if the
/// consumer removes what it handled. Best effort: a command left behind
/// costs only its bytes, and a redelivery of it finds its effects.
async fn remove(ctx: &ConsumerContext, spec: &ConsumerSpec, stream_seq: u64) {
    if !spec.remove_handled || stream_seq == 0 {
        return;
    }
    let request = serde_json::json!({"seq": stream_seq, "no_erase": true});
    let answer: Result<serde_json::Value, _> = ctx
        .js
        .request(format!("STREAM.MSG.DELETE.{}", spec.stream), &request)
        .await;
    match answer {
        Ok(answer) if answer["success"] == true => {}
        Ok(answer) => tracing::warn!(%answer, "could not remove a handled command"),
        Err(e) => tracing::warn!(error = %e, "could not remove a handled command"),
    }
}

fn dead_letter_headers(
    message: &Message,
    spec: &ConsumerSpec,
    reason: &str,
    delivered: i64,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // Keep the client's headers (a traceparent, say), but none of the
    // `Nats-*` ones: an expected-sequence check copied along would refuse
    // the dead letter itself.
    if let Some(original) = &message.headers {
        for (name, values) in original.iter() {
            if name.to_string().to_ascii_lowercase().starts_with("nats-") {
                continue;
            }
            for value in values {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
    // Dead-lettering the same delivery twice (a crash between the copy and
    // the term) stores one copy.
    headers.insert("Nats-Msg-Id", format!("dlq:{}:{seq}", spec.stream).as_str());
    if let Some(id) = header(message, "Nats-Msg-Id") {
        // Kept, so a replay is recognised as the same command.
        headers.insert(HeaderName::from_static("Dlq-Original-Msg-Id"), id);
    }
    headers.insert(
        HeaderName::from_static("Dlq-Reason"),
        header_safe(reason).as_str(),
    );
    headers.insert(
        HeaderName::from_static("Dlq-Original-Subject"),
        message.subject.as_str(),
    );
    headers.insert(
        HeaderName::from_static("Dlq-Deliveries"),
        delivered.to_string().as_str(),
    );
    headers.insert(HeaderName::from_static("Dlq-Original-Stream"), spec.stream);
    headers.insert(
        HeaderName::from_static("Dlq-Original-Sequence"),
        seq.to_string().as_str(),
    );
    headers.insert(HeaderName::from_static("Dlq-Consumer"), spec.durable);
    headers
}

/// A header value cannot hold line breaks; keep it short too.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1024)
        .collect()
}

/// Decodes a JSON message body; a body that does not decode is rejected
/// (dead-lettered), since no retry will ever make it readable.
pub fn decode<T: serde::de::DeserializeOwned>(message: &Message) -> Result<T, HandleError> {
    serde_json::from_slice(&message.payload)
        .map_err(|e| HandleError::Reject(format!("unreadable body: {e}")))
}

/// A header of the message, when present.
pub fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// The stream sequence of the message: stable across its redeliveries.
pub fn stream_sequence(message: &Message) -> u64 {
    message.info().map(|i| i.stream_sequence).unwrap_or(0)
}

/// The idempotency key of an admin command, one subject token: see
/// [`key_of`]. A command whose `Nats-Msg-Id` is too long to go in a subject
/// is rejected (dead-lettered) before anything is built from it.
pub fn command_key(message: &Message) -> Result<String, HandleError> {
    key_of(header(message, "Nats-Msg-Id"), stream_sequence(message))
        .map_err(|e| HandleError::Reject(e.to_string()))
}

/// The idempotency key of a command: its `Nats-Msg-Id` when the client set
/// one (hex-encoded, so any id is one subject token), else its stream
/// sequence, which its redeliveries share. An id longer than
/// [`MAX_MSG_ID_BYTES`](events::commands::MAX_MSG_ID_BYTES) is refused.
pub fn key_of(msg_id: Option<&str>, stream_seq: u64) -> Result<String, MsgIdTooLong> {
    check_msg_id(msg_id)?;
    Ok(match msg_id {
        Some(id) => {
            let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
            format!("m{hex}")
        }
        None => format!("s{stream_seq}"),
    })
}

#[cfg(test)]
mod tests {
    use super::{key_of, subject_matches, MsgIdTooLong};
    use events::commands::MAX_MSG_ID_BYTES;

    #[test]
    fn a_command_key_is_one_subject_token_whatever_the_message_id() {
        for id in ["plain", "a.b", "a b", "*", ">", "ünïcode", "tab\there"] {
            let key = key_of(Some(id), 7).unwrap();
            assert!(events::subjects::is_token(&key), "{id:?} gave {key:?}");
        }
        assert_eq!(key_of(None, 7).unwrap(), "s7");
        assert_eq!(key_of(Some("ab"), 7).unwrap(), "m6162");
    }

    #[test]
    fn a_message_id_too_long_for_a_subject_gives_no_key() {
        let longest = "x".repeat(MAX_MSG_ID_BYTES);
        assert_eq!(
            key_of(Some(&longest), 1).unwrap().len(),
            1 + 2 * MAX_MSG_ID_BYTES
        );
        let huge = "x".repeat(5_000);
        assert_eq!(key_of(Some(&huge), 1), Err(MsgIdTooLong(5_000)));
    }

    #[test]
    fn filters_match_as_nats_matches_them() {
        assert!(subject_matches(
            "saga.log.*.reserve",
            "saga.log.o-1.reserve"
        ));
        assert!(!subject_matches(
            "saga.log.*.reserve",
            "saga.log.o-1.charge"
        ));
        assert!(!subject_matches(
            "saga.log.*.reserve",
            "saga.log.o-1.reserve.x"
        ));
        assert!(subject_matches("orders.evt.>", "orders.evt.o-1.placed"));
        assert!(!subject_matches("orders.evt.>", "orders.evt"));
        assert!(subject_matches("orders.cmd.place", "orders.cmd.place"));
        assert!(!subject_matches("orders.cmd.place", "orders.cmd"));
    }
}
