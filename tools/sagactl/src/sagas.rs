//! Finding and acting on sagas: `sagactl sagas` lists them (every page of
//! `saga.query.list`), `sagactl cancel` cancels an order, `sagactl saga
//! retry|abort` asks a saga's step again or compensates it now.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use events::saga::{ListStatus, SagaSummary, SagaView};
use events::subjects;
use jetsaga_client::Client;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::output::Align::{Left, Right};
use crate::output::{columns, Output};
use crate::NOT_FOUND;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// running, compensating, finished or stuck; every saga without it.
    #[arg(long, conflicts_with = "stuck")]
    status: Option<ListStatus>,
    /// The stuck sagas: unfinished, their current step asked more than
    /// once (the same as --status stuck).
    #[arg(long)]
    stuck: bool,
}

#[derive(Debug, Subcommand)]
pub enum SagaCommand {
    /// Ask the saga's current step again now, with a fresh deadline
    /// (`saga.cmd.retry`; operator).
    Retry { order_id: String },
    /// Stop the saga going forward and compensate now: the order ends
    /// CANCELLED, aborted_by_operator (`saga.cmd.abort`; operator).
    Abort {
        order_id: String,
        /// Wait until the order settles, and show it.
        #[arg(long)]
        wait: bool,
    },
}

/// `sagactl sagas`.
pub async fn list(client: &Client, out: &Output, args: ListArgs) -> anyhow::Result<ExitCode> {
    let status = if args.stuck {
        Some(ListStatus::Stuck)
    } else {
        args.status
    };
    let sagas = client.all_sagas(status).await?;
    out.value(&sagas, || table(&sagas, OffsetDateTime::now_utc()));
    Ok(ExitCode::SUCCESS)
}

/// `sagactl cancel ID`: `orders.cmd.cancel` for an order that exists.
pub async fn cancel(
    client: &Client,
    out: &Output,
    order_id: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let Some(order) = client.order(order_id).await? else {
        out.not_found(&format!("order {order_id}"));
        return Ok(ExitCode::from(NOT_FOUND));
    };
    if order.status != events::OrderStatus::Pending {
        out.value(&order, || {
            format!(
                "order {order_id} is {:?} already: nothing to cancel",
                order.status
            )
        });
        return Ok(ExitCode::SUCCESS);
    }
    let ack = client.ask(subjects::CANCEL_ORDER, order_id).await?;
    settle(
        client,
        out,
        order_id,
        wait,
        "orders.cmd.cancel",
        ack.sequence,
    )
    .await
}

/// `sagactl saga retry|abort ID`.
pub async fn act(client: &Client, out: &Output, command: SagaCommand) -> anyhow::Result<ExitCode> {
    let (subject, order_id, wait) = match &command {
        SagaCommand::Retry { order_id } => (subjects::RETRY_SAGA, order_id, false),
        SagaCommand::Abort { order_id, wait } => (subjects::ABORT_SAGA, order_id, *wait),
    };
    let Some(saga) = client.saga(order_id).await? else {
        out.not_found(&format!("saga for order {order_id}"));
        return Ok(ExitCode::from(NOT_FOUND));
    };
    if saga.state.is_terminal() {
        out.value(&saga, || {
            format!(
                "the saga of order {order_id} is {:?} already: nothing to do",
                saga.state
            )
        });
        return Ok(ExitCode::SUCCESS);
    }
    let ack = client.ask(subject, order_id).await?;
    settle(client, out, order_id, wait, subject, ack.sequence).await
}

/// Says the request was stored, or with `wait`, how the order ended.
async fn settle(
    client: &Client,
    out: &Output,
    order_id: &str,
    wait: bool,
    subject: &str,
    sequence: u64,
) -> anyhow::Result<ExitCode> {
    if !wait {
        out.value(
            &serde_json::json!({"order_id": order_id, "subject": subject, "stream_sequence": sequence}),
            || format!("asked: {subject} #{sequence} for order {order_id}"),
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(order) = crate::settled(client, order_id, SETTLE_WITHIN).await? else {
        anyhow::bail!("order {order_id} still pending after {SETTLE_WITHIN:?}");
    };
    let saga: Option<SagaView> = client.saga(order_id).await?;
    out.order(&order, saga.as_ref());
    Ok(ExitCode::SUCCESS)
}

/// How long `--wait` waits for the order to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(120);

/// The sagas as an aligned table, with how long each has run and how long
/// since it last moved.
fn table(sagas: &[SagaSummary], now: OffsetDateTime) -> String {
    use std::fmt::Write;
    let ago = |at: &str| match OffsetDateTime::parse(at, &Rfc3339) {
        Ok(at) => human((now - at).whole_seconds()),
        Err(_) => at.to_owned(),
    };
    let rows: Vec<[String; 6]> = sagas
        .iter()
        .map(|s| {
            [
                s.order_id.to_string(),
                format!("{:?}", s.state).to_uppercase(),
                s.waiting_on.clone().unwrap_or_else(|| "-".to_owned()),
                s.attempt.to_string(),
                ago(&s.started_at),
                ago(&s.updated_at),
            ]
        })
        .collect();
    let mut out = columns(
        "",
        ["order", "state", "waiting on", "attempt", "age", "idle"],
        [Left, Left, Left, Right, Right, Right],
        &rows,
    );
    let _ = write!(
        out,
        "{} saga{}",
        sagas.len(),
        if sagas.len() == 1 { "" } else { "s" }
    );
    out
}

/// `seconds` as the largest unit or two that fit: `42s`, `3m05s`, `2h10m`, `3d04h`.
fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::saga::SagaState;
    use events::OrderId;

    #[test]
    fn durations_read_in_the_largest_units_that_fit() {
        assert_eq!(human(-3), "0s");
        assert_eq!(human(42), "42s");
        assert_eq!(human(185), "3m05s");
        assert_eq!(human(7_800), "2h10m");
        assert_eq!(human(273_600), "3d04h");
    }

    #[test]
    fn the_table_shows_what_each_saga_waits_on_and_for_how_long() {
        let now = OffsetDateTime::parse("2026-12-01T10:05:00Z", &Rfc3339).unwrap();
        let sagas = [SagaSummary {
            order_id: OrderId::parse("o-17").unwrap(),
            state: SagaState::Charging,
            waiting_on: Some("charge_payment".to_owned()),
            attempt: 3,
            started_at: "2026-12-01T10:00:00Z".to_owned(),
            updated_at: "2026-12-01T10:04:30Z".to_owned(),
        }];
        let table = table(&sagas, now);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["order", "state", "waiting", "on", "attempt", "age", "idle"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["o-17", "CHARGING", "charge_payment", "3", "5m00s", "30s"]
        );
        assert_eq!(lines[2], "1 saga");
    }
}
