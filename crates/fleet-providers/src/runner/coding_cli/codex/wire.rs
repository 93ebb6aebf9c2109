//! Codex's events as types: the app-server's notifications (`method` + `params`, camelCase)
//! and `codex exec --json`'s events (`type`, snake_case), with the items both carry.
//!
//! Every type ignores fields it does not name and every enum has a catch-all, since Codex adds
//! item types and notifications often. The payloads fleet passes through without reading (a
//! command, a patch's changes, an MCP tool's arguments and result) stay JSON values.

use std::collections::BTreeMap;

use fleet_core::usage::TokenUsage;
use serde::Deserialize;
use serde_json::Value;

use crate::runner::coding_cli::null_as_default;

/// An app-server notification (a JSON-RPC message with a `method` and no `id`).
#[derive(Debug, Clone)]
pub(super) enum Notification {
    TurnStarted(TurnParams),
    TurnCompleted(TurnParams),
    ItemStarted(ItemParams),
    ItemCompleted(ItemParams),
    TokenUsageUpdated(TokenUsageParams),
    Error(ErrorParams),
    /// Anything else (`item/agentMessage/delta`, `thread/status/changed`, …), whatever its
    /// params.
    Other,
}

/// A notification before its params are read: by its `method`, as the protocol is.
#[derive(Deserialize)]
struct Framed {
    method: String,
    #[serde(default)]
    params: Value,
}

impl<'de> Deserialize<'de> for Notification {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let Framed { method, params } = Framed::deserialize(deserializer)?;
        fn read<'de, T: Deserialize<'de>, E: Error>(method: &str, params: Value) -> Result<T, E> {
            T::deserialize(params).map_err(|e| E::custom(format!("{method}: {e}")))
        }
        Ok(match method.as_str() {
            "turn/started" => Self::TurnStarted(read(&method, params)?),
            "turn/completed" => Self::TurnCompleted(read(&method, params)?),
            "item/started" => Self::ItemStarted(read(&method, params)?),
            "item/completed" => Self::ItemCompleted(read(&method, params)?),
            "thread/tokenUsage/updated" => Self::TokenUsageUpdated(read(&method, params)?),
            "error" => Self::Error(read(&method, params)?),
            _ => Self::Other,
        })
    }
}

