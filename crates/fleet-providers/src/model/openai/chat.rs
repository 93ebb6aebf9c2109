//! Chat Completions: pure request building and stream decoding.

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

/// The request body. `compatible` servers get `max_tokens` and no `reasoning_effort`.
pub(crate) fn build_request(request: &ModelRequest, compatible: bool) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = request.system.as_ref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        match message.role {
            MessageRole::User => {
                let mut parts = Vec::new();
                let mut has_image = false;
                for block in &message.content {
                    match block {
                        Content::Text { text } => {
                            parts.push(json!({"type": "text", "text": text}));
                        }
                        Content::Image { source } => {
                            has_image = true;
                            parts.push(
                                json!({"type": "image_url", "image_url": {"url": image_url(source)}}),
                            );
                        }
                        // Tool results are messages of their own, right after the call.
                        Content::ToolResult {
                            tool_use_id,
                            content,
                            ..
                        } => messages.push(
                            json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}),
                        ),
                        _ => {}
                    }
                }
                if parts.is_empty() {
                    continue;
                }
                let content = if has_image {
                    Value::Array(parts)
                } else {
                    Value::String(message.text())
                };
                messages.push(json!({"role": "user", "content": content}));
            }
            MessageRole::Assistant => {
                let text = message.text();
                let calls: Vec<Value> = message
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        Content::ToolUse { id, name, input } => Some(json!({
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        })),
                        _ => None,
                    })
                    .collect();
                let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                messages.push(m);
            }
        }
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let tokens_field = if compatible {
        "max_tokens"
    } else {
        "max_completion_tokens"
    };
    body[tokens_field] = json!(request.max_tokens);
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema,
                }})
            })
            .collect();
        body["tool_choice"] = match &request.tool_choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Any => json!("required"),
            ToolChoice::None => json!("none"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
    }
    if let Some(effort) = request.effort.filter(|_| !compatible) {
        body["reasoning_effort"] = json!(effort_name(effort));
    }
    body
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
struct WireError {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<ChoiceDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ChoiceDelta {
    #[serde(default)]
    content: Option<String>,
    /// DeepSeek, vLLM and llama.cpp stream reasoning here; Ollama and OpenRouter as `reasoning`.
    #[serde(default, alias = "reasoning")]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

#[derive(Debug, Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
    started: bool,
}

/// Decodes Chat Completions chunks.
#[derive(Debug)]
pub(crate) struct Decoder {
    provider: String,
    calls: BTreeMap<u32, Call>,
    finish: Option<String>,
    done: bool,
}

impl Decoder {
    pub(crate) fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            calls: BTreeMap::new(),
            finish: None,
            done: false,
        }
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        for (index, mut call) in std::mem::take(&mut self.calls) {
            if !call.started {
                self.start(index, &mut call, out);
            }
            let input = parse_arguments(&self.provider, &call.name, &call.id, &call.arguments)?;
            out.push(StreamEvent::ToolCallEnd {
                index,
                id: call.id,
                name: call.name,
                input,
            });
        }
        self.done = true;
        let stop_reason = match self.finish.as_deref() {
            Some("stop") | None => StopReason::EndTurn,
            Some("tool_calls" | "function_call") => StopReason::ToolUse,
            Some("length") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::Refusal,
            Some(other) => StopReason::Other(other.to_owned()),
        };
        out.push(StreamEvent::Done { stop_reason });
        Ok(())
    }

    fn start(&self, index: u32, call: &mut Call, out: &mut Vec<StreamEvent>) {
        if call.id.is_empty() {
            // Local servers often leave ids out; the conversation still needs one per call.
            call.id = format!("call_{index}");
        }
        call.started = true;
        out.push(StreamEvent::ToolCallStart {
            index,
            id: call.id.clone(),
            name: call.name.clone(),
        });
    }
}

impl FrameDecoder for Decoder {
    fn frame(&mut self, frame: &SseFrame, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError> {
        if frame.data.trim() == "[DONE]" {
            return self.close(out);
        }
        let chunk: Chunk = serde_json::from_str(&frame.data)
            .map_err(|e| decode_error(&self.provider, &format!("chunk: {e}")))?;
        if let Some(error) = chunk.error {
            let code = error
                .code
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(error.kind);
            return Err(ProviderError::Api {
                provider: self.provider.clone(),
                status: None,
                kind: kind_of_error_type(code.as_deref().unwrap_or("")),
                message: error.message,
                retry_after: None,
            });
        }
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.reasoning_content.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::ThinkingDelta { text });
                }
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { text });
                }
                for (position, fragment) in delta.tool_calls.into_iter().enumerate() {
                    let index = fragment
                        .index
                        .unwrap_or_else(|| u32::try_from(position).unwrap_or(u32::MAX));
                    let mut call = self.calls.remove(&index).unwrap_or_default();
                    if let Some(id) = fragment.id.filter(|i| !i.is_empty()) {
                        call.id = id;
                    }
                    let mut arguments = None;
                    if let Some(f) = fragment.function {
                        if let Some(name) = f.name.filter(|n| !n.is_empty()) {
                            call.name = name;
                        }
                        arguments = f.arguments.filter(|a| !a.is_empty());
                    }
                    if !call.started && !call.name.is_empty() {
                        self.start(index, &mut call, out);
                    }
                    if let Some(json) = arguments {
                        call.arguments.push_str(&json);
                        if call.started {
                            out.push(StreamEvent::ToolCallDelta { index, json });
                        }
                    }
                    self.calls.insert(index, call);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(reason);
            }
        }
        if let Some(u) = chunk.usage {
            let cached = u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0);
            out.push(StreamEvent::Usage {
                usage: TokenUsage::from_openai(u.prompt_tokens, u.completion_tokens, cached),
            });
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn at_eof(&mut self, out: &mut Vec<StreamEvent>) -> bool {
        // Some compatible servers end without `[DONE]`; a finish reason is enough.
        if !self.done && self.finish.is_some() {
            return self.close(out).is_ok();
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::provider::{ImageSource, Message, ToolSpec};

    use super::*;

    #[test]
    fn tool_results_become_tool_messages_and_images_data_urls() {
        let mut r = ModelRequest::new("gpt-5-mini", "what is this?", 100);
        r.system = Some("sys".into());
        r.messages[0].content.push(Content::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAA".into(),
            },
        });
        r.messages.push(Message {
            role: MessageRole::Assistant,
            content: vec![Content::ToolUse {
                id: "c1".into(),
                name: "ls".into(),
                input: json!({"path": "."}),
            }],
        });
        r.messages.push(Message {
            role: MessageRole::User,
            content: vec![Content::ToolResult {
                tool_use_id: "c1".into(),
                content: "a b".into(),
                is_error: false,
            }],
        });
        r.tools.push(ToolSpec {
            name: "ls".into(),
            description: "list".into(),
            input_schema: json!({"type": "object"}),
        });
        r.effort = Some(fleet_core::spec::Effort::Xhigh);
        assert_eq!(
            build_request(&r, false),
            json!({
                "model": "gpt-5-mini",
                "messages": [
                    {"role": "system", "content": "sys"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{\"path\":\".\"}"}},
                    ]},
                    {"role": "tool", "tool_call_id": "c1", "content": "a b"},
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_completion_tokens": 100,
                "tools": [{"type": "function", "function": {"name": "ls", "description": "list", "parameters": {"type": "object"}}}],
                "tool_choice": "auto",
                "reasoning_effort": "high",
            })
        );
        let local = build_request(&r, true);
        assert_eq!(local["max_tokens"], json!(100));
        assert!(local.get("reasoning_effort").is_none());
    }
}
