//! What a provider answers: the normalized [`StreamEvent`]s of a streamed answer, and the
//! [`ModelResponse`] a [`ResponseBuilder`] folds them into.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::request::{Content, Message, MessageRole};
use crate::usage::TokenUsage;
use crate::work_unit::WorkUnitState;

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants tool results.
    ToolUse,
    /// It ran out of output tokens.
    MaxTokens,
    /// It produced a stop sequence.
    StopSequence,
    /// It refused.
    Refusal,
    /// The provider paused a long turn; send the conversation back to continue.
    PauseTurn,
    /// A reason fleet does not know, as the provider said it.
    Other(String),
}

/// One normalized event of a model's streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// More answer text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// More reasoning text.
    ThinkingDelta {
        /// The new text.
        text: String,
    },
    /// The signature closing a thinking block.
    ThinkingSignature {
        /// The signature.
        signature: String,
    },
    /// A tool call began.
    ToolCallStart {
        /// Its position among this answer's tool calls.
        index: u32,
        /// Its id.
        id: String,
        /// The tool.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallDelta {
        /// Which call.
        index: u32,
        /// The fragment.
        json: String,
    },
    /// A tool call is complete.
    ToolCallEnd {
        /// Which call.
        index: u32,
        /// Its id.
        id: String,
        /// The tool.
        name: String,
        /// Its parsed arguments.
        input: Value,
    },
    /// Tokens used by this request so far: each report replaces the previous one (never sum).
    Usage {
        /// The tokens.
        usage: TokenUsage,
    },
    /// The provider started a subagent of its own (Claude Code `Agent`, a Codex spawn).
    SubtaskStarted {
        /// The provider's id for it.
        task_id: String,
        /// What it was asked to do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// Its agent type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// A subagent reported progress.
    SubtaskProgress {
        /// Which.
        task_id: String,
        /// What it said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Its tokens so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<TokenUsage>,
    },
    /// A subagent ended.
    SubtaskFinished {
        /// Which.
        task_id: String,
        /// How it ended.
        state: WorkUnitState,
        /// Its answer or error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// The answer is complete.
    Done {
        /// Why the model stopped.
        stop_reason: StopReason,
    },
}

/// A model's whole answer, collected from its stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelResponse {
    /// Text, thinking and tool calls, in order.
    pub content: Vec<Content>,
    /// The tokens used (the last report).
    pub usage: TokenUsage,
    /// Why it stopped (`None` if the stream ended without saying).
    pub stop_reason: Option<StopReason>,
}

impl ModelResponse {
    /// The answer's text.
    #[must_use]
    pub fn text(&self) -> String {
        Message {
            role: MessageRole::Assistant,
            content: self.content.clone(),
        }
        .text()
    }

    /// The tool calls, in order: `(id, name, input)`.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|c| match c {
            Content::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }
}

/// Folds stream events into a [`ModelResponse`].
#[derive(Debug, Default)]
pub struct ResponseBuilder {
    response: ModelResponse,
}

impl ResponseBuilder {
    /// Takes one event.
    pub fn push(&mut self, event: StreamEvent) {
        let content = &mut self.response.content;
        match event {
            StreamEvent::TextDelta { text } => match content.last_mut() {
                Some(Content::Text { text: last }) => last.push_str(&text),
                _ => content.push(Content::Text { text }),
            },
            StreamEvent::ThinkingDelta { text } => match content.last_mut() {
                Some(Content::Thinking { text: last, .. }) => last.push_str(&text),
                _ => content.push(Content::Thinking {
                    text,
                    signature: None,
                }),
            },
            StreamEvent::ThinkingSignature { signature } => match content.last_mut() {
                Some(Content::Thinking { signature: s, .. }) => *s = Some(signature),
                _ => content.push(Content::Thinking {
                    text: String::new(),
                    signature: Some(signature),
                }),
            },
            StreamEvent::ToolCallEnd {
                id, name, input, ..
            } => content.push(Content::ToolUse { id, name, input }),
            StreamEvent::Usage { usage } => self.response.usage = usage,
            StreamEvent::Done { stop_reason } => self.response.stop_reason = Some(stop_reason),
            StreamEvent::ToolCallStart { .. }
            | StreamEvent::ToolCallDelta { .. }
            | StreamEvent::SubtaskStarted { .. }
            | StreamEvent::SubtaskProgress { .. }
            | StreamEvent::SubtaskFinished { .. } => {}
        }
    }

    /// The response so far.
    #[must_use]
    pub fn finish(self) -> ModelResponse {
        self.response
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EndTurn => f.write_str("end_turn"),
            Self::ToolUse => f.write_str("tool_use"),
            Self::MaxTokens => f.write_str("max_tokens"),
            Self::StopSequence => f.write_str("stop_sequence"),
            Self::Refusal => f.write_str("refusal"),
            Self::PauseTurn => f.write_str("pause_turn"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_joins_deltas_and_keeps_the_last_usage() {
        let mut b = ResponseBuilder::default();
        for e in [
            StreamEvent::ThinkingDelta { text: "hm".into() },
            StreamEvent::ThinkingSignature {
                signature: "sig".into(),
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Usage {
                usage: TokenUsage {
                    input: 5,
                    output: 1,
                    ..TokenUsage::default()
                },
            },
            StreamEvent::ToolCallEnd {
                index: 0,
                id: "t1".into(),
                name: "read_file".into(),
                input: serde_json::json!({"path": "a"}),
            },
            StreamEvent::Usage {
                usage: TokenUsage {
                    input: 5,
                    output: 9,
                    ..TokenUsage::default()
                },
            },
            StreamEvent::Done {
                stop_reason: StopReason::ToolUse,
            },
        ] {
            b.push(e);
        }
        let r = b.finish();
        assert_eq!(r.text(), "Hello");
        assert_eq!(r.usage.output, 9);
        assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(r.tool_calls().count(), 1);
        assert_eq!(
            r.content[0],
            Content::Thinking {
                text: "hm".into(),
                signature: Some("sig".into())
            }
        );
    }
}
