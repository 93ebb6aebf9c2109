//! What a run reports while it runs, and its summary when it ends.

use fleet_core::activity::LogLevel;
use fleet_core::id::{ThreadId, WorkUnitId};
use fleet_core::money::Usd;
use fleet_core::usage::TokenUsage;
use serde::Serialize;
use serde_json::Value;

/// A run's id: the thread its attempts are recorded in.
pub type RunId = ThreadId;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Still going.
    Running,
    /// The script returned.
    Completed,
    /// Someone stopped it.
    Stopped,
    /// The script threw, broke a limit or could not start.
    Failed,
}

impl RunState {
    /// Its name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// How an agent call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// It answered.
    Completed,
    /// Served from the journal of an earlier attempt.
    Cached,
    /// It resolved `null` (skipped, or the provider failed for good).
    Null,
    /// `agent()` rejected.
    Failed,
}

/// One call that came back `null` or failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallNote {
    /// The call's label.
    pub label: String,
    /// Its work unit, when one was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_unit_id: Option<WorkUnitId>,
    /// Why.
    pub reason: String,
}

/// Counts of a run's agent calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    /// Calls that answered live.
    pub completed: u64,
    /// Calls served from the journal.
    pub cached: u64,
    /// Calls that resolved `null`.
    pub null: u64,
    /// Calls that rejected.
    pub failed: u64,
}

/// A run's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The run.
    pub run_id: RunId,
    /// The workflow's name.
    pub name: String,
    /// How it ended.
    pub state: RunState,
    /// What the script returned (JSON; `null` for `undefined`).
    pub result: Value,
    /// Why it failed or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Agent calls by outcome.
    pub calls: CallCounts,
    /// The calls that came back `null`, with their reasons.
    pub nulls: Vec<CallNote>,
    /// The calls that failed, with their reasons.
    pub failures: Vec<CallNote>,
    /// Tokens of the live calls.
    pub usage: TokenUsage,
    /// Their price.
    pub cost_usd: Usd,
    /// Whether some usage had no price.
    pub unpriced: bool,
    /// Whether a run, phase or token budget refused an `agent()` call.
    pub budget_exhausted: bool,
    /// Wall time of this attempt, in milliseconds.
    pub wall_ms: u64,
}

/// Something a run did, as it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// The run.
        run_id: RunId,
        /// The workflow's name.
        name: String,
        /// Its description.
        description: String,
        /// The phases its header declares.
        phases: Vec<String>,
        /// Whether this attempt resumes an earlier one.
        resumed: bool,
    },
    /// A phase began.
    PhaseStarted {
        /// Its title.
        title: String,
    },
    /// A phase ended (another began, or the run ended).
    PhaseEnded {
        /// Its title.
        title: String,
    },
    /// An agent call began.
    AgentStarted {
        /// Its work unit.
        work_unit_id: WorkUnitId,
        /// Its label.
        label: String,
        /// Its phase.
        #[serde(skip_serializing_if = "Option::is_none")]
        phase: Option<String>,
        /// Its agent type.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_type: Option<String>,
    },
    /// An agent call is still going.
    AgentProgress {
        /// Its work unit.
        work_unit_id: WorkUnitId,
        /// Tokens so far.
        usage: TokenUsage,
        /// Tool calls so far.
        tool_calls: u64,
        /// Milliseconds since it started.
        elapsed_ms: u64,
    },
    /// An agent call ended.
    AgentFinished {
        /// Its work unit.
        work_unit_id: WorkUnitId,
        /// Its label.
        label: String,
        /// How it ended.
        state: CallState,
        /// Why it came back null or failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Bytes of its JSON result.
        result_bytes: usize,
        /// Its tokens.
        usage: TokenUsage,
        /// Its price.
        cost_usd: Usd,
    },
    /// A `log()` line or a warning.
    Log {
        /// How loud.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// A budget is nearly or fully spent.
    BudgetWarning {
        /// What, in words.
        message: String,
    },
    /// The run ended.
    RunEnded {
        /// Its summary.
        summary: Box<RunSummary>,
    },
}
