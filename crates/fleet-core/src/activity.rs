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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// A workflow phase began.
    Phase {
        /// Its title.
        title: String,
    },
}
