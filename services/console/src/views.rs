//! The console's HTML: one layout, and one function a page. Everything is
//! escaped by maud; nothing inline is scripted or styled, so the pages run
//! under a strict Content-Security-Policy.

use maud::{html, Markup, DOCTYPE};

use crate::live::Snapshot;
use crate::timeline::{participant, status_name, Timeline};
use auth::Identity;
use events::saga::{SagaSummary, SagaView};
use events::Order;
use jetsaga_client::DeadLetter;

/// Where a page sits in the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Sagas,
    DeadLetters,
    None,
}

/// Who looks: what the console's identity is, and whether this person may
/// act through it.
#[derive(Debug, Clone)]
pub struct Who {
    pub identity: Option<Identity>,
    /// The console offers actions at all.
    pub can_act: bool,
    /// This person is signed in as operator; the CSRF token of their
    /// forms.
    pub csrf: Option<String>,
}

impl Who {
    pub fn acting(&self) -> bool {
        self.csrf.is_some()
    }
}

/// The version of the assets, in their URLs, so a new console's are
/// fetched again.
const ASSETS: &str = env!("CARGO_PKG_VERSION");

pub fn page(title: &str, nav: Nav, who: &Who, body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(nav == target).then_some("page")] { (label) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · jetsaga console" }
                link rel="stylesheet" href=(format!("/assets/console.css?v={ASSETS}"));
                script src=(format!("/assets/console.js?v={ASSETS}")) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { "jetsaga" span { " console" } }
                    nav aria-label="Main" {
                        ul {
                            (item(Nav::Overview, "/", "Overview"))
                            (item(Nav::Sagas, "/sagas", "Sagas"))
                            (item(Nav::DeadLetters, "/dead-letters", "Dead letters"))
                        }
                    }
                    div class="who" {
                        span class="identity" title="The NATS identity the console connects as" {
                            (who.identity.map_or("connected", Identity::name))
                        }
                        @if let Some(csrf) = &who.csrf {
                            form method="post" action="/sign-out" class="inline" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" class="link" { "Sign out" }
                            }
                        } @else if who.can_act {
                            a href="/sign-in" { "Sign in to act" }
                        } @else {
                            span class="muted" { "read-only" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A message page: not found, bad request, unavailable.
pub fn message(title: &str, text: &str, who: &Who) -> Markup {
    page(
        title,
        Nav::None,
        who,
        html! {
            h1 { (title) }
            p class="error" role="alert" { (text) }
            p { a href="/" { "Back to the overview" } }
        },
    )
}

/// An RFC 3339 time as people read it: to the millisecond, in UTC.
fn when(at: &str) -> String {
    let Some((date, time)) = at.split_once('T') else {
        return at.to_owned();
    };
    let time = time.trim_end_matches('Z');
    let (seconds, fraction) = time.split_once('.').unwrap_or((time, ""));
    let millis: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(3)
        .collect();
    format!("{date} {seconds}.{millis} UTC")
}

fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn overview(snapshot: &Snapshot, who: &Who) -> Markup {
    let stuck = match snapshot.stuck {
        Some(n) => format!(
            "{}{}",
            number(n),
            if snapshot.stuck_more { "+" } else { "" }
        ),
        None => "?".to_owned(),
    };
    let latency = |f: fn(&crate::live::Latency) -> u64| {
        snapshot
            .latency
            .as_ref()
            .map_or("–".to_owned(), |l| format!("{} ms", number(f(l))))
    };
    page(
        "Overview",
        Nav::Overview,
        who,
        html! {
            h1 { "Overview" }
            p class="muted" {
                "Orders this console has seen since " time datetime=(snapshot.since) { (when(&snapshot.since)) }
                ". " span id="live-state" aria-live="polite" { "Live updates start when the page has loaded." }
            }
            section aria-labelledby="funnel-title" {
                h2 id="funnel-title" { "The funnel" }
                dl class="cards" {
                    div class="card" { dt { "Placed" } dd data-live="placed" { (number(snapshot.placed)) } }
                    div class="card" { dt { "In flight" } dd data-live="in_flight" { (number(snapshot.in_flight as u64)) } }
                    div class="card ok" { dt { "Confirmed" } dd data-live="confirmed" { (number(snapshot.confirmed)) } }
                    div class="card bad" { dt { "Cancelled" } dd data-live="cancelled_total" { (number(snapshot.cancelled_total)) } }
                    div class="card" { dt { "Rejected" } dd data-live="rejected" { (number(snapshot.rejected)) } }
                    div class="card warn" {
                        dt { a href="/sagas?status=stuck" { "Stuck" } }
                        dd data-live="stuck" { (stuck) }
                    }
                }
                h3 { "Cancelled, by reason" }
                table class="reasons" {
                    thead { tr { th scope="col" { "Reason" } th scope="col" class="num" { "Orders" } } }
                    tbody data-live="cancelled" {
                        @for (reason, count) in &snapshot.cancelled {
                            tr { td { code { (reason) } } td class="num" { (number(*count)) } }
                        }
                        @if snapshot.cancelled.is_empty() {
                            tr { td colspan="2" class="muted" { "None cancelled." } }
                        }
                    }
                }
            }
            section aria-labelledby="rate-title" {
                h2 id="rate-title" { "Throughput and latency" }
                dl class="cards" {
                    div class="card" { dt { "Placed / s" } dd data-live="placed_per_second" { (format!("{:.1}", snapshot.placed_per_second)) } }
                    div class="card" { dt { "Finished / s" } dd data-live="finished_per_second" { (format!("{:.1}", snapshot.finished_per_second)) } }
                    div class="card" { dt { "p50" } dd data-live="p50_ms" { (latency(|l| l.p50_ms)) } }
                    div class="card" { dt { "p90" } dd data-live="p90_ms" { (latency(|l| l.p90_ms)) } }
                    div class="card" { dt { "p99" } dd data-live="p99_ms" { (latency(|l| l.p99_ms)) } }
                    div class="card" { dt { "max" } dd data-live="max_ms" { (latency(|l| l.max_ms)) } }
                }
                p class="muted" { "Rates over the last 10 seconds; latency from placed to confirmed or cancelled, over the last minute." }
            }
            section aria-labelledby="recent-title" {
                h2 id="recent-title" { "Latest orders" }
                div class="scroll" {
                    table id="recent" {
                        thead { tr {
                            th scope="col" { "Order" } th scope="col" { "Status" }
                            th scope="col" { "Reason" } th scope="col" { "Seen" }
                        } }
                        tbody data-live="recent" {
                            @for order in &snapshot.recent {
                                tr data-order=(order.order_id) {
                                    td { a href=(format!("/sagas/{}", order.order_id)) { (order.order_id) } }
                                    td { span class=(format!("status {}", order.status.to_lowercase())) { (order.status) } }
                                    td { @if let Some(reason) = &order.reason { code { (reason) } } }
                                    td { time datetime=(order.at) { (when(&order.at)) } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The filters of the saga list, as links: `None` is every saga.
pub const FILTERS: [(Option<&str>, &str); 5] = [
    (None, "All"),
    (Some("stuck"), "Stuck"),
    (Some("running"), "Running"),
    (Some("compensating"), "Compensating"),
    (Some("finished"), "Finished"),
];

pub struct SagaPage<'a> {
    pub status: Option<&'a str>,
    pub limit: usize,
    pub sagas: &'a [SagaSummary],
    pub next: Option<String>,
    pub first_page: bool,
}

pub fn sagas(list: &SagaPage<'_>, who: &Who) -> Markup {
    let link = |status: Option<&str>, after: Option<&str>| {
        let mut query = Vec::new();
        if let Some(status) = status {
            query.push(format!("status={status}"));
        }
        if list.limit != events::saga::DEFAULT_LIST_LIMIT {
            query.push(format!("limit={}", list.limit));
        }
        if let Some(after) = after {
            query.push(format!("after={}", encode(after)));
        }
        if query.is_empty() {
            "/sagas".to_owned()
        } else {
            format!("/sagas?{}", query.join("&"))
        }
    };
    page(
        "Sagas",
        Nav::Sagas,
        who,
        html! {
            h1 { "Sagas" }
            div class="toolbar" {
                nav aria-label="Filter by status" class="filters" {
                    @for (status, label) in FILTERS {
                        a href=(link(status, None)) aria-current=[(status == list.status).then_some("page")]
                            class=[(status == Some("stuck")).then_some("stuck")] { (label) }
                    }
                }
                form method="get" action="/sagas" role="search" class="search" {
                    label for="q" { "Order id" }
                    input id="q" name="q" type="search" required maxlength="64" autocomplete="off"
                        placeholder="o-1001";
                    button type="submit" { "Open" }
                }
            }
            @if list.sagas.is_empty() {
                p class="muted" { "No saga matches." }
            } @else {
                p class="muted" {
                    (list.sagas.len()) @if list.sagas.len() == 1 { " saga" } @else { " sagas" } ", oldest first"
                    @if !list.first_page { ", continued" } "."
                }
                div class="scroll" {
                    table class="sagas" {
                        thead { tr {
                            th scope="col" { "Order" } th scope="col" { "State" }
                            th scope="col" { "Waiting on" } th scope="col" class="num" { "Attempt" }
                            th scope="col" { "Started" } th scope="col" { "Updated" }
                        } }
                        tbody {
                            @for saga in list.sagas {
                                tr class=[saga.is_stuck().then_some("stuck")] {
                                    td { a href=(format!("/sagas/{}", saga.order_id)) { (saga.order_id) } }
                                    td { span class=(format!("state {}", state_class(&saga.state))) { (wire_name(&saga.state)) } }
                                    td { @if let Some(step) = &saga.waiting_on { code { (step) } } }
                                    td class="num" { (saga.attempt) }
                                    td { time datetime=(saga.started_at) { (when(&saga.started_at)) } }
                                    td { time datetime=(saga.updated_at) { (when(&saga.updated_at)) } }
                                }
                            }
                        }
                    }
                }
            }
            nav aria-label="Pages" class="pager" {
                @if !list.first_page { a href=(link(list.status, None)) { "First page" } }
                @if let Some(next) = &list.next { a href=(link(list.status, Some(next))) rel="next" { "Next page" } }
            }
        },
    )
}

/// What a saga page shows.
pub struct SagaDetail<'a> {
    pub order_id: &'a str,
    pub saga: Option<&'a SagaView>,
    pub order: Option<&'a Order>,
    pub timeline: Option<&'a Timeline>,
    pub trace_url: Option<String>,
    pub notice: Option<String>,
}

pub fn saga(detail: &SagaDetail<'_>, who: &Who) -> Markup {
    let finished = detail.saga.is_none_or(|s| s.state.is_terminal());
    page(
        &format!("Order {}", detail.order_id),
        Nav::Sagas,
        who,
        html! {
            h1 { "Order " code { (detail.order_id) } }
            @if let Some(notice) = &detail.notice { p class="notice" role="status" { (notice) } }
            dl class="facts" {
                @if let Some(saga) = detail.saga {
                    dt { "Saga" } dd { span class=(format!("state {}", state_class(&saga.state))) { (wire_name(&saga.state)) } }
                    @if let Some(step) = &saga.waiting_on {
                        dt { "Waiting on" } dd { code { (step) } " (" (participant(step)) "), attempt " (saga.attempt) }
                    }
                    @if let Some(deadline) = &saga.deadline {
                        dt { "Deadline" } dd { time datetime=(deadline) { (when(deadline)) } }
                    }
                    @if let Some(reason) = &saga.reason {
                        dt { "Reason" } dd { code { (reason.as_str()) } }
                    }
                }
                @if let Some(order) = detail.order {
                    dt { "Order" } dd { (wire_name(&order.status)) }
                    dt { "Customer" } dd { code { (order.customer_id) } }
                    @if let Some(total) = order.total_cents { dt { "Total" } dd { (cents(total.0)) } }
                }
                @if let Some(url) = &detail.trace_url {
                    dt { "Trace" } dd { a href=(url) target="_blank" rel="noopener noreferrer" { "Open its trace" } }
                }
            }
            @if detail.saga.is_none() {
                p class="muted" { "No saga history is kept for this order: it finished longer ago than the history is kept (SAGA_HISTORY_RETENTION_SECONDS), or its saga has not started." }
            }
            @if let (Some(saga), true) = (detail.saga, who.can_act && !finished) {
                section aria-labelledby="act-title" class="actions" {
                    h2 id="act-title" { "Act on it" }
                    @if who.acting() {
                        p {
                            a class="button" href=(format!("/sagas/{}/retry", saga.order_id)) { "Retry the current step…" }
                            " "
                            a class="button danger" href=(format!("/sagas/{}/abort", saga.order_id)) { "Abort…" }
                            " "
                            a class="button danger" href=(format!("/sagas/{}/cancel", saga.order_id)) { "Cancel the order…" }
                        }
                    } @else {
                        p { a href=(format!("/sign-in?next=/sagas/{}", saga.order_id)) { "Sign in as operator" } " to retry, abort or cancel it." }
                    }
                }
            }
            @if let Some(timeline) = detail.timeline {
                section aria-labelledby="timeline-title" {
                    h2 id="timeline-title" { "Timeline" }
                    div class="legend" aria-hidden="true" {
                        span class="key forward" { "step" } span class="key compensation" { "compensation" }
                        span class="key failed" { "failed or timed out" } span class="key abandoned" { "abandoned" }
                        span class="key open" { "waiting" }
                        span class="key deadline" { "deadline" } span class="key mark" { "operator" }
                    }
                    div class="scroll" { (timeline.svg(finished)) }
                }
            }
            @if let Some(order) = detail.order {
                section aria-labelledby="lines-title" {
                    h2 id="lines-title" { "Lines" }
                    table {
                        thead { tr { th scope="col" { "Sku" } th scope="col" class="num" { "Quantity" } th scope="col" class="num" { "Unit price" } } }
                        tbody {
                            @for line in &order.items {
                                tr {
                                    td { code { (line.sku) } }
                                    td class="num" { (line.quantity.get()) }
                                    td class="num" { (line.unit_price_cents.map_or("–".to_owned(), |p| cents(p.0))) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(saga) = detail.saga {
                section aria-labelledby="history-title" {
                    h2 id="history-title" { "History" }
                    div class="scroll" {
                        table class="history" {
                            thead { tr {
                                th scope="col" { "At" } th scope="col" { "Step" } th scope="col" { "Status" }
                                th scope="col" { "Who" }
                            } }
                            tbody {
                                @for step in &saga.steps {
                                    tr {
                                        td { time datetime=(step.at) { (when(&step.at)) } }
                                        td { code { (step.name) } @if crate::timeline::is_compensation(&step.name) { " (compensation)" } }
                                        td { span class=(format!("step {}", status_name(step.status))) { (status_name(step.status)) } }
                                        td { (who_did(step)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Who did a step: the operator's identity for an action on the saga;
/// for a saga step, the orchestrator asked and the participant answered.
fn who_did(step: &events::saga::Step) -> String {
    if let Some(by) = &step.by {
        return by.clone();
    }
    match step.status {
        events::saga::StepStatus::Requested => "saga-orchestrator asked".to_owned(),
        events::saga::StepStatus::TimedOut | events::saga::StepStatus::Abandoned => {
            "saga-orchestrator".to_owned()
        }
        _ => participant(&step.name).to_owned(),
    }
}

/// The confirmation of an action: what it does, and the form that does it.
pub fn confirm(
    title: &str,
    explain: &str,
    action: &str,
    button: &str,
    back: &str,
    who: &Who,
) -> Markup {
    page(
        title,
        Nav::None,
        who,
        html! {
            h1 { (title) }
            p { (explain) }
            form method="post" action=(action) class="confirm" {
                input type="hidden" name="csrf" value=(who.csrf.as_deref().unwrap_or_default());
                button type="submit" class="danger" autofocus { (button) }
                " "
                a href=(back) { "Keep it as it is" }
            }
        },
    )
}

pub fn sign_in(next: &str, failed: bool, who: &Who) -> Markup {
    page(
        "Sign in",
        Nav::None,
        who,
        html! {
            h1 { "Sign in as operator" }
            p { "Signed in, you may retry, abort and cancel sagas and replay dead letters. Each asks for confirmation." }
            @if failed { p class="error" role="alert" { "That is not the operator token." } }
            form method="post" action="/sign-in" class="sign-in" {
                input type="hidden" name="next" value=(next);
                label for="token" { "Operator token" }
                input id="token" name="token" type="password" required autocomplete="current-password" autofocus;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub struct LetterPage<'a> {
    pub letters: &'a [DeadLetter],
    pub next: Option<u64>,
    pub first_page: bool,
    pub notice: Option<String>,
}

pub fn dead_letters(list: &LetterPage<'_>, who: &Who) -> Markup {
    page(
        "Dead letters",
        Nav::DeadLetters,
        who,
        html! {
            h1 { "Dead letters" }
            @if let Some(notice) = &list.notice { p class="notice" role="status" { (notice) } }
            p class="muted" { "Messages a service could not use, or gave up on after its retries; oldest first." }
            @if list.letters.is_empty() {
                p { "No dead letter." }
            } @else {
                div class="scroll" {
                    table class="letters" {
                        thead { tr {
                            th scope="col" class="num" { "#" } th scope="col" { "When" }
                            th scope="col" { "Subject" } th scope="col" { "Reason" }
                            th scope="col" class="num" { "Deliveries" }
                        } }
                        tbody {
                            @for letter in list.letters {
                                tr {
                                    td class="num" { a href=(format!("/dead-letters/{}", letter.seq)) { (letter.seq) } }
                                    td { time datetime=(letter.time) { (when(&letter.time)) } }
                                    td { code { (letter.original_subject) } br; span class="muted" { (letter.subject) } }
                                    td { (letter.reason) }
                                    td class="num" { (letter.deliveries) }
                                }
                            }
                        }
                    }
                }
            }
            nav aria-label="Pages" class="pager" {
                @if !list.first_page { a href="/dead-letters" { "First page" } }
                @if let Some(next) = list.next { a href=(format!("/dead-letters?after={}", next - 1)) rel="next" { "Next page" } }
            }
        },
    )
}

pub fn dead_letter(letter: &DeadLetter, who: &Who) -> Markup {
    let body = String::from_utf8_lossy(&letter.body);
    let pretty = serde_json::from_slice::<serde_json::Value>(&letter.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    let replayable = letter.replayable();
    page(
        &format!("Dead letter #{}", letter.seq),
        Nav::DeadLetters,
        who,
        html! {
            h1 { "Dead letter #" (letter.seq) }
            dl class="facts" {
                dt { "Subject" } dd { code { (letter.subject) } }
                dt { "Original subject" } dd { code { (letter.original_subject) } }
                dt { "Reason" } dd { (letter.reason) }
                dt { "Deliveries" } dd { (letter.deliveries) }
                dt { "When" } dd { time datetime=(letter.time) { (when(&letter.time)) } }
            }
            section aria-labelledby="headers-title" {
                h2 id="headers-title" { "Headers" }
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                    tbody {
                        @for (name, values) in letter.headers.iter() {
                            @for value in values {
                                tr { td { code { (name.to_string()) } } td { code class="wrap" { (value.as_str()) } } }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="body-title" {
                h2 id="body-title" { "Body" }
                @if pretty.is_none() { p class="muted" { "Not JSON: shown as received." } }
                pre class="body" { code { (pretty.as_deref().unwrap_or(&body)) } }
            }
            section aria-labelledby="replay-title" class="actions" {
                h2 id="replay-title" { "Replay" }
                @match replayable {
                    Err(why) => p class="muted" { "Not replayable: " (why.to_string()) },
                    Ok(()) if !who.can_act => p class="muted" { "This console is read-only." },
                    Ok(()) if !who.acting() => p { a href=(format!("/sign-in?next=/dead-letters/{}", letter.seq)) { "Sign in as operator" } " to replay it." },
                    Ok(()) => p { a class="button" href=(format!("/dead-letters/{}/replay", letter.seq)) { "Replay to " code { (letter.original_subject) } "…" } },
                }
            }
        },
    )
}

/// A state's name as the contract spells it (`CONFIRMED`, `REFUNDING`).
fn wire_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn state_class(state: &events::saga::SagaState) -> &'static str {
    use events::saga::SagaState::*;
    match state {
        Confirmed => "confirmed",
        Cancelled => "cancelled",
        s if s.is_compensating() => "compensating",
        _ => "running",
    }
}

fn cents(cents: u64) -> String {
    format!("{}.{:02}", number(cents / 100), cents % 100)
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The trace link of an order, from the `CONSOLE_TRACE_URL` template; a
/// template that needs a trace id gives none without one.
pub fn trace_link(template: &str, order_id: &str, trace_id: Option<&str>) -> Option<String> {
    if template.contains("{trace_id}") && trace_id.is_none() {
        return None;
    }
    Some(
        template
            .replace("{trace_id}", trace_id.unwrap_or_default())
            .replace("{order_id}", &encode(order_id)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_to_the_millisecond() {
        assert_eq!(
            when("2026-12-02T16:29:46.552713654Z"),
            "2026-12-02 16:29:46.552 UTC"
        );
        assert_eq!(when("2026-12-02T16:29:46Z"), "2026-12-02 16:29:46.000 UTC");
        assert_eq!(when("yesterday"), "yesterday");
    }

    #[test]
    fn numbers_and_money_read_well() {
        assert_eq!(number(0), "0");
        assert_eq!(number(1234567), "1,234,567");
        assert_eq!(cents(123456), "1,234.56");
    }

    #[test]
    fn the_trace_link_fills_the_template() {
        let jaeger = "http://localhost:16686/trace/{trace_id}";
        assert_eq!(
            trace_link(jaeger, "o-1", Some("4bf92f3577b34da6a3ce929d0e0e4736")).as_deref(),
            Some("http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_link(jaeger, "o-1", None), None);
        assert_eq!(
            trace_link("http://tempo/search?q={order_id}", "o 1", None).as_deref(),
            Some("http://tempo/search?q=o%201")
        );
    }
}
