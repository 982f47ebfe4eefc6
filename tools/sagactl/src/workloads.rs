//! The flags of `sagactl seed` and `sagactl load`, and what they ask of
//! the [`workload`] crate.

use std::time::Duration;

use clap::Args;
use workload::{customer_name, sku_name, Plan, Spec};

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    /// A catalogue and customers from a JSON file instead of the flags:
    /// `{"skus": [{"sku": "sku-01", "stock": 500, "price_cents": 1299}],
    /// "customers": [{"customer_id": "c-01", "balance_cents": 100000}]}`.
    #[arg(long, conflicts_with_all = ["skus", "stock", "price", "customers", "balance"])]
    pub file: Option<std::path::PathBuf>,
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
    /// What to seed: the file's, or the flags'.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        match &self.file {
            Some(path) => workload::seed::plan_from_file(path),
            None => Ok(Plan {
                skus: (1..=self.skus)
                    .map(|i| (sku_name(i), self.stock, self.price))
                    .collect(),
                customers: (1..=self.customers)
                    .map(|i| (customer_name(i), self.balance))
                    .collect(),
            }),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Place orders for this many seconds instead of a count.
    #[arg(long, conflicts_with = "count")]
    pub duration: Option<u64>,
    /// Orders per second; without it, as fast as JetStream acknowledges.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Without --rate: keep at most this many orders unsettled at once.
    #[arg(long, conflicts_with = "rate")]
    pub max_in_flight: Option<usize>,
    /// Skus to order from (sku-01 .. sku-NN, as `seed` makes them).
    #[arg(long, default_value_t = 20)]
    pub skus: usize,
    /// Customers to order for (c-01 .. c-NN).
    #[arg(long, default_value_t = 40)]
    pub customers: usize,
    /// Most lines per order.
    #[arg(long, default_value_t = 3)]
    pub max_lines: usize,
    /// Give up on orders still pending this long after the last was placed.
    #[arg(long, default_value_t = 60)]
    pub settle_seconds: u64,
}

impl LoadArgs {
    /// The run these flags ask for; `quiet` hides the progress bar.
    pub fn spec(&self, quiet: bool) -> Spec {
        Spec {
            count: if self.duration.is_some() {
                usize::MAX
            } else {
                self.count
            },
            duration: self.duration.map(Duration::from_secs),
            rate: self.rate,
            max_in_flight: self.max_in_flight,
            skus: (1..=self.skus).map(sku_name).collect(),
            customers: (1..=self.customers).map(customer_name).collect(),
            max_lines: self.max_lines.max(1),
            settle: Duration::from_secs(self.settle_seconds),
            progress: !quiet,
        }
    }
}
