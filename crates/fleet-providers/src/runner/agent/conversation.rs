//! The agent loop's decisions, without I/O. A [`Conversation`] holds what a call has said and
//! counted; it builds each model request and says what to do with each answer, each broken-off
//! stream and each tool call. [`super::ModelAgentRunner`]'s loop carries the decisions out
//! (budgets, the journal, the provider, the tools) and decides nothing itself, so every rule
//! here is tested without a runtime, a provider or a store.

use std::time::Duration;

use fleet_core::agent::{AgentError, AgentOutcome};
use fleet_core::id::WorkUnitId;
use fleet_core::money::{Cost, Usd};
use fleet_core::provider::{
    CacheHints, Content, ErrorKind, Message, MessageRole, ModelRequest, ModelResponse,
    ProviderError, StopReason, ToolChoice, ToolSpec,
};
use fleet_core::spec::Effort;
use fleet_core::usage::TokenUsage;
use serde_json::{Value, json};

use super::tools::ToolOutput;
use super::{MAX_SCHEMA_ATTEMPTS, MAX_STREAM_RETRIES, STRUCTURED_OUTPUT};

/// What a call runs with: its model and limits, after the call's options, the spec and the
/// defaults are combined.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) model: String,
    pub(super) system: Option<String>,
    pub(super) max_tokens: u32,
    pub(super) max_tool_calls: u32,
    pub(super) effort: Option<Effort>,
}

/// One call's conversation with its model.
pub(super) struct Conversation {
    settings: Settings,
    /// The output schema, when the call has one.
    schema: Option<(Value, jsonschema::Validator)>,
    /// The tools offered (the built-in and extra ones, then `structured_output`).
    specs: Vec<ToolSpec>,
    /// How many of `specs` are tools that run (the rest is `structured_output`).
    runnable: usize,
    messages: Vec<Message>,
    /// Whether the next request makes the model answer through `structured_output`.
    force_output: bool,
    schema_failures: u32,
    stream_retries: u32,
    model_requests: u32,
    tool_calls: u32,
    usage: TokenUsage,
    cost: Cost,
}

/// What to do after a model's answer.
#[derive(Debug)]
pub(super) enum Next {
    /// The call is answered: its text is the answer.
    Answer,
    /// Ask again: the conversation told the model what was wrong.
    AskAgain,
    /// Make these tool calls (`id`, `name`, `input`), in order, each decided by
    /// [`Conversation::call`].
    Tools(Vec<(String, String, Value)>),
    /// The call fails.
    Fail(AgentError),
}

/// What to do with one tool call.
#[derive(Debug)]
pub(super) enum CallStep {
    /// The structured output validated: it is the call's answer, and no further call runs.
    Accept(Value),
    /// Answer the model with this, running nothing.
    Reply(ToolOutput),
    /// Run the `i`-th of the tools offered.
    Run(usize),
    /// The call fails.
    Fail(AgentError),
}

/// What to do after a stream failed.
#[derive(Debug)]
pub(super) enum Recovery {
    /// Ask again from the same conversation, after this pause (what the stream wrote is
    /// dropped; what it used stays charged).
    Retry(Duration),
    /// The call fails.
    Fail(AgentError),
}

impl Conversation {
    /// A conversation that starts with `prompt`, offering `tools` (and, with a `schema`, the
    /// `structured_output` tool).
    ///
    /// # Errors
    /// [`AgentError::Config`] when `schema` is not a valid JSON Schema.
    pub(super) fn new(
        settings: Settings,
        prompt: &str,
        tools: Vec<ToolSpec>,
        schema: Option<&Value>,
    ) -> Result<Self, AgentError> {
        let runnable = tools.len();
        let mut specs = tools;
        let schema = match schema {
            Some(schema) => {
                let validator = jsonschema::validator_for(schema).map_err(|e| {
                    AgentError::Config(format!("the output schema is not a valid JSON Schema: {e}"))
                })?;
                specs.push(ToolSpec {
                    name: STRUCTURED_OUTPUT.into(),
                    description: "Give your final answer: call this exactly once, with input matching the schema.".into(),
                    input_schema: object_schema(schema),
                });
                Some((schema.clone(), validator))
            }
            None => None,
        };
        Ok(Self {
            // With nothing else to call, the answer can only come through the schema's tool.
            force_output: schema.is_some() && runnable == 0,
            settings,
            schema,
            specs,
            runnable,
            messages: vec![Message::user_text(prompt)],
            schema_failures: 0,
            stream_retries: 0,
            model_requests: 0,
            tool_calls: 0,
            usage: TokenUsage::default(),
            cost: Cost::default(),
        })
    }

