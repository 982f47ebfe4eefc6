//! One order is one trace: the four services, as real processes, export
//! their spans over OTLP to receivers inside this test (two services over
//! `http/protobuf`, two over `grpc`, one of each pair gzip-compressed with
//! `OTEL_EXPORTER_OTLP_COMPRESSION`); an order placed with a client's
//! `traceparent` must come back as one connected trace that continues the
//! client's, with spans from every service, producer and consumer kinds, the
//! messaging attributes, and the order id; and the services' JSON log lines
//! about that order must carry the same trace id.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use e2e::testkit::ServiceProcess;
use e2e::testkit::{eventually, free_port, Identity, NatsServer};
use e2e::SETTLE;
use events::OrderStatus;
use jetsaga_client::place_body;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// The client's own trace, which the order's must continue.
const CLIENT_TRACE: &str = "5b8efff798038103d269b633813fc60c";
const CLIENT_SPAN: &str = "eee19b7ec3c1b174";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_across_the_four_services() {
    let received = Received::default();
    let http = http_receiver(received.clone()).await;
    let grpc = grpc_receiver(received.clone()).await;
    let nats = NatsServer::start();
    e2e::provision(&nats.url(), nats.security(), 1).await;
    let logs = tempfile::tempdir().unwrap();
    let http_endpoint = format!("http://{http}");
    let grpc_endpoint = format!("http://{grpc}");
    let export = |endpoint: &str, protocol: &str, compression: &str| -> Vec<(String, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint.into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), protocol.into()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION".into(), compression.into()),
            // Export soon after a span ends, so the test need not wait 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ]
    };
    let services: Vec<ServiceProcess> = [
        (
            "order-service",
            export(&http_endpoint, "http/protobuf", "none"),
        ),
        (
            "inventory-service",
            export(&http_endpoint, "http/protobuf", "gzip"),
        ),
        ("payment-service", export(&grpc_endpoint, "grpc", "none")),
        ("saga-orchestrator", export(&grpc_endpoint, "grpc", "gzip")),
    ]
    .into_iter()
    .map(|(name, env)| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ServiceProcess::spawn(name, &nats.url(), nats.security(), &env, logs.path())
    })
    .collect();
    for service in &services {
        service.wait_ready().await;
    }
    let client = e2e::connect_as(&nats.url(), nats.security(), Identity::Operator).await;
    client.restock("sku-t", 5, Some(250)).await.unwrap();
    client.deposit("cust-t", 10_000).await.unwrap();
    eventually("the stock and the money to be there", SETTLE, || async {
        let stock = client.stock("sku-t").await.ok().flatten()?;
        let account = client.account("cust-t").await.ok().flatten()?;
        (stock.available == 5 && account.balance_cents.0 == 10_000).then_some(())
    })
    .await;

    let order_id = "o-traced-1";
    let headers = trace_headers(CLIENT_TRACE, CLIENT_SPAN);
    client
        .command(
            events::subjects::PLACE_ORDER,
            headers,
            place_body(order_id, "cust-t", &[("sku-t", 2)]),
        )
        .await
        .unwrap();
    let order = eventually("the order to be confirmed", SETTLE, || async {
        let order = client.order(order_id).await.ok().flatten()?;
        (order.status != OrderStatus::Pending).then_some(order)
    })
    .await;
    assert_eq!(order.status, OrderStatus::Confirmed);
    // The saga names its trace, which the console links to.
    let saga = client.saga(order_id).await.unwrap().expect("the saga");
    assert_eq!(saga.trace_id.as_deref(), Some(CLIENT_TRACE));

    // Spans arrive in batches, each service's on its own schedule: wait
    // until the trace holds the saga's last step (the order service
    // announcing the confirmation) and the parent of every span, then
    // check what arrived.
    let confirmed = format!("orders.evt.{order_id}.confirmed");
    let deadline = tokio::time::Instant::now() + SETTLE;
    let spans = loop {
        let spans = received.trace(CLIENT_TRACE);
        let ids: HashSet<&[u8]> = spans.iter().map(|s| s.span.span_id.as_slice()).collect();
        let ended = spans.iter().any(|s| {
            s.kind() == SpanKind::Producer
                && s.attribute("messaging.destination.name").as_deref() == Some(confirmed.as_str())
        });
        let connected = spans.iter().all(|s| {
            s.span.parent_span_id == hex(CLIENT_SPAN)
                || ids.contains(s.span.parent_span_id.as_slice())
        });
        if (ended && connected) || tokio::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Every span of all four services, in one trace...
    let services_seen: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services_seen,
        HashSet::from([
            "order-service",
            "inventory-service",
            "payment-service",
            "saga-orchestrator"
        ]),
        "spans of the trace come from every service"
    );
    // Each service's export requests came encoded as it was told.
    for (service, encoding) in [
        ("order-service", "identity"),
        ("inventory-service", "gzip"),
        ("payment-service", "identity"),
        ("saga-orchestrator", "gzip"),
    ] {
        assert_eq!(
            received.encodings(service),
            HashSet::from([encoding.to_owned()]),
            "the encodings of {service}'s export requests"
        );
    }
    // ...connected: each span's parent is another span of the trace, but
    // for the first, whose parent is the client's span.
    let by_id: HashMap<Vec<u8>, &Received1> =
        spans.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    let client_span = hex(CLIENT_SPAN);
    let roots: Vec<&Received1> = spans
        .iter()
        .filter(|s| s.span.parent_span_id == client_span)
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one span continues the client's: {roots:#?}"
    );
    assert_eq!(roots[0].service, "order-service");
    assert_eq!(roots[0].kind(), SpanKind::Consumer);
    assert_eq!(roots[0].span.name, "process orders.cmd.place");
    for span in &spans {
        if span.span.parent_span_id == client_span {
            continue;
        }
        let parent = by_id.get(&span.span.parent_span_id).unwrap_or_else(|| {
            panic!(
                "the parent of {:?} ({}) is not in the trace",
                span.span.name, span.service
            )
        });
        match span.kind() {
            // A message handled is the child of the write that sent it...
            SpanKind::Consumer => assert_eq!(
                parent.kind(),
                SpanKind::Producer,
                "{} in {} follows {} in {}",
                span.span.name,
                span.service,
                parent.span.name,
                parent.service
            ),
            // ...and a write is the child of the handling that made it.
            SpanKind::Producer => {
                assert_eq!(parent.kind(), SpanKind::Consumer, "{}", span.span.name);
                assert_eq!(parent.service, span.service, "{}", span.span.name);
            }
            other => panic!("unexpected span kind {other:?} of {}", span.span.name),
        }
    }
    // Messages crossed between services: a consumer span whose producer
    // was in another service, for each service.
    for service in services_seen {
        assert!(
            spans.iter().any(|s| s.service == service
                && s.kind() == SpanKind::Consumer
                && by_id
                    .get(&s.span.parent_span_id)
                    .is_none_or(|p| p.service != service)),
            "{service} handles a message another service sent"
        );
    }

    // The messaging conventions, and the order id, on every span.
    for span in &spans {
        let (operation, prefix) = match span.kind() {
            SpanKind::Consumer => ("process", "process "),
            _ => ("send", "send "),
        };
        let what = format!("{} of {}", span.span.name, span.service);
        assert_eq!(
            span.attribute("messaging.system").as_deref(),
            Some("nats"),
            "{what}"
        );
        assert_eq!(
            span.attribute("messaging.operation.type").as_deref(),
            Some(operation),
            "{what}"
        );
        let destination = span
            .attribute("messaging.destination.name")
            .unwrap_or_else(|| panic!("{what} names its destination"));
        let template = span
            .attribute("messaging.destination.template")
            .unwrap_or_else(|| panic!("{what} has a destination template"));
        assert_eq!(span.span.name, format!("{prefix}{template}"), "{what}");
        assert!(
            !span.span.name.contains(order_id),
            "{what}: span names carry no ids"
        );
        assert_eq!(
            span.attribute("order_id").as_deref(),
            Some(order_id),
            "{what}"
        );
        if span.kind() == SpanKind::Consumer {
            assert!(
                span.attribute("messaging.consumer.group.name").is_some(),
                "{what}"
            );
            let id = span.attribute("messaging.message.id").unwrap_or_default();
            assert!(
                id.parse::<u64>().is_ok_and(|seq| seq > 0),
                "{what}: message id {id:?}"
            );
            assert!(destination != "orders.cmd.place" || span.span.parent_span_id == client_span);
        }
    }
    // The saga's steps are all there, each from the service that owns it.
    for (service, name) in [
        ("order-service", "process orders.cmd.place"),
        ("order-service", "send orders.evt.*.placed"),
        ("saga-orchestrator", "process orders.evt.*.*"),
        ("saga-orchestrator", "send saga.log.*.reserve_stock"),
        ("inventory-service", "process saga.log.*.reserve_stock"),
        ("inventory-service", "send inventory.evt.*.reserved"),
        ("payment-service", "process saga.log.*.charge_payment"),
        ("payment-service", "send payments.evt.*.charged"),
        ("order-service", "process saga.log.*.confirm_order"),
        ("order-service", "send orders.evt.*.confirmed"),
        ("saga-orchestrator", "send saga.log.*.finish"),
    ] {
        assert!(
            spans
                .iter()
                .any(|s| s.service == service && s.span.name == name),
            "{service} has a span {name:?}; the trace has {:?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.span.name))
                .collect::<Vec<_>>()
        );
    }

    // A dead letter continues the trace of the message it holds: its
    // traceparent names the span that dead-lettered it, in the client's
    // trace, and that span is exported.
    const POISON_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const POISON_SPAN: &str = "b7ad6b7169203331";
    let headers = trace_headers(POISON_TRACE, POISON_SPAN);
    client
        .command(
            events::subjects::PLACE_ORDER,
            headers,
            Bytes::from_static(b"not json"),
        )
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client.nats().clone());
    let dlq = js.get_stream("DLQ").await.unwrap();
    let letter = eventually("the poison command to be dead-lettered", SETTLE, || {
        let dlq = dlq.clone();
        async move {
            dlq.direct_get_last_for_subject("dlq.order-service.orders.cmd.place")
                .await
                .ok()
        }
    })
    .await;
    let traceparent = letter
        .headers
        .get("traceparent")
        .expect("the dead letter has a traceparent")
        .as_str()
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        parts[1], POISON_TRACE,
        "the dead letter is in the client's trace"
    );
    assert_ne!(
        parts[2], POISON_SPAN,
        "its parent is the span that dead-lettered it"
    );
    let send = eventually("the dead letter's span to be exported", SETTLE, || {
        let received = received.clone();
        let span_id = hex(parts[2]);
        async move {
            received
                .trace(POISON_TRACE)
                .into_iter()
                .find(|s| s.span.span_id == span_id)
        }
    })
    .await;
    assert_eq!(send.service, "order-service");
    assert_eq!(send.kind(), SpanKind::Producer);
    assert_eq!(send.span.name, "send dlq.order-service.orders.cmd.place");
    let process = eventually(
        "the dead-lettering span's parent to be exported",
        SETTLE,
        || {
            let received = received.clone();
            let parent = send.span.parent_span_id.clone();
            async move {
                received
                    .trace(POISON_TRACE)
                    .into_iter()
                    .find(|s| s.span.span_id == parent)
            }
        },
    )
    .await;
    assert_eq!(process.span.name, "process orders.cmd.place");
    assert_eq!(process.span.parent_span_id, hex(POISON_SPAN));

    // A query continues its requester's trace too, and its reply says so.
    const QUERY_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const QUERY_SPAN: &str = "00f067aa0ba902b7";
    let headers = trace_headers(QUERY_TRACE, QUERY_SPAN);
    let reply = client
        .nats()
        .request_with_headers(
            events::subjects::GET_ORDER,
            headers,
            Bytes::from(format!(r#"{{"order_id":"{order_id}"}}"#)),
        )
        .await
        .unwrap();
    let traceparent = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .expect("the reply carries the trace context")
        .as_str()
        .to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{QUERY_TRACE}-")),
        "{traceparent}"
    );
    let query = eventually("the query's span to be exported", SETTLE, || {
        let received = received.clone();
        async move { received.trace(QUERY_TRACE).into_iter().next() }
    })
    .await;
    assert_eq!(query.service, "order-service");
    assert_eq!(query.kind(), SpanKind::Server);
    assert_eq!(query.span.name, events::subjects::GET_ORDER);
    assert_eq!(query.span.parent_span_id, hex(QUERY_SPAN));
    assert!(traceparent.contains(&hex_string(&query.span.span_id)));

    // The JSON logs about this order carry its trace.
    for service in &services {
        let lines: Vec<serde_json::Value> = service
            .log()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|line: &serde_json::Value| line["order_id"] == order_id)
            .collect();
        assert!(!lines.is_empty(), "{} logged about the order", service.name);
        for line in &lines {
            assert_eq!(line["trace_id"], CLIENT_TRACE, "{}: {line}", service.name);
            let span_id = line["span_id"].as_str().unwrap_or_default();
            assert!(
                by_id.contains_key(&hex(span_id)),
                "{}: the log line's span {span_id} is one of the trace: {line}",
                service.name
            );
        }
    }
}

