//! A typed client of the jetsaga public contract (docs/contract.md section 4),
//! over NATS alone: what `sagactl` and the tests use, and what an
//! application talking to jetsaga would use.

mod connection;
mod dlq;

pub use connection::Connection;
pub use dlq::DeadLetter;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::publish::PublishAck;
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use events::inventory::StockLevel;
use events::payment::Account;
use events::query::ErrorBody;
use events::saga::{ListSagas, ListStatus, SagaList, SagaSummary, SagaView, MAX_LIST_LIMIT};
use events::{subjects, Order};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

/// How long a query waits for its answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("{0}")]
    Config(String),
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("query {subject} failed: {reason}")]
    Query { subject: String, reason: String },
    #[error("the server refused {subject} to this identity: {reason}")]
    Refused { subject: String, reason: String },
    #[error("{subject} answered {code}: {message}")]
    Service {
        subject: String,
        code: u16,
        message: String,
    },
}

/// A connection to a jetsaga deployment.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    js: async_nats::jetstream::Context,
    refusals: Refusals,
}

/// The server's latest refusals of this connection's publishes and
/// subscriptions (permissions violations). A refused publish gets no answer
/// at all, so without them its error could only say "timed out".
#[derive(Debug, Clone, Default)]
struct Refusals(Arc<Mutex<VecDeque<String>>>);

impl Refusals {
    const KEPT: usize = 16;

    fn record(&self, refusal: String) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == Self::KEPT {
            kept.pop_front();
        }
        kept.push_back(refusal);
    }

    /// The latest refusal naming a subject that starts with `prefix`.
    fn about(&self, prefix: &str) -> Option<String> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let quoted = format!("\"{prefix}");
        kept.iter().rev().find(|r| r.contains(&quoted)).cloned()
    }
}

