//! What Codex's items become: activities, states, usage.

use fleet_core::activity::ActivityKind;
use fleet_core::work_unit::WorkUnitState;
use serde_json::{Value, json};

use super::wire::{AgentState, Item};
use crate::runner::coding_cli::{Step, Target};

pub(super) fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > 60 {
        format!("{}…", first.chars().take(59).collect::<String>())
    } else {
        first.to_owned()
    }
}

/// A subagent's state from Codex's `agentsStates` (camelCase from the app-server, snake_case
/// from `codex exec`); `None` while it runs.
pub(super) fn agent_state(state: &AgentState) -> Option<(WorkUnitState, Option<String>)> {
    match state.status.as_deref()? {
        "completed" => Some((WorkUnitState::Completed, None)),
        "errored" => Some((
            WorkUnitState::Failed,
            Some(
                state
                    .message
                    .clone()
                    .unwrap_or_else(|| "the subagent failed".into()),
            ),
        )),
        "interrupted" | "shutdown" => Some((
            WorkUnitState::Cancelled,
            Some("the subagent was stopped".into()),
        )),
        "notFound" | "not_found" => Some((
            WorkUnitState::Failed,
            Some("Codex lost track of the subagent".into()),
        )),
        _ => None,
    }
}

fn failed(status: Option<&str>) -> bool {
    matches!(status, Some("failed" | "declined"))
}

/// Items common to both streams: a tool-like item's call and result.
pub(super) fn item_activities(
    target: &Target,
    item: &Item,
    completed: bool,
    steps: &mut Vec<Step>,
) {
    let (id, name, input, output, is_error) = match item {
        Item::CommandExecution(c) => (
            &c.id,
            "command".to_owned(),
            json!({"command": c.command, "cwd": c.cwd}),
            c.output.clone(),
            failed(c.status.as_deref()) || c.exit_code.is_some_and(|code| code != 0),
        ),
        Item::FileChange(f) => (
            &f.id,
            "apply_patch".to_owned(),
            json!({"changes": f.changes}),
            Value::String(f.status.clone().unwrap_or_default()),
            failed(f.status.as_deref()),
        ),
        Item::McpToolCall(m) => (
            &m.id,
            format!("{}/{}", m.server, m.tool),
            m.arguments.clone(),
            if m.error.is_null() {
                m.result.clone()
            } else {
                m.error.clone()
            },
            failed(m.status.as_deref()) || !m.error.is_null(),
        ),
        Item::WebSearch(w) => (
            &w.id,
            "web_search".to_owned(),
            json!({"query": w.query}),
            Value::Null,
            failed(w.status.as_deref()),
        ),
        Item::Collab(c) => (
            &c.id,
            c.tool.clone(),
            json!({"prompt": c.prompt, "receivers": c.receivers}),
            c.states.clone(),
            failed(c.status.as_deref()),
        ),
        _ => return,
    };
    let kind = if completed {
        ActivityKind::ToolResult {
            call_id: id.clone(),
            output,
            is_error,
        }
    } else {
        ActivityKind::ToolCall {
            call_id: id.clone(),
            name,
            input,
        }
    };
    steps.push(Step::Activity {
        target: target.clone(),
        kind,
    });
}

/// A subagent thread seen on the connection.
#[derive(Debug, Clone)]
pub(super) struct ChildThread {
    /// The spawn item that announced it.
    pub(super) item: Option<String>,
    /// Its current turn.
    pub(super) turn: Option<String>,
}
