//! Tools an agent can call. Built-in tools are granted by the agent's capabilities; embedders
//! add their own by implementing [`Tool`].
//!
//! Errors a tool meets (a missing file, a patch that does not apply, a command that cannot
//! start) go back to the model as tool errors, never out of the agent call.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_core::provider::{BoxFuture, ToolSpec};
use fleet_core::spec::{Capability, SpecSet};
use fleet_core::{
    AgentCall, AgentOutcome, CallContext, CancelToken, CommandRequest, CommandSandbox,
    DynAgentRunner, DynCommandSandbox, WorkUnitDraft, WorkUnitId, WorkUnitKind, WorkUnitState,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::patch;

/// What a tool call returns to the model: text, and whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The text the model reads.
    pub content: String,
    /// Whether the tool failed.
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    #[must_use]
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failure the model should read and react to.
    #[must_use]
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// What a tool call can reach.
#[derive(Clone)]
pub struct ToolContext {
    /// The directory paths are relative to; tools cannot leave it.
    pub workdir: PathBuf,
    /// Runs commands (`None`: `run_command` is not offered).
    pub commands: Option<Arc<dyn DynCommandSandbox>>,
    /// The calling agent's context (its unit, journal, budgets, cancellation).
    pub call: CallContext,
    /// The calling agent's unit.
    pub unit: WorkUnitId,
    pub(crate) subagents: Subagents,
}

impl std::fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolContext")
            .field("workdir", &self.workdir)
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

/// A tool the model may call.
pub trait Tool: Send + Sync {
    /// Its name, description and input schema.
    fn spec(&self) -> ToolSpec;

    /// Runs it.
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput>;
}

fn spec(name: &str, description: &str, schema: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        input_schema: schema,
    }
}

fn str_arg<'a>(input: &'a Value, key: &str) -> Result<&'a str, ToolOutput> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolOutput::error(format!("missing string argument \"{key}\"")))
}

/// `path` inside `workdir`, refusing anything that leads outside it.
fn resolve(workdir: &Path, path: &str) -> Result<PathBuf, ToolOutput> {
    let relative = Path::new(path);
    let mut out = workdir.to_path_buf();
    for part in relative.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) if relative.starts_with(workdir) => {
                let rest = relative.strip_prefix(workdir).unwrap_or(relative);
                return resolve(workdir, &rest.to_string_lossy());
            }
            _ => {
                return Err(ToolOutput::error(format!(
                    "{path}: paths must stay inside the working directory {}",
                    workdir.display()
                )));
            }
        }
    }
    // A symlink could still lead out; check where the existing part really is.
    let mut existing = out.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    if let (Ok(real), Ok(root)) = (existing.canonicalize(), workdir.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(ToolOutput::error(format!(
            "{path}: leads outside the working directory through a symbolic link"
        )));
    }
    Ok(out)
}

const MAX_READ: usize = 256 * 1024;

struct ReadFile;
impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "read_file",
            "Read a UTF-8 text file. Lines are numbered from 1; use offset/limit for long files.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path relative to the working directory"},
                "offset": {"type": "integer", "minimum": 1, "description": "First line (from 1)"},
                "limit": {"type": "integer", "minimum": 1, "description": "Most lines"}
            }, "required": ["path"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let path = match str_arg(&input, "path").and_then(|p| resolve(&ctx.workdir, p)) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let text = match tokio::fs::read(&path).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => return ToolOutput::error(format!("{}: {e}", path.display())),
            };
            let offset = input
                .get("offset")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let limit = input
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let mut out = String::new();
            for (n, line) in (1u64..)
                .zip(text.lines())
                .skip((offset - 1) as usize)
                .take(limit as usize)
            {
                if out.len() > MAX_READ {
                    out.push_str(&format!(
                        "… (cut at {MAX_READ} bytes; read on with offset={n})\n"
                    ));
                    break;
                }
                out.push_str(&format!("{n:>6}\t{line}\n"));
            }
            ToolOutput::ok(out)
        })
    }
}

