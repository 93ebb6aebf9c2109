//! What Codex's items become: activities, states, usage.

use fleet_core::activity::ActivityKind;
use fleet_core::{TokenUsage, WorkUnitState};
use serde_json::{Value, json};

use crate::runner::coding_cli::{Step, Target};

pub(super) fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

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
pub(super) fn agent_state(state: &Value) -> Option<(WorkUnitState, Option<String>)> {
    let message = text(state, "message");
    match state.get("status").and_then(Value::as_str)? {
        "completed" => Some((WorkUnitState::Completed, None)),
        "errored" => Some((
            WorkUnitState::Failed,
            Some(message.unwrap_or_else(|| "the subagent failed".into())),
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

/// OpenAI-style usage: cached tokens are part of the input.
pub(super) fn openai_usage(u: &Value, input: &str, cached: &str, output: &str) -> TokenUsage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage::from_openai(n(input), n(output), n(cached))
}

/// Items common to both streams: a tool-like item's call and result.
pub(super) fn item_activities(
    target: &Target,
    item: &Value,
    completed: bool,
    steps: &mut Vec<Step>,
) {
    let id = text(item, "id").unwrap_or_default();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    let status = text(item, "status").unwrap_or_default();
    let failed = matches!(status.as_str(), "failed" | "declined");
    let (name, input, output, is_error) = match kind {
        "commandExecution" | "command_execution" => (
            "command".to_owned(),
            json!({"command": item.get("command"), "cwd": item.get("cwd")}),
            item.get("aggregatedOutput")
                .or_else(|| item.get("aggregated_output"))
                .cloned()
                .unwrap_or(Value::Null),
            failed
                || item
                    .get("exitCode")
                    .or_else(|| item.get("exit_code"))
                    .and_then(Value::as_i64)
                    .is_some_and(|c| c != 0),
        ),
        "fileChange" | "file_change" => (
            "apply_patch".to_owned(),
            json!({"changes": item.get("changes")}),
            Value::String(status.clone()),
            failed,
        ),
        "mcpToolCall" | "mcp_tool_call" => (
            format!(
                "{}/{}",
                text(item, "server").unwrap_or_default(),
                text(item, "tool").unwrap_or_default()
            ),
            item.get("arguments").cloned().unwrap_or(Value::Null),
            item.get("error")
                .filter(|e| !e.is_null())
                .or_else(|| item.get("result"))
                .cloned()
                .unwrap_or(Value::Null),
            failed || item.get("error").is_some_and(|e| !e.is_null()),
        ),
        "webSearch" | "web_search" => (
            "web_search".to_owned(),
            json!({"query": item.get("query")}),
            Value::Null,
            failed,
        ),
        "collabAgentToolCall" | "collab_tool_call" => (
            text(item, "tool").unwrap_or_default(),
            json!({
                "prompt": item.get("prompt"),
                "receivers": item.get("receiverThreadIds").or_else(|| item.get("receiver_thread_ids")),
            }),
            item.get("agentsStates")
                .or_else(|| item.get("agents_states"))
                .cloned()
                .unwrap_or(Value::Null),
            failed,
        ),
        _ => return,
    };
    let kind = if completed {
        ActivityKind::ToolResult {
            call_id: id,
            output,
            is_error,
        }
    } else {
        ActivityKind::ToolCall {
            call_id: id,
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
