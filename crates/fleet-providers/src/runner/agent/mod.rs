//! The agent loop: [`ModelAgentRunner`] turns a [`Provider`] and tools into an
//! [`AgentRunner`]. It loops model → tool calls → results until the model stops, records the
//! call as a `delegated_agent` work unit with its messages, tool calls and priced usage, and
//! reserves each model request's worst case against the budgets before making it, so a hard
//! budget stops the next request rather than the next run.
//!
//! Every decision (what to ask, whether an answer ends the call, which tool a call runs, when a
//! broken stream is asked again, when a schema has been missed too often) is made by the pure
//! `conversation` state machine; the loop here only carries them out.

mod conversation;
pub mod patch;
pub mod tools;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::agent::{
    AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext, DynAgentRunner,
};
use fleet_core::budget::{Amount, BudgetError, Demand, Measure};
use fleet_core::command::WorkUnitDraft;
use fleet_core::exec::DynCommandSandbox;
use fleet_core::id::WorkUnitId;
use fleet_core::money::Usd;
use fleet_core::pricing::PriceTable;
use fleet_core::provider::{
    Content, ModelRequest, ModelResponse, Provider, ProviderError, ResponseBuilder, StreamEvent,
    next_event,
};
use fleet_core::spec::{AgentSpec, Capability, SpecSet};
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use serde_json::{Value, json};

use self::conversation::{CallStep, Conversation, Next, Recovery, Settings};
use tools::{Subagents, Tool, ToolContext};

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
    /// The I/O loop: carries out what the [`Conversation`] decides, admitting each request
    /// against the budgets, streaming it, recording everything, running the tools.
    async fn converse(
        &self,
        call: &AgentCall,
        plan: &Plan,
        ctx: &ToolContext,
    ) -> Result<AgentOutcome, AgentError> {
        let journal = &ctx.call.journal;
        let unit = ctx.unit;
        let free = self.inner.provider.capabilities().free;
        let mut tools: Vec<Arc<dyn Tool>> =
            tools::builtin(&plan.capabilities, ctx.commands.is_some());
        tools.extend(self.inner.extra_tools.iter().cloned());
        let settings = Settings {
            model: plan.model.clone(),
            system: plan.system.clone(),
            max_tokens: plan.max_tokens,
            max_tool_calls: plan.max_tool_calls,
            effort: call
                .effort
                .or_else(|| call.agent.as_ref().and_then(|a| a.effort)),
        };
        let mut talk = Conversation::new(
            settings,
            &call.prompt,
            tools.iter().map(|t| t.spec()).collect(),
            call.schema.as_ref(),
        )?;
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
        loop {
            let request = talk.request();
            let priced = match (free, price) {
                (false, Some(p)) => Some((p, request.estimated_input_tokens())),
                _ => None,
            };
            let (response, ended) = self.turn(ctx, plan, request, priced, talk.used()).await?;
            // Tokens are paid for even when the answer broke off.
            let cost = if response.usage.is_zero() {
                Some(Usd::ZERO)
            } else {
                journal
                    .usage(unit, &plan.model, response.usage, free.then_some(Usd::ZERO))
                    .await?
            };
            talk.charge(response.usage, cost);
            ended.reservation.settle(Amount {
                output_tokens: response.usage.output,
                usd: cost.unwrap_or(Usd::ZERO),
            });
            if let Some(e) = ended.failure {
                match talk.after_failure(e) {
                    Recovery::Retry(pause) => {
                        tokio::select! {
                            biased;
                            () = ctx.call.cancel.cancelled() => return Err(AgentError::Cancelled),
                            () = tokio::time::sleep(pause) => {}
                        }
                        continue;
                    }
                    Recovery::Fail(e) => return Err(e),
                }
            }
            if let Some(e) = ended.cut {
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
            let calls = match talk.after_answer(&response) {
                Next::Answer => return Ok(talk.outcome(unit, text, None)),
                Next::AskAgain => continue,
                Next::Fail(e) => return Err(e),
                Next::Tools(calls) => calls,
            };
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
                let output = match talk.call(&name, input.clone()) {
                    CallStep::Accept(value) => {
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
                        return Ok(talk.outcome(unit, text, Some(value)));
                    }
                    CallStep::Fail(e) => return Err(e),
                    CallStep::Reply(output) => output,
                    CallStep::Run(i) => tools[i].call(input, ctx).await,
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
            talk.results(results);
        }
    }

    /// One model request: admitted against the budgets (waiting while calls in flight hold
    /// them; near a cap, cut to the output that is left), its reservation made durable, then
    /// streamed, and cut off when the provider reports a prompt the budgets cannot pay for.
    async fn turn(
        &self,
        ctx: &ToolContext,
        plan: &Plan,
        mut request: ModelRequest,
        priced: Option<(fleet_core::pricing::ModelPrice, u64)>,
        tokens_before: u64,
    ) -> Result<(ModelResponse, Ended), AgentError> {
        let journal = &ctx.call.journal;
        let demand = Demand {
            max_output_tokens: u64::from(plan.max_tokens),
            min_output_tokens: u64::from(
                plan.max_tokens.min(fleet_core::budget::MIN_USEFUL_OUTPUT),
            ),
            priced,
        };
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
                    ctx.unit,
                    ActivityKind::TurnAdmitted {
                        model: plan.model.clone(),
                        reserved,
                        tokens_before,
                    },
                )
                .await?;
            // A write-behind journal only queues it: the net must be durable before the
            // provider is asked for anything that may cost money.
            journal.flush().await?;
        }
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
        Ok((
            builder.finish(),
            Ended {
                reservation,
                failure,
                cut,
            },
        ))
    }
}

/// How a request's stream ended, beside its answer.
struct Ended {
    /// What the budgets hold for it, to settle with what it used.
    reservation: fleet_core::budget::Reservation,
    /// The stream failed.
    failure: Option<ProviderError>,
    /// The budgets stopped it.
    cut: Option<BudgetError>,
}