struct ListDir;
impl Tool for ListDir {
    fn spec(&self) -> ToolSpec {
        spec(
            "list_dir",
            "List a directory: one entry a line, directories ending in '/'.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Directory relative to the working directory (default '.')"}
            }}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let rel = input.get("path").and_then(Value::as_str).unwrap_or(".");
            let path = match resolve(&ctx.workdir, rel) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let mut entries = match tokio::fs::read_dir(&path).await {
                Ok(e) => e,
                Err(e) => return ToolOutput::error(format!("{rel}: {e}")),
            };
            let mut names = Vec::new();
            while let Ok(Some(entry)) = entries.next_entry().await {
                let mut name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                    name.push('/');
                }
                names.push(name);
            }
            names.sort();
            ToolOutput::ok(names.join("\n"))
        })
    }
}

struct SearchText;
const MAX_MATCHES: usize = 200;
const SKIP_DIRS: [&str; 4] = [".git", "target", "node_modules", ".fleet"];

fn search(root: &Path, dir: &Path, needle: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        if out.len() >= MAX_MATCHES {
            return;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !SKIP_DIRS.iter().any(|s| entry.file_name() == *s) {
                search(root, &path, needle, out);
            }
        } else if kind.is_file()
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            for (n, line) in (1..).zip(text.lines()) {
                if line.contains(needle) {
                    out.push(format!("{shown}:{n}: {}", line.trim()));
                    if out.len() >= MAX_MATCHES {
                        return;
                    }
                }
            }
        }
    }
}

impl Tool for SearchText {
    fn spec(&self) -> ToolSpec {
        spec(
            "search_text",
            "Find lines containing a literal string in the files under a path (skips .git, target, node_modules). Answers file:line: text.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string", "minLength": 1},
                "path": {"type": "string", "description": "Where to search (default '.')"}
            }, "required": ["pattern"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let pattern = match str_arg(&input, "pattern") {
                Ok(p) if !p.is_empty() => p.to_owned(),
                Ok(_) => return ToolOutput::error("pattern must not be empty"),
                Err(e) => return e,
            };
            let rel = input.get("path").and_then(Value::as_str).unwrap_or(".");
            let path = match resolve(&ctx.workdir, rel) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let root = ctx.workdir.clone();
            let found = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                if path.is_file() {
                    search(&root, path.parent().unwrap_or(&root), &pattern, &mut out);
                    let name = path
                        .strip_prefix(&root)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    out.retain(|l| l.starts_with(&format!("{name}:")));
                } else {
                    search(&root, &path, &pattern, &mut out);
                }
                out
            })
            .await
            .unwrap_or_default();
            if found.is_empty() {
                ToolOutput::ok("no matches")
            } else {
                let more = if found.len() >= MAX_MATCHES {
                    "\n… (more matches; narrow the path)"
                } else {
                    ""
                };
                ToolOutput::ok(found.join("\n") + more)
            }
        })
    }
}

struct WriteFile;
impl Tool for WriteFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "write_file",
            "Create or overwrite a text file (parent directories are created).",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let (path, content) = match (
                str_arg(&input, "path").and_then(|p| resolve(&ctx.workdir, p)),
                str_arg(&input, "content"),
            ) {
                (Ok(p), Ok(c)) => (p, c.to_owned()),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            if let Some(parent) = path.parent()
                && let Err(e) = tokio::fs::create_dir_all(parent).await
            {
                return ToolOutput::error(format!("{}: {e}", parent.display()));
            }
            match tokio::fs::write(&path, content.as_bytes()).await {
                Ok(()) => ToolOutput::ok(format!(
                    "wrote {} bytes to {}",
                    content.len(),
                    path.display()
                )),
                Err(e) => ToolOutput::error(format!("{}: {e}", path.display())),
            }
        })
    }
}

struct EditFile;
impl Tool for EditFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "edit_file",
            "Edit a text file with a patch: hunks separated by '@@' lines; in a hunk, lines start with ' ' (context), '-' (remove) or '+' (add). Each hunk's old text must occur exactly once.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "patch": {"type": "string"}
            }, "required": ["path", "patch"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let (path, patch_text) = match (
                str_arg(&input, "path").and_then(|p| resolve(&ctx.workdir, p)),
                str_arg(&input, "patch"),
            ) {
                (Ok(p), Ok(c)) => (p, c.to_owned()),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) => return ToolOutput::error(format!("{}: {e}", path.display())),
            };
            match patch::apply(&text, &patch_text) {
                Ok(new) => match tokio::fs::write(&path, new.as_bytes()).await {
                    Ok(()) => ToolOutput::ok(format!("patched {}", path.display())),
                    Err(e) => ToolOutput::error(format!("{}: {e}", path.display())),
                },
                Err(e) => ToolOutput::error(format!("{}: {e}", path.display())),
            }
        })
    }
}

