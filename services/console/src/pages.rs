//! The console's routes: what each page asks of the suite, and how a bad
//! request, a missing saga or an unreachable service is told.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use maud::Markup;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::live::Live;
use crate::metrics::ConsoleMetrics;
use crate::operator::{self, Keys, Session};
use crate::timeline::Timeline;
use crate::views::{self, Who};
use auth::Identity;
use events::saga::{ListSagas, ListStatus, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
use events::{subjects, OrderId};
use jetsaga_client::{Client, ClientError};

/// Dead letters on a page.
const LETTERS_PER_PAGE: usize = 100;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct Console {
    pub client: Client,
    pub live: Arc<Live>,
    /// Set when the console offers the operator's actions.
    pub keys: Option<Arc<Keys>>,
    pub identity: Option<Identity>,
    pub trace_url: Option<Arc<str>>,
    pub metrics: ConsoleMetrics,
    pub shutdown: CancellationToken,
}

pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/live", get(live))
        .route("/sagas", get(sagas))
        .route("/sagas/{order_id}", get(saga))
        .route("/sagas/{order_id}/{action}", get(confirm_action).post(act))
        .route("/dead-letters", get(dead_letters))
        .route("/dead-letters/{seq}", get(dead_letter))
        .route(
            "/dead-letters/{seq}/replay",
            get(confirm_replay).post(replay),
        )
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/assets/{file}", get(asset))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(console.clone(), measure))
        .with_state(console)
}

/// A page that could not be shown, and why.
#[derive(Debug)]
pub enum PageError {
    BadRequest(String),
    NotFound(String),
    Forbidden(String),
    /// A query failed or timed out: the suite (or NATS) is not answering.
    Unavailable(String),
}

impl PageError {
    fn render(self, who: &Who) -> Response {
        let (status, title, text) = match self {
            Self::BadRequest(text) => (StatusCode::BAD_REQUEST, "Bad request", text),
            Self::NotFound(text) => (StatusCode::NOT_FOUND, "Not found", text),
            Self::Forbidden(text) => (StatusCode::FORBIDDEN, "Not allowed", text),
            Self::Unavailable(text) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The suite did not answer",
                text,
            ),
        };
        (status, views::message(title, &text, who)).into_response()
    }
}

impl From<ClientError> for PageError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Service {
                code: 400, message, ..
            } => Self::BadRequest(message),
            ClientError::Service {
                code: 404, message, ..
            } => Self::NotFound(message),
            ClientError::Refused { subject, .. } => Self::Forbidden(format!(
                "the NATS server refuses {subject} to this console's identity"
            )),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

type Page = Result<Markup, PageError>;

/// Renders a page, or its error, for `who`.
fn respond(who: &Who, page: Page) -> Response {
    match page {
        Ok(markup) => markup.into_response(),
        Err(e) => e.render(who),
    }
}

impl Console {
    /// Renders a page's HTML, timed apart from the queries it waited on.
    fn rendered(&self, page: &str, render: impl FnOnce() -> Markup) -> Markup {
        let started = Instant::now();
        let markup = render();
        self.metrics
            .render
            .with_label_values(&[page])
            .observe(started.elapsed().as_secs_f64());
        markup
    }

    fn now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    /// The session of the request's cookie, when it is a valid one.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let keys = self.keys.as_ref()?;
        keys.session(operator::cookie(headers, operator::COOKIE)?, Self::now())
    }

    fn who(&self, headers: &HeaderMap) -> Who {
        Who {
            identity: self.identity,
            can_act: self.keys.is_some(),
            csrf: self
                .session(headers)
                .and_then(|session| Some(self.keys.as_ref()?.csrf(&session))),
        }
    }

    /// The session of a form post that may act: signed in, sent from the
    /// console's own page, with that session's CSRF token.
    fn authorize(&self, headers: &HeaderMap, csrf: &str) -> Result<(), PageError> {
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| PageError::Forbidden("this console is read-only".to_owned()))?;
        if let Some(why) = operator::cross_site(headers) {
            return Err(PageError::Forbidden(why.to_owned()));
        }
        let session = self.session(headers).ok_or_else(|| {
            PageError::Forbidden(
                "sign in as operator first (or again: sessions last 12 hours)".to_owned(),
            )
        })?;
        if keys.is_csrf(&session, csrf) {
            Ok(())
        } else {
            Err(PageError::Forbidden(
                "the form's token does not match your session: open the page again".to_owned(),
            ))
        }
    }
}

