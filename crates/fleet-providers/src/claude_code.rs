//! Claude Code as a fleet agent: the real `claude` CLI run headless with stream-json in and out,
//! its stream mapped into work units.
//!
//! [`ClaudeStream`] is the pure part: it reads one line of the CLI's output at a time and says
//! what to record ([`Step`]s). [`ClaudeCodeRunner`] runs the CLI for an [`AgentCall`] and applies
//! the steps to the journal.
//!
//! Mapping (see `shared/specs/providers.md`, "Claude Code CLI" and "Into work units"): the call's
//! unit is the root; an `Agent` (older: `Task`) `tool_use` pre-creates a pending
//! `delegated_agent` child keyed by its `tool_use_id`; `system/task_started` starts it (and
//! creates it when no `tool_use` was seen); messages whose `parent_tool_use_id` names a child
//! become that child's activities, so nested subagents land under their own parent; the child
//! ends on whichever comes first of `task_notification`, a terminal `task_updated`, or the
//! parent's `tool_result` for the `tool_use_id`, and never runs again. Usage of each assistant
//! message goes to the unit that sent it (once per message id); at `result`, what the CLI's
//! `modelUsage` reports beyond that is recorded on the root, so the tree costs what the CLI says
//! the session cost.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::{
    AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext, Cost, PriceTable, ProviderRefs,
    TokenUsage, WorkUnitDraft, WorkUnitId, WorkUnitKind, WorkUnitState,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The provider's name in work units' provider references.
pub const NAME: &str = "claude-code";

/// Where a step applies: the session's root, or the child a `tool_use_id` started.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The call's own unit.
    Root,
    /// The subagent started by this `Agent`/`Task` tool use.
    Child(String),
}

/// What one line of the stream asks to record.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A subagent appeared (pending until it starts).
    OpenChild {
        /// Its `tool_use_id`.
        tool_use_id: String,
        /// Who started it.
        parent: Target,
        /// Its description.
        label: Option<String>,
        /// Its subagent type.
        agent: Option<String>,
    },
    /// A subagent started running.
    StartChild {
        /// Its `tool_use_id`.
        tool_use_id: String,
        /// Its provider references.
        refs: ProviderRefs,
    },
    /// A subagent ended.
    EndChild {
        /// Its `tool_use_id`.
        tool_use_id: String,
        /// How.
        state: WorkUnitState,
        /// Why, when it did not complete.
        error: Option<String>,
    },
    /// Something a unit said or did.
    Activity {
        /// Whose.
        target: Target,
        /// What.
        kind: ActivityKind,
    },
    /// Tokens a unit spent on `model`.
    Usage {
        /// Whose.
        target: Target,
        /// The model.
        model: String,
        /// The tokens.
        usage: TokenUsage,
    },
    /// The session's final line.
    Finished {
        /// The answer.
        text: String,
        /// Whether the CLI ended in error (it says `success` with `is_error: true` after API
        /// errors).
        is_error: bool,
        /// The CLI's usage by model for the whole session, with its dollars when it says.
        model_usage: Vec<(String, TokenUsage, Option<f64>)>,
        /// The CLI's total cost.
        total_cost_usd: Option<f64>,
    },
}

/// Reads the CLI's stream-json output, line by line.
#[derive(Debug, Default)]
pub struct ClaudeStream {
    session_id: Option<String>,
    /// Children by `tool_use_id`.
    children: HashSet<String>,
    /// Children that ended.
    ended: HashSet<String>,
    /// Assistant message ids whose usage is counted.
    counted: HashSet<String>,
    /// Lines that were not JSON, or not objects.
    malformed: u64,
}

/// The subagent tool's names (the CLI offers `Agent`; older versions and `init` say `Task`).
fn is_subagent_tool(name: &str) -> bool {
    matches!(name, "Agent" | "Task")
}

impl ClaudeStream {
    /// A reader for a fresh session.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The session id, once `system/init` said it.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Lines that were not JSON objects (they are skipped, counted and logged).
    #[must_use]
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    fn target(&self, parent_tool_use_id: Option<&str>) -> Target {
        match parent_tool_use_id {
            Some(id) if self.children.contains(id) => Target::Child(id.to_owned()),
            _ => Target::Root,
        }
    }

