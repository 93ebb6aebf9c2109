//! Activities: what happened inside a thread, each pointing at the work unit it belongs to.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::id::{ActivityId, TurnId, WorkUnitId};

/// One thing that happened: a message, a tool call and its result, a log line, a phase marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The activity.
    pub id: ActivityId,
    /// The turn it happened in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<TurnId>,
    /// The work unit it belongs to. Older records have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_unit_id: Option<WorkUnitId>,
    /// When it happened.
    pub at: Timestamp,
    /// What it was.
    pub kind: ActivityKind,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person (or the workflow) asking.
    User,
    /// The model.
    Assistant,
    /// The system prompt.
    System,
}

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Detail.
    Debug,
    /// Narration (`log()` in a workflow).
    Info,
    /// Something worth a look.
    Warn,
    /// Something went wrong.
    Error,
}

/// What an activity was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ActivityKind {
    /// A message of the conversation.
    Message {
        /// Who wrote it.
        role: Role,
        /// Its text.
        text: String,
    },
    /// A model asked for a tool.
    ToolCall {
        /// The call's id, as the provider gave it.
        call_id: String,
        /// The tool.
        name: String,
        /// Its input.
        input: serde_json::Value,
    },
    /// A tool answered.
    ToolResult {
        /// The call it answers.
        call_id: String,
        /// What it returned.
        output: serde_json::Value,
        /// Whether it failed.
        #[serde(default)]
        is_error: bool,
    },
    /// A log line.
    Log {
        /// How loud.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// An agent in plan mode proposed a plan and was stopped there, for a person or the
    /// workflow to approve before anything is changed.
    ProposedPlan {
        /// The plan, as the agent wrote it.
        plan: String,
    },
    /// A workflow phase began.
    Phase {
        /// Its title.
        title: String,
    },
    /// A finished agent call's result, journaled under its content key so that resuming the
    /// run serves it instead of calling the agent again.
    AgentResult {
        /// SHA-256 (hex) of the canonical call spec and its occurrence index.
        key: String,
        /// The call's position in start order within its run attempt.
        seq: u64,
        /// What `agent()` resolved to.
        result: serde_json::Value,
        /// Whether it was itself served from the journal.
        #[serde(default)]
        cached: bool,
    },
    /// A workflow run (or a resumed attempt of it) began.
    RunStarted {
        /// The workflow's `meta.name`.
        name: String,
        /// Its description.
        description: String,
        /// The phases its header declares.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        phases: Vec<String>,
        /// Where the script came from (a path or `builtin:<name>`).
        source: String,
        /// The run's arguments.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<serde_json::Value>,
    },
    /// A priced model turn was admitted against the budgets and is about to be sent. Until
    /// the unit records usage past `tokens_before`, the turn's cost is known only as this
    /// reservation: a unit whose process ended mid-turn owes it as an unconfirmed charge
    /// ([`crate::thread::Thread::unconfirmed`]), since the provider may have billed the turn.
    TurnAdmitted {
        /// The model.
        model: String,
        /// The worst case reserved for the turn.
        reserved: crate::money::Usd,
        /// The unit's tokens (every kind) before the turn.
        tokens_before: u64,
    },
    /// A workflow run attempt ended.
    RunEnded {
        /// `completed`, `stopped` or `failed`.
        state: String,
        /// The run summary (result, counts, tokens, dollars, wall time).
        summary: serde_json::Value,
    },
}
