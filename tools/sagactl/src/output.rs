//! Readable text by default, JSON with `--json`: one place that decides.

use std::fmt::Display;

use events::saga::SagaView;
use events::Order;
use serde::Serialize;

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
            for step in &saga.steps {
                println!("  {}  {:<15} {:?}", step.at, step.name, step.status);
            }
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