    fn open(
        &mut self,
        steps: &mut Vec<Step>,
        id: &str,
        parent: Target,
        label: Option<String>,
        agent: Option<String>,
    ) {
        if self.children.insert(id.to_owned()) {
            steps.push(Step::OpenChild {
                tool_use_id: id.to_owned(),
                parent,
                label,
                agent,
            });
        }
    }

    fn end(
        &mut self,
        steps: &mut Vec<Step>,
        id: &str,
        state: WorkUnitState,
        error: Option<String>,
    ) {
        if self.children.contains(id) && self.ended.insert(id.to_owned()) {
            steps.push(Step::EndChild {
                tool_use_id: id.to_owned(),
                state,
                error,
            });
        }
    }

    /// What `line` asks to record. Unknown message types and fields are ignored; a line that is
    /// not a JSON object is counted and reported as a log activity of the root.
    pub fn line(&mut self, line: &str) -> Vec<Step> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(line) else {
            self.malformed += 1;
            return vec![Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::LogLevel::Warn,
                    message: format!(
                        "claude-code: skipped a line that is not a JSON object: {}",
                        line.chars().take(120).collect::<String>()
                    ),
                },
            }];
        };
        let mut steps = Vec::new();
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let parent = msg.get("parent_tool_use_id").and_then(Value::as_str);
        match (
            msg.get("type").and_then(Value::as_str),
            msg.get("subtype").and_then(Value::as_str),
        ) {
            (Some("system"), Some("init")) => {
                self.session_id = text(&Value::Object(msg.clone()), "session_id");
            }
            (Some("system"), Some("task_started")) => {
                let Some(id) = msg.get("tool_use_id").and_then(Value::as_str) else {
                    return steps;
                };
                let parent_target = self.target(parent);
                self.open(
                    &mut steps,
                    id,
                    parent_target,
                    text(&Value::Object(msg.clone()), "description"),
                    text(&Value::Object(msg.clone()), "subagent_type"),
                );
                if !self.ended.contains(id) {
                    steps.push(Step::StartChild {
                        tool_use_id: id.to_owned(),
                        refs: ProviderRefs {
                            provider: NAME.into(),
                            thread: self.session_id.clone(),
                            turn: None,
                            item: Some(id.to_owned()),
                            task: text(&Value::Object(msg.clone()), "task_id"),
                        },
                    });
                }
            }
            (Some("system"), Some(sub @ ("task_notification" | "task_updated"))) => {
                let Some(id) = msg.get("tool_use_id").and_then(Value::as_str) else {
                    return steps;
                };
                let status = msg
                    .get("status")
                    .or_else(|| msg.get("patch").and_then(|p| p.get("status")))
                    .and_then(Value::as_str)
                    .unwrap_or(if sub == "task_notification" {
                        "completed"
                    } else {
                        "running"
                    });
                let ended = match status {
                    "completed" | "success" => Some((WorkUnitState::Completed, None)),
                    "failed" | "error" => Some((
                        WorkUnitState::Failed,
                        Some(
                            text(&Value::Object(msg.clone()), "summary")
                                .unwrap_or_else(|| "the subagent failed".into()),
                        ),
                    )),
                    "killed" | "cancelled" | "stopped" => Some((
                        WorkUnitState::Cancelled,
                        Some("the subagent was stopped".into()),
                    )),
                    _ => None,
                };
                if let Some((state, error)) = ended {
                    self.end(&mut steps, id, state, error);
                }
            }
            (Some("assistant"), _) => {
                let target = self.target(parent);
                let Some(message) = msg.get("message") else {
                    return steps;
                };
                let model = text(message, "model").unwrap_or_default();
                for block in message
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => steps.push(Step::Activity {
                            target: target.clone(),
                            kind: ActivityKind::Message {
                                role: Role::Assistant,
                                text: text(block, "text").unwrap_or_default(),
                            },
                        }),
                        Some("tool_use") => {
                            let id = text(block, "id").unwrap_or_default();
                            let name = text(block, "name").unwrap_or_default();
                            let input = block.get("input").cloned().unwrap_or(Value::Null);
                            steps.push(Step::Activity {
                                target: target.clone(),
                                kind: ActivityKind::ToolCall {
                                    call_id: id.clone(),
                                    name: name.clone(),
                                    input: input.clone(),
                                },
                            });
                            if is_subagent_tool(&name) && !id.is_empty() {
                                self.open(
                                    &mut steps,
                                    &id,
                                    target.clone(),
                                    text(&input, "description"),
                                    text(&input, "subagent_type"),
                                );
                            }
                        }
                        _ => {}
                    }
                }
                // One line per content block repeats the message's usage: count it once.
                if let Some(usage) = message.get("usage")
                    && let Some(id) = text(message, "id")
                    && self.counted.insert(id)
                {
                    steps.push(Step::Usage {
                        target,
                        model,
                        usage: anthropic_usage(usage),
                    });
                }
            }
            (Some("user"), _) => {
                let target = self.target(parent);
                let content = msg.get("message").and_then(|m| m.get("content"));
                for block in content.and_then(Value::as_array).into_iter().flatten() {
                    if block.get("type").and_then(Value::as_str) != Some("tool_result") {
                        continue;
                    }
                    let id = text(block, "tool_use_id").unwrap_or_default();
                    let is_error = block
                        .get("is_error")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let output = match block.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(parts)) => parts
                            .iter()
                            .filter_map(|p| text(p, "text"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => String::new(),
                    };
                    steps.push(Step::Activity {
                        target: target.clone(),
                        kind: ActivityKind::ToolResult {
                            call_id: id.clone(),
                            output: Value::String(output.clone()),
                            is_error,
                        },
                    });
                    // The parent's tool result ends a subagent that nothing else has ended.
                    let (state, error) = if is_error {
                        (
                            WorkUnitState::Failed,
                            Some(output.chars().take(500).collect()),
                        )
                    } else {
                        (WorkUnitState::Completed, None)
                    };
                    self.end(&mut steps, &id, state, error);
                }
            }
            (Some("result"), _) => {
                let is_error = msg
                    .get("is_error")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    || msg
                        .get("subtype")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s != "success");
                let model_usage = msg
                    .get("modelUsage")
                    .and_then(Value::as_object)
                    .map(|models| {
                        models
                            .iter()
                            .map(|(model, u)| {
                                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                                (
                                    model.clone(),
                                    TokenUsage::from_anthropic(
                                        n("inputTokens"),
                                        n("outputTokens"),
                                        n("cacheCreationInputTokens"),
                                        0,
                                        n("cacheReadInputTokens"),
                                    ),
                                    u.get("costUSD").and_then(Value::as_f64),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                // Whatever is still open ended with the session.
                let open: Vec<String> = self.children.difference(&self.ended).cloned().collect();
                for id in open {
                    let state = if is_error {
                        WorkUnitState::Failed
                    } else {
                        WorkUnitState::Completed
                    };
                    let error = is_error.then(|| "the session ended in error".to_owned());
                    self.end(&mut steps, &id, state, error);
                }
                steps.push(Step::Finished {
                    text: text(&Value::Object(msg.clone()), "result").unwrap_or_default(),
                    is_error,
                    model_usage,
                    total_cost_usd: msg.get("total_cost_usd").and_then(Value::as_f64),
                });
            }
            _ => {}
        }
        steps
    }
}

/// Anthropic's usage object (input excludes cache writes and reads).
fn anthropic_usage(u: &Value) -> TokenUsage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let one_hour = u
        .get("cache_creation")
        .and_then(|c| c.get("ephemeral_1h_input_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    TokenUsage::from_anthropic(
        n("input_tokens"),
        n("output_tokens"),
        n("cache_creation_input_tokens"),
        one_hour,
        n("cache_read_input_tokens"),
    )
}

/// Runs agent calls on the `claude` CLI.
#[derive(Debug, Clone)]
pub struct ClaudeCodeRunner {
    program: PathBuf,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    prices: Arc<PriceTable>,
}

impl ClaudeCodeRunner {
    /// Runs `program` (the `claude` CLI) in `workdir` with `env` added to its environment.
    #[must_use]
    pub fn new(
        program: impl Into<PathBuf>,
        workdir: impl Into<PathBuf>,
        prices: Arc<PriceTable>,
    ) -> Self {
        Self {
            program: program.into(),
            env: Vec::new(),
            workdir: workdir.into(),
            prices,
        }
    }

    /// Adds a variable to the CLI's environment (its base URL and key, say).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The CLI's arguments for `call`: model, turns, budget and system prompt from the call
    /// and its spec.
    fn args(call: &AgentCall) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json",
            "--verbose",
        ]
        .map(str::to_owned)
        .to_vec();
        let spec = call.agent.as_deref();
        if let Some(model) = call.model.clone().or_else(|| spec.map(|s| s.model.clone())) {
            args.extend(["--model".into(), model]);
        }
        if let Some(turns) = call
            .max_tool_calls
            .or_else(|| spec.and_then(|s| s.max_tool_calls))
        {
            args.extend(["--max-turns".into(), turns.to_string()]);
        }
        if let Some(budget) = spec.and_then(|s| s.cost_budget) {
            args.extend([
                "--max-budget-usd".into(),
                format!("{:.4}", budget.dollars()),
            ]);
        }
        if let Some(system) = spec.and_then(|s| s.system.clone()) {
            args.extend(["--append-system-prompt".into(), system]);
        }
        args
    }
}

