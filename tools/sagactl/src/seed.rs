//! Stocking a catalogue and funding customers, and waiting until the
//! services show it.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use jetsaga_client::Client;
use serde::Serialize;

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// Number of skus, named sku-01, sku-02, ...
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Units of each sku.
    #[arg(long, default_value_t = 500)]
    pub stock: u64,
    /// Unit price in cents of each sku (the same for all; the demo varies it).
    #[arg(long, default_value_t = 1299)]
    pub price: u64,
    /// Number of customers, named c-01, c-02, ...
    #[arg(long, default_value_t = 40)]
    pub customers: usize,
    /// Balance of each customer, in cents.
    #[arg(long, default_value_t = 1_000_000)]
    pub balance: u64,
}

impl SeedArgs {
    pub fn plan(&self) -> Plan {
        Plan {
            skus: (1..=self.skus)
                .map(|i| (sku_name(i), self.stock, self.price))
                .collect(),
            customers: (1..=self.customers)
                .map(|i| (customer_name(i), self.balance))
                .collect(),
        }
    }
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
/// the queries (the services apply them asynchronously).
pub async fn seed(client: &Client, plan: &Plan) -> anyhow::Result<Seeded> {
    for (sku, units, price) in &plan.skus {
        client.restock(sku, *units, Some(*price)).await?;
    }
    for (customer, cents) in &plan.customers {
        client.deposit(customer, *cents).await?;
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
    }
    Ok(Seeded {
        skus: plan.skus.len(),
        customers: plan.customers.len(),
    })
}
