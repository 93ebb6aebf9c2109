//! Pure conversions between fleet's request/events and Anthropic Messages. No I/O.

use std::collections::HashMap;

use fleet_core::provider::{
    Content, ImageSource, MessageRole, ModelRequest, ProviderError, StopReason, StreamEvent,
    ToolChoice,
};
use fleet_core::spec::Effort;
use fleet_core::usage::TokenUsage;
use serde_json::{Value, json};

use super::wire::{self, Block, BlockDelta, CacheControl, Event, TextBlock};
use crate::transport::http::kind_of_error_type;
use crate::transport::sse::SseFrame;
use crate::transport::stream::{FrameDecoder, decode_error, parse_arguments};

pub(crate) const PROVIDER: &str = "anthropic";

/// The smallest thinking budget the API accepts.
const MIN_THINKING: u32 = 1024;

/// The thinking budget for a request: the explicit one, or one derived from the effort as a
/// share of `max_tokens` (low effort thinks not at all).
fn thinking_budget(request: &ModelRequest) -> Option<u32> {
    let budget = request.thinking_budget.or_else(|| {
        let share = match request.effort? {
            Effort::Low => return None,
            Effort::Medium => 4,
            Effort::High => 2,
            _ => 1,
        };
        Some(if share == 1 {
            request.max_tokens.saturating_mul(3) / 4
        } else {
            request.max_tokens / share
        })
    })?;
    // The budget must be below max_tokens and at least the API's minimum.
    let budget = budget.min(request.max_tokens.saturating_sub(1));
    (budget >= MIN_THINKING).then_some(budget)
}

fn cache_control(long_ttl: bool) -> CacheControl {
    CacheControl {
        kind: "ephemeral",
        ttl: long_ttl.then_some("1h"),
    }
}

fn content_json(block: &Content) -> Option<Value> {
    Some(match block {
        Content::Text { text } => json!({"type": "text", "text": text}),
        Content::Image { source } => match source {
            ImageSource::Base64 { media_type, data } => json!({
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }),
            ImageSource::Url { url } => json!({
                "type": "image",
                "source": {"type": "url", "url": url},
            }),
        },
        Content::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Content::ToolResult {
            tool_use_id,
            content,
            is_error,
        } => {
            let mut v =
                json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error {
                v["is_error"] = Value::Bool(true);
            }
            v
        }
        // Thinking goes back only with its signature; unsigned thinking would be refused.
        Content::Thinking { text, signature } => {
            json!({"type": "thinking", "thinking": text, "signature": signature.as_ref()?})
        }
        _ => return None,
    })
}

/// The request body for `request`.
pub(crate) fn build_request(request: &ModelRequest) -> wire::Request {
    let cache = request.cache;
    let mut system = Vec::new();
    if let Some(text) = request.system.as_ref().filter(|s| !s.is_empty()) {
        system.push(TextBlock {
            kind: "text",
            text: text.clone(),
            cache_control: cache.system.then(|| cache_control(cache.long_ttl)),
        });
    }
    let mut tools: Vec<wire::Tool> = request
        .tools
        .iter()
        .map(|t| wire::Tool {
            name: t.name.clone(),
            description: t.description.clone(),
            input_schema: t.input_schema.clone(),
            cache_control: None,
        })
        .collect();
    if cache.system
        && let Some(last) = tools.last_mut()
    {
        last.cache_control = Some(cache_control(cache.long_ttl));
    }
    let mut messages: Vec<wire::WireMessage> = request
        .messages
        .iter()
        .map(|m| wire::WireMessage {
            role: match m.role {
                MessageRole::User => "user",
                MessageRole::Assistant => "assistant",
            },
            content: m.content.iter().filter_map(content_json).collect(),
        })
        .filter(|m| !m.content.is_empty())
        .collect();
    if cache.last_message
        && let Some(block) = messages.last_mut().and_then(|m| m.content.last_mut())
    {
        block["cache_control"] = json!(cache_control(cache.long_ttl));
    }
    let forced = matches!(request.tool_choice, ToolChoice::Any | ToolChoice::Tool(_));
    let tool_choice = match &request.tool_choice {
        ToolChoice::Auto => None,
        ToolChoice::Any => Some(json!({"type": "any"})),
        ToolChoice::None => Some(json!({"type": "none"})),
        ToolChoice::Tool(name) => Some(json!({"type": "tool", "name": name})),
    };
    // The API refuses thinking with a forced tool choice; the forced choice wins.
    let thinking = thinking_budget(request)
        .filter(|_| !forced)
        .map(|budget| json!({"type": "enabled", "budget_tokens": budget}));
    wire::Request {
        model: request.model.clone(),
        max_tokens: request.max_tokens,
        system,
        messages,
        tools,
        tool_choice,
        thinking,
        stream: true,
    }
}

