//! The offline provider: deterministic, no network, free. It is what fleet runs on when no API
//! key is configured, and what tests and benchmarks use.
//!
//! What it answers:
//! - **Text**: a line that says it is offline, a stable digest of the prompt and the prompt's
//!   start, so that the same prompt always gets the same answer and different prompts differ.
//! - **Tool calls**: a prompt line `call <tool>` or `call <tool> {json}` makes it call that
//!   offered tool (with the given input, or one generated from the tool's schema) on its first
//!   turn; once the results are back it summarises them.
//! - **Structured output**: when the request forces a tool (fleet's `structured_output`), it
//!   calls it with a value generated from the tool's JSON Schema, which validates against it.
//! - **Usage**: tokens counted from the text (about four characters a token), at price $0.

use std::time::Duration;

use fleet_core::provider::{
    CancelToken, Capabilities, Content, EventStream, MessageRole, ModelRequest, Provider,
    ProviderError, StopReason, StreamEvent, ToolChoice,
};
use fleet_core::usage::TokenUsage;
use serde_json::{Map, Value, json};

/// The provider's name.
pub const NAME: &str = "offline";

/// The offline provider.
#[derive(Debug, Clone, Default)]
pub struct OfflineProvider {
    latency: Duration,
}

impl OfflineProvider {
    /// A provider that answers at once.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider that waits `latency` before each answer (for realistic timing in demos and
    /// benchmarks).
    #[must_use]
    pub fn with_latency(latency: Duration) -> Self {
        Self { latency }
    }

    /// The whole answer to `request`, as the events it streams.
    #[must_use]
    pub fn answer(request: &ModelRequest) -> Vec<StreamEvent> {
        let mut events = Vec::new();
        let mut output_chars = 0;
        let calls = planned_calls(request);
        let stop_reason = if calls.is_empty() {
            let text = answer_text(request);
            output_chars += text.len();
            // A few deltas, as a streamed answer has.
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let cut = rest
                    .char_indices()
                    .map(|(i, _)| i)
                    .find(|&i| i >= 48)
                    .unwrap_or(rest.len());
                events.push(StreamEvent::TextDelta {
                    text: rest[..cut].to_owned(),
                });
                rest = &rest[cut..];
            }
            StopReason::EndTurn
        } else {
            for (index, (name, input)) in (0u32..).zip(calls) {
                let id = format!(
                    "offline_{:08x}_{index}",
                    digest(&request_text(request)) as u32
                );
                let json = input.to_string();
                output_chars += name.len() + json.len();
                events.push(StreamEvent::ToolCallStart {
                    index,
                    id: id.clone(),
                    name: name.clone(),
                });
                events.push(StreamEvent::ToolCallDelta {
                    index,
                    json: json.clone(),
                });
                events.push(StreamEvent::ToolCallEnd {
                    index,
                    id,
                    name,
                    input,
                });
            }
            StopReason::ToolUse
        };
        events.push(StreamEvent::Usage {
            usage: TokenUsage {
                input: tokens(request.approx_chars()),
                output: tokens(output_chars).min(u64::from(request.max_tokens)),
                ..TokenUsage::default()
            },
        });
        events.push(StreamEvent::Done { stop_reason });
        events
    }
}

impl Provider for OfflineProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted().with_free(true).with_offline(true)
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        if !self.latency.is_zero() {
            tokio::select! {
                () = cancel.cancelled() => return Err(ProviderError::Cancelled),
                () = tokio::time::sleep(self.latency) => {}
            }
        }
        let events = Self::answer(&request);
        Ok(Box::pin(futures_util::stream::iter(
            events.into_iter().map(Ok),
        )))
    }
}

