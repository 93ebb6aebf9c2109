//! Codex as a fleet agent: the real `codex app-server` driven over JSON-RPC on stdio, its
//! notifications mapped into work units; `codex exec --json` for one-shot calls.
//!
//! [`CodexStream`] is the pure part: it reads the app-server's notifications (one JSON object a
//! line) and says what to record ([`Step`](super::Step)s). A [`CodexSession`] is one app-server process and
//! one Codex thread (started, or resumed by id): `initialize` → `initialized` → `thread/start`
//! (or `thread/resume`), then per [`turn`](CodexSession::turn) a `turn/start`, the approvals
//! Codex asks for answered from the agent's capabilities, and `turn/interrupt` on cancel.
//! [`CodexRunner`] runs each agent call as a session of one turn, or with
//! [`exec`](CodexRunner::exec) as one `codex exec --json`, read by [`CodexExecStream`].
//!
//! Mapping (see `docs/providers.md`, "The wire formats"): the turn is the
//! root; items become activities of the unit whose thread they arrive on; a `collabAgentToolCall`
//! spawn (or a `subAgentActivity` start) opens a `delegated_agent` child for each receiver
//! thread, under the unit that spawned it. Child threads' events come on the same connection
//! under the child's `threadId`, possibly before the spawn item names the child: they are held
//! until it does (or, when nothing ever does, put under the root when the turn ends). A child's
//! `turn/completed` never ends the parent turn, and its state comes from `agentsStates`, not
//! from the spawn call's status. Token usage (`thread/tokenUsage/updated`, `last`) goes to the
//! unit of its thread, priced per model.
//!
//! The files: `wire` (the notifications, `exec` events and items as types, in both of Codex's
//! spellings), `items` (what an item becomes), `app_server` ([`CodexStream`]), `exec`
//! ([`CodexExecStream`]), `session` ([`CodexSession`] and its JSON-RPC framing); the runner is
//! here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::id::WorkUnitId;
use fleet_core::pricing::PriceTable;
use fleet_core::spec::{Capability, PermissionMode};
use fleet_core::work_unit::ProviderRefs;
use serde_json::{Value, json};

use crate::runner::coding_cli::{
    CliProcess, Grants, TreeRecorder, close_tree, open_root, set_refs,
};

mod app_server;
mod exec;
mod items;
mod session;
mod wire;

pub use self::app_server::CodexStream;
pub use self::exec::CodexExecStream;
pub use self::session::CodexSession;
use self::session::text;

/// The provider's name in work units' provider references.
pub const NAME: &str = "codex";

/// How long the app-server gets to answer `initialize` and `thread/start`.
const STARTUP: Duration = Duration::from_secs(60);

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
        let mut recorder = TreeRecorder::new(ctx, &self.prices, root);
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