impl Client {
    /// Connects as `connection` says.
    pub async fn connect(connection: &Connection) -> Result<Self, ClientError> {
        let refusals = Refusals::default();
        let seen = refusals.clone();
        let nats = connection
            .options("jetsaga-client")
            .await?
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        let error = error.to_string();
                        if error.to_lowercase().contains("permissions violation") {
                            seen.record(error);
                        }
                    }
                }
            })
            .connect(connection.url_list())
            .await?;
        Ok(Self {
            refusals,
            ..Self::new(nats)
        })
    }

    pub fn new(nats: async_nats::Client) -> Self {
        let js = async_nats::jetstream::new(nats.clone());
        Self {
            nats,
            js,
            refusals: Refusals::default(),
        }
    }

    /// Why the server refused this connection something on a subject that
    /// starts with `prefix`, if it did (`$JS.API` for the JetStream API).
    pub fn refusal(&self, prefix: &str) -> Option<String> {
        self.refusals.about(prefix)
    }

    /// `error` on `subject`, or the server's refusal of it when there was
    /// one (what made the error a timeout).
    fn explain(&self, subject: &str, error: ClientError) -> ClientError {
        match self.refusals.about(subject) {
            Some(reason) => ClientError::Refused {
                subject: subject.to_owned(),
                reason,
            },
            None => error,
        }
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Publishes a command to JetStream and returns the future of its
    /// acknowledgement, so many can be in flight at once.
    pub async fn send(
        &self,
        subject: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<PublishAckFuture, ClientError> {
        self.js
            .publish_with_headers(subject.to_owned(), headers, body)
            .await
            .map_err(|e| ClientError::Publish(e.to_string()))
    }

    /// Publishes a command and waits until JetStream has stored it.
    pub async fn command(
        &self,
        subject: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<PublishAck, ClientError> {
        let ack = self.send(subject, headers, body).await?.await;
        ack.map_err(|e| self.explain(subject, ClientError::Publish(e.to_string())))
    }

    /// `orders.cmd.place` with the given lines.
    pub async fn place(
        &self,
        order_id: &str,
        customer_id: &str,
        items: &[(&str, u32)],
    ) -> Result<PublishAck, ClientError> {
        self.command(
            subjects::PLACE_ORDER,
            HeaderMap::new(),
            place_body(order_id, customer_id, items),
        )
        .await
    }

    /// `inventory.cmd.restock`.
    pub async fn restock(
        &self,
        sku: &str,
        quantity: u64,
        unit_price_cents: Option<u64>,
    ) -> Result<PublishAck, ClientError> {
        let body = match unit_price_cents {
            Some(price) => json!({"sku": sku, "quantity": quantity, "unit_price_cents": price}),
            None => json!({"sku": sku, "quantity": quantity}),
        };
        self.command(subjects::RESTOCK, HeaderMap::new(), body.to_string().into())
            .await
    }

    /// `payments.cmd.deposit`.
    pub async fn deposit(
        &self,
        customer_id: &str,
        amount_cents: u64,
    ) -> Result<PublishAck, ClientError> {
        let body = json!({"customer_id": customer_id, "amount_cents": amount_cents});
        self.command(subjects::DEPOSIT, HeaderMap::new(), body.to_string().into())
            .await
    }

    /// `orders.query.get`; `None` when there is no such order.
    pub async fn order(&self, order_id: &str) -> Result<Option<Order>, ClientError> {
        self.query(subjects::GET_ORDER, &ByOrderRaw { order_id })
            .await
    }

    /// `inventory.query.stock`.
    pub async fn stock(&self, sku: &str) -> Result<Option<StockLevel>, ClientError> {
        self.query(subjects::GET_STOCK, &json!({ "sku": sku }))
            .await
    }

    /// `payments.query.account`.
    pub async fn account(&self, customer_id: &str) -> Result<Option<Account>, ClientError> {
        self.query(
            subjects::GET_ACCOUNT,
            &json!({ "customer_id": customer_id }),
        )
        .await
    }

    /// `saga.query.get`.
    pub async fn saga(&self, order_id: &str) -> Result<Option<SagaView>, ClientError> {
        self.query(subjects::GET_SAGA, &ByOrderRaw { order_id })
            .await
    }

    /// One page of `saga.query.list`.
    pub async fn list_sagas(&self, request: &ListSagas) -> Result<SagaList, ClientError> {
        Ok(self
            .query(subjects::LIST_SAGAS, request)
            .await?
            .unwrap_or_default())
    }

    /// Every saga `status` asks for (every saga for `None`), every page of
    /// `saga.query.list`, oldest first.
    pub async fn all_sagas(
        &self,
        status: Option<ListStatus>,
    ) -> Result<Vec<SagaSummary>, ClientError> {
        let mut request = ListSagas {
            status,
            limit: Some(MAX_LIST_LIMIT),
            after: None,
        };
        let mut sagas = Vec::new();
        loop {
            let page = self.list_sagas(&request).await?;
            sagas.extend(page.sagas);
            match page.next {
                Some(next) => request.after = Some(next),
                None => return Ok(sagas),
            }
        }
    }

    /// `orders.cmd.cancel`, `saga.cmd.retry` or `saga.cmd.abort` for
    /// `order_id`, once stored.
    pub async fn ask(&self, subject: &str, order_id: &str) -> Result<PublishAck, ClientError> {
        let body = serde_json::to_vec(&ByOrderRaw { order_id }).expect("serializes");
        self.command(subject, HeaderMap::new(), body.into()).await
    }

    /// Sends a request and returns the raw answer, headers included.
    pub async fn request(&self, subject: &str, body: Bytes) -> Result<Message, ClientError> {
        let fail = |reason: String| ClientError::Query {
            subject: subject.to_owned(),
            reason,
        };
        let answer =
            tokio::time::timeout(QUERY_TIMEOUT, self.nats.request(subject.to_owned(), body))
                .await
                .map_err(|_| fail("timed out".to_owned()))
                .and_then(|answer| answer.map_err(|e| fail(e.to_string())));
        answer.map_err(|e| self.explain(subject, e))
    }

    async fn query<T: DeserializeOwned>(
        &self,
        subject: &str,
        request: &impl Serialize,
    ) -> Result<Option<T>, ClientError> {
        let body = serde_json::to_vec(request).expect("requests serialize");
        let answer = self.request(subject, body.into()).await?;
        if let Some(code) = service_error_code(&answer) {
            if code == 404 {
                return Ok(None);
            }
            let message = serde_json::from_slice::<ErrorBody>(&answer.payload)
                .map(|e| e.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&answer.payload).into_owned());
            return Err(ClientError::Service {
                subject: subject.to_owned(),
                code,
                message,
            });
        }
        serde_json::from_slice(&answer.payload)
            .map(Some)
            .map_err(|e| ClientError::Query {
                subject: subject.to_owned(),
                reason: format!("unreadable answer: {e}"),
            })
    }
}

/// The `Nats-Service-Error-Code` of an answer, when it is an error.
pub fn service_error_code(answer: &Message) -> Option<u16> {
    answer
        .headers
        .as_ref()?
        .get("Nats-Service-Error-Code")?
        .as_str()
        .parse()
        .ok()
}

/// A new trace for a command: headers carrying a fresh, sampled W3C
/// `traceparent`, and the trace id to find the order's trace by in any
/// OpenTelemetry backend (the services continue the trace it starts).
pub fn new_trace() -> (String, HeaderMap) {
    let trace_id = format!("{:032x}", rand::random::<u128>().max(1));
    let span_id = format!("{:016x}", rand::random::<u64>().max(1));
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-{span_id}-01").as_str(),
    );
    (trace_id, headers)
}

/// The JSON of a place command.
pub fn place_body(order_id: &str, customer_id: &str, items: &[(&str, u32)]) -> Bytes {
    let items: Vec<_> = items
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    json!({"order_id": order_id, "customer_id": customer_id, "items": items})
        .to_string()
        .into()
}

/// A query by order id that does not validate the id client-side, so the
/// service's own answer to a bad id can be seen.
#[derive(Serialize)]
struct ByOrderRaw<'a> {
    order_id: &'a str,
}
