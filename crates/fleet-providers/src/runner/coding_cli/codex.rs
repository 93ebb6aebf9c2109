//! Codex as a fleet agent: the real `codex app-server` driven over JSON-RPC on stdio, its
//! notifications mapped into work units; `codex exec --json` for one-shot calls.
//!
//! [`CodexStream`] is the pure part: it reads the app-server's notifications (one JSON object a
//! line) and says what to record ([`Step`]s). A [`CodexSession`] is one app-server process and
//! one Codex thread (started, or resumed by id): `initialize` → `initialized` → `thread/start`
//! (or `thread/resume`), then per [`turn`](CodexSession::turn) a `turn/start`, the approvals
//! Codex asks for answered from the agent's capabilities, and `turn/interrupt` on cancel.
//! [`CodexRunner`] runs each agent call as a session of one turn, or with
//! [`exec`](CodexRunner::exec) as one `codex exec --json`, read by [`CodexExecStream`].
//!
//! Mapping (see `shared/specs/providers.md`, "Codex CLI" and "Into work units"): the turn is the
//! root; items become activities of the unit whose thread they arrive on; a `collabAgentToolCall`
//! spawn (or a `subAgentActivity` start) opens a `delegated_agent` child for each receiver
//! thread, under the unit that spawned it. Child threads' events come on the same connection
//! under the child's `threadId`, possibly before the spawn item names the child: they are held
//! until it does (or, when nothing ever does, put under the root when the turn ends). A child's
//! `turn/completed` never ends the parent turn, and its state comes from `agentsStates`, not
//! from the spawn call's status. Token usage (`thread/tokenUsage/updated`, `last`) goes to the
//! unit of its thread, priced per model.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::spec::{Capability, PermissionMode};
use fleet_core::{
    AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext, PriceTable, ProviderRefs,
    TokenUsage, WorkUnitId, WorkUnitState,
};
use serde_json::{Value, json};

use crate::runner::coding_cli::{
    CliProcess, GRACE, Grants, Recorder, Step, Target, close_tree, open_root, set_refs,
};

/// The provider's name in work units' provider references.
pub const NAME: &str = "codex";

/// How long the app-server gets to answer `initialize` and `thread/start`.
const STARTUP: Duration = Duration::from_secs(60);

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or("");
    if first.chars().count() > 60 {
        format!("{}…", first.chars().take(59).collect::<String>())
    } else {
        first.to_owned()
    }
}

/// A subagent's state from Codex's `agentsStates` (camelCase from the app-server, snake_case
/// from `codex exec`); `None` while it runs.
fn agent_state(state: &Value) -> Option<(WorkUnitState, Option<String>)> {
    let message = text(state, "message");
    match state.get("status").and_then(Value::as_str)? {
        "completed" => Some((WorkUnitState::Completed, None)),
        "errored" => Some((
            WorkUnitState::Failed,
            Some(message.unwrap_or_else(|| "the subagent failed".into())),
        )),
        "interrupted" | "shutdown" => Some((
            WorkUnitState::Cancelled,
            Some("the subagent was stopped".into()),
        )),
        "notFound" | "not_found" => Some((
            WorkUnitState::Failed,
            Some("Codex lost track of the subagent".into()),
        )),
        _ => None,
    }
}

/// OpenAI-style usage: cached tokens are part of the input.
fn openai_usage(u: &Value, input: &str, cached: &str, output: &str) -> TokenUsage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    TokenUsage::from_openai(n(input), n(output), n(cached))
}