/// Applies steps to the journal: children by `tool_use_id`, usage priced per model.
struct Applier<'a> {
    ctx: &'a CallContext,
    prices: &'a PriceTable,
    root: WorkUnitId,
    units: HashMap<String, WorkUnitId>,
    /// What was recorded per model, to record only the rest of the CLI's totals on the root.
    recorded: HashMap<String, TokenUsage>,
    cost: Cost,
    usage: TokenUsage,
    /// Tool calls the root made.
    tool_calls: u32,
}

impl Applier<'_> {
    fn unit(&self, target: &Target) -> WorkUnitId {
        match target {
            Target::Root => self.root,
            Target::Child(id) => self.units.get(id).copied().unwrap_or(self.root),
        }
    }

    async fn usage(
        &mut self,
        unit: WorkUnitId,
        model: &str,
        usage: TokenUsage,
    ) -> Result<(), AgentError> {
        let cost = self.prices.cost(model, &usage);
        self.ctx.journal.usage(unit, model, usage, cost).await?;
        *self.recorded.entry(model.to_owned()).or_default() += usage;
        self.usage += usage;
        match cost {
            Some(c) => self.cost.usd += c,
            None => self.cost.unpriced += 1,
        }
        Ok(())
    }

    async fn apply(&mut self, step: Step) -> Result<Option<(String, bool)>, AgentError> {
        let journal = &self.ctx.journal;
        match step {
            Step::OpenChild {
                tool_use_id,
                parent,
                label,
                agent,
            } => {
                let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
                draft.state = WorkUnitState::Pending;
                draft.label = label;
                draft.agent = agent;
                let parent = self.unit(&parent);
                let unit = journal.start_work_unit(parent, draft).await?;
                self.units.insert(tool_use_id, unit);
            }
            Step::StartChild { tool_use_id, refs } => {
                if let Some(unit) = self.units.get(&tool_use_id).copied() {
                    let record = journal
                        .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
                        .await;
                    if let Some(mut record) = record.filter(|r| !r.state.is_terminal()) {
                        let now = fleet_core::Timestamp::now();
                        record.state = WorkUnitState::Running;
                        record.provider_refs = Some(refs);
                        record.started_at.get_or_insert(now);
                        record.updated_at = now;
                        journal
                            .execute(fleet_core::Command::UpsertWorkUnit(record))
                            .await?;
                    }
                }
            }
            Step::EndChild {
                tool_use_id,
                state,
                error,
            } => {
                if let Some(unit) = self.units.get(&tool_use_id).copied() {
                    journal.set_state(unit, state, error).await?;
                }
            }
            Step::Activity { target, kind } => {
                if target == Target::Root && matches!(kind, ActivityKind::ToolCall { .. }) {
                    self.tool_calls += 1;
                }
                journal.activity(self.unit(&target), kind).await?;
            }
            Step::Usage {
                target,
                model,
                usage,
            } => {
                let unit = self.unit(&target);
                self.usage(unit, &model, usage).await?;
            }
            Step::Finished {
                text,
                is_error,
                model_usage,
                ..
            } => {
                for (model, total, _) in model_usage {
                    let seen = self.recorded.get(&model).copied().unwrap_or_default();
                    let rest = TokenUsage {
                        input: total.input.saturating_sub(seen.input),
                        output: total.output.saturating_sub(seen.output),
                        cache_write: total.cache_write.saturating_sub(seen.cache_write),
                        cache_write_1h: total.cache_write_1h.saturating_sub(seen.cache_write_1h),
                        cache_read: total.cache_read.saturating_sub(seen.cache_read),
                    };
                    if rest.total() > 0 {
                        self.usage(self.root, &model, rest).await?;
                    }
                }
                return Ok(Some((text, is_error)));
            }
        }
        Ok(None)
    }
}

