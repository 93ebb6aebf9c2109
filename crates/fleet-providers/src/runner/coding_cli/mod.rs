//! What the coding-agent CLI runners ([`crate::runner::coding_cli::claude_code`], [`crate::runner::coding_cli::codex`]) share: the
//! [`Step`]s their stream readers produce, the recorder that applies steps to the journal as a
//! work-unit tree, the answers to permission requests from an agent's capabilities, and the
//! stderr tail of a CLI that died.

pub mod claude_code;
pub mod codex;

use std::collections::HashMap;

use fleet_core::activity::ActivityKind;
use fleet_core::spec::{Capability, PermissionMode};
use fleet_core::{
    AgentCall, AgentError, CallContext, Cost, PriceTable, ProviderRefs, TokenUsage, WorkUnitDraft,
    WorkUnitId, WorkUnitKind, WorkUnitState,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// How long a CLI gets to exit after its input is closed, or to end an interrupted turn, before
/// it is killed.
pub(crate) const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a step applies: the turn's root, or one of its subagents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The call's own unit.
    Root,
    /// The subagent with this key (Claude Code: its `tool_use_id`; Codex: its thread id).
    Child(String),
}

/// What a line of a CLI's stream asks to record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// A subagent appeared (pending until it starts).
    OpenChild {
        /// Its key.
        key: String,
        /// Who started it.
        parent: Target,
        /// Its description.
        label: Option<String>,
        /// Its agent type.
        agent: Option<String>,
        /// Its model, when the stream says.
        model: Option<String>,
    },
    /// A subagent is running; its provider references (said again when they grow).
    StartChild {
        /// Its key.
        key: String,
        /// Its provider references.
        refs: ProviderRefs,
    },
    /// A subagent ended.
    EndChild {
        /// Its key.
        key: String,
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
    /// The turn's final line.
    Finished {
        /// The answer.
        text: String,
        /// Why the turn failed, when it did.
        error: Option<String>,
        /// The CLI's own usage by model for the turn, when it reports one (Claude Code's
        /// `modelUsage`): what it says beyond what the steps recorded is put on the root.
        model_usage: Vec<(String, TokenUsage)>,
    },
}