/// Counts and times every request by its route, and sets the headers
/// every answer carries.
async fn measure(State(console): State<Console>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |path| path.as_str())
        .to_owned();
    let started = Instant::now();
    let mut response = next.run(request).await;
    console
        .metrics
        .duration
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    console
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Nothing of the console's addresses (order ids) goes to another site,
    // such as the tracing UI; its own forms keep their Origin.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !route.starts_with("/assets/") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn overview(State(console): State<Console>, headers: HeaderMap) -> Response {
    let who = console.who(&headers);
    let snapshot = console.live.snapshot();
    console
        .rendered("overview", || views::overview(&snapshot, &who))
        .into_response()
}

/// The overview's updates: one snapshot now, then one each time the
/// console sends them, until the browser leaves or the console stops.
async fn live(
    State(console): State<Console>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let first = serde_json::to_string(&console.live.snapshot()).expect("a snapshot serializes");
    let updates = BroadcastStream::new(console.live.subscribe())
        // A browser that fell behind skips to the next snapshot: each is
        // whole.
        .filter_map(|update| async move { update.ok() });
    let watching = Watching::new(&console.metrics);
    let stream = futures::stream::once(async move { Arc::<str>::from(first) })
        .chain(updates)
        .map(move |json| {
            let _still = &watching;
            Ok(Event::default().event("snapshot").data(&*json))
        })
        .take_until(console.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Counts a browser following the overview for as long as its stream
/// lives.
struct Watching(prometheus::IntGauge);

impl Watching {
    fn new(metrics: &ConsoleMetrics) -> Self {
        metrics.live_streams.inc();
        Self(metrics.live_streams.clone())
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    q: Option<String>,
}

async fn sagas(
    State(console): State<Console>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let who = console.who(&headers);
    let Ok(Query(query)) = query else {
        return PageError::BadRequest("unreadable query string".to_owned()).render(&who);
    };
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        return match OrderId::parse(q) {
            Ok(id) => {
                Redirect::to(&format!("/sagas/{}", views::encode(id.as_str()))).into_response()
            }
            Err(e) => PageError::BadRequest(format!("{q:?} is not an order id: {e}")).render(&who),
        };
    }
    respond(&who, list_page(&console, &query, &who).await)
}

async fn list_page(console: &Console, query: &ListQuery, who: &Who) -> Page {
    let status = match query
        .status
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "all")
    {
        None => None,
        Some(s) => Some(s.parse::<ListStatus>().map_err(PageError::BadRequest)?),
    };
    let limit = match query.limit.as_deref().filter(|l| !l.is_empty()) {
        None => DEFAULT_LIST_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
            .ok_or_else(|| {
                PageError::BadRequest(format!("limit must be 1 to {MAX_LIST_LIMIT}, not {l:?}"))
            })?,
    };
    let after = query.after.clone().filter(|a| !a.is_empty());
    let first_page = after.is_none();
    let page = console
        .client
        .list_sagas(&ListSagas {
            status,
            limit: Some(limit),
            after,
        })
        .await?;
    let list = views::SagaPage {
        status: status.map(ListStatus::name),
        limit,
        sagas: &page.sagas,
        next: page.next,
        first_page,
    };
    Ok(console.rendered("sagas", || views::sagas(&list, who)))
}

fn order_id(raw: &str) -> Result<OrderId, PageError> {
    OrderId::parse(raw)
        .map_err(|e| PageError::BadRequest(format!("{raw:?} is not an order id: {e}")))
}

#[derive(Debug, Deserialize)]
struct Done {
    done: Option<String>,
    /// Only shown: a link edited by hand is not worth an error page.
    seq: Option<String>,
}

async fn saga(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let who = console.who(&headers);
    respond(&who, saga_page(&console, &raw, done, &who).await)
}

async fn saga_page(console: &Console, raw: &str, done: Done, who: &Who) -> Page {
    let id = order_id(raw)?;
    let (saga, order) = tokio::join!(
        console.client.saga(id.as_str()),
        console.client.order(id.as_str())
    );
    let (saga, order) = (saga?, order?);
    if saga.is_none() && order.is_none() {
        return Err(PageError::NotFound(format!(
            "no order {id} and no saga for it"
        )));
    }
    let timeline = saga.as_ref().map(|s| {
        Timeline::of(
            &s.steps,
            s.deadline.as_deref(),
            s.state.is_terminal(),
            OffsetDateTime::now_utc(),
        )
    });
    let trace_url = console.trace_url.as_deref().and_then(|template| {
        views::trace_link(
            template,
            id.as_str(),
            saga.as_ref().and_then(|s| s.trace_id.as_deref()),
        )
    });
    let notice = done.done.and_then(|action| {
        let action = Action::from_name(&action)?;
        Some(format!(
            "{} sent ({}, stream sequence {}): the saga acts on it within moments.",
            action.label(),
            action.subject(),
            done.seq.as_deref().unwrap_or("?")
        ))
    });
    let detail = views::SagaDetail {
        order_id: id.as_str(),
        saga: saga.as_ref(),
        order: order.as_ref(),
        timeline: timeline.as_ref(),
        trace_url,
        notice,
    };
    Ok(console.rendered("saga", || views::saga(&detail, who)))
}

/// What an operator may do to a saga from its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Retry,
    Abort,
    Cancel,
}

