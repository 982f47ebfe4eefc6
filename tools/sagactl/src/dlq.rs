//! `sagactl dlq list|show|replay`: see dead letters, and re-drive them once
//! their cause is fixed.

use std::process::ExitCode;

use clap::Subcommand;
use jetsaga_client::{Client, DeadLetter};

use crate::output::Output;
use crate::NOT_FOUND;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// Only this service's (order-service, inventory-service, ...).
        #[arg(long)]
        service: Option<String>,
    },
    /// Show one dead letter: its headers and its body.
    Show { seq: u64 },
    /// Publish dead letters to their original subject again, and remove
    /// them from the dead-letter stream. Only a service's own letters of a
    /// command it consumes are replayed; any other is refused, named, and
    /// makes the command fail.
    Replay {
        /// The sequences to replay.
        #[arg(required_unless_present = "all")]
        seqs: Vec<u64>,
        /// Every dead letter (of `--service`, when given).
        #[arg(long, conflicts_with = "seqs")]
        all: bool,
        #[arg(long)]
        service: Option<String>,
    },
}

pub async fn run(client: &Client, out: &Output, command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { service } => {
            let letters = client.dead_letters(&filter(service.as_deref())).await?;
            out.value(&letters, || describe(&letters));
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { seq } => match client.dead_letter(seq).await? {
            Some(letter) => {
                out.value(&letter, || {
                    let headers: Vec<String> = letter
                        .headers
                        .iter()
                        .flat_map(|(name, values)| {
                            values
                                .iter()
                                .map(move |v| format!("{name}: {}", v.as_str()))
                        })
                        .collect();
                    format!(
                        "#{} {} at {}\n{}\n\n{}",
                        letter.seq,
                        letter.subject,
                        letter.time,
                        headers.join("\n"),
                        String::from_utf8_lossy(&letter.body)
                    )
                });
                Ok(ExitCode::SUCCESS)
            }
            None => {
                out.not_found(&format!("dead letter #{seq}"));
                Ok(ExitCode::from(NOT_FOUND))
            }
        },
        DlqCommand::Replay { seqs, all, service } => {
            let letters = if all {
                client.dead_letters(&filter(service.as_deref())).await?
            } else {
                let mut letters = Vec::new();
                for seq in seqs {
                    match client.dead_letter(seq).await? {
                        Some(letter) => letters.push(letter),
                        None => {
                            out.not_found(&format!("dead letter #{seq}"));
                            return Ok(ExitCode::from(NOT_FOUND));
                        }
                    }
                }
                letters
            };
            // A letter that is not a service's own (it may be forged) is
            // never published; the others are, so that one bad letter does
            // not hold up the backlog. Any refusal fails the command.
            let mut outcomes = Vec::new();
            let mut refusals = Vec::new();
            for letter in &letters {
                if let Err(refused) = letter.replayable() {
                    refusals.push(format!("#{} not replayed: {refused}", letter.seq));
                    outcomes.push(serde_json::json!({"dead_letter": letter.seq, "subject": letter.subject, "refused": refused.to_string()}));
                    continue;
                }
                let seq = client.replay(letter).await?;
                outcomes.push(serde_json::json!({"dead_letter": letter.seq, "subject": letter.original_subject, "stream_sequence": seq}));
            }
            let replayed = outcomes.len() - refusals.len();
            out.value(&outcomes, || {
                let mut text =
                    format!("replayed {replayed} dead letter(s) to their original subjects");
                for refusal in &refusals {
                    text.push_str(&format!("\nrefused {refusal}"));
                }
                text
            });
            Ok(if refusals.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn filter(service: Option<&str>) -> String {
    match service {
        Some(service) => format!("dlq.{service}.>"),
        None => "dlq.>".to_owned(),
    }
}

fn describe(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters".to_owned();
    }
    letters
        .iter()
        .map(|l| {
            format!(
                "#{:<6} {}  {:<28} deliveries {:<3} {}",
                l.seq, l.time, l.original_subject, l.deliveries, l.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
