//! The identities of docs/contract.md section 7 and their allow-lists: the
//! one table that both the credentials and the documentation come from.
//!
//! Each list names subjects, not prefixes of convenience. A service may
//! publish its own events and states and its dead letters, use the
//! JetStream API for its own durable consumers and the streams it reads,
//! answer its own queries, and receive on its own inbox prefix
//! (`_INBOX.<identity>.>`, see [`crate::inbox_prefix`]), so that no
//! identity can read another's replies. Nothing else: the server refuses
//! what is not listed.

use events::subjects::{self, consumers, streams};

/// One identity on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    OrderService,
    InventoryService,
    PaymentService,
    SagaOrchestrator,
    Client,
    Operator,
    Admin,
}

/// Every identity, services first.
pub const IDENTITIES: [Identity; 7] = [
    Identity::OrderService,
    Identity::InventoryService,
    Identity::PaymentService,
    Identity::SagaOrchestrator,
    Identity::Client,
    Identity::Operator,
    Identity::Admin,
];

/// What an identity may do: subjects it may publish to and subscribe to
/// (NATS wildcards allowed), and whether it may answer requests sent to
/// it (the server then lets it publish once to each request's reply
/// subject, whatever that is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    pub respond: bool,
}

impl Identity {
    /// Its name: the binary's for a service, and the name of its
    /// credentials file (`<name>.creds`).
    pub fn name(self) -> &'static str {
        match self {
            Self::OrderService => "order-service",
            Self::InventoryService => "inventory-service",
            Self::PaymentService => "payment-service",
            Self::SagaOrchestrator => "saga-orchestrator",
            Self::Client => "client",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        IDENTITIES.into_iter().find(|i| i.name() == name)
    }

    /// One line on what it is for.
    pub fn role(self) -> &'static str {
        match self {
            Self::OrderService => "owns orders: accepts place commands, writes order events",
            Self::InventoryService => "owns stock, prices and reservations",
            Self::PaymentService => "owns balances and charges",
            Self::SagaOrchestrator => "drives each saga: writes saga records and commands",
            Self::Client => "places and cancels orders, asks the queries, watches order events",
            Self::Operator => {
                "a client that also restocks, deposits, acts on sagas and reads every stream"
            }
            Self::Admin => "provisions, changes and deletes streams and consumers",
        }
    }

    /// What it may do on the bus.
    pub fn permissions(self) -> Permissions {
        let mut p = match self {
            Self::OrderService => service(
                self,
                &["orders.evt.>"],
                &[streams::ORDERS, streams::SAGA, streams::DLQ],
                &[consumers::ORDER_PLACE, consumers::ORDER_SAGA],
                streams::ORDERS,
                &[subjects::GET_ORDER],
            ),
            Self::InventoryService => service(
                self,
                &["inventory.sku.>", "inventory.evt.>", "inventory.applied.>"],
                &[streams::INVENTORY, streams::SAGA, streams::DLQ],
                &[consumers::INVENTORY_COMMANDS, consumers::INVENTORY_SAGA],
                streams::INVENTORY,
                &[subjects::GET_STOCK],
            ),
            Self::PaymentService => service(
                self,
                &["payments.account.>", "payments.evt.>", "payments.applied.>"],
                &[streams::PAYMENTS, streams::SAGA, streams::DLQ],
                &[consumers::PAYMENT_COMMANDS, consumers::PAYMENT_SAGA],
                streams::PAYMENTS,
                &[subjects::GET_ACCOUNT],
            ),
            Self::SagaOrchestrator => {
                let mut p = service(
                    self,
                    &["saga.log.>", "saga.open.>", "saga.timer.>"],
                    &[
                        streams::SAGA,
                        streams::ORDERS,
                        streams::INVENTORY,
                        streams::PAYMENTS,
                        streams::DLQ,
                    ],
                    &[
                        consumers::SAGA_ORDERS,
                        consumers::SAGA_INVENTORY,
                        consumers::SAGA_PAYMENTS,
                        consumers::SAGA_TIMEOUTS,
                        consumers::SAGA_OPERATOR,
                    ],
                    streams::SAGA,
                    &[subjects::GET_SAGA, subjects::LIST_SAGAS],
                );
                // A step overdue may have been answered while the
                // orchestrator was not looking (paused, or behind): it
                // reads the participant's last event for the order before
                // asking again or giving up. Events only, never states.
                p.publish.extend([
                    format!("$JS.API.DIRECT.GET.{}.orders.evt.>", streams::ORDERS),
                    format!("$JS.API.DIRECT.GET.{}.inventory.evt.>", streams::INVENTORY),
                    format!("$JS.API.DIRECT.GET.{}.payments.evt.>", streams::PAYMENTS),
                ]);
                p
            }
            Self::Client => client(),
            Self::Operator => {
                let mut p = client();
                p.publish.extend(strings(&[
                    subjects::RESTOCK,
                    subjects::DEPOSIT,
                    subjects::RETRY_SAGA,
                    subjects::ABORT_SAGA,
                    // Reading every stream: by direct and stored-message
                    // gets, never through a consumer of its own (a consumer
                    // may deliver to any subject, which would let it write
                    // into another's stream).
                    "$JS.API.INFO",
                    "$JS.API.STREAM.NAMES",
                    "$JS.API.STREAM.LIST",
                    "$JS.API.STREAM.INFO.*",
                    "$JS.API.STREAM.MSG.GET.*",
                    "$JS.API.DIRECT.GET.>",
                    // And how far each consumer is (lag, redeliveries).
                    "$JS.API.CONSUMER.NAMES.*",
                    "$JS.API.CONSUMER.LIST.*",
                    "$JS.API.CONSUMER.INFO.*.*",
                ]));
                // Replaying a dead letter removes it from the dead letters.
                p.publish
                    .push(format!("$JS.API.STREAM.MSG.DELETE.{}", streams::DLQ));
                p
            }
            Self::Admin => Permissions {
                publish: strings(&["$JS.API.>"]),
                subscribe: Vec::new(),
                respond: false,
            },
        };
        p.subscribe.push(format!("{}.>", crate::inbox_prefix(self)));
        p
    }
}

