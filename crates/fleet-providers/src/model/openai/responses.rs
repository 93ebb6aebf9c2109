//! Responses API: pure request building and stream decoding.

use std::collections::BTreeMap;

use fleet_core::provider::{
    Content, MessageRole, ModelRequest, ProviderError, StopReason, StreamEvent, ToolChoice,
};
use fleet_core::usage::TokenUsage;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{effort_name, image_url};
use crate::transport::http::kind_of_error_type;
use crate::transport::sse::SseFrame;
use crate::transport::stream::{FrameDecoder, decode_error, parse_arguments};

/// The request body: messages become input items, tool calls `function_call` items and tool
/// results `function_call_output` items.
pub(crate) fn build_request(request: &ModelRequest, compatible: bool) -> Value {
    let mut input = Vec::new();
    for message in &request.messages {
        let mut parts = Vec::new();
        let (role, text_type) = match message.role {
            MessageRole::User => ("user", "input_text"),
            MessageRole::Assistant => ("assistant", "output_text"),
        };
        let flush = |parts: &mut Vec<Value>, input: &mut Vec<Value>| {
            if !parts.is_empty() {
                input.push(
                    json!({"type": "message", "role": role, "content": std::mem::take(parts)}),
                );
            }
        };
        for block in &message.content {
            match block {
                Content::Text { text } => parts.push(json!({"type": text_type, "text": text})),
                Content::Image { source } => {
                    parts.push(json!({"type": "input_image", "image_url": image_url(source)}));
                }
                Content::ToolUse {
                    id,
                    name,
                    input: args,
                } => {
                    flush(&mut parts, &mut input);
                    input.push(json!({
                        "type": "function_call", "call_id": id, "name": name,
                        "arguments": args.to_string(),
                    }));
                }
                Content::ToolResult {
                    tool_use_id,
                    content,
                    ..
                } => {
                    flush(&mut parts, &mut input);
                    input.push(json!({
                        "type": "function_call_output", "call_id": tool_use_id, "output": content,
                    }));
                }
                _ => {}
            }
        }
        flush(&mut parts, &mut input);
    }
    let mut body = json!({
        "model": request.model,
        "input": input,
        "max_output_tokens": request.max_tokens,
        "stream": true,
        "store": false,
    });
    if let Some(system) = request.system.as_ref().filter(|s| !s.is_empty()) {
        body["instructions"] = json!(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "name": t.name, "description": t.description,
                       "parameters": t.input_schema, "strict": false})
            })
            .collect();
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Any => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "name": name}),
        };
    }
    if let Some(effort) = request.effort.filter(|_| !compatible) {
        body["reasoning"] = json!({"effort": effort_name(effort)});
    }
    body
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum Event {
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: u32, item: Item },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { delta: String },
    #[serde(
        rename = "response.reasoning_summary_text.delta",
        alias = "response.reasoning_text.delta"
    )]
    ReasoningDelta { delta: String },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { output_index: u32, delta: String },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        output_index: u32,
        #[serde(default)]
        arguments: Option<String>,
    },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: u32, item: Item },
    #[serde(rename = "response.completed")]
    Completed { response: Response },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Response },
    #[serde(rename = "response.failed")]
    Failed { response: Response },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: String,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum Item {
    #[serde(rename = "function_call")]
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Response {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct Incomplete {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Debug, Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Debug)]
struct Call {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Decodes Responses events.
#[derive(Debug)]
pub(crate) struct Decoder {
    provider: String,
    calls: BTreeMap<u32, Call>,
    made_calls: bool,
    next_call: u32,
    done: bool,
}

impl Decoder {
    pub(crate) fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            calls: BTreeMap::new(),
            made_calls: false,
            next_call: 0,
            done: false,
        }
    }

    fn end_call(
        &mut self,
        output_index: u32,
        arguments: Option<String>,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ProviderError> {
        let Some(call) = self.calls.remove(&output_index) else {
            return Ok(());
        };
        let text = arguments.unwrap_or(call.arguments);
        let input = parse_arguments(&self.provider, &call.name, &call.id, &text)?;
        out.push(StreamEvent::ToolCallEnd {
            index: call.index,
            id: call.id,
            name: call.name,
            input,
        });
        Ok(())
    }

    fn finish(&mut self, response: Response, stop: StopReason, out: &mut Vec<StreamEvent>) {
        if let Some(u) = response.usage {
            let cached = u.input_tokens_details.map_or(0, |d| d.cached_tokens);
            out.push(StreamEvent::Usage {
                usage: TokenUsage::from_openai(u.input_tokens, u.output_tokens, cached),
            });
        }
        self.done = true;
        out.push(StreamEvent::Done { stop_reason: stop });
    }
}

impl FrameDecoder for Decoder {
    fn frame(&mut self, frame: &SseFrame, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        let event: Event = serde_json::from_str(&frame.data)
            .map_err(|e| decode_error(&self.provider, &format!("event {:?}: {e}", frame.event)))?;
        match event {
            Event::ItemAdded { output_index, item } => {
                if let Item::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } = item
                {
                    let index = self.next_call;
                    self.next_call += 1;
                    self.made_calls = true;
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: call_id.clone(),
                        name: name.clone(),
                    });
                    self.calls.insert(
                        output_index,
                        Call {
                            index,
                            id: call_id,
                            name,
                            arguments,
                        },
                    );
                }
            }
            Event::TextDelta { delta } => out.push(StreamEvent::TextDelta { text: delta }),
            Event::ReasoningDelta { delta } => out.push(StreamEvent::ThinkingDelta { text: delta }),
            Event::ArgumentsDelta {
                output_index,
                delta,
            } => {
                if let Some(call) = self.calls.get_mut(&output_index) {
                    call.arguments.push_str(&delta);
                    out.push(StreamEvent::ToolCallDelta {
                        index: call.index,
                        json: delta,
                    });
                }
            }
            Event::ArgumentsDone {
                output_index,
                arguments,
            } => {
                self.end_call(output_index, arguments, out)?;
            }
            Event::ItemDone { output_index, item } => {
                if let Item::FunctionCall { arguments, .. } = item {
                    self.end_call(output_index, Some(arguments), out)?;
                }
            }
            Event::Completed { response } => {
                let stop = if self.made_calls {
                    StopReason::ToolUse
                } else {
                    StopReason::EndTurn
                };
                self.finish(response, stop, out);
            }
            Event::Incomplete { response } => {
                let stop = match response
                    .incomplete_details
                    .as_ref()
                    .and_then(|d| d.reason.as_deref())
                {
                    Some("max_output_tokens") | None => StopReason::MaxTokens,
                    Some("content_filter") => StopReason::Refusal,
                    Some(other) => StopReason::Other(other.to_owned()),
                };
                self.finish(response, stop, out);
            }
            Event::Failed { response } => {
                let (code, message) = response
                    .error
                    .map(|e| (e.code, e.message))
                    .unwrap_or((None, "the response failed".to_owned()));
                return Err(ProviderError::Api {
                    provider: self.provider.clone(),
                    status: None,
                    kind: kind_of_error_type(code.as_deref().unwrap_or("")),
                    message,
                    retry_after: None,
                });
            }
            Event::Error { code, message } => {
                return Err(ProviderError::Api {
                    provider: self.provider.clone(),
                    status: None,
                    kind: kind_of_error_type(code.as_deref().unwrap_or("")),
                    message,
                    retry_after: None,
                });
            }
            Event::Unknown => {}
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::provider::Message;

    use super::*;

    #[test]
    fn tool_round_trip_uses_function_call_output_items() {
        let mut r = ModelRequest::new("gpt-5", "list", 500);
        r.system = Some("sys".into());
        r.messages.push(Message {
            role: MessageRole::Assistant,
            content: vec![
                Content::Text {
                    text: "Listing.".into(),
                },
                Content::ToolUse {
                    id: "call_9".into(),
                    name: "ls".into(),
                    input: json!({}),
                },
            ],
        });
        r.messages.push(Message {
            role: MessageRole::User,
            content: vec![Content::ToolResult {
                tool_use_id: "call_9".into(),
                content: "x".into(),
                is_error: false,
            }],
        });
        let body = build_request(&r, false);
        assert_eq!(
            body["input"],
            json!([
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Listing."}]},
                {"type": "function_call", "call_id": "call_9", "name": "ls", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_9", "output": "x"},
            ])
        );
        assert_eq!(body["instructions"], json!("sys"));
        assert_eq!(body["max_output_tokens"], json!(500));
    }
}