impl AgentRunner for ClaudeCodeRunner {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let journal = &ctx.journal;
        let model = call
            .model
            .clone()
            .or_else(|| call.agent.as_ref().map(|a| a.model.clone()))
            .unwrap_or_else(|| "claude-sonnet-4-5".into());
        let root = match ctx.work_unit {
            Some(unit) => {
                journal.set_running(unit, Some(model.clone())).await?;
                unit
            }
            None => {
                let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
                draft.label = Some(call.display_label());
                draft.agent = call.agent.as_ref().map(|a| a.name.clone());
                draft.model = Some(model.clone());
                journal.start_work_unit(ctx.parent, draft).await?
            }
        };
        let result = self.session(&call, &ctx, root, &model).await;
        let (state, error) = match &result {
            Ok(_) => (WorkUnitState::Completed, None),
            Err(AgentError::Cancelled) => (WorkUnitState::Cancelled, Some("cancelled".to_owned())),
            Err(e) => (WorkUnitState::Failed, Some(e.to_string())),
        };
        // Children the session left open end with it.
        let open: Vec<WorkUnitId> = journal
            .read(|t| {
                t.subtree(root)
                    .into_iter()
                    .filter(|(_, u)| u.id != root && !u.state.is_terminal())
                    .map(|(_, u)| u.id)
                    .collect()
            })
            .await;
        for unit in open {
            let child_state = if state == WorkUnitState::Completed {
                WorkUnitState::Completed
            } else {
                state
            };
            journal.set_state(unit, child_state, error.clone()).await?;
        }
        journal.set_state(root, state, error).await?;
        result
    }
}