/// The spans received, with the service that sent each, and the encoding
/// (`identity`, `gzip`) of each export request.
#[derive(Debug, Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Received1>>>,
    /// (service, encoding), one per export request.
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

#[derive(Debug, Clone)]
struct Received1 {
    service: String,
    span: Span,
}

impl Received1 {
    fn kind(&self) -> SpanKind {
        self.span.kind()
    }

    fn attribute(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }
}

impl Received {
    fn add(&self, request: ExportTraceServiceRequest, encoding: &str) {
        let mut all = self.spans.lock().unwrap();
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            self.requests
                .lock()
                .unwrap()
                .push((service.clone(), encoding.to_owned()));
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    all.push(Received1 {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
    }

    /// The encodings of the export requests `service` sent.
    fn encodings(&self, service: &str) -> HashSet<String> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(s, _)| s == service)
            .map(|(_, encoding)| encoding.clone())
            .collect()
    }

    fn trace(&self, trace_id: &str) -> Vec<Received1> {
        let trace_id = hex(trace_id);
        let all = self.spans.lock().unwrap();
        all.iter()
            .filter(|s| s.span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Headers carrying a sampled W3C trace context: the caller's own span.
fn trace_headers(trace_id: &str, span_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-{span_id}-01").as_str(),
    );
    headers
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// OTLP over HTTP: protobuf posted to `/v1/traces`, plain or gzip.
async fn http_receiver(received: Received) -> SocketAddr {
    use axum::extract::State;
    use axum::http::{header, HeaderMap, StatusCode};

    async fn export(
        State(received): State<Received>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let (encoding, body) = match headers.get(header::CONTENT_ENCODING) {
            None => ("identity", body),
            Some(v) if v == "gzip" => {
                let mut plain = Vec::new();
                let mut decoder = flate2::read::GzDecoder::new(body.as_ref());
                if let Err(e) = std::io::Read::read_to_end(&mut decoder, &mut plain) {
                    return (StatusCode::BAD_REQUEST, format!("not gzip: {e}")).into_response();
                }
                ("gzip", Bytes::from(plain))
            }
            Some(other) => {
                return (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("unexpected Content-Encoding {other:?}"),
                )
                    .into_response()
            }
        };
        match ExportTraceServiceRequest::decode(body) {
            Ok(request) => {
                received.add(request, encoding);
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
                    .into_response()
            }
            Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }

    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(received);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// OTLP over gRPC, plain or gzip.
async fn grpc_receiver(received: Received) -> SocketAddr {
    struct Grpc(Received);

    #[tonic::async_trait]
    impl TraceService for Grpc {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            // Set by the sender when it compressed the message.
            let encoding = request
                .metadata()
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity")
                .to_owned();
            self.0.add(request.into_inner(), &encoding);
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(Grpc(received))
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve(addr),
    );
    // Listening once a connection is accepted.
    eventually(
        "the gRPC receiver to listen",
        Duration::from_secs(5),
        || async { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
    )
    .await;
    addr
}