/// Items common to both streams: a tool-like item's call and result.
fn item_activities(target: &Target, item: &Value, completed: bool, steps: &mut Vec<Step>) {
    let id = text(item, "id").unwrap_or_default();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
    let status = text(item, "status").unwrap_or_default();
    let failed = matches!(status.as_str(), "failed" | "declined");
    let (name, input, output, is_error) = match kind {
        "commandExecution" | "command_execution" => (
            "command".to_owned(),
            json!({"command": item.get("command"), "cwd": item.get("cwd")}),
            item.get("aggregatedOutput")
                .or_else(|| item.get("aggregated_output"))
                .cloned()
                .unwrap_or(Value::Null),
            failed
                || item
                    .get("exitCode")
                    .or_else(|| item.get("exit_code"))
                    .and_then(Value::as_i64)
                    .is_some_and(|c| c != 0),
        ),
        "fileChange" | "file_change" => (
            "apply_patch".to_owned(),
            json!({"changes": item.get("changes")}),
            Value::String(status.clone()),
            failed,
        ),
        "mcpToolCall" | "mcp_tool_call" => (
            format!(
                "{}/{}",
                text(item, "server").unwrap_or_default(),
                text(item, "tool").unwrap_or_default()
            ),
            item.get("arguments").cloned().unwrap_or(Value::Null),
            item.get("error")
                .filter(|e| !e.is_null())
                .or_else(|| item.get("result"))
                .cloned()
                .unwrap_or(Value::Null),
            failed || item.get("error").is_some_and(|e| !e.is_null()),
        ),
        "webSearch" | "web_search" => (
            "web_search".to_owned(),
            json!({"query": item.get("query")}),
            Value::Null,
            failed,
        ),
        "collabAgentToolCall" | "collab_tool_call" => (
            text(item, "tool").unwrap_or_default(),
            json!({
                "prompt": item.get("prompt"),
                "receivers": item.get("receiverThreadIds").or_else(|| item.get("receiver_thread_ids")),
            }),
            item.get("agentsStates")
                .or_else(|| item.get("agents_states"))
                .cloned()
                .unwrap_or(Value::Null),
            failed,
        ),
        _ => return,
    };
    let kind = if completed {
        ActivityKind::ToolResult {
            call_id: id,
            output,
            is_error,
        }
    } else {
        ActivityKind::ToolCall {
            call_id: id,
            name,
            input,
        }
    };
    steps.push(Step::Activity {
        target: target.clone(),
        kind,
    });
}

/// A subagent thread seen on the connection.
#[derive(Debug, Clone)]
struct ChildThread {
    /// The spawn item that announced it.
    item: Option<String>,
    /// Its current turn.
    turn: Option<String>,
}

/// Reads `codex app-server` notifications for one turn of a thread.
#[derive(Debug, Default)]
pub struct CodexStream {
    thread: String,
    turn: Option<String>,
    /// Each thread's model.
    models: HashMap<String, String>,
    children: HashMap<String, ChildThread>,
    ended: HashSet<String>,
    /// Notifications of threads no spawn has named yet.
    held: Vec<(String, Value)>,
    /// The root's last message.
    answer: String,
    finished: bool,
}

impl CodexStream {
    /// A reader for a turn of `thread`, whose model is `model`.
    #[must_use]
    pub fn new(thread: impl Into<String>, model: impl Into<String>) -> Self {
        let thread = thread.into();
        let mut models = HashMap::new();
        models.insert(thread.clone(), model.into());
        Self {
            thread,
            models,
            ..Self::default()
        }
    }

    /// The turn, once `turn/start` or `turn/started` said it.
    #[must_use]
    pub fn turn(&self) -> Option<&str> {
        self.turn.as_deref()
    }

    /// Sets the turn id (from `turn/start`'s response).
    pub fn set_turn(&mut self, turn: &str) {
        self.turn.get_or_insert_with(|| turn.to_owned());
    }

    /// The unit a thread's events belong to; `None` for a thread not yet announced.
    fn target(&self, thread: &str) -> Option<Target> {
        if thread == self.thread {
            Some(Target::Root)
        } else if self.children.contains_key(thread) {
            Some(Target::Child(thread.to_owned()))
        } else {
            None
        }
    }

    fn refs(&self, thread: &str) -> ProviderRefs {
        let child = self.children.get(thread);
        ProviderRefs {
            provider: NAME.into(),
            thread: Some(thread.to_owned()),
            turn: child.and_then(|c| c.turn.clone()),
            item: child.and_then(|c| c.item.clone()),
            task: None,
        }
    }

