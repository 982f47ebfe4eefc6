//! Stocking a catalogue and funding customers, and waiting until the
//! services show it.

use std::time::Duration;

use anyhow::Context;
use jetsaga_client::Client;
use serde::Serialize;

use crate::progress;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    #[serde(default)]
    skus: Vec<SkuLine>,
    #[serde(default)]
    customers: Vec<CustomerLine>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SkuLine {
    sku: events::ids::Sku,
    stock: u64,
    price_cents: u64,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerLine {
    customer_id: events::ids::CustomerId,
    balance_cents: u64,
}

/// Reads a seed file; every mistake is named with where it is.
pub fn plan_from_file(path: &std::path::Path) -> anyhow::Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut json = serde_json::Deserializer::from_str(&text);
    let file: SeedFile = serde_path_to_error::deserialize(&mut json)
        .map_err(|e| anyhow::anyhow!("{}: at {}: {}", path.display(), e.path(), e.inner()))?;
    anyhow::ensure!(
        !file.skus.is_empty() || !file.customers.is_empty(),
        "{}: neither skus nor customers to seed",
        path.display()
    );
    for (i, line) in file.skus.iter().enumerate() {
        anyhow::ensure!(
            (1..=events::commands::MAX_RESTOCK).contains(&line.stock),
            "{}: skus[{i}].stock must be between 1 and {}",
            path.display(),
            events::commands::MAX_RESTOCK
        );
        anyhow::ensure!(
            (1..=events::commands::MAX_PRICE_CENTS).contains(&line.price_cents),
            "{}: skus[{i}].price_cents must be between 1 and {}",
            path.display(),
            events::commands::MAX_PRICE_CENTS
        );
    }
    for (i, line) in file.customers.iter().enumerate() {
        anyhow::ensure!(
            line.balance_cents > 0,
            "{}: customers[{i}].balance_cents must be positive",
            path.display()
        );
    }
    Ok(Plan {
        skus: file
            .skus
            .into_iter()
            .map(|l| (l.sku.to_string(), l.stock, l.price_cents))
            .collect(),
        customers: file
            .customers
            .into_iter()
            .map(|l| (l.customer_id.to_string(), l.balance_cents))
            .collect(),
    })
}

pub fn sku_name(i: usize) -> String {
    format!("sku-{i:02}")
}

pub fn customer_name(i: usize) -> String {
    format!("c-{i:02}")
}

/// What to seed: `(sku, units, price)` and `(customer, cents)`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub skus: Vec<(String, u64, u64)>,
    pub customers: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
pub struct Seeded {
    pub skus: usize,
    pub customers: usize,
}

/// Publishes the restocks and deposits, then waits until every one shows in
/// the queries (the services apply them asynchronously). `progress` shows
/// a bar on a terminal.
pub async fn seed(client: &Client, plan: &Plan, progress: bool) -> anyhow::Result<Seeded> {
    let total = 2 * (plan.skus.len() + plan.customers.len());
    let bar = progress::bar(progress, Some(total), "seeding");
    for (sku, units, price) in &plan.skus {
        client.restock(sku, *units, Some(*price)).await?;
        bar.inc(1);
    }
    for (customer, cents) in &plan.customers {
        client.deposit(customer, *cents).await?;
        bar.inc(1);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (sku, _, _) in &plan.skus {
        while client.stock(sku).await?.is_none() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "sku {sku} not stocked after 60 s: is inventory-service running?"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.inc(1);
    }
    for (customer, _) in &plan.customers {
        while client
            .account(customer)
            .await
            .context("querying an account")?
            .is_none()
        {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "customer {customer} not funded after 60 s: is payment-service running?"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(Seeded {
        skus: plan.skus.len(),
        customers: plan.customers.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(json: &str) -> anyhow::Result<Plan> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("catalogue.json");
        std::fs::write(&path, json)?;
        plan_from_file(&path)
    }

    #[test]
    fn a_seed_file_gives_its_skus_and_customers() {
        let plan = plan_of(
            r#"{"skus":[{"sku":"sku-1","stock":5,"price_cents":1299}],
                "customers":[{"customer_id":"c-1","balance_cents":100}]}"#,
        )
        .unwrap();
        assert_eq!(plan.skus, vec![("sku-1".to_owned(), 5, 1299)]);
        assert_eq!(plan.customers, vec![("c-1".to_owned(), 100)]);
    }

    #[test]
    fn a_mistake_in_a_seed_file_is_named_with_where_it_is() {
        let error = |json| format!("{:#}", plan_of(json).unwrap_err());
        assert!(error(r#"{"skus":[{"sku":"a b","stock":5,"price_cents":1}]}"#).contains("skus[0]"));
        assert!(
            error(r#"{"skus":[{"sku":"s","stock":0,"price_cents":1}]}"#).contains("skus[0].stock")
        );
        assert!(
            error(r#"{"customers":[{"customer_id":"c","balance_cents":0}]}"#)
                .contains("customers[0].balance_cents")
        );
        assert!(error(r#"{"skus":[],"customers":[]}"#).contains("neither skus nor customers"));
        assert!(error(r#"{"sku":[]}"#).contains("unknown field"));
    }
}
