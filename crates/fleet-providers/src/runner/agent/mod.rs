//! The agent loop: [`ModelAgentRunner`] turns a [`Provider`] and tools into an
//! [`AgentRunner`]. It loops model → tool calls → results until the model stops, records the
//! call as a `delegated_agent` work unit with its messages, tool calls and priced usage, and
//! reserves each model request's worst case against the budgets before making it, so a hard
//! budget stops the next request rather than the next run.

pub mod patch;
pub mod tools;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::budget::{BudgetError, Measure};
use fleet_core::provider::{
    Content, ErrorKind, Message, MessageRole, ModelRequest, ProviderError, ResponseBuilder,
    StopReason, StreamEvent, ToolChoice, ToolSpec, next_event,
};
use fleet_core::spec::{AgentSpec, Capability, SpecSet};
use fleet_core::{
    ActivityKind, AgentCall, AgentError, AgentOutcome, AgentRunner, Amount, CallContext, Cost,
    Demand, DynAgentRunner, DynCommandSandbox, PriceTable, Provider, Role, TokenUsage, Usd,
    WorkUnitDraft, WorkUnitId, WorkUnitKind, WorkUnitState,
};
use serde_json::{Value, json};

use tools::{Subagents, Tool, ToolContext, ToolOutput};

/// The tool through which a call with a schema answers.
pub const STRUCTURED_OUTPUT: &str = "structured_output";

/// Attempts a model gets to produce output that validates against the schema.
pub const MAX_SCHEMA_ATTEMPTS: u32 = 5;

/// How many times one call asks again for a model answer whose stream broke off midway (the
/// HTTP client has already retried requests that failed before their answer began).
pub const MAX_STREAM_RETRIES: u32 = 2;

/// Limits that apply when neither the call nor the agent spec sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerDefaults {
    /// The model of calls without an agent spec or model override.
    pub model: String,
    /// Most output tokens per model request.
    pub max_tokens: u32,
    /// Most tool calls per agent call.
    pub max_tool_calls: u32,
    /// Most wall time per agent call.
    pub timeout: Duration,
}

impl Default for RunnerDefaults {
    fn default() -> Self {
        Self {
            model: "claude-haiku-4-5".into(),
            max_tokens: 4096,
            max_tool_calls: 50,
            timeout: Duration::from_secs(600),
        }
    }
}

struct Inner<P> {
    provider: P,
    defaults: RunnerDefaults,
    prices: Arc<PriceTable>,
    workdir: PathBuf,
    commands: Option<Arc<dyn DynCommandSandbox>>,
    specs: Option<Arc<SpecSet>>,
    delegate: Option<Arc<dyn DynAgentRunner>>,
    extra_tools: Vec<Arc<dyn Tool>>,
}

