//! Claude Code as a fleet agent: the real `claude` CLI run headless with stream-json in and out,
//! its stream mapped into work units.
//!
//! [`ClaudeStream`] is the pure part: it reads one line of the CLI's output at a time and says
//! what to record ([`Step`]s) and which permission requests to answer. A [`ClaudeCodeSession`]
//! is one `claude` process: each [`turn`](ClaudeCodeSession::turn) writes a user message,
//! answers the CLI's permission requests from the agent's capabilities and records the turn as
//! a work-unit tree. [`ClaudeCodeRunner`] runs each agent call as a session of one turn.
//!
//! Mapping (see `docs/providers.md`, "The wire formats"): the call's
//! unit is the root; an `Agent` (older: `Task`) `tool_use` pre-creates a pending
//! `delegated_agent` child keyed by its `tool_use_id`; `system/task_started` starts it (and
//! creates it when no `tool_use` was seen); messages whose `parent_tool_use_id` names a child
//! become that child's activities, so nested subagents land under their own parent; the child
//! ends on whichever comes first of `task_notification`, a terminal `task_updated`, or the
//! parent's `tool_result` for the `tool_use_id`, and never runs again. Usage of each assistant
//! message goes to the unit that sent it (once per message id); at `result`, what the CLI's
//! `modelUsage` reports for the turn beyond that is recorded on the root, so the tree costs what
//! the CLI says the turn cost.
//!
//! Permissions: the CLI runs with `--permission-prompt-tool stdio`, so each tool it does not
//! trust by itself becomes a `can_use_tool` control request, answered from the spec's
//! capabilities and `tools` (a refusal says which capability to grant). In plan mode the
//! request to leave plan mode (`ExitPlanMode`) is refused and the plan it carries recorded as the
//! turn's `proposed_plan` activity; the call then resolves to `{plan, text}` for a person or the
//! workflow to approve.
//!
//! Background subagents: a turn ends at its `result` unless a subagent it started in the
//! background is still running or has just been reported; then the CLI's follow-up turn (its
//! `result` has `origin.kind = "task-notification"`) belongs to the same fleet turn.
//!
//! Still one file (936 lines), where `codex/` is already split into its reader, session and
//! runner. Splitting it the same way is open work in issue 25, together with serde wire types
//! for the stream in place of `.get()` chains.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::spec::PermissionMode;
use fleet_core::{
    AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext, PriceTable, ProviderRefs,
    TokenUsage, WorkUnitId, WorkUnitState,
};
use serde_json::{Value, json};

use crate::runner::coding_cli::{
    CliProcess, GRACE, Grants, Recorder, close_tree, open_root, set_refs,
};
pub use crate::runner::coding_cli::{Step, Target};

/// The provider's name in work units' provider references.
pub const NAME: &str = "claude-code";

/// A tool the CLI asks permission to use (a `can_use_tool` control request).
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    /// The control request's id, to answer.
    pub request_id: String,
    /// The tool.
    pub tool: String,
    /// Its input.
    pub input: Value,
    /// The `tool_use` it is for, when the CLI says.
    pub tool_use_id: Option<String>,
}

/// Reads the CLI's stream-json output, line by line.
#[derive(Debug, Default)]
pub struct ClaudeStream {
    session_id: Option<String>,
    model: Option<String>,
    /// Children by `tool_use_id`.
    children: HashSet<String>,
    /// Children that ended.
    ended: HashSet<String>,
    /// Children started in the background.
    background: HashSet<String>,
    /// A background child was reported since the last `result`: the CLI will run a follow-up
    /// turn for it.
    notified: bool,
    /// Who made each tool call.
    callers: HashMap<String, Target>,
    /// Plans carried by `ExitPlanMode` calls.
    plans: HashMap<String, String>,
    last_plan: Option<String>,
    /// Assistant message ids whose usage is counted.
    counted: HashSet<String>,
    /// Tokens counted per child, and the model it last spoke with.
    child_tokens: HashMap<String, (u64, String)>,
    /// The CLI's `modelUsage` at the last `result` (it counts the whole session).
    session_usage: HashMap<String, TokenUsage>,
    /// What the results of this turn reported beyond that.
    turn_usage: Vec<(String, TokenUsage)>,
    turn_error: Option<String>,
    /// Permission requests not yet answered.
    requests: VecDeque<PermissionRequest>,
    /// Lines that were not JSON, or not objects.
    malformed: u64,
}