#[derive(Debug)]
enum Open {
    Text,
    Thinking,
    Tool {
        call: u32,
        id: String,
        name: String,
        json: String,
    },
    Other,
}

/// Decodes Anthropic's streamed events into fleet's.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    open: HashMap<u32, Open>,
    calls: u32,
    usage: wire::Usage,
    stop_reason: Option<String>,
    done: bool,
}

fn merge(into: &mut wire::Usage, from: &wire::Usage) {
    // Reports are cumulative: a later figure replaces an earlier one, never adds to it.
    into.input_tokens = from.input_tokens.or(into.input_tokens);
    into.output_tokens = from.output_tokens.or(into.output_tokens);
    into.cache_creation_input_tokens = from
        .cache_creation_input_tokens
        .or(into.cache_creation_input_tokens);
    into.cache_read_input_tokens = from
        .cache_read_input_tokens
        .or(into.cache_read_input_tokens);
    into.cache_creation = from.cache_creation.or(into.cache_creation);
}

pub(crate) fn usage_of(u: &wire::Usage) -> TokenUsage {
    let one_hour = u
        .cache_creation
        .and_then(|c| c.ephemeral_1h_input_tokens)
        .unwrap_or(0);
    let creation = u.cache_creation_input_tokens.unwrap_or_else(|| {
        u.cache_creation.map_or(0, |c| {
            c.ephemeral_5m_input_tokens.unwrap_or(0) + c.ephemeral_1h_input_tokens.unwrap_or(0)
        })
    });
    TokenUsage::from_anthropic(
        u.input_tokens.unwrap_or(0),
        u.output_tokens.unwrap_or(0),
        creation,
        one_hour,
        u.cache_read_input_tokens.unwrap_or(0),
    )
}

pub(crate) fn stop_reason(reason: Option<&str>) -> StopReason {
    match reason {
        Some("end_turn") | None => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens" | "model_context_window_exceeded") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("refusal") => StopReason::Refusal,
        Some("pause_turn") => StopReason::PauseTurn,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

impl Decoder {
    fn event(&mut self, event: Event, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        match event {
            Event::MessageStart { message } => {
                if let Some(u) = message.usage {
                    merge(&mut self.usage, &u);
                    out.push(StreamEvent::Usage {
                        usage: usage_of(&self.usage),
                    });
                }
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => {
                let open = match content_block {
                    Block::Text { text } => {
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta { text });
                        }
                        Open::Text
                    }
                    Block::Thinking { thinking } => {
                        if !thinking.is_empty() {
                            out.push(StreamEvent::ThinkingDelta { text: thinking });
                        }
                        Open::Thinking
                    }
                    Block::ToolUse { id, name } => {
                        let call = self.calls;
                        self.calls += 1;
                        out.push(StreamEvent::ToolCallStart {
                            index: call,
                            id: id.clone(),
                            name: name.clone(),
                        });
                        Open::Tool {
                            call,
                            id,
                            name,
                            json: String::new(),
                        }
                    }
                    Block::Unknown => Open::Other,
                };
                self.open.insert(index, open);
            }
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => out.push(StreamEvent::TextDelta { text }),
                BlockDelta::ThinkingDelta { thinking } => {
                    out.push(StreamEvent::ThinkingDelta { text: thinking });
                }
                BlockDelta::SignatureDelta { signature } => {
                    out.push(StreamEvent::ThinkingSignature { signature });
                }
                BlockDelta::InputJsonDelta { partial_json } => match self.open.get_mut(&index) {
                    Some(Open::Tool { .. }) if partial_json.is_empty() => {}
                    Some(Open::Tool { call, json, .. }) => {
                        json.push_str(&partial_json);
                        out.push(StreamEvent::ToolCallDelta {
                            index: *call,
                            json: partial_json,
                        });
                    }
                    // Server-side tools stream their input too; they are not ours to run.
                    Some(Open::Other) => {}
                    _ => {
                        return Err(decode_error(
                            PROVIDER,
                            &format!(
                                "input_json_delta for content block {index}, which is not a tool_use block"
                            ),
                        ));
                    }
                },
                BlockDelta::Unknown => {}
            },
            Event::ContentBlockStop { index } => {
                if let Some(Open::Tool {
                    call,
                    id,
                    name,
                    json,
                }) = self.open.remove(&index)
                {
                    let input = parse_arguments(PROVIDER, &name, &id, &json)?;
                    out.push(StreamEvent::ToolCallEnd {
                        index: call,
                        id,
                        name,
                        input,
                    });
                }
            }
            Event::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                if let Some(u) = usage {
                    merge(&mut self.usage, &u);
                    out.push(StreamEvent::Usage {
                        usage: usage_of(&self.usage),
                    });
                }
            }
            Event::MessageStop => {
                self.done = true;
                out.push(StreamEvent::Done {
                    stop_reason: stop_reason(self.stop_reason.as_deref()),
                });
            }
            Event::Ping | Event::Unknown => {}
            Event::Error { error } => {
                return Err(ProviderError::Api {
                    provider: PROVIDER.into(),
                    status: None,
                    kind: kind_of_error_type(&error.kind),
                    message: if error.message.is_empty() {
                        error.kind
                    } else {
                        error.message
                    },
                    retry_after: None,
                });
            }
        }
        Ok(())
    }
}