/// An [`AgentRunner`] over a [`Provider`]. Cheap to clone.
pub struct ModelAgentRunner<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for ModelAgentRunner<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: Provider> std::fmt::Debug for ModelAgentRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelAgentRunner")
            .field("provider", &self.inner.provider.name())
            .field("defaults", &self.inner.defaults)
            .field("workdir", &self.inner.workdir)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ModelAgentRunner`].
pub struct RunnerBuilder<P> {
    inner: Inner<P>,
}

impl<P: Provider + 'static> RunnerBuilder<P> {
    /// Model defaults.
    #[must_use]
    pub fn defaults(mut self, defaults: RunnerDefaults) -> Self {
        self.inner.defaults = defaults;
        self
    }

    /// Prices for worst-case admission (the journal prices recorded usage with its own table).
    #[must_use]
    pub fn prices(mut self, prices: Arc<PriceTable>) -> Self {
        self.inner.prices = prices;
        self
    }

    /// The directory file tools work in (default: the current directory).
    #[must_use]
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.inner.workdir = dir.into();
        self
    }

    /// Where `run_command` runs programs; without one, the tool is not offered.
    #[must_use]
    pub fn commands(mut self, commands: Arc<dyn DynCommandSandbox>) -> Self {
        self.inner.commands = Some(commands);
        self
    }

    /// The specialists `spawn_subagent` can start by agent type.
    #[must_use]
    pub fn specs(mut self, specs: Arc<SpecSet>) -> Self {
        self.inner.specs = Some(specs);
        self
    }

    /// Where `spawn_subagent` sends the calls that name a specialist (`agent_type`): a
    /// supervisor's sandboxed workers, say. Without it they run on this runner, in process.
    #[must_use]
    pub fn delegate(mut self, runner: Arc<dyn DynAgentRunner>) -> Self {
        self.inner.delegate = Some(runner);
        self
    }

    /// A tool offered to every call, whatever its capabilities.
    #[must_use]
    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.inner.extra_tools.push(tool);
        self
    }

    /// The runner.
    #[must_use]
    pub fn build(self) -> ModelAgentRunner<P> {
        ModelAgentRunner {
            inner: Arc::new(self.inner),
        }
    }
}

/// What a call runs with, after the call's options, the spec and the defaults are combined.
struct Plan {
    model: String,
    system: Option<String>,
    max_tokens: u32,
    max_tool_calls: u32,
    timeout: Duration,
    capabilities: Vec<Capability>,
}

impl<P: Provider + 'static> ModelAgentRunner<P> {
    /// A builder for a runner over `provider`.
    #[must_use]
    pub fn builder(provider: P) -> RunnerBuilder<P> {
        RunnerBuilder {
            inner: Inner {
                provider,
                defaults: RunnerDefaults::default(),
                prices: PriceTable::shipped(),
                workdir: PathBuf::from("."),
                commands: None,
                specs: None,
                delegate: None,
                extra_tools: Vec::new(),
            },
        }
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.inner.provider
    }

    fn plan(&self, call: &AgentCall) -> Plan {
        let d = &self.inner.defaults;
        let spec: Option<&AgentSpec> = call.agent.as_deref();
        Plan {
            model: call
                .model
                .clone()
                .or_else(|| spec.map(|s| s.model.clone()))
                .unwrap_or_else(|| d.model.clone()),
            system: spec.and_then(|s| s.system.clone().or_else(|| Some(s.role.clone()))),
            max_tokens: call
                .max_tokens
                .or_else(|| spec.and_then(|s| s.max_tokens))
                .unwrap_or(d.max_tokens),
            max_tool_calls: call
                .max_tool_calls
                .or_else(|| spec.and_then(|s| s.max_tool_calls))
                .unwrap_or(d.max_tool_calls),
            timeout: call
                .timeout
                .or_else(|| spec.and_then(|s| s.timeout))
                .unwrap_or(d.timeout),
            capabilities: call
                .capabilities
                .clone()
                .or_else(|| spec.map(|s| s.capabilities.clone()))
                .unwrap_or_default(),
        }
    }

    async fn open_unit(
        &self,
        call: &AgentCall,
        ctx: &CallContext,
        plan: &Plan,
    ) -> Result<WorkUnitId, AgentError> {
        if let Some(unit) = ctx.work_unit {
            ctx.journal
                .set_running(unit, Some(plan.model.clone()))
                .await?;
            return Ok(unit);
        }
        let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
        draft.label = Some(call.display_label());
        draft.phase = call.phase.clone();
        draft.agent = call.agent.as_ref().map(|a| a.name.clone());
        draft.model = Some(plan.model.clone());
        Ok(ctx.journal.start_work_unit(ctx.parent, draft).await?)
    }
}

impl<P: Provider + 'static> AgentRunner for ModelAgentRunner<P> {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let plan = self.plan(&call);
        let unit = self.open_unit(&call, &ctx, &plan).await?;
        let subagents = Subagents::new(
            Arc::new(self.clone()) as Arc<dyn DynAgentRunner>,
            self.inner.delegate.clone(),
            self.inner.specs.clone(),
        );
        let tool_ctx = ToolContext {
            workdir: call
                .workdir
                .clone()
                .unwrap_or_else(|| self.inner.workdir.clone()),
            commands: self.inner.commands.clone(),
            call: ctx.clone(),
            unit,
            subagents: subagents.clone(),
        };
        let timeout = plan.timeout;
        let result = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => Err(AgentError::Cancelled),
            r = tokio::time::timeout(timeout, self.converse(&call, &plan, &tool_ctx)) => {
                r.unwrap_or(Err(AgentError::TimedOut(timeout)))
            }
        };
        // Background subagents do not outlive the call that started them.
        subagents.cancel_all();
        subagents.join_all().await;
        let (state, error) = match &result {
            Ok(_) => (WorkUnitState::Completed, None),
            Err(AgentError::Cancelled) => (WorkUnitState::Cancelled, Some("cancelled".to_owned())),
            Err(e) => (WorkUnitState::Failed, Some(e.to_string())),
        };
        // Record the end even when the call failed; a recording error is reported only if the
        // call itself succeeded.
        let recorded = ctx.journal.set_state(unit, state, error).await;
        let outcome = result?;
        recorded?;
        Ok(outcome)
    }
}

impl<P: Provider + 'static> ModelAgentRunner<P> {
    async fn converse(
        &self,
        call: &AgentCall,
        plan: &Plan,
        ctx: &ToolContext,
    ) -> Result<AgentOutcome, AgentError> {
        let journal = &ctx.call.journal;
        let unit = ctx.unit;
        let free = self.inner.provider.capabilities().free;
        let validator = match &call.schema {
            Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| {
                AgentError::Config(format!("the output schema is not a valid JSON Schema: {e}"))
            })?),
            None => None,
        };
        let mut tools: Vec<Arc<dyn Tool>> =
            tools::builtin(&plan.capabilities, ctx.commands.is_some());
        tools.extend(self.inner.extra_tools.iter().cloned());
        let mut specs: Vec<ToolSpec> = tools.iter().map(|t| t.spec()).collect();
        if let Some(schema) = &call.schema {
            specs.push(ToolSpec {
                name: STRUCTURED_OUTPUT.into(),
                description: "Give your final answer: call this exactly once, with input matching the schema.".into(),
                input_schema: object_schema(schema),
            });
        }
        let names: Vec<String> = specs.iter().map(|t| t.name.clone()).collect();
        let price = self.inner.prices.price(&plan.model).copied();
        if price.is_none() && !free && ctx.call.budgets.caps_dollars(&ctx.call.charge_to)? {
            return Err(AgentError::Config(format!(
                "model {} has no price, so a dollar budget cannot be enforced; add its price to the price table",
                plan.model
            )));
        }

        journal
            .activity(
                unit,
                ActivityKind::Message {
                    role: Role::User,
                    text: call.prompt.clone(),
                },
            )
            .await?;
        let mut messages = vec![Message::user_text(call.prompt.clone())];
        let mut usage = TokenUsage::default();
        let mut cost = Cost::default();
        let mut model_requests = 0u32;
        let mut tool_calls = 0u32;
        let mut schema_failures = 0u32;
        let mut stream_retries = 0u32;
        let mut force_output = call.schema.is_some() && specs.len() == 1;
        loop {
            let mut request = ModelRequest {
                model: plan.model.clone(),
                system: plan.system.clone(),
                messages: messages.clone(),
                tools: specs.clone(),
                tool_choice: if force_output {
                    ToolChoice::Tool(STRUCTURED_OUTPUT.into())
                } else {
                    ToolChoice::Auto
                },
                max_tokens: plan.max_tokens,
                effort: call
                    .effort
                    .or_else(|| call.agent.as_ref().and_then(|a| a.effort)),
                thinking_budget: None,
                cache: fleet_core::provider::CacheHints {
                    system: true,
                    last_message: true,
                    long_ttl: false,
                },
            };
            let demand = Demand {
                max_output_tokens: u64::from(plan.max_tokens),
                min_output_tokens: u64::from(
                    plan.max_tokens.min(fleet_core::budget::MIN_USEFUL_OUTPUT),
                ),
                priced: match (free, price) {
                    (false, Some(p)) => Some((p, request.estimated_input_tokens())),
                    _ => None,
                },
            };
            // Waits while calls in flight hold the budget; near the cap, the turn may write
            // only what is left.
            let metered_at = demand.priced.map(|(p, _)| p);
            let mut reservation = tokio::select! {
                biased;
                () = ctx.call.cancel.cancelled() => return Err(AgentError::Cancelled),
                admitted = ctx.call.budgets.admit(&ctx.call.charge_to, demand) => admitted?,
            };
            request.max_tokens =
                u32::try_from(reservation.amount().output_tokens).unwrap_or(plan.max_tokens);
            // The bill's safety net: if this process ends before the turn's usage is recorded,
            // the store still knows what the turn may have cost.
            let reserved = reservation.amount().usd;
            if reserved > Usd::ZERO {
                journal
                    .activity(
                        unit,
                        ActivityKind::TurnAdmitted {
                            model: plan.model.clone(),
                            reserved,
                            tokens_before: usage.total(),
                        },
                    )
                    .await?;
                // A write-behind journal only queues it: the net must be durable before the
                // provider is asked for anything that may cost money.
                journal.flush().await?;
            }
            model_requests += 1;
            let mut stream = self
                .inner
                .provider
                .stream(request, ctx.call.cancel.child_token())
                .await?;
            let mut builder = ResponseBuilder::default();
            let mut failure = None;
            let mut cut = None;
            let admitted = reservation.amount().output_tokens;
            let mut allowed = admitted;
            let mut reported_output = 0;
            while let Some(event) = next_event(&mut stream).await {
                match event {
                    Ok(e) => {
                        // The prompt was an estimate: the provider's report raises the
                        // reservation, and a turn the budgets cannot pay for is cut off.
                        // Output the budgets do not pay for: reported past what they allow,
                        // or any more at all once they allow none.
                        let unpaid = match (&e, &metered_at) {
                            (StreamEvent::Usage { usage: reported }, Some(price)) => {
                                allowed = reservation.observe(price, reported, allowed);
                                reported_output = reported.output;
                                reported.output > allowed
                            }
                            (
                                StreamEvent::TextDelta { .. }
                                | StreamEvent::ThinkingDelta { .. }
                                | StreamEvent::ToolCallStart { .. }
                                | StreamEvent::ToolCallDelta { .. },
                                Some(_),
                            ) => allowed < admitted && reported_output >= allowed,
                            _ => false,
                        };
                        if unpaid {
                            cut = Some(BudgetError::Exceeded {
                                budget: "the call's".into(),
                                what: format!(
                                    "its prompt was larger than estimated, and the budgets pay for only {allowed} output tokens; the turn was cut off"
                                ),
                                measure: Measure::OutputTokens,
                            });
                            if matches!(e, StreamEvent::Usage { .. }) {
                                builder.push(e);
                            }
                            break;
                        }
                        builder.push(e);
                    }
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            drop(stream);
            let response = builder.finish();
            // Tokens are paid for even when the answer broke off.
            let priced = if response.usage.is_zero() {
                Some(Usd::ZERO)
            } else {
                journal
                    .usage(unit, &plan.model, response.usage, free.then_some(Usd::ZERO))
                    .await?
            };
            usage += response.usage;
            cost.add(priced);
            reservation.settle(Amount {
                output_tokens: response.usage.output,
                usd: priced.unwrap_or(Usd::ZERO),
            });
            if let Some(e) = failure {
                // A stream that broke off (a reset, a cut, a stall past the idle timeout) is
                // asked again from the same conversation: what it wrote is dropped, what it
                // used stays charged.
                let broke_off = matches!(
                    e,
                    ProviderError::Transport { .. }
                        | ProviderError::TimedOut(_)
                        | ProviderError::Api {
                            kind: ErrorKind::Server,
                            ..
                        }
                );
                if broke_off && stream_retries < MAX_STREAM_RETRIES {
                    stream_retries += 1;
                    let pause = Duration::from_millis(250 * u64::from(stream_retries));
                    tokio::select! {
                        biased;
                        () = ctx.call.cancel.cancelled() => return Err(AgentError::Cancelled),
                        () = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
                return Err(e.into());
            }
            if let Some(e) = cut {
                return Err(e.into());
            }

            let text = response.text();
            if !text.is_empty() {
                journal
                    .activity(
                        unit,
                        ActivityKind::Message {
                            role: Role::Assistant,
                            text: text.clone(),
                        },
                    )
                    .await?;
            }
            let calls: Vec<(String, String, Value)> = response
                .tool_calls()
                .map(|(i, n, v)| (i.to_owned(), n.to_owned(), v.clone()))
                .collect();
            messages.push(Message {
                role: MessageRole::Assistant,
                content: response.content.clone(),
            });

            if calls.is_empty() {
                if response.stop_reason == Some(StopReason::MaxTokens) && text.is_empty() {
                    return Err(AgentError::NoAnswer(format!(
                        "the model used all {} output tokens without answering",
                        plan.max_tokens
                    )));
                }
                if response.stop_reason == Some(StopReason::Refusal) {
                    return Err(AgentError::NoAnswer(format!("the model refused: {text}")));
                }
                if call.schema.is_some() {
                    schema_failures += 1;
                    let error =
                        "the answer must be given by calling the structured_output tool".to_owned();
                    if schema_failures >= MAX_SCHEMA_ATTEMPTS {
                        return Err(AgentError::InvalidOutput {
                            attempts: schema_failures,
                            error,
                        });
                    }
                    messages.push(Message::user_text(format!("{error}; call it now.")));
                    force_output = true;
                    continue;
                }
                return Ok(AgentOutcome {
                    work_unit_id: unit,
                    text,
                    output: None,
                    model: plan.model.clone(),
                    usage,
                    cost,
                    model_requests,
                    tool_calls,
                });
            }

            let mut results = Vec::new();
            for (id, name, input) in calls {
                journal
                    .activity(
                        unit,
                        ActivityKind::ToolCall {
                            call_id: id.clone(),
                            name: name.clone(),
                            input: input.clone(),
                        },
                    )
                    .await?;
                let output = if name == STRUCTURED_OUTPUT && call.schema.is_some() {
                    let value = unwrap_output(call.schema.as_ref(), input);
                    let errors: Vec<String> = validator
                        .as_ref()
                        .map(|v| {
                            v.iter_errors(&value)
                                .map(|e| format!("{}: {e}", e.instance_path()))
                                .collect()
                        })
                        .unwrap_or_default();
                    if errors.is_empty() {
                        journal
                            .activity(
                                unit,
                                ActivityKind::ToolResult {
                                    call_id: id,
                                    output: json!("accepted"),
                                    is_error: false,
                                },
                            )
                            .await?;
                        return Ok(AgentOutcome {
                            work_unit_id: unit,
                            text,
                            output: Some(value),
                            model: plan.model.clone(),
                            usage,
                            cost,
                            model_requests,
                            tool_calls,
                        });
                    }
                    schema_failures += 1;
                    let error = format!(
                        "the output does not match the schema: {}",
                        errors.join("; ")
                    );
                    if schema_failures >= MAX_SCHEMA_ATTEMPTS {
                        return Err(AgentError::InvalidOutput {
                            attempts: schema_failures,
                            error,
                        });
                    }
                    force_output = true;
                    ToolOutput::error(format!(
                        "{error}. Call structured_output again with corrected input."
                    ))
                } else {
                    tool_calls += 1;
                    if tool_calls > plan.max_tool_calls {
                        return Err(AgentError::TooManyToolCalls(plan.max_tool_calls));
                    }
                    match names.iter().position(|n| *n == name) {
                        Some(i) => tools[i].call(input, ctx).await,
                        None => ToolOutput::error(format!(
                            "there is no tool named {name:?}; the tools are: {}",
                            specs
                                .iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    }
                };
                journal
                    .activity(
                        unit,
                        ActivityKind::ToolResult {
                            call_id: id.clone(),
                            output: Value::String(output.content.clone()),
                            is_error: output.is_error,
                        },
                    )
                    .await?;
                results.push(Content::ToolResult {
                    tool_use_id: id,
                    content: output.content,
                    is_error: output.is_error,
                });
            }
            messages.push(Message {
                role: MessageRole::User,
                content: results,
            });
        }
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

fn unwrap_output(schema: Option<&Value>, input: Value) -> Value {
    match schema {
        Some(s) if s.get("type").and_then(Value::as_str) != Some("object") => {
            input.get("value").cloned().unwrap_or(input)
        }
        _ => input,
    }
}