/// About four characters a token, rounded up.
fn tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// FNV-1a, 64 bits: stable across versions and platforms, unlike `DefaultHasher`.
fn digest(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn request_text(request: &ModelRequest) -> String {
    let mut text = request.system.clone().unwrap_or_default();
    for m in &request.messages {
        text.push('\n');
        text.push_str(&m.text());
    }
    text
}

/// The first user message's text: the task.
fn task(request: &ModelRequest) -> String {
    request
        .messages
        .iter()
        .find(|m| m.role == MessageRole::User)
        .map(fleet_core::provider::Message::text)
        .unwrap_or_default()
}

fn tool_results(request: &ModelRequest) -> Vec<(&str, &str, bool)> {
    let Some(last) = request.messages.last() else {
        return Vec::new();
    };
    last.content
        .iter()
        .filter_map(|c| match c {
            Content::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => Some((tool_use_id.as_str(), content.as_str(), *is_error)),
            _ => None,
        })
        .collect()
}

fn answer_text(request: &ModelRequest) -> String {
    let task = task(request);
    let mut head: String = task.split_whitespace().collect::<Vec<_>>().join(" ");
    if head.chars().count() > 80 {
        head = head.chars().take(80).collect::<String>() + "…";
    }
    let mut text = format!(
        "[offline model: no API key configured, this is not a real answer] digest {:016x} of: \"{head}\"",
        digest(&request_text(request))
    );
    let results = tool_results(request);
    if !results.is_empty() {
        text.push_str("\nTool results:");
        for (id, content, is_error) in results {
            let status = if is_error { "error" } else { "ok" };
            let first = content.lines().next().unwrap_or_default();
            let first: String = first.chars().take(80).collect();
            text.push_str(&format!(
                "\n- {id}: {status}, {} bytes: {first}",
                content.len()
            ));
        }
    }
    text
}

/// The tool calls to make: the forced tool, or the `call` lines of the task on the first turn.
fn planned_calls(request: &ModelRequest) -> Vec<(String, Value)> {
    let forced = match &request.tool_choice {
        ToolChoice::Tool(name) => request.tools.iter().find(|t| &t.name == name),
        ToolChoice::Any => request.tools.first(),
        ToolChoice::Auto | ToolChoice::None => None,
    };
    if let Some(tool) = forced {
        let seed = digest(&request_text(request));
        return vec![(tool.name.clone(), value_for(&tool.input_schema, seed))];
    }
    if request.tool_choice == ToolChoice::None || !tool_results(request).is_empty() {
        return Vec::new();
    }
    let mut calls = Vec::new();
    for line in task(request).lines() {
        let Some(rest) = line.trim().strip_prefix("call ") else {
            continue;
        };
        let rest = rest.trim();
        let (name, input) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let Some(tool) = request.tools.iter().find(|t| t.name == name) else {
            continue;
        };
        let input = serde_json::from_str::<Value>(input)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| value_for(&tool.input_schema, digest(line)));
        calls.push((tool.name.clone(), input));
    }
    calls
}

/// A deterministic value that validates against `schema` (the subset of JSON Schema that tool
/// and output schemas use: types, `properties`/`required`, `items`, `enum`, `const`, bounds,
/// `anyOf`/`oneOf`/`allOf` and local `$ref`s).
#[must_use]
pub fn value_for(schema: &Value, seed: u64) -> Value {
    Generator { root: schema }.value(schema, seed, 0)
}

struct Generator<'a> {
    root: &'a Value,
}

impl Generator<'_> {
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        let mut schema = schema;
        for _ in 0..16 {
            let Some(pointer) = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
            else {
                break;
            };
            match self.root.pointer(pointer) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn value(&self, schema: &Value, seed: u64, depth: u32) -> Value {
        let schema = self.resolve(schema);
        if depth > 12 {
            return Value::Null;
        }
        let Value::Object(s) = schema else {
            // `true` or `{}` accepts anything.
            return Value::String("offline".into());
        };
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(options)) = s.get("enum")
            && !options.is_empty()
        {
            return options[(seed % options.len() as u64) as usize].clone();
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(options)) = s.get(key)
                && let Some(first) = options.first()
            {
                return self.value(first, seed, depth + 1);
            }
        }
        if let Some(Value::Array(all)) = s.get("allOf") {
            let mut merged = Map::new();
            for part in all {
                if let Value::Object(obj) = self.value(part, seed, depth + 1) {
                    merged.extend(obj);
                }
            }
            if let Value::Object(own) = self.object(s, seed, depth) {
                merged.extend(own);
            }
            return Value::Object(merged);
        }
        let kind = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // A list of types: the first that is not null, for a more useful value.
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ if s.contains_key("properties") => "object",
            _ if s.contains_key("items") => "array",
            _ => "string",
        };
        match kind {
            "object" => self.object(s, seed, depth),
            "array" => {
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(1);
                let max = s
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let n = min.max(1).min(max).min(8);
                let items = s.get("items").cloned().unwrap_or(Value::Bool(true));
                let unique = s.get("uniqueItems").and_then(Value::as_bool) == Some(true);
                let mut out: Vec<Value> = Vec::new();
                for i in 0..n {
                    let v = self.value(&items, seed.wrapping_add(i * 7919), depth + 1);
                    if unique && out.contains(&v) {
                        continue;
                    }
                    out.push(v);
                }
                Value::Array(out)
            }
            "integer" => json!(self.number(s, seed).round() as i64),
            "number" => json!(self.number(s, seed)),
            "boolean" => Value::Bool(seed.is_multiple_of(2)),
            "null" => Value::Null,
            _ => Value::String(string(s, seed)),
        }
    }

    fn object(&self, s: &Map<String, Value>, seed: u64, depth: u32) -> Value {
        let mut out = Map::new();
        if let Some(Value::Object(props)) = s.get("properties") {
            for (i, (name, prop)) in (0u64..).zip(props) {
                out.insert(
                    name.clone(),
                    self.value(prop, seed.wrapping_add(i.wrapping_mul(104_729)), depth + 1),
                );
            }
        }
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                out.entry(name.to_owned())
                    .or_insert_with(|| Value::String("offline".into()));
            }
        }
        Value::Object(out)
    }

    fn number(&self, s: &Map<String, Value>, seed: u64) -> f64 {
        let f = |k: &str| s.get(k).and_then(Value::as_f64);
        let lo = f("minimum").or(f("exclusiveMinimum").map(|x| x + 1.0));
        let hi = f("maximum").or(f("exclusiveMaximum").map(|x| x - 1.0));
        match (lo, hi) {
            (Some(lo), Some(hi)) if hi >= lo => lo + ((seed % 101) as f64 / 100.0) * (hi - lo),
            (Some(lo), _) => lo + (seed % 10) as f64,
            (_, Some(hi)) => hi - (seed % 10) as f64,
            _ => (seed % 100) as f64,
        }
    }
}

