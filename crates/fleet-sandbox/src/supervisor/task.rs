//! A task as its caller sees it: the options it runs with, the updates it sends, the report it
//! ends with, and each model turn the gateway metered for it.

use fleet_core::budget::{BudgetId, Budgets};
use fleet_core::ipc::{Note, TaskResult};
use fleet_core::money::Usd;
use fleet_core::provider::CancelToken;
use fleet_core::usage::TokenUsage;
use tokio::sync::mpsc;

/// One model turn as the gateway metered it from the provider's own stream.
#[derive(Debug, Clone, PartialEq)]
pub struct MeteredTurn {
    /// The model.
    pub model: String,
    /// Its tokens.
    pub usage: TokenUsage,
    /// What it was charged.
    pub cost: Usd,
    /// Whether it ended in an error or was cancelled (its tokens are charged all the same).
    pub failed: bool,
}

/// What a running task sends its caller.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TaskUpdate {
    /// A notification from the worker (progress, log lines, its own usage claims).
    Note(Note),
    /// A model turn the gateway metered and charged.
    Turn(MeteredTurn),
    /// A priced model turn was admitted with this worst case; the gateway sends it to the
    /// provider once the caller says it is recorded (or after 5 s), so that a crash in
    /// between leaves the turn on the bill as an unconfirmed charge.
    Admitted {
        /// The model.
        model: String,
        /// The worst case reserved.
        reserved: Usd,
        /// Call [`Recorded::done`] once the admission is durable.
        recorded: Recorded,
    },
}

/// The caller's answer to [`TaskUpdate::Admitted`]. Equal to any other: it carries no data.
#[derive(Clone, Default)]
pub struct Recorded(std::sync::Arc<tokio::sync::Notify>);

impl Recorded {
    /// The admission is recorded: the turn may go.
    pub fn done(&self) {
        self.0.notify_one();
    }

    /// Waits for [`Recorded::done`].
    pub(crate) async fn wait(&self) {
        self.0.notified().await;
    }
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorded")
    }
}

impl PartialEq for Recorded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A finished task: the worker's answer and what the gateway metered for it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskReport {
    /// The worker's answer.
    pub result: TaskResult,
    /// The tokens of all its model turns.
    pub usage: TokenUsage,
    /// What they cost.
    pub cost: Usd,
    /// How many model turns it made.
    pub turns: u32,
}

/// What a task is given besides its params.
#[derive(Debug, Default, Clone)]
pub struct TaskOptions {
    /// Where its notifications and metered model turns go as they come.
    pub updates: Option<mpsc::UnboundedSender<TaskUpdate>>,
    /// The caller's budgets, charged for every model turn as well as the agent's: a turn that
    /// does not fit them is refused (the agent is not paused: it is the caller's budget).
    pub charge: Option<Charge>,
    /// Cancels the task: the worker is sent `task/cancel`, and killed if it has not answered
    /// within 5 s.
    pub cancel: Option<CancelToken>,
}

/// Budgets of the caller's that a task's model turns are charged to as well as the agent's:
/// a ledger and the budgets in it (their ancestors too).
#[derive(Debug, Clone)]
pub struct Charge {
    /// The ledger.
    pub budgets: Budgets,
    /// The budgets charged.
    pub to: Vec<BudgetId>,
}