    /// The next model request (counted as made).
    pub(super) fn request(&mut self) -> ModelRequest {
        self.model_requests += 1;
        ModelRequest {
            model: self.settings.model.clone(),
            system: self.settings.system.clone(),
            messages: self.messages.clone(),
            tools: self.specs.clone(),
            tool_choice: if self.force_output {
                ToolChoice::Tool(STRUCTURED_OUTPUT.into())
            } else {
                ToolChoice::Auto
            },
            max_tokens: self.settings.max_tokens,
            effort: self.settings.effort,
            thinking_budget: None,
            cache: CacheHints {
                system: true,
                last_message: true,
                long_ttl: false,
            },
        }
    }

    /// Every token the call has used so far.
    pub(super) fn used(&self) -> u64 {
        self.usage.total()
    }

    /// Counts what a request used and cost (`None`: unpriced), answered or not.
    pub(super) fn charge(&mut self, usage: TokenUsage, cost: Option<Usd>) {
        self.usage += usage;
        self.cost.add(cost);
    }

    /// A stream that broke off (a reset, a cut, a stall past the idle timeout, a server error
    /// mid-answer) is asked again, up to [`MAX_STREAM_RETRIES`] times a call; anything else
    /// fails the call.
    pub(super) fn after_failure(&mut self, error: ProviderError) -> Recovery {
        let broke_off = matches!(
            error,
            ProviderError::Transport { .. }
                | ProviderError::TimedOut(_)
                | ProviderError::Api {
                    kind: ErrorKind::Server,
                    ..
                }
        );
        if broke_off && self.stream_retries < MAX_STREAM_RETRIES {
            self.stream_retries += 1;
            Recovery::Retry(Duration::from_millis(250 * u64::from(self.stream_retries)))
        } else {
            Recovery::Fail(error.into())
        }
    }

    /// What to do with a whole answer; the answer joins the conversation.
    pub(super) fn after_answer(&mut self, response: &ModelResponse) -> Next {
        let text = response.text();
        let calls: Vec<(String, String, Value)> = response
            .tool_calls()
            .map(|(i, n, v)| (i.to_owned(), n.to_owned(), v.clone()))
            .collect();
        self.messages.push(Message {
            role: MessageRole::Assistant,
            content: response.content.clone(),
        });
        if !calls.is_empty() {
            return Next::Tools(calls);
        }
        if response.stop_reason == Some(StopReason::MaxTokens) && text.is_empty() {
            return Next::Fail(AgentError::NoAnswer(format!(
                "the model used all {} output tokens without answering",
                self.settings.max_tokens
            )));
        }
        if response.stop_reason == Some(StopReason::Refusal) {
            return Next::Fail(AgentError::NoAnswer(format!("the model refused: {text}")));
        }
        if self.schema.is_some() {
            let error = "the answer must be given by calling the structured_output tool";
            if let Some(fail) = self.schema_failed(error.to_owned()) {
                return Next::Fail(fail);
            }
            self.messages
                .push(Message::user_text(format!("{error}; call it now.")));
            return Next::AskAgain;
        }
        Next::Answer
    }