impl Action {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "retry" => Some(Self::Retry),
            "abort" => Some(Self::Abort),
            "cancel" => Some(Self::Cancel),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Abort => "abort",
            Self::Cancel => "cancel",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Retry => "Retry",
            Self::Abort => "Abort",
            Self::Cancel => "Cancel",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Self::Retry => subjects::RETRY_SAGA,
            Self::Abort => subjects::ABORT_SAGA,
            Self::Cancel => subjects::CANCEL_ORDER,
        }
    }

    fn explain(self, id: &str) -> String {
        match self {
            Self::Retry => format!(
                "The saga of order {id} asks its current step again, now, as a new attempt. \
                 A step already answered is not done twice."
            ),
            Self::Abort => format!(
                "The saga of order {id} stops going forward and undoes what it did: the \
                 payment is refunded, the stock released, and the order cancelled with the \
                 reason aborted_by_operator. This cannot be undone."
            ),
            Self::Cancel => format!(
                "Order {id} is cancelled as if its customer asked (reason \
                 cancelled_by_request): what its saga did is undone. This cannot be undone."
            ),
        }
    }
}

fn action(raw: &str) -> Result<Action, PageError> {
    Action::from_name(raw)
        .ok_or_else(|| PageError::NotFound(format!("no action {raw:?}: retry, abort or cancel")))
}

