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
//! The files: `wire` (the stream's lines as types, both ways), `stream` ([`ClaudeStream`]: a
//! line in, steps out, no I/O), `session` ([`ClaudeCodeSession`]: one process, its turns); the
//! runner is here.

use std::path::PathBuf;
use std::sync::Arc;

use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::pricing::PriceTable;
use fleet_core::spec::PermissionMode;

pub use self::session::ClaudeCodeSession;
pub use self::stream::{ClaudeStream, PermissionRequest};
use crate::runner::coding_cli::{CliProcess, Grants, close_tree, open_root};
pub use crate::runner::coding_cli::{Step, Target};

mod session;
mod stream;
mod wire;

/// The provider's name in work units' provider references.
pub const NAME: &str = "claude-code";

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
        Ok(ClaudeCodeSession::new(
            process,
            Arc::clone(&self.prices),
            grants,
        ))
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
