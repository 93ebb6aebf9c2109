//! The lines of Claude Code's stream-json, as types: what the CLI writes (`Line`) and what
//! fleet writes to it (`Input`).
//!
//! Every type ignores fields it does not name, and every enum has a catch-all for message types
//! and subtypes it does not know: the CLI adds new ones often (`rate_limit_event`,
//! `tool_progress`, system `api_retry`, …). Counts default to 0 and may be `null`.

use std::collections::BTreeMap;

use fleet_core::usage::TokenUsage;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::runner::coding_cli::null_as_default;

/// One line the CLI writes.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Line {
    /// `system` lines: `init` and the subagents' `task_*`.
    System(System),
    /// One content block of an assistant message (the message's usage repeats on each).
    Assistant(Assistant),
    /// A user message: the tool results.
    User(User),
    /// A request fleet must answer (a permission, a hook).
    ControlRequest(ControlRequest),
    /// The end of a turn.
    Result(Finished),
    /// Anything else.
    #[serde(other)]
    Other,
}

/// A `system` line, by its `subtype`.
#[derive(Debug, Deserialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum System {
    /// The session's start.
    Init(Init),
    /// A subagent started.
    TaskStarted(TaskStarted),
    /// A subagent's usage so far.
    TaskProgress(TaskStatus),
    /// A subagent ended (background ones: the CLI's report of it).
    TaskNotification(TaskStatus),
    /// A subagent's state changed.
    TaskUpdated(TaskStatus),
    /// Anything else (`api_retry`, `compact_boundary`, …).
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub(super) struct Init {
    pub(super) session_id: Option<String>,
    pub(super) model: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TaskStarted {
    /// The `Agent` tool use that started it: how fleet joins everything about the subagent.
    pub(super) tool_use_id: Option<String>,
    pub(super) task_id: Option<String>,
    pub(super) description: Option<String>,
    pub(super) subagent_type: Option<String>,
    pub(super) is_backgrounded: Option<bool>,
    /// The subagent that started this one, when it is nested.
    pub(super) parent_tool_use_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TaskStatus {
    pub(super) tool_use_id: Option<String>,
    /// `completed`, `failed`, `killed`, … (on `task_updated`, inside `patch`).
    pub(super) status: Option<String>,
    pub(super) patch: Option<TaskPatch>,
    pub(super) summary: Option<String>,
    pub(super) usage: Option<TaskUsage>,
}

impl TaskStatus {
    pub(super) fn status(&self) -> Option<&str> {
        self.status
            .as_deref()
            .or_else(|| self.patch.as_ref()?.status.as_deref())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct TaskPatch {
    pub(super) status: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TaskUsage {
    pub(super) total_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Assistant {
    pub(super) message: Option<AssistantMessage>,
    /// The subagent that wrote it; `None` for the main loop.
    pub(super) parent_tool_use_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AssistantMessage {
    pub(super) id: Option<String>,
    pub(super) model: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) content: Vec<Block>,
    pub(super) usage: Option<Usage>,
}

/// A content block of an assistant message.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Block {
    Text {
        #[serde(default, deserialize_with = "null_as_default")]
        text: String,
    },
    ToolUse {
        #[serde(default, deserialize_with = "null_as_default")]
        id: String,
        #[serde(default, deserialize_with = "null_as_default")]
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// `thinking`, `redacted_thinking`, …
    #[serde(other)]
    Other,
}

/// Anthropic's usage object: `input_tokens` excludes the cache writes and reads.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Usage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
}

#[derive(Debug, Default, Deserialize)]
struct CacheCreation {
    ephemeral_1h_input_tokens: Option<u64>,
}

impl Usage {
    pub(super) fn tokens(&self) -> TokenUsage {
        TokenUsage::from_anthropic(
            self.input_tokens.unwrap_or(0),
            self.output_tokens.unwrap_or(0),
            self.cache_creation_input_tokens.unwrap_or(0),
            self.cache_creation
                .as_ref()
                .and_then(|c| c.ephemeral_1h_input_tokens)
                .unwrap_or(0),
            self.cache_read_input_tokens.unwrap_or(0),
        )
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct User {
    pub(super) message: Option<UserMessage>,
    pub(super) parent_tool_use_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct UserMessage {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) content: UserContent,
}

/// A user message's content: blocks, or (the person's own words) a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum UserContent {
    Blocks(Vec<UserBlock>),
    Text(IgnoredAny),
}

impl Default for UserContent {
    fn default() -> Self {
        Self::Blocks(Vec::new())
    }
}

impl UserContent {
    pub(super) fn blocks(&self) -> &[UserBlock] {
        match self {
            Self::Blocks(blocks) => blocks,
            Self::Text(_) => &[],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum UserBlock {
    ToolResult {
        #[serde(default, deserialize_with = "null_as_default")]
        tool_use_id: String,
        is_error: Option<bool>,
        content: Option<ToolResultContent>,
    },
    #[serde(other)]
    Other,
}

/// A tool result's content: a string, or parts of which the text ones count.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ToolResultContent {
    Text(String),
    Parts(Vec<Part>),
    Other(IgnoredAny),
}

impl ToolResultContent {
    pub(super) fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
            Self::Other(_) => String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Part {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ControlRequest {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) request_id: String,
    pub(super) request: ControlRequestBody,
}

/// What the CLI asks: `can_use_tool` (with the tool and its input), or something fleet
/// registers nothing for (hooks, MCP messages).
#[derive(Debug, Deserialize)]
pub(super) struct ControlRequestBody {
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) subtype: String,
    pub(super) tool_name: Option<String>,
    #[serde(default)]
    pub(super) input: Value,
    pub(super) tool_use_id: Option<String>,
}

/// The `result` line that ends a turn.
#[derive(Debug, Deserialize)]
pub(super) struct Finished {
    /// `success`, or the kind of error.
    pub(super) subtype: Option<String>,
    /// Set on an API error even when the subtype says `success`.
    pub(super) is_error: Option<bool>,
    /// The turn's answer (or the error's text).
    pub(super) result: Option<String>,
    /// Usage per model for the whole session so far (`usage` covers the main loop only).
    #[serde(rename = "modelUsage", default)]
    pub(super) model_usage: BTreeMap<String, ModelUsage>,
    /// `task-notification` for the CLI's follow-up turn about a background subagent.
    pub(super) origin: Option<Origin>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation_ephemeral_1h_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl ModelUsage {
    pub(super) fn tokens(&self) -> TokenUsage {
        TokenUsage::from_anthropic(
            self.input_tokens.unwrap_or(0),
            self.output_tokens.unwrap_or(0),
            self.cache_creation_input_tokens.unwrap_or(0),
            self.cache_creation_ephemeral_1h_input_tokens.unwrap_or(0),
            self.cache_read_input_tokens.unwrap_or(0),
        )
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Origin {
    pub(super) kind: Option<String>,
}

/// A line fleet writes to the CLI's stdin.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Input<'a> {
    /// The next user message.
    User { message: UserInput<'a> },
    /// An answer to a [`ControlRequest`].
    ControlResponse { response: ControlResponse<'a> },
    /// A request of fleet's (the interrupt).
    ControlRequest {
        request_id: &'a str,
        request: OwnRequest,
    },
}

#[derive(Debug, Serialize)]
pub(super) struct UserInput<'a> {
    pub(super) role: &'static str,
    pub(super) content: [TextBlock<'a>; 1],
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename = "text")]
pub(super) struct TextBlock<'a> {
    pub(super) text: &'a str,
}

impl<'a> Input<'a> {
    /// The user message `text`.
    pub(super) fn user(text: &'a str) -> Self {
        Self::User {
            message: UserInput {
                role: "user",
                content: [TextBlock { text }],
            },
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum ControlResponse<'a> {
    /// The answer to a permission request.
    Success {
        request_id: &'a str,
        response: Verdict<'a>,
    },
    /// A request fleet does not handle.
    Error { request_id: &'a str, error: String },
}

/// A permission request's answer.
#[derive(Debug, Serialize)]
#[serde(tag = "behavior", rename_all = "snake_case")]
pub(super) enum Verdict<'a> {
    Allow {
        #[serde(rename = "updatedInput")]
        updated_input: &'a Value,
    },
    Deny {
        message: &'a str,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "subtype", rename_all = "snake_case")]
pub(super) enum OwnRequest {
    Interrupt,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_line_that_is_json_reads_as_a_line() {
        let mut known = 0;
        for (file, text) in crate::runner::coding_cli::recorded_lines("claude_code") {
            // Skip what is not the CLI's: a line of junk the fixtures feed on purpose, and the
            // fake CLI's own directives (`{"fake": "read"}`: wait for fleet's next line).
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if value.get("fake").is_some() {
                continue;
            }
            let line: Line = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("{file}: {e}: {text}"));
            let kind = value["type"].as_str().unwrap_or_default();
            let named = matches!(
                kind,
                "system" | "assistant" | "user" | "control_request" | "result"
            );
            assert_eq!(
                !matches!(line, Line::Other),
                named,
                "{file}: a {kind} line is read as {line:?}"
            );
            known += usize::from(named);
        }
        assert!(known > 50, "only {known} lines of known types were read");
    }

    #[test]
    fn lines_read_as_the_cli_means_them() {
        let line: Line = serde_json::from_str(
            r#"{"type":"assistant","message":{"id":"m","model":"claude-haiku-4-5","content":[{"type":"thinking","thinking":"…"},{"type":"tool_use","id":"t","name":"Agent","input":{"description":"d"}}],"usage":{"input_tokens":10,"output_tokens":2,"cache_read_input_tokens":null,"cache_creation":{"ephemeral_1h_input_tokens":4}}},"parent_tool_use_id":"p"}"#,
        )
        .unwrap();
        let Line::Assistant(a) = line else {
            panic!("{line:?}")
        };
        assert_eq!(a.parent_tool_use_id.as_deref(), Some("p"));
        let message = a.message.unwrap();
        assert!(matches!(message.content[0], Block::Other));
        assert!(
            matches!(&message.content[1], Block::ToolUse { id, name, .. } if id == "t" && name == "Agent")
        );
        let usage = message.usage.unwrap().tokens();
        assert_eq!(
            (usage.input, usage.output, usage.cache_write_1h),
            (10, 2, 4)
        );

        let line: Line = serde_json::from_str(
            r#"{"type":"system","subtype":"task_updated","tool_use_id":"t","patch":{"status":"killed"}}"#,
        )
        .unwrap();
        let Line::System(System::TaskUpdated(status)) = line else {
            panic!("{line:?}")
        };
        assert_eq!(status.status(), Some("killed"));

        let line: Line = serde_json::from_str(
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error","modelUsage":{"claude-sonnet-4-5":{"inputTokens":5,"outputTokens":1,"cacheReadInputTokens":7}},"origin":{"kind":"task-notification"}}"#,
        )
        .unwrap();
        let Line::Result(done) = line else {
            panic!("{line:?}")
        };
        assert_eq!(done.is_error, Some(true));
        assert_eq!(done.model_usage["claude-sonnet-4-5"].tokens().cache_read, 7);
        assert_eq!(
            done.origin.unwrap().kind.as_deref(),
            Some("task-notification")
        );

        for unknown in [
            r#"{"type":"rate_limit_event","rate_limit_info":{}}"#,
            r#"{"type":"system","subtype":"api_retry","attempt":1}"#,
        ] {
            let line: Line = serde_json::from_str(unknown).unwrap();
            assert!(
                matches!(line, Line::Other | Line::System(System::Other)),
                "{line:?}"
            );
        }
        // A known type with a field of the wrong shape is an error to report, not a guess.
        assert!(
            serde_json::from_str::<Line>(r#"{"type":"assistant","message":{"content":"x"}}"#)
                .is_err()
        );
    }

    #[test]
    fn what_fleet_writes_is_what_the_cli_reads() {
        let text = |input: &Input<'_>| serde_json::to_value(input).unwrap();
        assert_eq!(
            text(&Input::user("hi")),
            serde_json::json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "hi"}]}})
        );
        let input = serde_json::json!({"file": "a"});
        assert_eq!(
            text(&Input::ControlResponse {
                response: ControlResponse::Success {
                    request_id: "r1",
                    response: Verdict::Allow {
                        updated_input: &input
                    },
                },
            }),
            serde_json::json!({"type": "control_response", "response": {"subtype": "success", "request_id": "r1", "response": {"behavior": "allow", "updatedInput": {"file": "a"}}}})
        );
        assert_eq!(
            text(&Input::ControlResponse {
                response: ControlResponse::Success {
                    request_id: "r2",
                    response: Verdict::Deny { message: "no" },
                },
            }),
            serde_json::json!({"type": "control_response", "response": {"subtype": "success", "request_id": "r2", "response": {"behavior": "deny", "message": "no"}}})
        );
        assert_eq!(
            text(&Input::ControlResponse {
                response: ControlResponse::Error {
                    request_id: "r3",
                    error: "fleet does not handle hook_callback".into(),
                },
            }),
            serde_json::json!({"type": "control_response", "response": {"subtype": "error", "request_id": "r3", "error": "fleet does not handle hook_callback"}})
        );
        assert_eq!(
            text(&Input::ControlRequest {
                request_id: "fleet-interrupt",
                request: OwnRequest::Interrupt,
            }),
            serde_json::json!({"type": "control_request", "request_id": "fleet-interrupt", "request": {"subtype": "interrupt"}})
        );
    }
}