/// Applies steps to the journal: children by key, usage priced per model.
pub(crate) struct Recorder<'a> {
    pub(crate) ctx: &'a CallContext,
    prices: &'a PriceTable,
    pub(crate) root: WorkUnitId,
    units: HashMap<String, WorkUnitId>,
    /// What was recorded per model, so only the rest of a CLI's totals goes on the root.
    recorded: HashMap<String, TokenUsage>,
    pub(crate) cost: Cost,
    pub(crate) usage: TokenUsage,
    /// Tool calls the root made.
    pub(crate) tool_calls: u32,
    /// Usage reports (one per model request).
    pub(crate) requests: u32,
    /// The plan the turn proposed, if any.
    pub(crate) plan: Option<String>,
    /// Units whose model is known.
    modeled: std::collections::HashSet<WorkUnitId>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(ctx: &'a CallContext, prices: &'a PriceTable, root: WorkUnitId) -> Self {
        Self {
            ctx,
            prices,
            root,
            units: HashMap::new(),
            recorded: HashMap::new(),
            cost: Cost::default(),
            usage: TokenUsage::default(),
            tool_calls: 0,
            requests: 0,
            plan: None,
            modeled: std::collections::HashSet::new(),
        }
    }

    /// The unit a target names (the root for a child not seen).
    pub(crate) fn unit(&self, target: &Target) -> WorkUnitId {
        match target {
            Target::Root => self.root,
            Target::Child(key) => self.units.get(key).copied().unwrap_or(self.root),
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

    /// A subagent whose model the stream did not name runs on the model of its first usage.
    async fn name_model(&self, unit: WorkUnitId, model: &str) -> Result<(), AgentError> {
        let record = self
            .ctx
            .journal
            .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
            .await;
        if let Some(mut record) = record.filter(|r| r.model.is_none() && !r.state.is_terminal()) {
            record.model = Some(model.to_owned());
            self.ctx
                .journal
                .execute(fleet_core::Command::UpsertWorkUnit(record))
                .await?;
        }
        Ok(())
    }

    /// Records `step`; a `Finished` step returns the turn's answer or its error.
    pub(crate) async fn apply(
        &mut self,
        step: Step,
    ) -> Result<Option<Result<String, String>>, AgentError> {
        let journal = &self.ctx.journal;
        match step {
            Step::OpenChild {
                key,
                parent,
                label,
                agent,
                model,
            } => {
                if !self.units.contains_key(&key) {
                    let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
                    draft.state = WorkUnitState::Pending;
                    draft.label = label;
                    draft.agent = agent;
                    draft.model = model;
                    let parent = self.unit(&parent);
                    let unit = journal.start_work_unit(parent, draft).await?;
                    self.units.insert(key, unit);
                }
            }
            Step::StartChild { key, refs } => {
                if let Some(unit) = self.units.get(&key).copied() {
                    let record = journal
                        .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
                        .await;
                    // A unit that ended never runs again.
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
            Step::EndChild { key, state, error } => {
                if let Some(unit) = self.units.get(&key).copied() {
                    let open = journal
                        .read(|t| t.work_unit(unit).is_some_and(|u| !u.state.is_terminal()))
                        .await;
                    if open {
                        journal.set_state(unit, state, error).await?;
                    }
                }
            }
            Step::Activity { target, kind } => {
                if target == Target::Root && matches!(kind, ActivityKind::ToolCall { .. }) {
                    self.tool_calls += 1;
                }
                if let ActivityKind::ProposedPlan { plan } = &kind {
                    self.plan = Some(plan.clone());
                }
                journal.activity(self.unit(&target), kind).await?;
            }
            Step::Usage {
                target,
                model,
                usage,
            } => {
                let unit = self.unit(&target);
                self.requests += 1;
                if unit != self.root && !model.is_empty() && self.modeled.insert(unit) {
                    self.name_model(unit, &model).await?;
                }
                self.usage(unit, &model, usage).await?;
            }
            Step::Finished {
                text,
                error,
                model_usage,
            } => {
                for (model, total) in model_usage {
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
                return Ok(Some(match error {
                    None => Ok(text),
                    Some(e) => Err(e),
                }));
            }
        }
        Ok(None)
    }
}

/// The call's unit: the pre-recorded one (now running on `model`) or a new child of the
/// context's parent.
pub(crate) async fn open_root(
    call: &AgentCall,
    ctx: &CallContext,
    model: &str,
) -> Result<WorkUnitId, AgentError> {
    let journal = &ctx.journal;
    Ok(match ctx.work_unit {
        Some(unit) => {
            journal.set_running(unit, Some(model.to_owned())).await?;
            unit
        }
        None => {
            let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
            draft.label = Some(call.display_label());
            draft.agent = call.agent.as_ref().map(|a| a.name.clone());
            draft.model = Some(model.to_owned());
            journal.start_work_unit(ctx.parent, draft).await?
        }
    })
}

/// Ends the turn's tree: children still open end with the root, which ends as `result` says.
pub(crate) async fn close_tree<T>(
    ctx: &CallContext,
    root: WorkUnitId,
    result: &Result<T, AgentError>,
) -> Result<(), AgentError> {
    let journal = &ctx.journal;
    let (state, error) = match result {
        Ok(_) => (WorkUnitState::Completed, None),
        Err(AgentError::Cancelled) => (WorkUnitState::Cancelled, Some("cancelled".to_owned())),
        Err(e) => (WorkUnitState::Failed, Some(e.to_string())),
    };
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
        journal.set_state(unit, state, error.clone()).await?;
    }
    let open = journal
        .read(|t| t.work_unit(root).is_some_and(|u| !u.state.is_terminal()))
        .await;
    if open {
        journal.set_state(root, state, error).await?;
    }
    Ok(())
}

/// A coding-agent CLI's process, spoken to in JSON lines on its stdio.
#[derive(Debug)]
pub(crate) struct CliProcess {
    /// What to call it in errors (`claude`, `codex app-server`).
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    tail: Option<tokio::task::JoinHandle<String>>,
    /// Why it can take no more work.
    pub(crate) ended: Option<String>,
}

impl CliProcess {
    /// Starts `command` with piped stdio (killed when dropped); `cannot_start` words the error.
    pub(crate) fn spawn(
        name: &'static str,
        command: &mut tokio::process::Command,
        cannot_start: impl FnOnce(&std::io::Error) -> AgentError,
    ) -> Result<Self, AgentError> {
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| cannot_start(&e))?;
        let missing = |what: &str| AgentError::Worker(format!("{name} has no {what}"));
        let stdin = child.stdin.take().ok_or_else(|| missing("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| missing("stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| missing("stderr"))?;
        Ok(Self {
            name,
            child,
            stdin: Some(stdin),
            lines: BufReader::new(stdout).lines(),
            tail: Some(stderr_tail(stderr)),
            ended: None,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Writes `message` as one line.
    pub(crate) async fn write(
        &mut self,
        message: &impl serde::Serialize,
    ) -> Result<(), AgentError> {
        let mut line = serde_json::to_vec(message).unwrap_or_default();
        line.push(b'\n');
        let name = self.name;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| AgentError::Worker(format!("{name}'s input is closed")))?;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| AgentError::Worker(format!("cannot write to {name}: {e}")))
    }

    /// Whether it can take a turn; if not, why (as the turn's error).
    pub(crate) fn usable(&self) -> Result<(), AgentError> {
        match &self.ended {
            Some(why) => Err(AgentError::Worker(format!(
                "the {} session ended: {why}",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// After a turn: one that failed leaves the session unusable (its conversation is in an
    /// unknown state).
    pub(crate) fn settle<T>(&mut self, result: &Result<T, AgentError>) {
        if result.is_err() && self.ended.is_none() {
            self.ended = Some("a turn failed".into());
        }
    }

    /// Closes its input (a CLI that reads more from an open stdin then goes on without).
    pub(crate) fn close_input(&mut self) {
        self.stdin = None;
    }

    /// The next line; `None` at the end of its output.
    pub(crate) async fn next_line(&mut self) -> Result<Option<String>, AgentError> {
        self.lines
            .next_line()
            .await
            .map_err(|e| AgentError::Worker(format!("reading {}'s output: {e}", self.name)))
    }

    /// It stopped talking: the error says so with its exit status and stderr tail.
    pub(crate) async fn died(&mut self) -> AgentError {
        self.stdin = None;
        let status = match self.child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let tail = match self.tail.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        let why = with_tail(
            format!("{} ended before its turn did ({status})", self.name),
            &tail,
        );
        self.ended = Some(why.clone());
        AgentError::Worker(why)
    }

    /// Kills it: it can take no more work, for `why`.
    pub(crate) async fn kill(&mut self, why: &str) {
        self.ended = Some(why.to_owned());
        self.stdin = None;
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Closes its input and gives it a moment to exit before it is killed.
    pub(crate) async fn close(mut self) {
        self.stdin = None;
        if tokio::time::timeout(GRACE, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// The last lines a CLI wrote to stderr, read in the background.
pub(crate) fn stderr_tail(
    mut stderr: impl AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    })
}

/// `message` and, when there is one, the stderr tail after a colon.
pub(crate) fn with_tail(message: String, tail: &str) -> String {
    if tail.trim().is_empty() {
        message
    } else {
        format!("{message}: {}", tail.trim())
    }
}

/// What an agent may do, from its spec's capabilities, tools and permission mode (or the
/// call's own capabilities): the answers to a CLI's permission requests.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    pub(crate) agent: String,
    capabilities: Vec<Capability>,
    tools: Vec<String>,
    pub(crate) mode: PermissionMode,
}

impl Grants {
    pub(crate) fn of(call: &AgentCall) -> Self {
        let spec = call.agent.as_deref();
        Self {
            agent: spec.map_or_else(|| "the agent".to_owned(), |s| s.name.clone()),
            capabilities: call
                .capabilities
                .clone()
                .or_else(|| spec.map(|s| s.capabilities.clone()))
                .unwrap_or_default(),
            tools: spec.map(|s| s.tools.clone()).unwrap_or_default(),
            mode: spec
                .and_then(|s| s.permission_mode)
                .unwrap_or(PermissionMode::Default),
        }
    }

    pub(crate) fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
            || (capability == Capability::WriteFiles
                && matches!(self.mode, PermissionMode::AcceptEdits))
    }

    /// The capability a Claude Code tool needs (`None`: harmless bookkeeping any agent may do).
    fn claude_needs(tool: &str) -> Option<Capability> {
        Some(match tool {
            "Read" | "Glob" | "Grep" | "LS" | "NotebookRead" => Capability::ReadFiles,
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => Capability::WriteFiles,
            "Bash" | "BashOutput" | "KillBash" | "KillShell" | "Monitor" => Capability::RunCommands,
            "Agent" | "Task" => Capability::SpawnSubagents,
            "TodoWrite" | "ToolSearch" | "ExitPlanMode" | "EnterPlanMode" => return None,
            // Anything else (web, MCP, scheduling, …) must be named in the spec's `tools`.
            _ => Capability::RunCommands,
        })
    }

    /// The Claude Code tools the agent may use without being asked (`--allowedTools`).
    pub(crate) fn claude_allowed(&self) -> Vec<String> {
        let mut tools: Vec<String> = [
            "Read",
            "Glob",
            "Grep",
            "LS",
            "NotebookRead",
            "Write",
            "Edit",
            "MultiEdit",
            "NotebookEdit",
            "Bash",
            "BashOutput",
            "KillShell",
            "Agent",
            "Task",
        ]
        .into_iter()
        .filter(|t| {
            Self::claude_needs(t).is_some_and(|c| self.has(c))
                && !(self.mode == PermissionMode::Plan && Self::changes_things(t))
        })
        .map(str::to_owned)
        .collect();
        tools.extend(self.tools.iter().cloned());
        tools
    }

    fn changes_things(tool: &str) -> bool {
        matches!(
            Self::claude_needs(tool),
            Some(Capability::WriteFiles | Capability::RunCommands)
        )
    }

    /// Whether the agent may use Claude Code's `tool`; the refusal says why and what to grant.
    pub(crate) fn claude_tool(&self, tool: &str) -> Result<(), String> {
        if self.tools.iter().any(|t| t == tool) {
            return Ok(());
        }
        if self.mode == PermissionMode::Plan && Self::changes_things(tool) {
            return Err(format!(
                "fleet: {} is in plan mode and may not use {tool}; propose a plan instead",
                self.agent
            ));
        }
        match Self::claude_needs(tool) {
            None => Ok(()),
            Some(c) if self.has(c) => Ok(()),
            Some(c) => Err(format!(
                "fleet: {} may not use {tool}: its spec does not grant the `{}` capability \
                 (add it to `capabilities`, or name the tool in `tools`)",
                self.agent,
                capability_name(c)
            )),
        }
    }

    /// Whether the agent may run a command; the refusal says why.
    pub(crate) fn command(&self, command: &str) -> Result<(), String> {
        if self.mode == PermissionMode::Plan || !self.has(Capability::RunCommands) {
            return Err(format!(
                "fleet: {} may not run `{command}`: {}",
                self.agent,
                if self.mode == PermissionMode::Plan {
                    "it is in plan mode".to_owned()
                } else {
                    "its spec does not grant the `run_commands` capability".to_owned()
                }
            ));
        }
        Ok(())
    }

    /// Whether the agent may change files; the refusal says why.
    pub(crate) fn file_change(&self) -> Result<(), String> {
        if self.mode == PermissionMode::Plan || !self.has(Capability::WriteFiles) {
            return Err(format!(
                "fleet: {} may not change files: {}",
                self.agent,
                if self.mode == PermissionMode::Plan {
                    "it is in plan mode".to_owned()
                } else {
                    "its spec does not grant the `write_files` capability".to_owned()
                }
            ));
        }
        Ok(())
    }
}

fn capability_name(c: Capability) -> &'static str {
    match c {
        Capability::ReadFiles => "read_files",
        Capability::WriteFiles => "write_files",
        Capability::RunCommands => "run_commands",
        Capability::SpawnSubagents => "spawn_subagents",
        _ => "unknown",
    }
}

/// Records the provider references of a unit that is still open.
pub(crate) async fn set_refs(
    ctx: &CallContext,
    unit: WorkUnitId,
    refs: ProviderRefs,
) -> Result<(), AgentError> {
    let record = ctx
        .journal
        .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
        .await;
    if let Some(mut record) = record.filter(|r| !r.state.is_terminal()) {
        record.provider_refs = Some(refs);
        record.updated_at = fleet_core::Timestamp::now();
        ctx.journal
            .execute(fleet_core::Command::UpsertWorkUnit(record))
            .await?;
    }
    Ok(())
}

/// For the CLIs' wire types: a field that may be missing or `null` reads as its default.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Option::unwrap_or_default)
}
