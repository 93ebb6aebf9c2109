//! What the supervisor tells its listeners, and why a task could not run.

use fleet_core::budget::Measure;
use fleet_core::usage::TokenUsage;

use super::task::MeteredTurn;
use crate::WorkerError;

/// What the supervisor tells whoever listens.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A worker started and answered `initialize`.
    WorkerStarted {
        /// Its agent.
        agent: String,
    },
    /// A worker died; `task_id` is the task it was running.
    WorkerDied {
        /// Its agent.
        agent: String,
        /// The task it was running.
        task_id: Option<String>,
        /// How it ended.
        status: String,
        /// The end of its log.
        stderr_tail: String,
    },
    /// A task is tried again on a fresh worker.
    TaskRetried {
        /// Its agent.
        agent: String,
        /// The task.
        task_id: String,
        /// The attempt starting now (from 2).
        attempt: u32,
    },
    /// An idle worker was stopped.
    WorkerStopped {
        /// Its agent.
        agent: String,
    },
    /// The agent went over its budget (or the run's): no new task starts until it is resumed.
    AgentPaused {
        /// The agent.
        agent: String,
        /// Which budgets are used up, and what the agent has spent.
        reason: String,
    },
    /// A worker wrote a line that broke the protocol (it was answered with a JSON-RPC error
    /// when it was not itself an answer).
    ProtocolError {
        /// The agent.
        agent: String,
        /// What was wrong.
        message: String,
    },
    /// The gateway forwarded a model turn and metered it from the provider's stream.
    ModelTurn {
        /// The agent.
        agent: String,
        /// The task.
        task_id: String,
        /// What was metered and charged.
        turn: MeteredTurn,
    },
    /// A worker said it spent tokens (`task/usage`): shown, never charged.
    ReportedUsage {
        /// The agent.
        agent: String,
        /// The task.
        task_id: String,
        /// The model it named.
        model: String,
        /// The tokens it claimed.
        usage: TokenUsage,
    },
}

/// Why a task could not be run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// No such agent.
    #[error("no agent \"{0}\" is supervised")]
    UnknownAgent(String),
    /// Its worker cannot be started.
    #[error("cannot start a worker for {agent}: {reason}")]
    Start {
        /// The agent.
        agent: String,
        /// Why.
        reason: String,
    },
    /// The task failed (the worker's answer, or its death after the last retry).
    #[error(transparent)]
    Task(#[from] WorkerError),
    /// The agent is paused.
    #[error("agent {agent} is paused: {reason}")]
    Paused {
        /// The agent.
        agent: String,
        /// Why.
        reason: String,
    },
    /// The task was cancelled by its caller.
    #[error("agent {agent}: the task was cancelled")]
    Cancelled {
        /// The agent.
        agent: String,
    },
    /// The task failed because the gateway refused one of its model turns (over the agent's,
    /// the fleet's or the caller's budget).
    #[error("{reason}")]
    Refused {
        /// The agent.
        agent: String,
        /// The budget that refused the turn ("agent patch-bot", "the fleet", or the caller's).
        budget: String,
        /// Its spend and limit, in words.
        what: String,
        /// What ran out.
        measure: Measure,
        /// The refusal as the worker was told it: the agent, the budget, the spend and the
        /// limit.
        reason: String,
    },
}