fn string(s: &Map<String, Value>, seed: u64) -> String {
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| m as usize);
    let mut text = match s.get("format").and_then(Value::as_str) {
        Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
        Some("date") => "2026-01-01".to_owned(),
        Some("email") => "offline@example.invalid".to_owned(),
        Some("uri" | "url") => "https://example.invalid/offline".to_owned(),
        Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
        _ => format!("offline-{:04x}", seed & 0xffff),
    };
    while text.len() < min {
        text.push('x');
    }
    text.truncate(max.max(min));
    text
}

#[cfg(test)]
mod tests {
    use fleet_core::provider::{Message, ToolSpec};

    use super::*;

    fn text_of(events: &[StreamEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::TextDelta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn answers_are_stable_say_offline_and_differ_by_prompt() {
        let a = OfflineProvider::answer(&ModelRequest::new("m", "summarise src/lib.rs", 100));
        let again = OfflineProvider::answer(&ModelRequest::new("m", "summarise src/lib.rs", 100));
        let b = OfflineProvider::answer(&ModelRequest::new("m", "summarise src/main.rs", 100));
        assert_eq!(a, again);
        assert_ne!(text_of(&a), text_of(&b));
        assert!(text_of(&a).starts_with("[offline model"));
        let usage = a.iter().find_map(|e| match e {
            StreamEvent::Usage { usage } => Some(*usage),
            _ => None,
        });
        let usage = usage.unwrap_or_default();
        assert_eq!(usage.input, 5); // 20 characters
        assert!(usage.output > 10);
    }

    #[test]
    fn call_lines_call_offered_tools_once() {
        let mut r = ModelRequest::new(
            "m",
            "Please\ncall read_file {\"path\": \"a.txt\"}\ncall nope\ncall list_dir",
            100,
        );
        for name in ["read_file", "list_dir"] {
            r.tools.push(ToolSpec {
                name: name.into(),
                description: String::new(),
                input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
            });
        }
        let events = OfflineProvider::answer(&r);
        let calls: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallEnd { name, input, .. } => {
                    Some((name.as_str(), input.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], ("read_file", json!({"path": "a.txt"})));
        assert_eq!(calls[1].0, "list_dir");
        assert!(calls[1].1["path"].is_string());
        // With results back, it answers in text.
        r.messages.push(Message {
            role: MessageRole::User,
            content: vec![Content::ToolResult {
                tool_use_id: "x".into(),
                content: "hello".into(),
                is_error: false,
            }],
        });
        let answer = OfflineProvider::answer(&r);
        assert!(text_of(&answer).contains("x: ok, 5 bytes: hello"));
    }

    #[test]
    fn generated_values_validate_against_their_schemas() {
        let schemas = [
            json!({"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}, "score": {"type": "integer", "minimum": 1, "maximum": 5}, "notes": {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 2}}, "required": ["verdict", "score", "notes"], "additionalProperties": false}),
            json!({"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1, "uniqueItems": true, "$defs": {"item": {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}}, "required": ["id"]}}}),
            json!({"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}),
            json!({"allOf": [{"type": "object", "properties": {"a": {"const": 1}}}, {"properties": {"b": {"type": ["null", "boolean"]}}}]}),
            json!({"type": "string", "maxLength": 4}),
            json!(true),
        ];
        for schema in schemas {
            for seed in 0..20 {
                let value = value_for(&schema, seed);
                let valid = jsonschema::validator_for(&schema).map(|v| v.is_valid(&value));
                assert!(
                    matches!(valid, Ok(true)),
                    "{value} does not satisfy {schema}"
                );
            }
        }
    }
}