    /// Opens the child thread `thread` under `parent` (once), then replays what was held for it.
    fn open_child(
        &mut self,
        thread: &str,
        parent: Target,
        item: Option<String>,
        label: Option<String>,
        model: Option<String>,
        steps: &mut Vec<Step>,
    ) {
        if thread == self.thread || self.children.contains_key(thread) {
            return;
        }
        if let Some(model) = model.clone().filter(|m| !m.is_empty()) {
            self.models.insert(thread.to_owned(), model);
        }
        self.children
            .insert(thread.to_owned(), ChildThread { item, turn: None });
        steps.push(Step::OpenChild {
            key: thread.to_owned(),
            parent,
            label: label.or_else(|| Some(format!("subagent {}", short(thread)))),
            agent: None,
            model: self.models.get(thread).cloned(),
        });
        steps.push(Step::StartChild {
            key: thread.to_owned(),
            refs: self.refs(thread),
        });
        let held: Vec<Value> = {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|(t, _)| t == thread);
            self.held = rest;
            mine.into_iter().map(|(_, v)| v).collect()
        };
        for msg in held {
            steps.extend(self.notification(&msg));
        }
    }

    fn end_child(
        &mut self,
        thread: &str,
        state: WorkUnitState,
        error: Option<String>,
        steps: &mut Vec<Step>,
    ) {
        if self.children.contains_key(thread) && self.ended.insert(thread.to_owned()) {
            steps.push(Step::EndChild {
                key: thread.to_owned(),
                state,
                error,
            });
        }
    }

    /// What one notification (`{"method", "params"}`) asks to record.
    pub fn notification(&mut self, msg: &Value) -> Vec<Step> {
        let mut steps = Vec::new();
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let Some(thread) = params.get("threadId").and_then(Value::as_str) else {
            return steps;
        };
        let Some(target) = self.target(thread) else {
            // A child thread's events can come before the spawn that names it.
            if !self.finished {
                self.held.push((thread.to_owned(), msg.clone()));
            }
            return steps;
        };
        match method {
            "turn/started" => {
                let turn = params.get("turn").and_then(|t| text(t, "id"));
                match &target {
                    Target::Root => {
                        if let Some(turn) = turn {
                            self.set_turn(&turn);
                        }
                    }
                    Target::Child(key) => {
                        if let Some(child) = self.children.get_mut(key) {
                            child.turn = turn;
                        }
                        if !self.ended.contains(key) {
                            steps.push(Step::StartChild {
                                key: key.clone(),
                                refs: self.refs(key),
                            });
                        }
                    }
                }
            }
            "item/started" | "item/completed" => {
                let completed = method == "item/completed";
                let item = params.get("item").cloned().unwrap_or(Value::Null);
                self.item(&target, &item, completed, &mut steps);
            }
            "thread/tokenUsage/updated" => {
                let last = params
                    .get("tokenUsage")
                    .and_then(|u| u.get("last"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let usage = openai_usage(&last, "inputTokens", "cachedInputTokens", "outputTokens");
                if usage.total() > 0 {
                    steps.push(Step::Usage {
                        model: self.models.get(thread).cloned().unwrap_or_default(),
                        target,
                        usage,
                    });
                }
            }
            "error" => {
                let message = params
                    .get("error")
                    .and_then(|e| text(e, "message"))
                    .unwrap_or_else(|| "error".into());
                steps.push(Step::Activity {
                    target,
                    kind: ActivityKind::Log {
                        level: fleet_core::LogLevel::Warn,
                        message: format!("codex: {message}"),
                    },
                });
            }
            "turn/completed" => {
                let turn = params.get("turn").cloned().unwrap_or(Value::Null);
                let id = text(&turn, "id");
                // Only the root thread's own turn ends the fleet turn.
                if target != Target::Root || (self.turn.is_some() && id != self.turn) {
                    return steps;
                }
                // Threads never announced belong to this turn: under the root.
                while let Some((orphan, _)) = self.held.first().cloned() {
                    self.open_child(&orphan, Target::Root, None, None, None, &mut steps);
                }
                self.finished = true;
                let error = match turn.get("status").and_then(Value::as_str) {
                    Some("failed") => Some(format!(
                        "codex failed: {}",
                        turn.get("error")
                            .and_then(|e| text(e, "message"))
                            .unwrap_or_else(|| "no reason given".into())
                    )),
                    Some("interrupted") => Some("codex: the turn was interrupted".to_owned()),
                    _ => None,
                };
                steps.push(Step::Finished {
                    text: self.answer.clone(),
                    error,
                    model_usage: Vec::new(),
                });
            }
            _ => {}
        }
        steps
    }

    fn item(&mut self, target: &Target, item: &Value, completed: bool, steps: &mut Vec<Step>) {
        match item.get("type").and_then(Value::as_str).unwrap_or("") {
            "agentMessage" if completed => {
                let said = text(item, "text").unwrap_or_default();
                if *target == Target::Root {
                    self.answer.clone_from(&said);
                }
                steps.push(Step::Activity {
                    target: target.clone(),
                    kind: ActivityKind::Message {
                        role: Role::Assistant,
                        text: said,
                    },
                });
            }
            "collabAgentToolCall" => {
                item_activities(target, item, completed, steps);
                let spawn = text(item, "tool").as_deref() == Some("spawnAgent");
                let receivers: Vec<String> = item
                    .get("receiverThreadIds")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if spawn {
                    for thread in &receivers {
                        self.open_child(
                            thread,
                            target.clone(),
                            text(item, "id"),
                            text(item, "prompt").map(|p| short(&p)),
                            text(item, "model"),
                            steps,
                        );
                    }
                }
                for (thread, state) in item
                    .get("agentsStates")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some((state, error)) = agent_state(state) {
                        self.end_child(thread, state, error, steps);
                    }
                }
            }
            "subAgentActivity" => {
                let Some(thread) = text(item, "agentThreadId") else {
                    return;
                };
                match item.get("kind").and_then(Value::as_str) {
                    Some("started") => self.open_child(
                        &thread,
                        target.clone(),
                        text(item, "id"),
                        text(item, "agentPath"),
                        text(item, "model"),
                        steps,
                    ),
                    Some("completed") => {
                        self.end_child(&thread, WorkUnitState::Completed, None, steps);
                    }
                    Some("interrupted") => self.end_child(
                        &thread,
                        WorkUnitState::Cancelled,
                        Some("the subagent was interrupted".into()),
                        steps,
                    ),
                    _ => {}
                }
            }
            _ => item_activities(target, item, completed, steps),
        }
    }
}