async fn confirm_action(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((raw, name)): Path<(String, String)>,
) -> Response {
    let who = console.who(&headers);
    let (id, action) = match order_id(&raw).and_then(|id| Ok((id, action(&name)?))) {
        Ok(found) => found,
        Err(e) => return e.render(&who),
    };
    if !who.acting() {
        return sign_in_first(&console, &format!("/sagas/{id}/{}", action.name()), &who);
    }
    views::confirm(
        &format!("{} order {id}?", action.label()),
        &action.explain(id.as_str()),
        &format!("/sagas/{id}/{}", action.name()),
        &format!("{} it", action.label()),
        &format!("/sagas/{id}"),
        &who,
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
struct Csrf {
    #[serde(default)]
    csrf: String,
}

async fn act(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((raw, name)): Path<(String, String)>,
    form: Result<Form<Csrf>, FormRejection>,
) -> Response {
    let who = console.who(&headers);
    let done = async {
        let id = order_id(&raw)?;
        let action = action(&name)?;
        console.authorize(&headers, form.as_ref().map_or("", |f| f.csrf.as_str()))?;
        let sent = console.client.ask(action.subject(), id.as_str()).await;
        let outcome = if sent.is_ok() { "sent" } else { "failed" };
        console
            .metrics
            .actions
            .with_label_values(&[action.name(), outcome])
            .inc();
        let ack = sent?;
        tracing::info!(order_id = %id, action = action.name(), seq = ack.sequence, "operator action sent from the console");
        Ok::<_, PageError>(format!(
            "/sagas/{id}?done={}&seq={}",
            action.name(),
            ack.sequence
        ))
    };
    match done.await {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => e.render(&who),
    }
}

#[derive(Debug, Deserialize)]
struct LetterQuery {
    after: Option<String>,
    replayed: Option<u64>,
    to: Option<u64>,
}

async fn dead_letters(
    State(console): State<Console>,
    headers: HeaderMap,
    query: Result<Query<LetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let who = console.who(&headers);
    let page = async {
        let Query(query) =
            query.map_err(|_| PageError::BadRequest("unreadable query string".to_owned()))?;
        console.may_read_letters()?;
        let after = match query.after.as_deref().filter(|a| !a.is_empty()) {
            None => 0,
            Some(a) => a.parse::<u64>().map_err(|_| {
                PageError::BadRequest(format!("after must be a sequence number, not {a:?}"))
            })?,
        };
        let (letters, next) = console
            .client
            .dead_letters_page("dlq.>", after + 1, LETTERS_PER_PAGE)
            .await?;
        let notice = query.replayed.map(|seq| {
            format!(
                "Dead letter #{seq} was replayed (stream sequence {}) and removed from the dead letters.",
                query.to.unwrap_or_default()
            )
        });
        let list = views::LetterPage {
            letters: &letters,
            next,
            first_page: after == 0,
            notice,
        };
        Ok(console.rendered("dead_letters", || views::dead_letters(&list, &who)))
    };
    respond(&who, page.await)
}

impl Console {
    /// Only `operator` may read the dead letters: as `client`, say so at
    /// once rather than wait for the server's refusal to time out.
    fn may_read_letters(&self) -> Result<(), PageError> {
        if self.identity == Some(Identity::Client) {
            return Err(PageError::Forbidden(
                "the dead letters are for the operator identity; this console connects as client"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    async fn letter(&self, raw: &str) -> Result<jetsaga_client::DeadLetter, PageError> {
        self.may_read_letters()?;
        let seq: u64 = raw
            .parse()
            .map_err(|_| PageError::BadRequest(format!("{raw:?} is not a sequence number")))?;
        self.client.dead_letter(seq).await?.ok_or_else(|| {
            PageError::NotFound(format!("no dead letter #{seq}: replayed, or never there"))
        })
    }
}

async fn dead_letter(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let who = console.who(&headers);
    let page = async { Ok(views::dead_letter(&console.letter(&raw).await?, &who)) };
    respond(&who, page.await)
}

async fn confirm_replay(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let who = console.who(&headers);
    if !who.acting() {
        return sign_in_first(&console, &format!("/dead-letters/{raw}/replay"), &who);
    }
    let page = async {
        let letter = console.letter(&raw).await?;
        letter
            .replayable()
            .map_err(|why| PageError::BadRequest(format!("not replayable: {why}")))?;
        Ok(views::confirm(
            &format!("Replay dead letter #{}?", letter.seq),
            &format!(
                "Its body is published to {} again, with its original headers, and the letter \
                 is removed from the dead letters. A command that was in fact applied is \
                 recognised by its id and changes nothing.",
                letter.original_subject
            ),
            &format!("/dead-letters/{}/replay", letter.seq),
            "Replay it",
            &format!("/dead-letters/{}", letter.seq),
            &who,
        ))
    };
    respond(&who, page.await)
}

async fn replay(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    form: Result<Form<Csrf>, FormRejection>,
) -> Response {
    let who = console.who(&headers);
    let done = async {
        console.authorize(&headers, form.as_ref().map_or("", |f| f.csrf.as_str()))?;
        let letter = console.letter(&raw).await?;
        let sent = console.client.replay(&letter).await;
        let outcome = if sent.is_ok() { "sent" } else { "failed" };
        console
            .metrics
            .actions
            .with_label_values(&["replay", outcome])
            .inc();
        let seq = sent?;
        tracing::info!(
            letter = letter.seq,
            seq,
            "dead letter replayed from the console"
        );
        Ok::<_, PageError>(format!("/dead-letters?replayed={}&to={seq}", letter.seq))
    };
    match done.await {
        Ok(to) => Redirect::to(&to).into_response(),
        Err(e) => e.render(&who),
    }
}

fn sign_in_first(console: &Console, next: &str, who: &Who) -> Response {
    if console.keys.is_none() {
        return PageError::Forbidden("this console is read-only".to_owned()).render(who);
    }
    Redirect::to(&format!("/sign-in?next={}", views::encode(next))).into_response()
}

/// Where to go after signing in: a path of the console's own, never
/// another site.
fn local(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn sign_in_form(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let who = console.who(&headers);
    if console.keys.is_none() {
        return PageError::NotFound(
            "this console is read-only: it has no CONSOLE_OPERATOR_TOKEN, or connects as client"
                .to_owned(),
        )
        .render(&who);
    }
    views::sign_in(&local(query.get("next").map(String::as_str)), false, &who).into_response()
}

#[derive(Debug, Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    form: Result<Form<SignIn>, FormRejection>,
) -> Response {
    let who = console.who(&headers);
    let Some(keys) = console.keys.clone() else {
        return PageError::NotFound("this console is read-only".to_owned()).render(&who);
    };
    if let Some(why) = operator::cross_site(&headers) {
        return PageError::Forbidden(why.to_owned()).render(&who);
    }
    let Ok(Form(form)) = form else {
        return PageError::BadRequest("the sign-in form was not sent".to_owned()).render(&who);
    };
    let next = local(form.next.as_deref());
    if !keys.is_token(&form.token) {
        tracing::warn!("a sign-in to the console with a wrong token");
        return (StatusCode::UNAUTHORIZED, views::sign_in(&next, true, &who)).into_response();
    }
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes() == b"https");
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        operator::COOKIE,
        keys.new_session(Console::now()),
        operator::SESSION_SECONDS,
        if secure { "; Secure" } else { "" }
    );
    tracing::info!("an operator signed in to the console");
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

async fn sign_out(
    State(console): State<Console>,
    headers: HeaderMap,
    form: Result<Form<Csrf>, FormRejection>,
) -> Response {
    let who = console.who(&headers);
    if let Err(e) = console.authorize(&headers, form.as_ref().map_or("", |f| f.csrf.as_str())) {
        return e.render(&who);
    }
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        operator::COOKIE
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (
            include_str!("../assets/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("../assets/console.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn not_found(State(console): State<Console>, headers: HeaderMap) -> Response {
    PageError::NotFound("no such page".to_owned()).render(&console.who(&headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_signing_in() {
        assert_eq!(local(Some("/sagas/o-1")), "/sagas/o-1");
        assert_eq!(local(Some("//evil.example/")), "/");
        assert_eq!(local(Some("https://evil.example/")), "/");
        assert_eq!(local(Some("/\\evil.example")), "/");
        assert_eq!(local(None), "/");
    }
}
