//! Request-reply queries served as NATS micro services (`nats micro ls`
//! lists them), with the contract's error answers: `Nats-Service-Error-Code`
//! 404 or 400 and a `{"error": {"code", "message"}}` body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_nats::service::{Request, ServiceExt};
use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use events::query::{ErrorBody, ErrorDetail};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::store::StoreError;
use crate::telemetry;

/// Queries answered at once, per endpoint; more wait their turn.
const MAX_CONCURRENT_QUERIES: usize = 256;

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl QueryError {
    fn parts(&self) -> (u16, &'static str) {
        match self {
            Self::NotFound(_) => (404, "not_found"),
            Self::BadRequest(_) => (400, "bad_request"),
            Self::Unavailable(_) => (503, "unavailable"),
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Bytes, QueryError>> + Send>>;
type AnswerFn = Arc<dyn Fn(Bytes) -> Answer + Send + Sync>;

/// One endpoint: a name for `nats micro info`, its subject, its handler.
#[derive(Clone)]
pub struct Query {
    name: &'static str,
    subject: &'static str,
    answer: AnswerFn,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("subject", &self.subject)
            .finish()
    }
}

impl Query {
    /// An endpoint whose request is the JSON `Req` (a 400 when it is not)
    /// and whose answer is the JSON `Resp`.
    pub fn json<Req, Resp, F, Fut>(name: &'static str, subject: &'static str, handler: F) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, QueryError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let answer: AnswerFn = Arc::new(move |body: Bytes| {
            let handler = handler.clone();
            Box::pin(async move {
                let request: Req = serde_json::from_slice(&body)
                    .map_err(|e| QueryError::BadRequest(format!("unreadable request: {e}")))?;
                let response = handler(request).await?;
                Ok(serde_json::to_vec(&response)
                    .expect("query answers always serialize")
                    .into())
            })
        });
        Self {
            name,
            subject,
            answer,
        }
    }
}

/// Registers the micro service `name` with its endpoints and answers them
/// until `shutdown`. Replicas share the requests (one queue group).
pub async fn serve(
    client: async_nats::Client,
    name: &str,
    description: &str,
    queries: Vec<Query>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), async_nats::Error> {
    let service = client
        .service_builder()
        .description(description)
        .start(name, env!("CARGO_PKG_VERSION"))
        .await?;
    for query in queries {
        let mut endpoint = service
            .endpoint_builder()
            .name(query.name)
            .add(query.subject)
            .await?;
        let shutdown = shutdown.clone();
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES));
        let handlers = tasks.clone();
        tasks.spawn(async move {
            loop {
                let request = tokio::select! {
                    () = shutdown.cancelled() => break,
                    request = endpoint.next() => match request {
                        Some(request) => request,
                        None => break,
                    },
                };
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let answer = query.answer.clone();
                handlers.spawn(async move {
                    respond(request, answer).await;
                    drop(permit);
                });
            }
            let _ = endpoint.stop().await;
        });
    }
    tasks.spawn(async move {
        shutdown.cancelled().await;
        if let Err(e) = service.stop().await {
            tracing::debug!(error = %e, "stopping the micro service");
        }
    });
    Ok(())
}

/// Answers one request, in a span (kind server) that continues the
/// requester's trace; the reply carries the span's trace context.
async fn respond(request: Request, answer: AnswerFn) {
    let subject = request.message.subject.to_string();
    let span = tracing::info_span!(
        "query",
        otel.name = %subject,
        otel.kind = "server",
        subject = %subject,
    );
    telemetry::continue_trace(&span, request.message.headers.as_ref());
    telemetry::describe_messaging(&span, "process", &subject, subject.clone());
    async {
        let (body, mut headers) = match answer(request.message.payload.clone()).await {
            Ok(body) => (body, HeaderMap::new()),
            Err(e) => error_reply(&e),
        };
        telemetry::inject(&tracing::Span::current(), &mut headers);
        if let Err(e) = request.respond_with_headers(Ok(body), headers).await {
            tracing::debug!(error = %e, "could not answer a query");
        }
    }
    .instrument(span)
    .await;
}

fn error_reply(error: &QueryError) -> (Bytes, HeaderMap) {
    let (status, code) = error.parts();
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("Nats-Service-Error"),
        error.to_string().replace(['\r', '\n'], " ").as_str(),
    );
    headers.insert(
        HeaderName::from_static("Nats-Service-Error-Code"),
        status.to_string().as_str(),
    );
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: error.to_string(),
        },
    };
    (
        serde_json::to_vec(&body).expect("serializes").into(),
        headers,
    )
}
