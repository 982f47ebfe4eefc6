//! `sagactl`: the jetsaga operator CLI. Secure a deployment (`auth init`)
//! and provision its streams, place and follow orders, look up stock and
//! balances, watch the order events, seed a catalogue, generate load, run
//! the whole demo, and run the benchmark (`jetsaga-bench`).
//!
//! Exit codes: 0 success, 1 failure, 2 bad usage, 3 not found.

mod admin;
mod audit;
mod bench;
mod connect;
mod demo;
mod dlq;
mod output;
mod sagas;
mod workloads;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use jetsaga_client::Client;

use crate::output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "sagactl",
    version,
    about = "Operate and exercise a jetsaga deployment"
)]
struct Cli {
    #[command(flatten)]
    connect: connect::ConnectArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Identities and permissions: write the server's auth.conf and the
    /// credentials files.
    #[command(subcommand)]
    Auth(admin::AuthCommand),
    /// Create or update every stream (as `admin`); --check only reports.
    Provision(admin::ProvisionArgs),
    /// Place an order: `sagactl place --customer c-7 sku-1:2 sku-2:1`.
    Place {
        /// Lines as `sku:quantity`.
        #[arg(required = true)]
        items: Vec<String>,
        #[arg(long)]
        customer: String,
        /// Without it, the order service derives one.
        #[arg(long)]
        order_id: Option<String>,
        /// Wait until the order is confirmed or cancelled, and show it.
        #[arg(long)]
        wait: bool,
    },
    /// Show an order and its saga's history.
    Get { order_id: String },
    /// Show a sku's stock and price.
    Stock { sku: String },
    /// Show a customer's balance.
    Account { customer_id: String },
    /// Follow the order events (`orders.evt.>`) as they happen.
    Watch,
    /// List the sagas, oldest first: all, or by --status, or --stuck.
    Sagas(sagas::ListArgs),
    /// Cancel a pending order (`orders.cmd.cancel`): every step done so
    /// far is compensated and the order ends CANCELLED,
    /// cancelled_by_request. An order confirmed first stays confirmed.
    Cancel {
        order_id: String,
        /// Wait until the order settles, and show it.
        #[arg(long)]
        wait: bool,
    },
    /// Act on one saga: retry its step, or abort it (operator).
    #[command(subcommand)]
    Saga(sagas::SagaCommand),
    /// Check from the stored state that stock and money add up and that
    /// nothing is held or charged for a finished order (operator). Exits 1
    /// naming each violation.
    Audit,
    /// Dead letters: list, show, replay.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Stock a catalogue and fund customers.
    Seed(workloads::SeedArgs),
    /// Place many orders and measure how they go.
    Load(workloads::LoadArgs),
    /// Run the whole suite locally and put orders through it.
    Demo(demo::DemoArgs),
    /// Measure the suite against JetStream's own limits on this machine:
    /// runs `jetsaga-bench` with these arguments (`sagactl bench --help`
    /// shows its own).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output { json: cli.json };
    match run(cli, &out).await {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a lookup that found nothing.
pub(crate) const NOT_FOUND: u8 = 3;

async fn run(cli: Cli, out: &Output) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => return demo::run(args, out).await.map(|()| ExitCode::SUCCESS),
        Command::Bench { args } => return bench::run(&args, out.json),
        Command::Auth(command) => return admin::auth(command, out),
        _ => {}
    }
    let connection = cli.connect.connection()?;
    let client = Client::connect(&connection)
        .await
        .with_context(|| format!("connecting to {}", connection.urls))?;
    match cli.command {
        Command::Provision(args) => admin::provision(&client, args, out).await,
        Command::Place {
            items,
            customer,
            order_id,
            wait,
        } => place(&client, out, items, customer, order_id, wait).await,
        Command::Get { order_id } => {
            let Some(order) = client.order(&order_id).await? else {
                out.not_found(&format!("order {order_id}"));
                return Ok(ExitCode::from(NOT_FOUND));
            };
            let saga = client.saga(&order_id).await?;
            out.order(&order, saga.as_ref());
            Ok(ExitCode::SUCCESS)
        }
        Command::Stock { sku } => match client.stock(&sku).await? {
            Some(level) => {
                out.value(&level, || {
                    format!(
                        "{}: {} available, {} reserved, {} each",
                        level.sku, level.available, level.reserved, level.unit_price_cents
                    )
                });
                Ok(ExitCode::SUCCESS)
            }
            None => {
                out.not_found(&format!("sku {sku}"));
                Ok(ExitCode::from(NOT_FOUND))
            }
        },
        Command::Account { customer_id } => match client.account(&customer_id).await? {
            Some(account) => {
                out.value(&account, || {
                    format!("{}: {}", account.customer_id, account.balance_cents)
                });
                Ok(ExitCode::SUCCESS)
            }
            None => {
                out.not_found(&format!("customer {customer_id}"));
                Ok(ExitCode::from(NOT_FOUND))
            }
        },
        Command::Watch => watch(&client, out).await.map(|()| ExitCode::SUCCESS),
        Command::Sagas(args) => sagas::list(&client, out, args).await,
        Command::Cancel { order_id, wait } => sagas::cancel(&client, out, &order_id, wait).await,
        Command::Saga(command) => sagas::act(&client, out, command).await,
        Command::Audit => audit::run(&client, out).await,
        Command::Dlq(command) => dlq::run(&client, out, command).await,
        Command::Seed(args) => {
            let seeded = workload::seed::seed(&client, &args.plan()?, !out.json).await?;
            out.value(&seeded, || {
                format!(
                    "stocked {} skus, funded {} customers",
                    seeded.skus, seeded.customers
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(args) => {
            let report = workload::load::run(&client, &args.spec(out.json)).await?;
            out.value(&report, || report.to_string());
            Ok(if report.unsettled == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Demo(_) | Command::Bench { .. } | Command::Auth(_) => {
            unreachable!("handled above")
        }
    }
}

async fn place(
    client: &Client,
    out: &Output,
    items: Vec<String>,
    customer: String,
    order_id: Option<String>,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let lines = items
        .iter()
        .map(|item| {
            let (sku, quantity) = item
                .split_once(':')
                .with_context(|| format!("{item:?}: a line is sku:quantity"))?;
            let quantity: u32 = quantity
                .parse()
                .with_context(|| format!("{item:?}: the quantity is a number"))?;
            Ok(serde_json::json!({"sku": sku, "quantity": quantity}))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut body = serde_json::json!({"customer_id": customer, "items": lines});
    if let Some(id) = &order_id {
        body["order_id"] = id.clone().into();
    }
    // The order's trace starts here, so that it can be looked up by id.
    let (trace_id, headers) = jetsaga_client::new_trace();
    let ack = client
        .command(
            events::subjects::PLACE_ORDER,
            headers,
            body.to_string().into(),
        )
        .await?;
    if !wait {
        out.value(
            &serde_json::json!({"stream_sequence": ack.sequence, "trace_id": trace_id}),
            || {
                format!(
                    "accepted as orders.cmd.place #{} (trace {trace_id})",
                    ack.sequence
                )
            },
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("trace {trace_id}");
    // Without an id (and without a Nats-Msg-Id), the order service derives
    // it from the stream sequence of the command.
    let order_id = order_id.unwrap_or_else(|| format!("o-s{}", ack.sequence));
    let order = settled(client, &order_id, SETTLE_WITHIN)
        .await?
        .with_context(|| {
            format!("order {order_id} still pending after {SETTLE_WITHIN:?}: is the suite running?")
        })?;
    out.order(&order, client.saga(&order_id).await?.as_ref());
    Ok(ExitCode::SUCCESS)
}

/// How long `place --wait` waits for the order to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

/// The order once it is `CONFIRMED` or `CANCELLED`; `None` if it is still
/// pending (or unknown) after `within`. A query that fails is an error.
pub(crate) async fn settled(
    client: &Client,
    order_id: &str,
    within: Duration,
) -> anyhow::Result<Option<events::Order>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(order) = client.order(order_id).await? {
            if order.status != events::OrderStatus::Pending {
                return Ok(Some(order));
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn watch(client: &Client, out: &Output) -> anyhow::Result<()> {
    let mut events = client.nats().subscribe("orders.evt.>").await?;
    eprintln!("watching orders.evt.> (Ctrl-C to stop)");
    while let Some(message) = events.next().await {
        out.event(message.subject.as_str(), &message.payload);
    }
    Ok(())
}