/// Reads `codex exec --json` output (one JSON event a line) for one call.
#[derive(Debug, Default)]
pub struct CodexExecStream {
    model: String,
    thread: Option<String>,
    children: HashSet<String>,
    ended: HashSet<String>,
    answer: String,
    malformed: u64,
}

impl CodexExecStream {
    /// A reader for a call on `model`.
    #[must_use]
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// The thread, once `thread.started` said it.
    #[must_use]
    pub fn thread(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    /// What `line` asks to record; a line that is not a JSON object is logged and skipped.
    pub fn line(&mut self, line: &str) -> Vec<Step> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        let Ok(msg @ Value::Object(_)) = serde_json::from_str::<Value>(line) else {
            self.malformed += 1;
            return vec![Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::LogLevel::Warn,
                    message: format!(
                        "codex: skipped a line that is not a JSON object: {}",
                        line.chars().take(120).collect::<String>()
                    ),
                },
            }];
        };
        let mut steps = Vec::new();
        match msg.get("type").and_then(Value::as_str).unwrap_or("") {
            "thread.started" => self.thread = text(&msg, "thread_id"),
            kind @ ("item.started" | "item.updated" | "item.completed") => {
                let item = msg.get("item").cloned().unwrap_or(Value::Null);
                let completed = kind == "item.completed";
                match item.get("type").and_then(Value::as_str).unwrap_or("") {
                    "agent_message" if completed => {
                        self.answer = text(&item, "text").unwrap_or_default();
                        steps.push(Step::Activity {
                            target: Target::Root,
                            kind: ActivityKind::Message {
                                role: Role::Assistant,
                                text: self.answer.clone(),
                            },
                        });
                    }
                    "error" if completed => steps.push(Step::Activity {
                        target: Target::Root,
                        kind: ActivityKind::Log {
                            level: fleet_core::LogLevel::Warn,
                            message: format!(
                                "codex: {}",
                                text(&item, "message").unwrap_or_default()
                            ),
                        },
                    }),
                    "collab_tool_call" => {
                        if kind != "item.updated" {
                            item_activities(&Target::Root, &item, completed, &mut steps);
                        }
                        self.collab(&item, &mut steps);
                    }
                    _ if kind != "item.updated" => {
                        item_activities(&Target::Root, &item, completed, &mut steps);
                    }
                    _ => {}
                }
            }
            "turn.completed" => {
                let usage = msg.get("usage").cloned().unwrap_or(Value::Null);
                steps.push(Step::Usage {
                    target: Target::Root,
                    model: self.model.clone(),
                    usage: openai_usage(
                        &usage,
                        "input_tokens",
                        "cached_input_tokens",
                        "output_tokens",
                    ),
                });
                steps.push(Step::Finished {
                    text: self.answer.clone(),
                    error: None,
                    model_usage: Vec::new(),
                });
            }
            "turn.failed" => steps.push(Step::Finished {
                text: self.answer.clone(),
                error: Some(format!(
                    "codex failed: {}",
                    msg.get("error")
                        .and_then(|e| text(e, "message"))
                        .unwrap_or_else(|| "no reason given".into())
                )),
                model_usage: Vec::new(),
            }),
            "error" => steps.push(Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::LogLevel::Warn,
                    message: format!("codex: {}", text(&msg, "message").unwrap_or_default()),
                },
            }),
            _ => {}
        }
        steps
    }

    /// `codex exec` shows a spawn and the states `wait` reports, never the child's own events.
    fn collab(&mut self, item: &Value, steps: &mut Vec<Step>) {
        let item_id = text(item, "id");
        if text(item, "tool").as_deref() == Some("spawn_agent") {
            for thread in item
                .get("receiver_thread_ids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if self.children.insert(thread.to_owned()) {
                    steps.push(Step::OpenChild {
                        key: thread.to_owned(),
                        parent: Target::Root,
                        label: text(item, "prompt").map(|p| short(&p)),
                        agent: None,
                        model: None,
                    });
                    steps.push(Step::StartChild {
                        key: thread.to_owned(),
                        refs: ProviderRefs {
                            provider: NAME.into(),
                            thread: Some(thread.to_owned()),
                            turn: None,
                            item: item_id.clone(),
                            task: None,
                        },
                    });
                }
            }
        }
        for (thread, state) in item
            .get("agents_states")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some((state, error)) = agent_state(state)
                && self.children.contains(thread)
                && self.ended.insert(thread.clone())
            {
                steps.push(Step::EndChild {
                    key: thread.clone(),
                    state,
                    error,
                });
            }
        }
    }
}

