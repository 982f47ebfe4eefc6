//! Readable text by default, JSON with `--json`: one place that decides.

use std::fmt::Display;

use events::saga::{SagaView, Step};
use events::Order;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or the text `describe` makes of it.
    pub fn value<T: Serialize>(&self, value: &T, describe: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string(value).expect("serializes"));
        } else {
            println!("{}", describe());
        }
    }

    pub fn order(&self, order: &Order, saga: Option<&SagaView>) {
        if self.json {
            println!("{}", serde_json::json!({"order": order, "saga": saga}));
            return;
        }
        let reason = order
            .reason
            .map(|r| format!(" ({})", r.as_str()))
            .unwrap_or_default();
        println!(
            "order {} for {}: {:?}{reason}",
            order.order_id, order.customer_id, order.status
        );
        for line in &order.items {
            let price = line
                .unit_price_cents
                .map(|p| format!(" at {p}"))
                .unwrap_or_default();
            println!("  {} x {}{price}", line.quantity.get(), line.sku);
        }
        if let Some(total) = order.total_cents {
            println!("  total {total}");
        }
        if let Some(saga) = saga {
            match &saga.waiting_on {
                Some(step) => println!(
                    "saga: {:?}, waiting on {step} (attempt {})",
                    saga.state, saga.attempt
                ),
                None => println!("saga: {:?}", saga.state),
            }
            print!("{}", history(&saga.steps));
        }
    }

    /// One order event, as `sagactl watch` shows it.
    pub fn event(&self, subject: &str, payload: &[u8]) {
        if self.json {
            let body: serde_json::Value = serde_json::from_slice(payload)
                .unwrap_or_else(|_| String::from_utf8_lossy(payload).into());
            println!("{}", serde_json::json!({"subject": subject, "event": body}));
            return;
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(payload) else {
            println!("{subject}: {}", String::from_utf8_lossy(payload));
            return;
        };
        let field = |name: &str| body[name].as_str().unwrap_or("-").to_owned();
        match body["type"].as_str() {
            Some("rejected") => println!("rejected   {:<20} {}", field("order_id"), body["errors"]),
            Some(kind) => {
                let total = body["total_cents"]
                    .as_u64()
                    .map(|t| format!(" total {}", events::Cents(t)))
                    .unwrap_or_default();
                let reason = body["reason"]
                    .as_str()
                    .map(|r| format!(" reason {r}"))
                    .unwrap_or_default();
                println!(
                    "{kind:<10} {:<20} {:<10} customer {}{total}{reason}",
                    field("order_id"),
                    field("status"),
                    field("customer_id")
                );
            }
            None => println!("{subject}: {body}"),
        }
    }

    pub fn not_found(&self, what: &str) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({"error": {"code": "not_found", "message": format!("no {what}")}})
            );
        } else {
            eprintln!("no {what}");
        }
    }

    pub fn error(&self, error: &impl Display) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({"error": {"code": "failed", "message": format!("{error:#}")}})
            );
        } else {
            eprintln!("error: {error:#}");
        }
    }
}

/// A saga's history as an aligned table: when (UTC, to the millisecond),
/// how long after the saga's first step, the step and what became of it.
fn history(steps: &[Step]) -> String {
    let parsed: Vec<Option<OffsetDateTime>> = steps
        .iter()
        .map(|s| OffsetDateTime::parse(&s.at, &Rfc3339).ok())
        .collect();
    let start = parsed.iter().flatten().min().copied();
    let rows: Vec<[String; 4]> = steps
        .iter()
        .zip(&parsed)
        .map(|(step, at)| {
            let when = match at {
                Some(at) => format!(
                    "{} {:02}:{:02}:{:02}.{:03}",
                    at.date(),
                    at.hour(),
                    at.minute(),
                    at.second(),
                    at.millisecond()
                ),
                None => step.at.clone(),
            };
            let since = match (at, start) {
                (Some(at), Some(start)) => {
                    format!("+{} ms", (*at - start).whole_milliseconds())
                }
                _ => "-".to_owned(),
            };
            let status = serde_json::to_value(step.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", step.status));
            let status = match &step.by {
                Some(by) => format!("{status} by {by}"),
                None => status,
            };
            [when, since, step.name.clone(), status]
        })
        .collect();
    columns(
        "  ",
        ["time (UTC)", "since start", "step", "status"],
        [Align::Left, Align::Right, Align::Left, Align::Left],
        &rows,
    )
}

/// How a column of [`columns`] is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// `header` over `rows` in aligned columns two spaces apart, each line
/// after `indent`. A last column aligned left is not padded, so that no
/// line ends in spaces.
pub fn columns<const N: usize>(
    indent: &str,
    header: [&str; N],
    align: [Align; N],
    rows: &[[String; N]],
) -> String {
    let header = header.map(str::to_owned);
    let widths: [usize; N] = std::array::from_fn(|i| {
        rows.iter()
            .chain([&header])
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    });
    let mut table = String::new();
    for row in [&header].into_iter().chain(rows) {
        let cells: Vec<String> = (0..N)
            .map(|i| match align[i] {
                Align::Right => format!("{:>w$}", row[i], w = widths[i]),
                Align::Left if i + 1 == N => row[i].clone(),
                Align::Left => format!("{:<w$}", row[i], w = widths[i]),
            })
            .collect();
        table.push_str(indent);
        table.push_str(&cells.join("  "));
        table.push('\n');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::saga::StepStatus;

    fn step(name: &str, status: StepStatus, at: &str) -> Step {
        Step {
            by: None,
            name: name.to_owned(),
            status,
            at: at.to_owned(),
        }
    }

    #[test]
    fn a_history_is_an_aligned_table_with_readable_times() {
        let table = history(&[
            step(
                "reserve_stock",
                StepStatus::Requested,
                "2026-12-01T20:56:34.123456Z",
            ),
            step(
                "reserve_stock",
                StepStatus::Succeeded,
                "2026-12-01T20:56:34.140Z",
            ),
            step(
                "charge_payment",
                StepStatus::TimedOut,
                "2026-12-01T20:56:45.2Z",
            ),
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("  time (UTC)"));
        assert!(lines[1].contains("2026-12-01 20:56:34.123"));
        assert!(lines[2].contains("+16 ms"));
        assert!(lines[3].contains("+11076 ms"));
        assert!(lines[3].ends_with("timed_out"));
        // Every column starts at the same place on every line.
        let column = |l: &str| l.find("reserve_stock").or(l.find("charge_payment"));
        assert_eq!(column(lines[1]), column(lines[3]));
        assert_eq!(lines[0].find("step"), column(lines[1]));
    }

    #[test]
    fn an_unreadable_time_is_shown_as_it_came() {
        let table = history(&[step("finish", StepStatus::Succeeded, "yesterday")]);
        assert!(table.contains("yesterday"));
        assert!(table.contains(" - "));
    }
}