impl Notification {
    /// The thread it is about (every notification fleet reads names one).
    pub(super) fn thread(&self) -> Option<&str> {
        match self {
            Self::TurnStarted(p) | Self::TurnCompleted(p) => p.thread_id.as_deref(),
            Self::ItemStarted(p) | Self::ItemCompleted(p) => p.thread_id.as_deref(),
            Self::TokenUsageUpdated(p) => p.thread_id.as_deref(),
            Self::Error(p) => p.thread_id.as_deref(),
            Self::Other => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TurnParams {
    pub(super) thread_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) turn: Turn,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Turn {
    pub(super) id: Option<String>,
    /// `completed`, `failed`, `interrupted`.
    pub(super) status: Option<String>,
    pub(super) error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemParams {
    pub(super) thread_id: Option<String>,
    pub(super) item: Option<Item>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenUsageParams {
    pub(super) thread_id: Option<String>,
    pub(super) token_usage: Option<TokenUsageTotals>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct TokenUsageTotals {
    /// The last request's usage (`total` is the thread's so far).
    pub(super) last: Option<Usage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ErrorParams {
    pub(super) thread_id: Option<String>,
    pub(super) error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) message: Option<String>,
}

/// OpenAI-style usage (`cached` is part of `input`), in either stream's spelling.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Usage {
    #[serde(rename = "inputTokens", alias = "input_tokens")]
    input: Option<u64>,
    #[serde(rename = "cachedInputTokens", alias = "cached_input_tokens")]
    cached: Option<u64>,
    #[serde(rename = "outputTokens", alias = "output_tokens")]
    output: Option<u64>,
}

impl Usage {
    pub(super) fn tokens(&self) -> TokenUsage {
        TokenUsage::from_openai(
            self.input.unwrap_or(0),
            self.output.unwrap_or(0),
            self.cached.unwrap_or(0),
        )
    }
}

/// One `codex exec --json` event.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub(super) enum ExecEvent {
    #[serde(rename = "thread.started")]
    ThreadStarted { thread_id: Option<String> },
    #[serde(rename = "item.started")]
    ItemStarted { item: Option<Item> },
    #[serde(rename = "item.updated")]
    ItemUpdated { item: Option<Item> },
    #[serde(rename = "item.completed")]
    ItemCompleted { item: Option<Item> },
    #[serde(rename = "turn.completed")]
    TurnCompleted { usage: Option<Usage> },
    #[serde(rename = "turn.failed")]
    TurnFailed { error: Option<ErrorBody> },
    #[serde(rename = "error")]
    Error { message: Option<String> },
    /// `turn.started` and anything newer.
    #[serde(other)]
    Other,
}

/// An item of a turn, as either stream spells it (the app-server in camelCase, `exec` in
/// snake_case).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub(super) enum Item {
    #[serde(rename = "agentMessage", alias = "agent_message")]
    AgentMessage {
        #[serde(default, deserialize_with = "null_as_default")]
        text: String,
    },
    #[serde(rename = "commandExecution", alias = "command_execution")]
    CommandExecution(CommandExecution),
    #[serde(rename = "fileChange", alias = "file_change")]
    FileChange(FileChange),
    #[serde(rename = "mcpToolCall", alias = "mcp_tool_call")]
    McpToolCall(McpToolCall),
    #[serde(rename = "webSearch", alias = "web_search")]
    WebSearch(WebSearch),
    #[serde(rename = "collabAgentToolCall", alias = "collab_tool_call")]
    Collab(Collab),
    #[serde(rename = "subAgentActivity")]
    SubAgentActivity(SubAgentActivity),
    #[serde(rename = "error")]
    Error { message: Option<String> },
    /// `reasoning`, `todo_list`, … and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct CommandExecution {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) id: String,
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) command: Value,
    #[serde(default)]
    pub(super) cwd: Value,
    #[serde(rename = "aggregatedOutput", alias = "aggregated_output", default)]
    pub(super) output: Value,
    #[serde(rename = "exitCode", alias = "exit_code")]
    pub(super) exit_code: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct FileChange {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) id: String,
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) changes: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct McpToolCall {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) id: String,
    pub(super) status: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) server: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) tool: String,
    #[serde(default)]
    pub(super) arguments: Value,
    #[serde(default)]
    pub(super) result: Value,
    #[serde(default)]
    pub(super) error: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct WebSearch {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) id: String,
    pub(super) status: Option<String>,
    #[serde(default)]
    pub(super) query: Value,
}

/// A collaboration tool call: `spawnAgent` / `spawn_agent`, `wait`, … with the states of the
/// subagents it concerns.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Collab {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) id: String,
    pub(super) status: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) tool: String,
    pub(super) prompt: Option<String>,
    pub(super) model: Option<String>,
    #[serde(rename = "receiverThreadIds", alias = "receiver_thread_ids", default)]
    pub(super) receivers: Option<Vec<String>>,
    /// As Codex wrote it (the trace shows it whole); read through [`Collab::agent_states`].
    #[serde(rename = "agentsStates", alias = "agents_states", default)]
    pub(super) states: Value,
}

impl Collab {
    /// The subagents' states, by thread (none when Codex sent none, or not as an object of
    /// states).
    pub(super) fn agent_states(&self) -> BTreeMap<String, AgentState> {
        BTreeMap::deserialize(&self.states).unwrap_or_default()
    }
}

/// A subagent's state as a collab item reports it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct AgentState {
    /// `running`, `completed`, `errored`, `interrupted`, `shutdown`, `notFound` / `not_found`.
    pub(super) status: Option<String>,
    pub(super) message: Option<String>,
}