/// Runs agent calls on Codex.
#[derive(Debug, Clone)]
pub struct CodexRunner {
    program: PathBuf,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    prices: Arc<PriceTable>,
    exec: bool,
}

fn model_of(call: &AgentCall) -> String {
    call.model
        .clone()
        .or_else(|| call.agent.as_ref().map(|a| a.model.clone()))
        .unwrap_or_else(|| "gpt-5".into())
}

/// The sandbox Codex runs commands in for these grants.
fn sandbox(grants: &Grants) -> &'static str {
    if grants.mode == PermissionMode::Bypass {
        "danger-full-access"
    } else if grants.mode != PermissionMode::Plan && grants.has(Capability::WriteFiles) {
        "workspace-write"
    } else {
        "read-only"
    }
}

impl CodexRunner {
    /// Runs `program` (the `codex` CLI) in `workdir` with `env` added to its environment.
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
            exec: false,
        }
    }

    /// Adds a variable to the CLI's environment (`CODEX_HOME`, a key, …).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs each call as one `codex exec --json` instead of an app-server session: lighter,
    /// but Codex shows no subagent's own events there.
    #[must_use]
    pub fn exec(mut self) -> Self {
        self.exec = true;
        self
    }

    fn command(&self, call: &AgentCall) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(call.workdir.as_ref().unwrap_or(&self.workdir));
        command
    }

    fn cannot_start(&self, e: &std::io::Error) -> AgentError {
        AgentError::Worker(format!(
            "cannot start {}: {e} (is Codex installed? `npm install -g @openai/codex`, or set \
             FLEET_CODEX_BIN)",
            self.program.display()
        ))
    }

    /// Starts `codex app-server` and a thread for `call`'s agent (or resumes `thread`): a
    /// session whose turns share the thread.
    ///
    /// # Errors
    /// [`AgentError::Worker`] when the app-server cannot be started or refuses the thread.
    pub async fn open(
        &self,
        call: &AgentCall,
        thread: Option<&str>,
    ) -> Result<CodexSession, AgentError> {
        let grants = Grants::of(call);
        let process = CliProcess::spawn(
            "codex app-server",
            self.command(call).arg("app-server"),
            |e| self.cannot_start(e),
        )?;
        let model = model_of(call);
        let mut session = CodexSession {
            process,
            prices: Arc::clone(&self.prices),
            grants,
            next_id: 0,
            thread: String::new(),
            model: model.clone(),
            turns: 0,
        };
        let started = tokio::time::timeout(STARTUP, async {
            session
                .request(
                    "initialize",
                    json!({"clientInfo": {"name": "fleet", "title": "fleet", "version": env!("CARGO_PKG_VERSION")}}),
                )
                .await?;
            session.notify("initialized", Value::Null).await?;
            let mut params = json!({
                "model": model,
                "cwd": call.workdir.as_ref().unwrap_or(&self.workdir),
                "approvalPolicy": if session.grants.mode == PermissionMode::Bypass { "never" } else { "untrusted" },
                "sandbox": sandbox(&session.grants),
            });
            if let Some(system) = call.agent.as_ref().and_then(|a| a.system.clone()) {
                params["developerInstructions"] = Value::String(system);
            }
            let result = match thread {
                Some(id) => {
                    params["threadId"] = Value::String(id.to_owned());
                    session.request("thread/resume", params).await?
                }
                None => session.request("thread/start", params).await?,
            };
            let thread = result
                .get("thread")
                .and_then(|t| text(t, "id"))
                .ok_or_else(|| AgentError::Worker(format!("codex started no thread: {result}")))?;
            if let Some(model) = result.get("model").and_then(Value::as_str) {
                session.model = model.to_owned();
            }
            session.thread = thread;
            Ok::<_, AgentError>(())
        })
        .await;
        match started {
            Ok(Ok(())) => Ok(session),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(AgentError::Worker(
                "codex app-server did not start a thread within a minute".into(),
            )),
        }
    }

    async fn run_exec(
        &self,
        call: &AgentCall,
        ctx: &CallContext,
        root: WorkUnitId,
    ) -> Result<AgentOutcome, AgentError> {
        let grants = Grants::of(call);
        let model = model_of(call);
        let mut command = self.command(call);
        command.args([
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--model",
            &model,
            "--sandbox",
            sandbox(&grants),
        ]);
        if let Some(system) = call.agent.as_ref().and_then(|a| a.system.clone()) {
            command.args([
                "-c",
                &format!("developer_instructions={}", Value::String(system)),
            ]);
        }
        command.arg(&call.prompt);
        let mut process = CliProcess::spawn("codex exec", &mut command, |e| self.cannot_start(e))?;
        // `codex exec` reads more input from an open stdin: it gets none.
        process.close_input();
        let mut stream = CodexExecStream::new(&model);
        let mut recorder = Recorder::new(ctx, &self.prices, root);
        let mut finished = None;
        loop {
            let next = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    process.kill("cancelled").await;
                    return Err(AgentError::Cancelled);
                }
                next = process.next_line() => next?,
            };
            let Some(line) = next else { break };
            for step in stream.line(&line) {
                if let Some(done) = recorder.apply(step).await? {
                    finished = Some(done);
                }
            }
        }
        let Some(finished) = finished else {
            return Err(process.died().await);
        };
        process.close().await;
        if let Some(thread) = stream.thread() {
            set_refs(
                ctx,
                root,
                ProviderRefs {
                    provider: NAME.into(),
                    thread: Some(thread.to_owned()),
                    turn: None,
                    item: None,
                    task: None,
                },
            )
            .await?;
        }
        let text = finished.map_err(AgentError::NoAnswer)?;
        Ok(AgentOutcome {
            work_unit_id: root,
            text,
            output: None,
            model,
            usage: recorder.usage,
            cost: recorder.cost,
            model_requests: recorder.requests,
            tool_calls: recorder.tool_calls,
        })
    }
}