struct RunCommand;
impl Tool for RunCommand {
    fn spec(&self) -> ToolSpec {
        spec(
            "run_command",
            "Run a program (no shell unless you run one) in the working directory and get its exit status and output.",
            json!({"type": "object", "properties": {
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                         "description": "Program and arguments, e.g. [\"cargo\", \"test\"]"},
                "timeout_ms": {"type": "integer", "minimum": 1}
            }, "required": ["argv"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let Some(commands) = &ctx.commands else {
                return ToolOutput::error("no command runner is configured");
            };
            let argv: Vec<String> = input
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let Some((program, args)) = argv.split_first() else {
                return ToolOutput::error("argv must name a program");
            };
            let mut request = CommandRequest::new(program.clone(), args.to_vec(), &ctx.workdir);
            if let Some(ms) = input.get("timeout_ms").and_then(Value::as_u64) {
                request.timeout = Duration::from_millis(ms);
            }
            let result = tokio::select! {
                () = ctx.call.cancel.cancelled() => return ToolOutput::error("cancelled"),
                r = commands.run(request) => r,
            };
            match result {
                Ok(out) => {
                    let status = match (out.code, out.signal, out.timed_out) {
                        (_, _, true) => "killed after its timeout".to_owned(),
                        (Some(code), _, _) => format!("exit {code}"),
                        (None, Some(sig), _) => format!("killed by signal {sig}"),
                        (None, None, _) => "ended".to_owned(),
                    };
                    let mut text = format!(
                        "{status}\n--- stdout\n{}\n--- stderr\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    if out.dropped > 0 {
                        text.push_str(&format!("\n({} bytes of output dropped)", out.dropped));
                    }
                    ToolOutput {
                        content: text,
                        is_error: !out.success(),
                    }
                }
                Err(e) => ToolOutput::error(e.to_string()),
            }
        })
    }
}

/// A background subagent of one agent call.
#[derive(Debug)]
struct Task {
    unit: WorkUnitId,
    cancel: CancelToken,
    result: watch::Receiver<Option<Result<String, String>>>,
}

/// The background subagents of one agent call.
#[derive(Clone)]
pub(crate) struct Subagents {
    inner: Arc<Mutex<HashMap<String, Task>>>,
    pub(crate) runner: Option<Arc<dyn DynAgentRunner>>,
    /// Where calls naming a specialist go, when not to `runner`.
    pub(crate) delegate: Option<Arc<dyn DynAgentRunner>>,
    pub(crate) specs: Option<Arc<SpecSet>>,
}

impl Subagents {
    pub(crate) fn new(
        runner: Arc<dyn DynAgentRunner>,
        delegate: Option<Arc<dyn DynAgentRunner>>,
        specs: Option<Arc<SpecSet>>,
    ) -> Self {
        Self {
            inner: Arc::default(),
            runner: Some(runner),
            delegate,
            specs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancels every subagent still running (their units become `cancelled`).
    pub(crate) fn cancel_all(&self) {
        for task in self.lock().values() {
            task.cancel.cancel();
        }
    }

    /// Waits until every subagent has ended.
    pub(crate) async fn join_all(&self) {
        let receivers: Vec<_> = self.lock().values().map(|t| t.result.clone()).collect();
        for mut rx in receivers {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }
}

/// The error text of a cancelled subagent.
const CANCELLED: &str = "agent call cancelled";

fn state_text(result: Option<&Result<String, String>>) -> &'static str {
    match result {
        None => "running",
        Some(Ok(_)) => "completed",
        Some(Err(e)) if e == CANCELLED => "cancelled",
        Some(Err(_)) => "failed",
    }
}

struct SpawnSubagent;
impl Tool for SpawnSubagent {
    fn spec(&self) -> ToolSpec {
        spec(
            "spawn_subagent",
            "Start a background subagent on a task; returns its task id at once. Use subagent_status / subagent_result to follow it.",
            json!({"type": "object", "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "agent_type": {"type": "string", "description": "A specialist from agents/*.yaml (default: a plain agent)"},
                "label": {"type": "string"}
            }, "required": ["prompt"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let Some(runner) = ctx.subagents.runner.clone() else {
                return ToolOutput::error("subagents are not available here");
            };
            let prompt = match str_arg(&input, "prompt") {
                Ok(p) => p.to_owned(),
                Err(e) => return e,
            };
            let agent = match input.get("agent_type").and_then(Value::as_str) {
                None => None,
                Some(name) => match ctx.subagents.specs.as_ref().and_then(|s| s.get(name)) {
                    Some(spec) => Some(Arc::new(spec.clone())),
                    None => {
                        let known: Vec<&str> = ctx
                            .subagents
                            .specs
                            .as_ref()
                            .map(|s| s.specs.iter().map(|a| a.name.as_str()).collect())
                            .unwrap_or_default();
                        return ToolOutput::error(format!(
                            "no agent type {name:?}; known: {}",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                },
            };
            // A specialist runs where the delegate puts it (its sandboxed worker).
            let runner = match (&agent, &ctx.subagents.delegate) {
                (Some(_), Some(delegate)) => delegate.clone(),
                _ => runner,
            };
            let call = AgentCall {
                label: input
                    .get("label")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                agent,
                // A subagent works where its parent does (the parent's worktree, say).
                workdir: Some(ctx.workdir.clone()),
                ..AgentCall::new(prompt)
            };
            let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
            draft.state = WorkUnitState::Pending;
            draft.label = Some(call.display_label());
            draft.agent = call.agent.as_ref().map(|a| a.name.clone());
            let unit = match ctx.call.journal.start_work_unit(ctx.unit, draft).await {
                Ok(u) => u,
                Err(e) => return ToolOutput::error(format!("cannot record the subagent: {e}")),
            };
            let cancel = ctx.call.cancel.child_token();
            let child = CallContext {
                journal: ctx.call.journal.clone(),
                parent: ctx.unit,
                work_unit: Some(unit),
                budgets: ctx.call.budgets.clone(),
                charge_to: ctx.call.charge_to.clone(),
                cancel: cancel.clone(),
            };
            let (tx, rx) = watch::channel(None);
            let task_id = {
                let mut tasks = ctx.subagents.lock();
                // Numbered per spawning call: short, and the same in every replay.
                let id = format!("task_{}", tasks.len() + 1);
                tasks.insert(
                    id.clone(),
                    Task {
                        unit,
                        cancel,
                        result: rx,
                    },
                );
                id
            };
            tokio::spawn(async move {
                let result = runner
                    .run_dyn(call, child)
                    .await
                    .map(|o: AgentOutcome| o.output.map_or(o.text, |v| v.to_string()))
                    .map_err(|e| e.to_string());
                let _ = tx.send(Some(result));
            });
            ToolOutput::ok(json!({"task_id": task_id, "work_unit_id": unit}).to_string())
        })
    }
}

/// A task's id, unit, cancellation and result channel.
type TaskHandle = (String, WorkUnitId, CancelToken, ResultRx);
type ResultRx = watch::Receiver<Option<Result<String, String>>>;

fn task_arg(input: &Value, ctx: &ToolContext) -> Result<TaskHandle, ToolOutput> {
    let id = str_arg(input, "task_id")?;
    let tasks = ctx.subagents.lock();
    let task = tasks.get(id).ok_or_else(|| {
        let mut known: Vec<&String> = tasks.keys().collect();
        known.sort();
        ToolOutput::error(format!("no task {id:?}; this agent's tasks: {known:?}"))
    })?;
    Ok((
        id.to_owned(),
        task.unit,
        task.cancel.clone(),
        task.result.clone(),
    ))
}

fn task_schema() -> Value {
    json!({"type": "object", "properties": {"task_id": {"type": "string"}}, "required": ["task_id"]})
}

struct SubagentStatus;
impl Tool for SubagentStatus {
    fn spec(&self) -> ToolSpec {
        spec(
            "subagent_status",
            "The state of a background subagent: running, completed, failed or cancelled.",
            task_schema(),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            match task_arg(&input, ctx) {
                Ok((id, unit, cancel, rx)) => {
                    let state = if cancel.is_cancelled() && rx.borrow().is_none() {
                        "cancelling"
                    } else {
                        state_text(rx.borrow().as_ref())
                    };
                    ToolOutput::ok(
                        json!({"task_id": id, "work_unit_id": unit, "state": state}).to_string(),
                    )
                }
                Err(e) => e,
            }
        })
    }
}

struct SubagentResult;
impl Tool for SubagentResult {
    fn spec(&self) -> ToolSpec {
        spec(
            "subagent_result",
            "The answer of a background subagent. With wait=true (default) waits for it to end, up to timeout_ms; with wait=false answers at once.",
            json!({"type": "object", "properties": {
                "task_id": {"type": "string"},
                "wait": {"type": "boolean"},
                "timeout_ms": {"type": "integer", "minimum": 1}
            }, "required": ["task_id"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let (id, _, _, mut rx) = match task_arg(&input, ctx) {
                Ok(t) => t,
                Err(e) => return e,
            };
            let wait = input.get("wait").and_then(Value::as_bool).unwrap_or(true);
            if wait {
                let limit = Duration::from_millis(
                    input
                        .get("timeout_ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(600_000),
                );
                tokio::select! {
                    () = ctx.call.cancel.cancelled() => return ToolOutput::error("cancelled"),
                    _ = tokio::time::timeout(limit, rx.wait_for(Option::is_some)) => {}
                }
            }
            let result = rx.borrow().clone();
            match result {
                None => ToolOutput::ok(json!({"task_id": id, "state": "running"}).to_string()),
                Some(Ok(text)) => ToolOutput::ok(text),
                Some(Err(e)) if e == CANCELLED => {
                    ToolOutput::error(format!("subagent {id} was cancelled"))
                }
                Some(Err(e)) => ToolOutput::error(format!("subagent {id} failed: {e}")),
            }
        })
    }
}

struct CancelSubagent;
impl Tool for CancelSubagent {
    fn spec(&self) -> ToolSpec {
        spec(
            "cancel_subagent",
            "Stop a background subagent; its work unit becomes cancelled.",
            task_schema(),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            match task_arg(&input, ctx) {
                Ok((id, _, cancel, mut rx)) => {
                    cancel.cancel();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
                            .await;
                    ToolOutput::ok(json!({"task_id": id, "state": "cancelled"}).to_string())
                }
                Err(e) => e,
            }
        })
    }
}

/// The built-in tools `capabilities` grant (`run_command` only when commands can run).
pub(crate) fn builtin(capabilities: &[Capability], can_run: bool) -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    if capabilities.contains(&Capability::ReadFiles) {
        tools.extend([
            Arc::new(ReadFile) as Arc<dyn Tool>,
            Arc::new(ListDir),
            Arc::new(SearchText),
        ]);
    }
    if capabilities.contains(&Capability::WriteFiles) {
        tools.extend([Arc::new(WriteFile) as Arc<dyn Tool>, Arc::new(EditFile)]);
    }
    if capabilities.contains(&Capability::RunCommands) && can_run {
        tools.push(Arc::new(RunCommand));
    }
    if capabilities.contains(&Capability::SpawnSubagents) {
        tools.extend([
            Arc::new(SpawnSubagent) as Arc<dyn Tool>,
            Arc::new(SubagentStatus),
            Arc::new(SubagentResult),
            Arc::new(CancelSubagent),
        ]);
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(resolve(root, "a/b.txt").ok(), Some(root.join("a/b.txt")));
        assert!(resolve(root, "../etc/passwd").is_err());
        assert!(resolve(root, "/etc/passwd").is_err());
        let inside = root.join("x.txt").display().to_string();
        assert_eq!(resolve(root, &inside).ok(), Some(root.join("x.txt")));
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(resolve(root, "link/passwd").is_err());
    }
}