/// The v2 subagent items: `started`, `completed` or `interrupted`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubAgentActivity {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) id: String,
    pub(super) agent_thread_id: Option<String>,
    pub(super) kind: Option<String>,
    pub(super) agent_path: Option<String>,
    pub(super) model: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recorded lines that are JSON (the fixtures also hold a line of junk on purpose).
    fn captures() -> Vec<(String, Value)> {
        crate::runner::coding_cli::recorded_lines("codex")
            .into_iter()
            .filter_map(|(file, line)| Some((file, serde_json::from_str(&line).ok()?)))
            .collect()
    }

    /// Every recorded notification and `exec` event reads as its type, and the item types
    /// fleet knows are not mistaken for unknown ones.
    #[test]
    fn every_recorded_event_reads_as_its_type() {
        let (mut notifications, mut events) = (0, 0);
        for (file, value) in captures() {
            let item_kind = |v: &Value| {
                v.get("item")
                    .or_else(|| v.get("params").and_then(|p| p.get("item")))
                    .and_then(|i| i.get("type"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let known_item = |kind: &str| {
                !matches!(
                    kind,
                    "reasoning" | "todo_list" | "userMessage" | "user_message"
                )
            };
            if value.get("method").is_some() && value.get("id").is_none() {
                let n: Notification = serde_json::from_value(value.clone())
                    .unwrap_or_else(|e| panic!("{file}: {e}: {value}"));
                if let Some(kind) = item_kind(&value)
                    && let Notification::ItemStarted(p) | Notification::ItemCompleted(p) = &n
                {
                    let other = matches!(p.item, Some(Item::Other));
                    assert_eq!(other, !known_item(&kind), "{file}: {kind}: {value}");
                }
                notifications += 1;
            } else if value.get("type").is_some() {
                let e: ExecEvent = serde_json::from_value(value.clone())
                    .unwrap_or_else(|e| panic!("{file}: {e}: {value}"));
                if let Some(kind) = item_kind(&value)
                    && let ExecEvent::ItemStarted { item }
                    | ExecEvent::ItemUpdated { item }
                    | ExecEvent::ItemCompleted { item } = &e
                {
                    let other = matches!(item, Some(Item::Other));
                    assert_eq!(other, !known_item(&kind), "{file}: {kind}: {value}");
                }
                events += 1;
            }
        }
        assert!(
            notifications > 10 && events > 5,
            "read {notifications} notifications and {events} exec events"
        );
    }

    #[test]
    fn both_spellings_read_the_same() {
        let app: Item = serde_json::from_value(serde_json::json!({
            "type": "collabAgentToolCall", "id": "c1", "tool": "spawnAgent",
            "receiverThreadIds": ["t2"], "agentsStates": {"t2": {"status": "completed", "extra": 1}}
        }))
        .unwrap();
        let exec: Item = serde_json::from_value(serde_json::json!({
            "type": "collab_tool_call", "id": "c1", "tool": "spawnAgent",
            "receiver_thread_ids": ["t2"], "agents_states": {"t2": {"status": "completed", "extra": 1}}
        }))
        .unwrap();
        for item in [app, exec] {
            let Item::Collab(c) = item else {
                panic!("{item:?}")
            };
            assert_eq!(c.receivers.as_deref(), Some(&["t2".to_owned()][..]));
            assert_eq!(c.agent_states()["t2"].status.as_deref(), Some("completed"));
            // What fleet does not read is kept for the trace.
            assert_eq!(
                c.states,
                serde_json::json!({"t2": {"status": "completed", "extra": 1}})
            );
        }
        let usage: Usage =
            serde_json::from_str(r#"{"inputTokens":10,"cachedInputTokens":4,"outputTokens":2}"#)
                .unwrap();
        let exec: Usage = serde_json::from_str(
            r#"{"input_tokens":10,"cached_input_tokens":4,"output_tokens":2}"#,
        )
        .unwrap();
        assert_eq!(usage.tokens(), exec.tokens());
        assert_eq!(usage.tokens().cache_read, 4);
        let other: Notification =
            serde_json::from_str(r#"{"method":"item/agentMessage/delta","params":{"delta":"x"}}"#)
                .unwrap();
        assert!(matches!(other, Notification::Other));
    }
}