impl AgentRunner for CodexRunner {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        if self.exec {
            let root = open_root(&call, &ctx, &model_of(&call)).await?;
            let result = self.run_exec(&call, &ctx, root).await;
            close_tree(&ctx, root, &result).await?;
            return result;
        }
        let mut session = match self.open(&call, None).await {
            Ok(session) => session,
            Err(e) => {
                let root = open_root(&call, &ctx, &model_of(&call)).await?;
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

/// One `codex app-server` process and one Codex thread: its turns share the conversation.
#[derive(Debug)]
pub struct CodexSession {
    process: CliProcess,
    prices: Arc<PriceTable>,
    grants: Grants,
    next_id: u64,
    thread: String,
    model: String,
    turns: u32,
}

impl CodexSession {
    /// The Codex thread (give it to [`CodexRunner::open`] to resume it later).
    #[must_use]
    pub fn thread_id(&self) -> &str {
        &self.thread
    }

    /// The process id of the app-server.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    async fn notify(&mut self, method: &str, params: Value) -> Result<(), AgentError> {
        let mut message = json!({"method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.process.write(&message).await
    }

    /// Sends a request and returns its id.
    async fn send(&mut self, method: &str, params: Value) -> Result<u64, AgentError> {
        self.next_id += 1;
        let id = self.next_id;
        self.process
            .write(&json!({"id": id, "method": method, "params": params}))
            .await?;
        Ok(id)
    }

    /// A request outside a turn: what arrives before its response (warnings, `thread/started`)
    /// concerns no turn and is skipped; server requests are refused.
    async fn request(&mut self, method: &str, params: Value) -> Result<Value, AgentError> {
        let id = self.send(method, params).await?;
        loop {
            let msg = self.next_message().await?;
            if msg.get("method").is_some() {
                if msg.get("id").is_some() {
                    self.refuse(&msg, "fleet has no turn running").await?;
                }
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) == Some(id) {
                return response(method, &msg);
            }
        }
    }

    async fn next_message(&mut self) -> Result<Value, AgentError> {
        loop {
            let Some(line) = self.process.next_line().await? else {
                return Err(self.process.died().await);
            };
            if let Ok(msg @ Value::Object(_)) = serde_json::from_str::<Value>(&line) {
                return Ok(msg);
            }
            // Not JSON: skipped (the app-server writes its logs to stderr).
        }
    }

    async fn refuse(&mut self, msg: &Value, why: &str) -> Result<(), AgentError> {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        self.process
            .write(&json!({"id": id, "error": {"code": -32601, "message": why}}))
            .await
    }

    /// Runs one turn: `call`'s prompt as the next user input of the thread, recorded as a work
    /// unit (the context's pre-recorded one, or a new child of its parent) with the subagents
    /// Codex spawned as children.
    ///
    /// # Errors
    /// [`AgentError::Cancelled`] when the context is cancelled (the turn is interrupted);
    /// [`AgentError::Worker`] when the app-server dies or refuses the turn;
    /// [`AgentError::NoAnswer`] when the turn fails.
    pub async fn turn(
        &mut self,
        call: AgentCall,
        ctx: CallContext,
    ) -> Result<AgentOutcome, AgentError> {
        let model = call.model.clone().unwrap_or_else(|| self.model.clone());
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
        let prices = Arc::clone(&self.prices);
        let mut recorder = Recorder::new(ctx, &prices, root);
        let mut stream = CodexStream::new(self.thread.clone(), model);
        let mut params = json!({
            "threadId": self.thread,
            "input": [{"type": "text", "text": call.prompt}],
        });
        if call.model.is_some() {
            params["model"] = Value::String(model.to_owned());
        }
        let start = self.send("turn/start", params).await?;
        let finished = loop {
            let msg = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    self.interrupt(&mut stream, &mut recorder).await;
                    return Err(AgentError::Cancelled);
                }
                msg = self.next_message() => msg?,
            };
            let mut finished = None;
            match (msg.get("id"), msg.get("method")) {
                // A server request: an approval, answered from the agent's grants.
                (Some(_), Some(_)) => self.approve(&msg, &stream, &mut recorder).await?,
                (Some(id), None) => {
                    if id.as_u64() == Some(start) {
                        let result = response("turn/start", &msg)?;
                        if let Some(turn) = result.get("turn").and_then(|t| text(t, "id")) {
                            stream.set_turn(&turn);
                        }
                    }
                }
                (None, Some(_)) => {
                    for step in stream.notification(&msg) {
                        if let Some(done) = recorder.apply(step).await? {
                            finished = Some(done);
                        }
                    }
                }
                (None, None) => {}
            }
            if let Some(done) = finished {
                break done;
            }
        };
        set_refs(
            ctx,
            root,
            ProviderRefs {
                provider: NAME.into(),
                thread: Some(self.thread.clone()),
                turn: stream.turn().map(str::to_owned),
                item: None,
                task: None,
            },
        )
        .await?;
        let text = finished.map_err(AgentError::NoAnswer)?;
        Ok(AgentOutcome {
            work_unit_id: root,
            text,
            output: None,
            model: model.to_owned(),
            usage: recorder.usage,
            cost: recorder.cost,
            model_requests: recorder.requests,
            tool_calls: recorder.tool_calls,
        })
    }

    /// Answers an approval request from the agent's grants; other requests are refused.
    async fn approve(
        &mut self,
        msg: &Value,
        stream: &CodexStream,
        recorder: &mut Recorder<'_>,
    ) -> Result<(), AgentError> {
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let command = match params.get("command") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let (verdict, legacy) = match method {
            "item/commandExecution/requestApproval" => (self.grants.command(&command), false),
            "execCommandApproval" => (self.grants.command(&command), true),
            "item/fileChange/requestApproval" => (self.grants.file_change(), false),
            "applyPatchApproval" => (self.grants.file_change(), true),
            _ => {
                return self
                    .refuse(msg, &format!("fleet does not handle {method}"))
                    .await;
            }
        };
        let decision = match (&verdict, legacy) {
            (Ok(()), false) => "accept",
            (Err(_), false) => "decline",
            (Ok(()), true) => "approved",
            (Err(_), true) => "denied",
        };
        if let Err(why) = &verdict {
            let thread = params.get("threadId").and_then(Value::as_str).unwrap_or("");
            let target = stream.target(thread).unwrap_or(Target::Root);
            recorder
                .apply(Step::Activity {
                    target,
                    kind: ActivityKind::Log {
                        level: fleet_core::LogLevel::Info,
                        message: format!("refused {method}: {why}"),
                    },
                })
                .await?;
        }
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        self.process
            .write(&json!({"id": id, "result": {"decision": decision}}))
            .await
    }

    /// `turn/interrupt`, a moment for the turn to end (recording what it did), then the process
    /// is stopped.
    async fn interrupt(&mut self, stream: &mut CodexStream, recorder: &mut Recorder<'_>) {
        if let Some(turn) = stream.turn().map(str::to_owned) {
            let thread = self.thread.clone();
            if self
                .send(
                    "turn/interrupt",
                    json!({"threadId": thread, "turnId": turn}),
                )
                .await
                .is_ok()
            {
                let _ = tokio::time::timeout(GRACE, async {
                    while let Ok(msg) = self.next_message().await {
                        if msg.get("id").is_some() {
                            continue;
                        }
                        for step in stream.notification(&msg) {
                            match step {
                                Step::Finished { .. } => return,
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
        }
        self.process.kill("it was interrupted").await;
    }

    /// Ends the session: the app-server's input is closed and it gets a moment to exit before it
    /// is killed.
    pub async fn close(self) {
        self.process.close().await;
    }
}

/// A JSON-RPC response's result, or its error as an [`AgentError::Worker`].
fn response(method: &str, msg: &Value) -> Result<Value, AgentError> {
    if let Some(error) = msg.get("error") {
        return Err(AgentError::Worker(format!(
            "codex refused {method}: {}",
            text(error, "message").unwrap_or_else(|| error.to_string())
        )));
    }
    Ok(msg.get("result").cloned().unwrap_or(Value::Null))
}
