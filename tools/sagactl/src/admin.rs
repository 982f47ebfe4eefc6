//! `sagactl auth init` and `sagactl provision`: securing a deployment and
//! creating its streams, the two steps before the services can start
//! (docs/contract.md sections 7 and 9).

use std::path::PathBuf;
use std::process::ExitCode;

use bytesize::ByteSize;
use clap::{Args, Subcommand};
use jetsaga_client::Client;
use runtime::provision::{self, Change};
use runtime::streams::Layout;
use serde_json::json;

use crate::output::Output;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Write the server's auth.conf and one credentials file per identity
    /// into DIR (with --tls, a CA and certificates under DIR/tls). Run again,
    /// it keeps every key and signs the JWTs anew.
    Init {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also write TLS material: a CA, the server's certificate and one
        /// client certificate per identity.
        #[arg(long)]
        tls: bool,
        /// Another name the server certificate is valid for (repeatable).
        #[arg(long = "tls-host", value_name = "NAME", requires = "tls")]
        tls_hosts: Vec<String>,
    },
    /// Print the identities and what each may publish and subscribe to,
    /// as a Markdown table.
    Table,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Only report what differs from the project's configuration; exit 1
    /// if anything does.
    #[arg(long)]
    check: bool,
    /// Replicas of every stream (3 on a cluster).
    #[arg(long, env = "STREAM_REPLICAS", default_value_t = 1)]
    replicas: usize,
    /// The bytes of each NATS server's file store the streams may fill
    /// between them (`15GB`, `4GiB`), at most the server's
    /// `max_file_store`: each stream gets a share of it as its limit, so a
    /// full store refuses whole writes. Unset: no stream has a byte limit.
    #[arg(long, env = "STREAM_STORE_BYTES")]
    store_bytes: Option<ByteSize>,
}

pub fn auth(command: AuthCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match command {
        AuthCommand::Init {
            out: dir,
            tls,
            tls_hosts,
        } => {
            let material = auth::init(&auth::InitOptions {
                out: dir,
                tls,
                tls_hosts,
            })?;
            let identities: Vec<String> = auth::IDENTITIES
                .iter()
                .map(|i| material.creds(*i).display().to_string())
                .collect();
            out.value(
                &json!({
                    "auth_conf": material.auth_conf(),
                    "creds": identities,
                    "tls": tls.then(|| material.tls_dir()),
                }),
                || {
                    let mut text = format!(
                        "wrote {} (include it from the nats-server configuration)\n",
                        material.auth_conf().display()
                    );
                    for creds in &identities {
                        text.push_str(&format!("wrote {creds}\n"));
                    }
                    if tls {
                        text.push_str(&format!(
                            "wrote the CA and certificates under {}\n",
                            material.tls_dir().display()
                        ));
                    }
                    text.push_str("keep keys/ offline: it signs every identity");
                    text
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        AuthCommand::Table => {
            print!("{}", auth::identities::markdown_table());
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn provision(
    client: &Client,
    args: ProvisionArgs,
    out: &Output,
) -> anyhow::Result<ExitCode> {
    if !(1..=5).contains(&args.replicas) {
        anyhow::bail!("--replicas (STREAM_REPLICAS) must be between 1 and 5");
    }
    let js = async_nats::jetstream::new(client.nats().clone());
    let layout = Layout {
        replicas: args.replicas,
        store_bytes: args.store_bytes.map(|size| size.as_u64()),
    };
    let report = match provision::provision(&js, layout, args.check).await {
        Ok(report) => report,
        Err(e) => match client.refusal("$JS.API") {
            Some(refusal) => anyhow::bail!(
                "{e}: the server refused it ({refusal}); provisioning needs the admin identity"
            ),
            None => return Err(e.into()),
        },
    };
    let drift = report.iter().any(|r| r.change != Change::None);
    let rows: Vec<serde_json::Value> = report
        .iter()
        .map(|r| {
            let (change, differences) = match &r.change {
                Change::Create => ("create", Vec::new()),
                Change::Update(d) => ("update", d.clone()),
                Change::None => ("none", Vec::new()),
            };
            json!({"stream": r.stream, "change": change, "differences": differences})
        })
        .collect();
    out.value(&json!({"check": args.check, "streams": rows}), || {
        report
            .iter()
            .map(|r| {
                let what = match (&r.change, args.check) {
                    (Change::Create, false) => "created".to_owned(),
                    (Change::Create, true) => "missing".to_owned(),
                    (Change::Update(d), false) => format!("updated: {}", d.join("; ")),
                    (Change::Update(d), true) => format!("differs: {}", d.join("; ")),
                    (Change::None, _) => "as configured".to_owned(),
                };
                format!("{:<10} {what}", r.stream)
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(if args.check && drift {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
