//! The saga log: one record per saga transition, on
//! `saga.log.<order_id>.<command>`. A record carries the whole saga state
//! after the transition *and* the command it issues, so writing the state
//! and sending the command are one append: they cannot drift apart.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, CustomerId, OrderId};
use crate::order::{CancelReason, LineItem, PricedLine};

/// Where a saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SagaState {
    /// Waiting for the inventory to hold and price the lines.
    Reserving,
    /// Waiting for the payment.
    Charging,
    /// Waiting for the inventory to commit the held stock.
    Committing,
    /// Waiting for the order service to confirm the order.
    Confirming,
    /// Compensating: waiting for the payment to be given back.
    Refunding,
    /// Compensating: waiting for the held stock to be released.
    Releasing,
    /// Compensated: waiting for the order service to cancel the order.
    Cancelling,
    Confirmed,
    Cancelled,
}

impl SagaState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }

    /// Whether the saga is undoing what it did: a step failed, or it was
    /// cancelled or aborted.
    pub fn is_compensating(self) -> bool {
        matches!(self, Self::Refunding | Self::Releasing | Self::Cancelling)
    }
}

/// What a saga record asks of a participant; its `type` is the last token
/// of the record's subject, which the participant's consumer filters on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SagaCommand {
    ReserveStock {
        items: Vec<LineItem>,
    },
    ChargePayment {
        customer_id: CustomerId,
        amount_cents: Cents,
    },
    CommitStock,
    ConfirmOrder {
        lines: Vec<PricedLine>,
        total_cents: Cents,
    },
    RefundPayment {
        customer_id: CustomerId,
    },
    ReleaseStock,
    CancelOrder {
        reason: CancelReason,
    },
    /// No participant acts: the saga has ended.
    Finish,
}

/// The command names: the last token of `saga.log.<order_id>.<command>`,
/// which the participants' consumers filter on.
pub mod command {
    pub const RESERVE_STOCK: &str = "reserve_stock";
    pub const CHARGE_PAYMENT: &str = "charge_payment";
    pub const COMMIT_STOCK: &str = "commit_stock";
    pub const CONFIRM_ORDER: &str = "confirm_order";
    pub const REFUND_PAYMENT: &str = "refund_payment";
    pub const RELEASE_STOCK: &str = "release_stock";
    pub const CANCEL_ORDER: &str = "cancel_order";
    pub const FINISH: &str = "finish";
}

impl SagaCommand {
    /// The last token of the record's subject.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ReserveStock { .. } => command::RESERVE_STOCK,
            Self::ChargePayment { .. } => command::CHARGE_PAYMENT,
            Self::CommitStock => command::COMMIT_STOCK,
            Self::ConfirmOrder { .. } => command::CONFIRM_ORDER,
            Self::RefundPayment { .. } => command::REFUND_PAYMENT,
            Self::ReleaseStock => command::RELEASE_STOCK,
            Self::CancelOrder { .. } => command::CANCEL_ORDER,
            Self::Finish => command::FINISH,
        }
    }
}

/// How a step of the saga's history ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Requested,
    Succeeded,
    Failed,
    /// Unanswered past its deadline.
    TimedOut,
    /// Given up by a cancel or an abort before it was answered: whatever
    /// it did is compensated.
    Abandoned,
}

/// One entry of a saga's history (`saga.query.get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// A command of the saga, or an operator's action on it
    /// ([`OperatorAction::name`]).
    pub name: String,
    pub status: StepStatus,
    /// RFC 3339, UTC.
    pub at: String,
    /// Who asked, for an operator's action: the NATS identity of the
    /// publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl Step {
    /// A step of the saga's own, at `at`.
    pub fn new(name: &str, status: StepStatus, at: &str) -> Self {
        Self {
            name: name.to_owned(),
            status,
            at: at.to_owned(),
            by: None,
        }
    }
}

/// The body of every `saga.log.<order_id>.<command>` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaRecord {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub state: SagaState,
    pub items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<PricedLine>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<Cents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
    /// The history, oldest first.
    pub steps: Vec<Step>,
    /// What this record asks for.
    pub command: SagaCommand,
    /// Which attempt at `command` this is, from 1: a step that stays
    /// unanswered past its deadline is asked again.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// When `command` is overdue (RFC 3339, UTC): the saga's wake-up may
    /// come early or late, and this says whether the step has timed out.
    /// Absent on a finished saga, and on records written before deadlines
    /// were kept here (their wake-ups name the step they are for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// When the saga's pending wake-up fires (RFC 3339, UTC), as armed by
    /// this record's writer or an earlier one. A step whose deadline is no
    /// earlier keeps it rather than arming its own: the wake-up then comes
    /// early, and is armed again for the deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<String>,
    /// The stream sequence of the order's event this saga last heard
    /// (`placed`): the order service may write after it without reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_seq: Option<u64>,
    /// The stream sequence of the order's inventory event this saga last
    /// heard (`reserved`): the inventory may settle after it without
    /// reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_seq: Option<u64>,
    /// The stream sequence of the last `saga.cmd.retry` applied: one
    /// delivered again is not applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried_seq: Option<u64>,
}