/// `client`: the commands and queries of docs/contract.md 4.1 to 4.3 that
/// a client may use, service discovery (`nats micro ls`), and the order
/// events.
fn client() -> Permissions {
    Permissions {
        publish: strings(&[
            subjects::PLACE_ORDER,
            subjects::CANCEL_ORDER,
            subjects::GET_ORDER,
            subjects::GET_STOCK,
            subjects::GET_ACCOUNT,
            subjects::GET_SAGA,
            subjects::LIST_SAGAS,
            "$SRV.>",
        ]),
        subscribe: strings(&["orders.evt.>"]),
        respond: false,
    }
}

/// A service: it writes `writes` and its own dead letters, checks that the
/// streams `needs` exist, uses its durable `consumers`, reads the states in
/// its own stream `store` by direct get and removes the commands it handled
/// there, and answers `queries` as the micro service named after it.
fn service(
    identity: Identity,
    writes: &[&str],
    needs: &[&str],
    consumers: &[(&str, &str)],
    store: &str,
    queries: &[&str],
) -> Permissions {
    let name = identity.name();
    let mut publish = strings(writes);
    publish.push(format!("dlq.{name}.>"));
    publish.extend(needs.iter().map(|s| format!("$JS.API.STREAM.INFO.{s}")));
    for (stream, durable) in consumers {
        publish.extend([
            // With one filter subject the subject names it; with several
            // it does not.
            format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}"),
            format!("$JS.API.CONSUMER.CREATE.{stream}.{durable}.>"),
            format!("$JS.API.CONSUMER.INFO.{stream}.{durable}"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
            format!("$JS.ACK.{stream}.{durable}.>"),
        ]);
    }
    publish.extend([
        format!("$JS.API.DIRECT.GET.{store}"),
        format!("$JS.API.DIRECT.GET.{store}.>"),
        // The commands it has handled, which are in its own stream, are
        // removed once handled (what they caused is stored).
        format!("$JS.API.STREAM.MSG.DELETE.{store}"),
    ]);
    let mut subscribe = strings(queries);
    // The micro protocol's discovery: `$SRV.PING`, `$SRV.PING.<name>`,
    // `$SRV.PING.<name>.<id>`, and the same for INFO and STATS.
    subscribe.extend([
        "$SRV.*".to_owned(),
        format!("$SRV.*.{name}"),
        format!("$SRV.*.{name}.*"),
    ]);
    Permissions {
        publish,
        subscribe,
        respond: true,
    }
}