impl FrameDecoder for Decoder {
    fn frame(&mut self, frame: &SseFrame, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        let event: Event = serde_json::from_str(&frame.data).map_err(|e| {
            let name = if frame.event.is_empty() {
                "message"
            } else {
                &frame.event
            };
            decode_error(PROVIDER, &format!("event {name:?}: {e}"))
        })?;
        self.event(event, out)
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::provider::{CacheHints, ImageSource, Message, ToolSpec};

    use super::*;

    #[test]
    fn request_carries_tools_images_cache_and_thinking() {
        let mut r = ModelRequest::new("claude-sonnet-4-5", "look", 8000);
        r.system = Some("be brief".into());
        r.messages[0].content.push(Content::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBOR".into(),
            },
        });
        r.messages.push(Message {
            role: MessageRole::Assistant,
            content: vec![
                Content::Thinking {
                    text: "unsigned".into(),
                    signature: None,
                },
                Content::ToolUse {
                    id: "toolu_1".into(),
                    name: "read_file".into(),
                    input: json!({"path": "a.rs"}),
                },
            ],
        });
        r.messages.push(Message {
            role: MessageRole::User,
            content: vec![Content::ToolResult {
                tool_use_id: "toolu_1".into(),
                content: "no such file".into(),
                is_error: true,
            }],
        });
        r.tools.push(ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            input_schema: json!({"type": "object"}),
        });
        r.cache = CacheHints {
            system: true,
            last_message: true,
            long_ttl: false,
        };
        r.effort = Some(Effort::High);
        let body = serde_json::to_value(build_request(&r)).unwrap_or_default();
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 8000,
                "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    ]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.rs"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "no such file", "is_error": true,
                         "cache_control": {"type": "ephemeral"}},
                    ]},
                ],
                "tools": [{"name": "read_file", "description": "Read a file", "input_schema": {"type": "object"},
                           "cache_control": {"type": "ephemeral"}}],
                "thinking": {"type": "enabled", "budget_tokens": 4000},
                "stream": true,
            })
        );
    }

    #[test]
    fn a_forced_tool_turns_thinking_off() {
        let mut r = ModelRequest::new("claude-haiku-4-5", "x", 4000);
        r.thinking_budget = Some(2000);
        r.tool_choice = ToolChoice::Tool("structured_output".into());
        let body = serde_json::to_value(build_request(&r)).unwrap_or_default();
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": "structured_output"})
        );
        assert!(body.get("thinking").is_none());
        // Too small a budget is not sent either.
        let mut small = ModelRequest::new("m", "x", 1000);
        small.effort = Some(Effort::Max);
        assert_eq!(thinking_budget(&small), None);
    }

    #[test]
    fn usage_takes_the_last_report_and_splits_cache_writes() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for line in [
            r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":300,"cache_read_input_tokens":2000,"output_tokens":1,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200}}}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":40}}"#,
            r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":42}}"#,
            r#"{"type":"message_stop"}"#,
        ] {
            let frame = SseFrame {
                event: String::new(),
                data: line.into(),
            };
            d.frame(&frame, &mut out).unwrap_or_default();
        }
        let last = out.iter().rev().find_map(|e| match e {
            StreamEvent::Usage { usage } => Some(*usage),
            _ => None,
        });
        assert_eq!(
            last,
            Some(TokenUsage {
                input: 10,
                output: 42,
                cache_write: 100,
                cache_write_1h: 200,
                cache_read: 2000
            })
        );
        assert_eq!(
            out.last(),
            Some(&StreamEvent::Done {
                stop_reason: StopReason::EndTurn
            })
        );
        assert!(d.is_done());
    }
}