/// The subagent tool's names (the CLI offers `Agent`; older versions and `init` say `Task`).
fn is_subagent_tool(name: &str) -> bool {
    matches!(name, "Agent" | "Task")
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
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

    /// The model the session runs on, once `system/init` said it.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Lines that were not JSON objects (they are skipped, counted and logged).
    #[must_use]
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Assistant messages whose usage was counted.
    #[must_use]
    pub fn model_requests(&self) -> usize {
        self.counted.len()
    }

    /// The permission requests read so far and not yet taken.
    pub fn take_requests(&mut self) -> Vec<PermissionRequest> {
        self.requests.drain(..).collect()
    }

    /// The plan an `ExitPlanMode` call carried (by its `tool_use_id`, else the latest).
    #[must_use]
    pub fn plan(&self, tool_use_id: Option<&str>) -> Option<&str> {
        tool_use_id
            .and_then(|id| self.plans.get(id))
            .or(self.last_plan.as_ref())
            .map(String::as_str)
    }

    /// Who made the tool call `tool_use_id` (the root when unknown).
    #[must_use]
    pub fn caller(&self, tool_use_id: Option<&str>) -> Target {
        tool_use_id
            .and_then(|id| self.callers.get(id).cloned())
            .unwrap_or(Target::Root)
    }

    /// Forgets the last turn's children: a new turn starts its own tree.
    pub fn begin_turn(&mut self) {
        self.children.clear();
        self.ended.clear();
        self.background.clear();
        self.callers.clear();
        self.notified = false;
        self.turn_usage.clear();
        self.turn_error = None;
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
                key: id.to_owned(),
                parent,
                label,
                agent,
                model: None,
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
                key: id.to_owned(),
                state,
                error,
            });
        }
    }

    /// What `line` asks to record. Unknown message types and fields are ignored; a line that is
    /// not a JSON object is counted and reported as a log activity of the root. Permission
    /// requests are kept for [`take_requests`](Self::take_requests).
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
        let msg = Value::Object(msg);
        let mut steps = Vec::new();
        let parent = msg.get("parent_tool_use_id").and_then(Value::as_str);
        match (
            msg.get("type").and_then(Value::as_str),
            msg.get("subtype").and_then(Value::as_str),
        ) {
            (Some("system"), Some("init")) => {
                self.session_id = text(&msg, "session_id").or(self.session_id.take());
                self.model = text(&msg, "model").or(self.model.take());
            }
            (Some("system"), Some("task_started")) => self.task_started(&msg, parent, &mut steps),
            (Some("system"), Some(sub @ ("task_notification" | "task_updated"))) => {
                self.task_usage(&msg, &mut steps);
                self.task_ended(&msg, sub, &mut steps);
            }
            (Some("system"), Some("task_progress")) => self.task_usage(&msg, &mut steps),
            (Some("assistant"), _) => self.assistant(&msg, parent, &mut steps),
            (Some("user"), _) => self.user(&msg, parent, &mut steps),
            (Some("control_request"), _) => {
                let request = msg.get("request").cloned().unwrap_or(Value::Null);
                let request_id = text(&msg, "request_id").unwrap_or_default();
                if request.get("subtype").and_then(Value::as_str) == Some("can_use_tool") {
                    self.requests.push_back(PermissionRequest {
                        request_id,
                        tool: text(&request, "tool_name").unwrap_or_default(),
                        input: request.get("input").cloned().unwrap_or(Value::Null),
                        tool_use_id: text(&request, "tool_use_id"),
                    });
                } else {
                    // Hooks, MCP messages and the like: fleet registers none of them.
                    self.requests.push_back(PermissionRequest {
                        request_id,
                        tool: String::new(),
                        input: request,
                        tool_use_id: None,
                    });
                }
            }
            (Some("result"), _) => self.result(&msg, &mut steps),
            _ => {}
        }
        steps
    }

    fn task_started(&mut self, msg: &Value, parent: Option<&str>, steps: &mut Vec<Step>) {
        let Some(id) = msg.get("tool_use_id").and_then(Value::as_str) else {
            return;
        };
        let parent_target = self.target(parent);
        self.open(
            steps,
            id,
            parent_target,
            text(msg, "description"),
            text(msg, "subagent_type"),
        );
        if msg.get("is_backgrounded").and_then(Value::as_bool) == Some(true) {
            self.background.insert(id.to_owned());
        }
        if !self.ended.contains(id) {
            steps.push(Step::StartChild {
                key: id.to_owned(),
                refs: ProviderRefs {
                    provider: NAME.into(),
                    thread: self.session_id.clone(),
                    turn: None,
                    item: Some(id.to_owned()),
                    task: text(msg, "task_id"),
                },
            });
        }
    }

    /// A subagent's message lines carry the usage of their start (one output token); its
    /// task messages say how many tokens it used in all. The difference is output it wrote.
    fn task_usage(&mut self, msg: &Value, steps: &mut Vec<Step>) {
        let Some(id) = msg.get("tool_use_id").and_then(Value::as_str) else {
            return;
        };
        let Some(total) = msg
            .get("usage")
            .and_then(|u| u.get("total_tokens"))
            .and_then(Value::as_u64)
        else {
            return;
        };
        if self.ended.contains(id) || !self.children.contains(id) {
            return;
        }
        let Some((counted, model)) = self.child_tokens.get_mut(id) else {
            return;
        };
        if total > *counted {
            let usage = TokenUsage {
                output: total - *counted,
                ..TokenUsage::default()
            };
            *counted = total;
            steps.push(Step::Usage {
                target: Target::Child(id.to_owned()),
                model: model.clone(),
                usage,
            });
        }
    }

    fn task_ended(&mut self, msg: &Value, sub: &str, steps: &mut Vec<Step>) {
        let Some(id) = msg.get("tool_use_id").and_then(Value::as_str) else {
            return;
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
                Some(text(msg, "summary").unwrap_or_else(|| "the subagent failed".into())),
            )),
            "killed" | "cancelled" | "stopped" => Some((
                WorkUnitState::Cancelled,
                Some("the subagent was stopped".into()),
            )),
            _ => None,
        };
        if sub == "task_notification" && self.background.contains(id) {
            self.notified = true;
        }
        if let Some((state, error)) = ended {
            self.end(steps, id, state, error);
        }
    }

    fn assistant(&mut self, msg: &Value, parent: Option<&str>, steps: &mut Vec<Step>) {
        let target = self.target(parent);
        let Some(message) = msg.get("message") else {
            return;
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
                    self.callers.insert(id.clone(), target.clone());
                    if name == "ExitPlanMode"
                        && let Some(plan) = text(&input, "plan")
                    {
                        self.plans.insert(id.clone(), plan.clone());
                        self.last_plan = Some(plan);
                    }
                    if is_subagent_tool(&name) && !id.is_empty() {
                        self.open(
                            steps,
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
            let usage = anthropic_usage(usage);
            if let Target::Child(id) = &target {
                let entry = self
                    .child_tokens
                    .entry(id.clone())
                    .or_insert((0, String::new()));
                entry.0 += usage.total();
                entry.1.clone_from(&model);
            }
            steps.push(Step::Usage {
                target,
                model,
                usage,
            });
        }
    }

    fn user(&mut self, msg: &Value, parent: Option<&str>, steps: &mut Vec<Step>) {
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
            // A background subagent's tool result only says it was launched.
            if self.background.contains(&id) {
                continue;
            }
            // The parent's tool result ends a subagent that nothing else has ended.
            let (state, error) = if is_error {
                (
                    WorkUnitState::Failed,
                    Some(output.chars().take(500).collect()),
                )
            } else {
                (WorkUnitState::Completed, None)
            };
            self.end(steps, &id, state, error);
        }
    }

    fn result(&mut self, msg: &Value, steps: &mut Vec<Step>) {
        let is_error = msg
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false)
            || msg
                .get("subtype")
                .and_then(Value::as_str)
                .is_some_and(|s| s != "success");
        let answer = text(msg, "result").unwrap_or_default();
        if is_error && self.turn_error.is_none() {
            let why = if answer.is_empty() {
                text(msg, "subtype").unwrap_or_else(|| "error".into())
            } else {
                answer.clone()
            };
            self.turn_error = Some(format!("claude ended in error: {why}"));
        }
        // `modelUsage` counts the whole session: this result adds what grew since the last.
        let models = msg.get("modelUsage").and_then(Value::as_object);
        for (model, u) in models.into_iter().flatten() {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            let total = TokenUsage::from_anthropic(
                n("inputTokens"),
                n("outputTokens"),
                n("cacheCreationInputTokens"),
                n("cacheCreationEphemeral1hInputTokens"),
                n("cacheReadInputTokens"),
            );
            let before = self.session_usage.insert(model.clone(), total);
            let before = before.unwrap_or_default();
            let grew = TokenUsage {
                input: total.input.saturating_sub(before.input),
                output: total.output.saturating_sub(before.output),
                cache_write: total.cache_write.saturating_sub(before.cache_write),
                cache_write_1h: total.cache_write_1h.saturating_sub(before.cache_write_1h),
                cache_read: total.cache_read.saturating_sub(before.cache_read),
            };
            match self.turn_usage.iter_mut().find(|(m, _)| m == model) {
                Some((_, sum)) => *sum += grew,
                None => self.turn_usage.push((model.clone(), grew)),
            }
        }
        // A background subagent still running, or just reported, brings a follow-up turn.
        let running_in_background = self
            .background
            .iter()
            .any(|id| !self.ended.contains(id.as_str()));
        // The CLI's follow-up turn answers the reports that came before it.
        let is_follow_up = msg
            .get("origin")
            .and_then(|o| o.get("kind"))
            .and_then(Value::as_str)
            == Some("task-notification");
        if is_follow_up {
            self.notified = false;
        }
        if (running_in_background || self.notified) && !is_error {
            return;
        }
        // Whatever is still open ended with the turn.
        let open: Vec<String> = self.children.difference(&self.ended).cloned().collect();
        for id in open {
            let state = if is_error {
                WorkUnitState::Failed
            } else {
                WorkUnitState::Completed
            };
            let error = is_error.then(|| "the session ended in error".to_owned());
            self.end(steps, &id, state, error);
        }
        steps.push(Step::Finished {
            text: answer,
            error: self.turn_error.take(),
            model_usage: std::mem::take(&mut self.turn_usage),
        });
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

    /// The CLI's arguments for a session of `call`'s agent: model, allowed tools, permission
    /// mode, turns, budget and system prompt from the call and its spec.
    fn args(call: &AgentCall, grants: &Grants) -> Vec<String> {
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
        let mode = match grants.mode {
            PermissionMode::Plan => "plan",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Bypass => "bypassPermissions",
            _ => "default",
        };
        args.extend(["--permission-mode".into(), mode.into()]);
        if grants.mode != PermissionMode::Bypass {
            args.extend(["--permission-prompt-tool".into(), "stdio".into()]);
            let allowed = grants.claude_allowed();
            if !allowed.is_empty() {
                args.extend(["--allowedTools".into(), allowed.join(",")]);
            }
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

    /// Starts a `claude` process for `call`'s agent: a session whose turns share one
    /// conversation (and one process).
    ///
    /// # Errors
    /// [`AgentError::Worker`] when the CLI cannot be started.
    pub fn open(&self, call: &AgentCall) -> Result<ClaudeCodeSession, AgentError> {
        let grants = Grants::of(call);
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(Self::args(call, &grants))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(call.workdir.as_ref().unwrap_or(&self.workdir));
        let process = CliProcess::spawn("claude", &mut command, |e| {
            AgentError::Worker(format!(
                "cannot start {}: {e} (is Claude Code installed? `npm install -g \
                 @anthropic-ai/claude-code`, or set FLEET_CLAUDE_BIN)",
                self.program.display()
            ))
        })?;
        Ok(ClaudeCodeSession {
            process,
            stream: ClaudeStream::new(),
            prices: Arc::clone(&self.prices),
            grants,
            turns: 0,
        })
    }
}

impl AgentRunner for ClaudeCodeRunner {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let mut session = match self.open(&call) {
            Ok(session) => session,
            Err(e) => {
                let model = call
                    .model
                    .clone()
                    .or_else(|| call.agent.as_ref().map(|a| a.model.clone()))
                    .unwrap_or_else(|| "claude-sonnet-4-5".into());
                let root = open_root(&call, &ctx, &model).await?;
                let result = Err(e);
                close_tree(&ctx, root, &result).await?;
                return result;
            }
        };
        let result = session.turn(call, ctx).await;
        session.close().await;
        result
    }
}

/// One `claude` process: its turns share a conversation.
#[derive(Debug)]
pub struct ClaudeCodeSession {
    process: CliProcess,
    stream: ClaudeStream,
    prices: Arc<PriceTable>,
    grants: Grants,
    turns: u32,
}

impl ClaudeCodeSession {
    /// The CLI's session id, once its first turn began.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.stream.session_id()
    }

    /// The process id of the CLI.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Turns taken so far.
    #[must_use]
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Runs one turn: `call`'s prompt as the next user message of the conversation, recorded as
    /// a work unit (the context's pre-recorded one, or a new child of its parent) with the
    /// subagents it started as children.
    ///
    /// # Errors
    /// [`AgentError::Cancelled`] when the context is cancelled (the CLI is interrupted, then
    /// stopped); [`AgentError::Worker`] when the CLI exits before the turn's result (with its
    /// exit status and stderr tail) or the session already ended; [`AgentError::NoAnswer`] when
    /// the CLI reports an error.
    pub async fn turn(
        &mut self,
        call: AgentCall,
        ctx: CallContext,
    ) -> Result<AgentOutcome, AgentError> {
        let model = call
            .model
            .clone()
            .or_else(|| call.agent.as_ref().map(|a| a.model.clone()))
            .or_else(|| self.stream.model().map(str::to_owned))
            .unwrap_or_else(|| "claude-sonnet-4-5".into());
        let root = open_root(&call, &ctx, &model).await?;
        let result = match self.process.usable() {
            Ok(()) => self.exchange(&call, &ctx, root, &model).await,
            Err(e) => Err(e),
        };
        self.process.settle(&result);
        self.turns += 1;
        close_tree(&ctx, root, &result).await?;
        result
    }

    async fn exchange(
        &mut self,
        call: &AgentCall,
        ctx: &CallContext,
        root: WorkUnitId,
        model: &str,
    ) -> Result<AgentOutcome, AgentError> {
        self.stream.begin_turn();
        let prices = Arc::clone(&self.prices);
        let mut recorder = Recorder::new(ctx, &prices, root);
        self.process.write(&json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": call.prompt}]}}))
            .await?;
        let finished = loop {
            let next = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    self.interrupt(&mut recorder).await;
                    return Err(AgentError::Cancelled);
                }
                next = self.process.next_line() => next?,
            };
            let Some(line) = next else {
                return Err(self.process.died().await);
            };
            let mut finished = None;
            for step in self.stream.line(&line) {
                if let Some(done) = recorder.apply(step).await? {
                    finished = Some(done);
                }
            }
            for request in self.stream.take_requests() {
                self.answer(request, &mut recorder).await?;
            }
            if let Some(done) = finished {
                break done;
            }
        };
        if let Some(session) = self.stream.session_id() {
            let refs = ProviderRefs {
                provider: NAME.into(),
                thread: Some(session.to_owned()),
                turn: Some(format!("turn-{}", self.turns + 1)),
                item: None,
                task: None,
            };
            set_refs(ctx, root, refs).await?;
        }
        let text = finished.map_err(AgentError::NoAnswer)?;
        let output = recorder
            .plan
            .clone()
            .map(|plan| json!({"plan": plan, "text": text}));
        Ok(AgentOutcome {
            work_unit_id: root,
            text,
            output,
            model: model.to_owned(),
            usage: recorder.usage,
            cost: recorder.cost,
            model_requests: recorder.requests,
            tool_calls: recorder.tool_calls,
        })
    }

    /// Answers a permission request from the agent's grants; in plan mode, the request to
    /// leave it is refused and its plan recorded.
    async fn answer(
        &mut self,
        request: PermissionRequest,
        recorder: &mut Recorder<'_>,
    ) -> Result<(), AgentError> {
        if request.tool.is_empty() {
            let what = request
                .input
                .get("subtype")
                .and_then(Value::as_str)
                .unwrap_or("this request")
                .to_owned();
            return self.process.write(&json!({"type": "control_response", "response": {"subtype": "error", "request_id": request.request_id, "error": format!("fleet does not handle {what}")}}))
                .await;
        }
        let who = self.stream.caller(request.tool_use_id.as_deref());
        let verdict = if request.tool == "ExitPlanMode" && self.grants.mode == PermissionMode::Plan
        {
            let plan = request
                .input
                .get("plan")
                .and_then(Value::as_str)
                .or_else(|| self.stream.plan(request.tool_use_id.as_deref()))
                .unwrap_or_default()
                .to_owned();
            recorder
                .apply(Step::Activity {
                    target: who.clone(),
                    kind: ActivityKind::ProposedPlan { plan },
                })
                .await?;
            Err(
                "fleet recorded this plan for approval. Stay in plan mode: do not make \
                 changes; end your turn now."
                    .to_owned(),
            )
        } else {
            self.grants.claude_tool(&request.tool)
        };
        let response = match &verdict {
            Ok(()) => json!({"behavior": "allow", "updatedInput": request.input}),
            Err(why) => {
                recorder
                    .apply(Step::Activity {
                        target: who,
                        kind: ActivityKind::Log {
                            level: fleet_core::LogLevel::Info,
                            message: format!("refused {}: {why}", request.tool),
                        },
                    })
                    .await?;
                json!({"behavior": "deny", "message": why})
            }
        };
        self.process.write(&json!({"type": "control_response", "response": {"subtype": "success", "request_id": request.request_id, "response": response}}))
            .await
    }

    /// The CLI's interrupt control request; the turn's last lines are recorded for a moment,
    /// then the process is stopped.
    async fn interrupt(&mut self, recorder: &mut Recorder<'_>) {
        let interrupt = json!({"type": "control_request", "request_id": "fleet-interrupt", "request": {"subtype": "interrupt"}});
        if self.process.write(&interrupt).await.is_ok() {
            let _ = tokio::time::timeout(GRACE, async {
                while let Ok(Some(line)) = self.process.next_line().await {
                    for step in self.stream.line(&line) {
                        match step {
                            Step::Finished { .. } => return,
                            // What it did and spent is kept; every open unit ends cancelled.
                            Step::Activity { .. } | Step::Usage { .. } => {
                                let _ = recorder.apply(step).await;
                            }
                            _ => {}
                        }
                    }
                }
            })
            .await;
        }
        self.process.kill("it was interrupted").await;
    }

    /// Ends the session: the CLI's input is closed and it gets a moment to exit before it is
    /// killed.
    pub async fn close(self) {
        self.process.close().await;
    }
}