fn strings(subjects: &[&str]) -> Vec<String> {
    subjects.iter().map(|s| (*s).to_owned()).collect()
}

/// The table of identities as Markdown: what the documentation shows.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| identity | role | may publish | may subscribe | answers requests |\n| --- | --- | --- | --- | --- |\n",
    );
    for identity in IDENTITIES {
        let p = identity.permissions();
        let list = |subjects: &[String]| {
            subjects
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            identity.name(),
            identity.role(),
            list(&p.publish),
            list(&p.subscribe),
            if p.respond { "yes" } else { "no" },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn may_publish(identity: Identity, subject: &str) -> bool {
        identity
            .permissions()
            .publish
            .iter()
            .any(|pattern| matches(pattern, subject))
    }

    /// NATS subject matching: `*` one token, `>` one or more at the end.
    fn matches(pattern: &str, subject: &str) -> bool {
        let mut p = pattern.split('.');
        let mut s = subject.split('.');
        loop {
            match (p.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn only_the_owner_may_write_an_aggregate_or_its_events() {
        let owned = [
            ("orders.evt.o-1.confirmed", Identity::OrderService),
            ("inventory.sku.sku-1", Identity::InventoryService),
            ("inventory.evt.o-1.reserved", Identity::InventoryService),
            ("payments.account.c-1", Identity::PaymentService),
            ("payments.evt.o-1.charged", Identity::PaymentService),
            ("saga.log.o-1.charge", Identity::SagaOrchestrator),
            (
                "dlq.payment-service.saga.log.o-1.charge",
                Identity::PaymentService,
            ),
        ];
        for (subject, owner) in owned {
            for identity in IDENTITIES {
                assert_eq!(
                    may_publish(identity, subject),
                    identity == owner,
                    "{} publishing {subject}",
                    identity.name()
                );
            }
        }
    }

    #[test]
    fn only_admin_may_delete_or_purge_a_stream() {
        for identity in IDENTITIES {
            for api in [
                "$JS.API.STREAM.DELETE.ORDERS",
                "$JS.API.STREAM.PURGE.ORDERS",
            ] {
                assert_eq!(
                    may_publish(identity, api),
                    identity == Identity::Admin,
                    "{} calling {api}",
                    identity.name()
                );
            }
        }
    }

    #[test]
    fn commands_are_each_for_whom_the_contract_names() {
        assert!(may_publish(Identity::Client, "orders.cmd.place"));
        assert!(may_publish(Identity::Client, "orders.cmd.cancel"));
        assert!(!may_publish(Identity::Client, "inventory.cmd.restock"));
        assert!(!may_publish(Identity::Client, "payments.cmd.deposit"));
        assert!(!may_publish(Identity::Client, "saga.cmd.abort"));
        assert!(may_publish(Identity::Operator, "inventory.cmd.restock"));
        assert!(may_publish(Identity::Operator, "saga.cmd.retry"));
        assert!(!may_publish(Identity::PaymentService, "saga.cmd.abort"));
        assert!(!may_publish(
            Identity::Operator,
            "$JS.API.CONSUMER.CREATE.DLQ.x"
        ));
    }

    #[test]
    fn every_identity_has_its_own_inbox_and_no_other() {
        for identity in IDENTITIES {
            let p = identity.permissions();
            let inboxes: Vec<&String> = p
                .subscribe
                .iter()
                .filter(|s| s.starts_with("_INBOX"))
                .collect();
            assert_eq!(inboxes, [&format!("_INBOX.{}.>", identity.name())]);
        }
    }

    #[test]
    fn the_documentation_shows_the_table_the_server_enforces() {
        let page = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/security.md");
        let page = std::fs::read_to_string(page).expect("docs/security.md");
        assert!(
            page.contains(&markdown_table()),
            "docs/security.md is out of date: paste `sagactl auth table` between its identities markers"
        );
    }

    #[test]
    fn names_round_trip_and_the_table_lists_every_identity() {
        let table = markdown_table();
        for identity in IDENTITIES {
            assert_eq!(Identity::from_name(identity.name()), Some(identity));
            assert!(table.contains(&format!("| `{}` |", identity.name())));
        }
        assert_eq!(Identity::from_name("root"), None);
    }
}