impl ClaudeCodeRunner {
    async fn session(
        &self,
        call: &AgentCall,
        ctx: &CallContext,
        root: WorkUnitId,
        model: &str,
    ) -> Result<AgentOutcome, AgentError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(Self::args(call))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(call.workdir.as_ref().unwrap_or(&self.workdir))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                AgentError::Worker(format!("cannot start {}: {e}", self.program.display()))
            })?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| AgentError::Worker("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| AgentError::Worker("no stdout".into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| AgentError::Worker("no stderr".into()))?;
        let tail = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            let text = String::from_utf8_lossy(&buf).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        });
        let user = json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": call.prompt}]}});
        let mut line = serde_json::to_vec(&user).unwrap_or_default();
        line.push(b'\n');
        stdin
            .write_all(&line)
            .await
            .map_err(|e| AgentError::Worker(format!("cannot write to claude: {e}")))?;
        let mut stream = ClaudeStream::new();
        let mut applier = Applier {
            ctx,
            prices: &self.prices,
            root,
            units: HashMap::new(),
            recorded: HashMap::new(),
            cost: Cost::default(),
            usage: TokenUsage::default(),
            tool_calls: 0,
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut finished = None;
        loop {
            let next = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    // The CLI's interrupt, then the process itself.
                    let interrupt = json!({"type": "control_request", "request_id": "fleet-interrupt", "request": {"subtype": "interrupt"}});
                    let mut bytes = serde_json::to_vec(&interrupt).unwrap_or_default();
                    bytes.push(b'\n');
                    let _ = stdin.write_all(&bytes).await;
                    let _ = child.start_kill();
                    return Err(AgentError::Cancelled);
                }
                next = lines.next_line() => next,
            };
            let Some(text) =
                next.map_err(|e| AgentError::Worker(format!("reading claude's output: {e}")))?
            else {
                break;
            };
            for step in stream.line(&text) {
                if let Some(done) = applier.apply(step).await? {
                    finished = Some(done);
                }
            }
            if finished.is_some() {
                break;
            }
        }
        drop(stdin);
        let status = child
            .wait()
            .await
            .map_err(|e| AgentError::Worker(e.to_string()))?;
        let tail = tail.await.unwrap_or_default();
        let Some((text, is_error)) = finished else {
            return Err(AgentError::Worker(format!(
                "claude ended before its result ({status}){}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            )));
        };
        if is_error {
            return Err(AgentError::NoAnswer(format!(
                "claude ended in error: {text}"
            )));
        }
        Ok(AgentOutcome {
            work_unit_id: root,
            text,
            output: None,
            model: model.to_owned(),
            usage: applier.usage,
            cost: applier.cost,
            model_requests: u32::try_from(stream.counted.len()).unwrap_or(u32::MAX),
            tool_calls: applier.tool_calls,
        })
    }
}