fn first_attempt() -> u32 {
    1
}

impl SagaRecord {
    /// The saga's entry in the list of sagas.
    pub fn summary(&self) -> SagaSummary {
        let at = |step: Option<&Step>| step.map(|s| s.at.clone()).unwrap_or_default();
        SagaSummary {
            order_id: self.order_id.clone(),
            state: self.state,
            waiting_on: (!self.state.is_terminal()).then(|| self.command.name().to_owned()),
            attempt: self.attempt,
            started_at: at(self.steps.first()),
            updated_at: at(self.steps.last()),
        }
    }
}

/// What an operator (or, for a cancel, a client) asks of a saga
/// (docs/contract.md 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    /// `orders.cmd.cancel`: compensate, reason `cancelled_by_request`.
    Cancel,
    /// `saga.cmd.retry`: ask the current step again, now.
    Retry,
    /// `saga.cmd.abort`: compensate, reason `aborted_by_operator`.
    Abort,
}

impl OperatorAction {
    pub const ALL: [Self; 3] = [Self::Cancel, Self::Retry, Self::Abort];

    /// Its name in the saga's history and in
    /// `jetsaga_saga_operator_actions_total{action}`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cancel => "cancel",
            Self::Retry => "retry",
            Self::Abort => "abort",
        }
    }
}

/// One saga in the reply of `saga.query.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaSummary {
    pub order_id: OrderId,
    pub state: SagaState,
    /// The step the saga waits on; absent once it is finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    pub attempt: u32,
    /// RFC 3339, UTC: the saga's first step.
    pub started_at: String,
    /// RFC 3339, UTC: its last.
    pub updated_at: String,
}

impl SagaSummary {
    /// Unfinished, and its current step asked more than once.
    pub fn is_stuck(&self) -> bool {
        !self.state.is_terminal() && self.attempt > 1
    }

    /// Whether the saga is one `status` asks for.
    pub fn is(&self, status: ListStatus) -> bool {
        match status {
            ListStatus::Running => !self.state.is_terminal() && !self.state.is_compensating(),
            ListStatus::Compensating => self.state.is_compensating(),
            ListStatus::Finished => self.state.is_terminal(),
            ListStatus::Stuck => self.is_stuck(),
        }
    }
}

/// The filter of `saga.query.list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListStatus {
    /// Unfinished and going forward.
    Running,
    /// Unfinished and undoing its steps.
    Compensating,
    Finished,
    /// Unfinished, its current step asked more than once.
    Stuck,
}

impl ListStatus {
    pub const ALL: [Self; 4] = [
        Self::Running,
        Self::Compensating,
        Self::Finished,
        Self::Stuck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Finished => "finished",
            Self::Stuck => "stuck",
        }
    }
}

impl std::str::FromStr for ListStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.name() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?}: one of running, compensating, finished, stuck")
            })
    }
}

/// The request of `saga.query.list`; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSagas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ListStatus>,
    /// At most [`MAX_LIST_LIMIT`]; [`DEFAULT_LIST_LIMIT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The `next` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;

/// The reply of `saga.query.list`: one page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaList {
    pub sagas: Vec<SagaSummary>,
    /// Where the next page starts; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The body of a saga's wake-up, `saga.timer.<order_id>`, and of the
/// timeout it fires on `saga.timeout.<order_id>`: the step it was armed for,
/// for the record; the saga's own `deadline` decides whether a step is
/// overdue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTimer {
    pub order_id: OrderId,
    /// The command the deadline is for.
    pub command: String,
    pub attempt: u32,
}

/// The reply of `saga.query.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaView {
    pub order_id: OrderId,
    pub state: SagaState,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<CancelReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_cents: Option<Cents>,
    /// The step the saga waits on, and the attempt at it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<String>,
    #[serde(default)]
    pub attempt: u32,
    /// When the step waited on is overdue (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// The W3C trace id of the saga's last record: the order's trace, in
    /// any OpenTelemetry backend the services export to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl From<SagaRecord> for SagaView {
    fn from(r: SagaRecord) -> Self {
        Self {
            order_id: r.order_id,
            state: r.state,
            steps: r.steps,
            reason: r.reason,
            total_cents: r.total_cents,
            waiting_on: (!r.state.is_terminal()).then(|| r.command.name().to_owned()),
            attempt: r.attempt,
            deadline: r.deadline.filter(|_| !r.state.is_terminal()),
            trace_id: None,
        }
    }
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`),
/// when it is one.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    let valid = trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| trace_id.to_ascii_lowercase())
}