    /// What to do with the tool call `name(input)`.
    pub(super) fn call(&mut self, name: &str, input: Value) -> CallStep {
        if name == STRUCTURED_OUTPUT
            && let Some((schema, validator)) = &self.schema
        {
            let value = unwrap_output(schema, input);
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            if errors.is_empty() {
                return CallStep::Accept(value);
            }
            let error = format!(
                "the output does not match the schema: {}",
                errors.join("; ")
            );
            if let Some(fail) = self.schema_failed(error.clone()) {
                return CallStep::Fail(fail);
            }
            return CallStep::Reply(ToolOutput::error(format!(
                "{error}. Call structured_output again with corrected input."
            )));
        }
        self.tool_calls += 1;
        if self.tool_calls > self.settings.max_tool_calls {
            return CallStep::Fail(AgentError::TooManyToolCalls(self.settings.max_tool_calls));
        }
        match self.specs[..self.runnable]
            .iter()
            .position(|s| s.name == name)
        {
            Some(i) => CallStep::Run(i),
            None => CallStep::Reply(ToolOutput::error(format!(
                "there is no tool named {name:?}; the tools are: {}",
                self.specs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The results of an answer's tool calls join the conversation.
    pub(super) fn results(&mut self, results: Vec<Content>) {
        self.messages.push(Message {
            role: MessageRole::User,
            content: results,
        });
    }

    /// The call's outcome, answered with `text` (and `output`, through the schema).
    pub(super) fn outcome(
        &self,
        unit: WorkUnitId,
        text: String,
        output: Option<Value>,
    ) -> AgentOutcome {
        AgentOutcome {
            work_unit_id: unit,
            text,
            output,
            model: self.settings.model.clone(),
            usage: self.usage,
            cost: self.cost,
            model_requests: self.model_requests,
            tool_calls: self.tool_calls,
        }
    }

    /// Counts a failed attempt at the schema: the call fails at the last one allowed, else the
    /// next request makes the model answer through the schema's tool.
    fn schema_failed(&mut self, error: String) -> Option<AgentError> {
        self.schema_failures += 1;
        if self.schema_failures >= MAX_SCHEMA_ATTEMPTS {
            return Some(AgentError::InvalidOutput {
                attempts: self.schema_failures,
                error,
            });
        }
        self.force_output = true;
        None
    }
}

/// Tool inputs must be objects; a schema for anything else is wrapped as `{"value": …}`.
fn object_schema(schema: &Value) -> Value {
    if schema.get("type").and_then(Value::as_str) == Some("object") {
        schema.clone()
    } else {
        let mut wrapped =
            json!({"type": "object", "properties": {"value": schema}, "required": ["value"]});
        // Local `$ref`s point at the root; keep their targets there.
        for defs in ["$defs", "definitions"] {
            if let Some(d) = schema.get(defs) {
                wrapped[defs] = d.clone();
            }
        }
        wrapped
    }
}

fn unwrap_output(schema: &Value, input: Value) -> Value {
    if schema.get("type").and_then(Value::as_str) == Some("object") {
        input
    } else {
        input.get("value").cloned().unwrap_or(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            model: "m".into(),
            system: Some("be brief".into()),
            max_tokens: 100,
            max_tool_calls: 2,
            effort: None,
        }
    }

    fn tool(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
        }
    }

    fn answer(content: Vec<Content>, stop: StopReason) -> ModelResponse {
        ModelResponse {
            content,
            usage: TokenUsage::default(),
            stop_reason: Some(stop),
        }
    }

    fn text(t: &str) -> Content {
        Content::Text { text: t.into() }
    }

    fn use_tool(id: &str, name: &str, input: Value) -> Content {
        Content::ToolUse {
            id: id.into(),
            name: name.into(),
            input,
        }
    }

    #[test]
    fn a_plain_answer_ends_the_call_and_the_request_carries_the_conversation() {
        let mut c = Conversation::new(settings(), "hi", vec![tool("read_file")], None).unwrap();
        let first = c.request();
        assert_eq!(first.messages.len(), 1);
        assert_eq!(first.tool_choice, ToolChoice::Auto);
        assert_eq!(first.system.as_deref(), Some("be brief"));
        assert!(matches!(
            c.after_answer(&answer(vec![text("hello")], StopReason::EndTurn)),
            Next::Answer
        ));
        c.charge(
            TokenUsage {
                input: 3,
                output: 2,
                ..TokenUsage::default()
            },
            Some(Usd::from_nanos(5)),
        );
        let outcome = c.outcome(WorkUnitId::new(), "hello".into(), None);
        assert_eq!((outcome.model_requests, outcome.usage.output), (1, 2));
        assert_eq!(outcome.cost.usd, Usd::from_nanos(5));
    }

    #[test]
    fn tool_calls_run_by_index_unknown_ones_are_told_and_the_cap_fails_the_call() {
        let mut c = Conversation::new(settings(), "hi", vec![tool("a"), tool("b")], None).unwrap();
        c.request();
        let Next::Tools(calls) = c.after_answer(&answer(
            vec![
                use_tool("1", "b", json!({})),
                use_tool("2", "nope", json!({})),
            ],
            StopReason::ToolUse,
        )) else {
            panic!()
        };
        assert_eq!(calls.len(), 2);
        assert!(matches!(c.call("b", json!({})), CallStep::Run(1)));
        let CallStep::Reply(out) = c.call("nope", json!({})) else {
            panic!()
        };
        assert!(
            out.is_error && out.content.contains("the tools are: a, b"),
            "{}",
            out.content
        );
        // Two calls were allowed; the third fails the call.
        assert!(matches!(
            c.call("a", json!({})),
            CallStep::Fail(AgentError::TooManyToolCalls(2))
        ));
        c.results(vec![]);
        assert_eq!(c.request().messages.len(), 3, "prompt, answer, results");
    }

    #[test]
    fn a_schema_is_answered_through_its_tool_and_five_misses_fail_the_call() {
        let schema = json!({"type": "integer"});
        let mut c = Conversation::new(settings(), "n?", vec![], Some(&schema)).unwrap();
        let first = c.request();
        assert_eq!(
            first.tool_choice,
            ToolChoice::Tool(STRUCTURED_OUTPUT.into()),
            "nothing else to call: the schema's tool is forced"
        );
        assert_eq!(first.tools[0].input_schema["properties"]["value"], schema);
        // A wrong value is answered with the validation error.
        let CallStep::Reply(out) = c.call(STRUCTURED_OUTPUT, json!({"value": "x"})) else {
            panic!()
        };
        assert!(out.is_error && out.content.contains("does not match the schema"));
        // Text instead of the tool: reminded.
        assert!(matches!(
            c.after_answer(&answer(vec![text("4")], StopReason::EndTurn)),
            Next::AskAgain
        ));
        assert!(matches!(
            c.call(STRUCTURED_OUTPUT, json!({"value": 4})),
            CallStep::Accept(v) if v == json!(4)
        ));
        for _ in 0..2 {
            assert!(matches!(
                c.call(STRUCTURED_OUTPUT, json!({"value": []})),
                CallStep::Reply(_)
            ));
        }
        assert!(matches!(
            c.call(STRUCTURED_OUTPUT, json!({"value": []})),
            CallStep::Fail(AgentError::InvalidOutput { attempts: 5, .. })
        ));
    }

    #[test]
    fn a_schema_that_is_not_one_is_a_config_error() {
        let bad = json!({"type": 12});
        assert!(matches!(
            Conversation::new(settings(), "x", vec![], Some(&bad)),
            Err(AgentError::Config(_))
        ));
    }

    #[test]
    fn running_out_of_tokens_or_refusing_fails_the_call() {
        let mut c = Conversation::new(settings(), "x", vec![], None).unwrap();
        let Next::Fail(e) = c.after_answer(&answer(vec![], StopReason::MaxTokens)) else {
            panic!()
        };
        assert!(e.to_string().contains("all 100 output tokens"), "{e}");
        let Next::Fail(e) = c.after_answer(&answer(vec![text("no")], StopReason::Refusal)) else {
            panic!()
        };
        assert!(e.to_string().contains("refused: no"), "{e}");
        // Cut at the limit but with text: that text is the answer.
        assert!(matches!(
            c.after_answer(&answer(vec![text("partial")], StopReason::MaxTokens)),
            Next::Answer
        ));
    }

    #[test]
    fn broken_streams_are_asked_again_twice_with_a_growing_pause_and_other_failures_fail() {
        let mut c = Conversation::new(settings(), "x", vec![], None).unwrap();
        let reset = || ProviderError::Transport {
            provider: "p".into(),
            message: "reset".into(),
        };
        assert!(
            matches!(c.after_failure(reset()), Recovery::Retry(d) if d == Duration::from_millis(250))
        );
        assert!(
            matches!(c.after_failure(reset()), Recovery::Retry(d) if d == Duration::from_millis(500))
        );
        assert!(matches!(c.after_failure(reset()), Recovery::Fail(_)));
        let mut c = Conversation::new(settings(), "x", vec![], None).unwrap();
        let refused = ProviderError::Api {
            provider: "p".into(),
            status: Some(400),
            kind: ErrorKind::InvalidRequest,
            message: "bad".into(),
            retry_after: None,
        };
        assert!(matches!(c.after_failure(refused), Recovery::Fail(_)));
    }
}
