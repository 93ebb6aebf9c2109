//! `fleet __worker`: a specialist worker process, started (sandboxed) by the supervisor and
//! spoken to over stdin/stdout (`fleet_core::ipc`). `initialize` names the agent; its spec's
//! name picks the role:
//!
//! - `patch-bot` applies a patch and retries until the tests pass, then commits the fix;
//! - `test-writer-bot` writes tests that pin new behaviour, checks that they fail before the
//!   behaviour exists, and commits them;
//! - `doc-bot` adds documentation to the changed items and commits it;
//! - any other agent runs its agent loop once per task.
//!
//! The worker holds no model credentials: every model turn goes to the supervisor's gateway
//! ([`Task::model`]), which meters and charges it. Tests are run with the command in the
//! task's `input.test_command` (an array: program and arguments), or the project's usual one.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::activity::LogLevel;
use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
use fleet_core::command::WorkUnitDraft;
use fleet_core::exec::{CommandRequest, CommandSandbox};
use fleet_core::ipc::{InitializeResult, TaskResult};
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::spec::AgentSpec;
use fleet_core::store::memory::MemoryStore;
use fleet_core::work_unit::WorkUnitKind;
use fleet_providers::{HostCommands, ModelAgentRunner};
use fleet_sandbox::worker::{Role, Task, WorkerContext, serve_stdio};
use fleet_sandbox::{CommitQueue, CommitRequest};
use serde_json::json;

/// How many patches patch-bot tries before it gives up.
const PATCH_ATTEMPTS: usize = 3;

/// Runs the worker on stdin/stdout until `shutdown`.
pub(crate) fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet worker: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_stdio(Specialist::default())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    PatchBot,
    TestWriter,
    DocBot,
    Plain,
}

struct Ready {
    spec: Arc<AgentSpec>,
    kind: Kind,
    workspace: PathBuf,
    commits: CommitQueue,
}

#[derive(Default)]
struct Specialist {
    ready: Option<Ready>,
}

impl Role for Specialist {
    async fn init(&mut self, ctx: &WorkerContext) -> Result<InitializeResult, String> {
        let spec: AgentSpec = serde_json::from_value(ctx.spec.clone())
            .map_err(|e| format!("initialize: the spec is not an agent spec: {e}"))?;
        match &ctx.gateway {
            Some(gateway) => eprintln!(
                "fleet worker {}: model turns go to the supervisor's gateway ({}, {})",
                spec.name, gateway.provider, gateway.model
            ),
            None => {
                return Err(
                    "the supervisor has no model gateway, so this worker cannot reach a model"
                        .into(),
                );
            }
        }
        let kind = match spec.name.as_str() {
            "patch-bot" => Kind::PatchBot,
            "test-writer-bot" => Kind::TestWriter,
            "doc-bot" => Kind::DocBot,
            _ => Kind::Plain,
        };
        self.ready = Some(Ready {
            spec: Arc::new(spec.clone()),
            kind,
            workspace: ctx.workspace.clone(),
            commits: CommitQueue::new(&ctx.workspace),
        });
        Ok(InitializeResult {
            role: spec.name,
            version: Some(env!("CARGO_PKG_VERSION").into()),
        })
    }

    async fn on_task(&self, task: Task) -> Result<TaskResult, String> {
        let ready = self.ready.as_ref().ok_or("the worker is not initialized")?;
        match ready.kind {
            Kind::PatchBot => patch(ready, &task).await,
            Kind::TestWriter => write_tests(ready, &task).await,
            Kind::DocBot => document(ready, &task).await,
            Kind::Plain => ask(ready, &task, task.prompt.clone())
                .await
                .map(|text| TaskResult { text, output: None }),
        }
    }
}

/// One run of the agent loop, its model turns through the gateway.
async fn ask(ready: &Ready, task: &Task, prompt: String) -> Result<String, String> {
    let runner = ModelAgentRunner::builder(task.model())
        .workdir(&ready.workspace)
        .commands(Arc::new(HostCommands))
        .build();
    let store: SharedStore = Arc::new(MemoryStore::new());
    let journal = Journal::create(store, None)
        .await
        .map_err(|e| e.to_string())?;
    let (_, root) = journal
        .start_turn(None, WorkUnitDraft::new(WorkUnitKind::PrimaryAgent))
        .await
        .map_err(|e| e.to_string())?;
    let call = AgentCall {
        agent: Some(ready.spec.clone()),
        ..AgentCall::new(prompt)
    };
    let mut ctx = CallContext::new(journal, root);
    ctx.cancel = task.cancel.clone();
    let outcome = runner.run(call, ctx).await.map_err(|e| e.to_string())?;
    Ok(outcome.text)
}

/// The task's test command, run in the workspace: whether it passed, and its output's end.
async fn run_tests(ready: &Ready, task: &Task) -> Result<(bool, String), String> {
    let command: Vec<String> = task
        .input
        .as_ref()
        .and_then(|i| i.get("test_command"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .filter(|c: &Vec<String>| !c.is_empty())
        .or_else(|| detect_tests(&ready.workspace))
        .ok_or(
            "no test command: pass `test_command` (program and arguments) in the task's input, \
             or work in a project whose tests fleet recognises (Cargo.toml, package.json, a Makefile \
             with a test target, Python test_*.py files)",
        )?;
    let mut request =
        CommandRequest::new(command[0].clone(), command[1..].to_vec(), &ready.workspace);
    request.timeout = Duration::from_secs(600);
    let out = HostCommands
        .run(request)
        .await
        .map_err(|e| format!("cannot run the tests: {e}"))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let tail: String = text
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Ok((out.success(), tail))
}

/// The usual test command of the project in `workspace`.
fn detect_tests(workspace: &std::path::Path) -> Option<Vec<String>> {
    let words = |w: &[&str]| Some(w.iter().map(|s| (*s).to_owned()).collect());
    if workspace.join("Cargo.toml").is_file() {
        return words(&["cargo", "test", "--quiet"]);
    }
    if workspace.join("package.json").is_file() {
        return words(&["npm", "test", "--silent"]);
    }
    if std::fs::read_to_string(workspace.join("Makefile"))
        .is_ok_and(|m| m.lines().any(|l| l.starts_with("test:")))
    {
        return words(&["make", "test"]);
    }
    let python_tests = std::fs::read_dir(workspace).ok()?.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("test_") && name.ends_with(".py")
    });
    if python_tests {
        return words(&["python3", "-m", "unittest", "-q"]);
    }
    None
}

/// Files that differ from the last commit (modified, added, deleted or new), by git status.
async fn dirty(workspace: &std::path::Path) -> Result<BTreeSet<PathBuf>, String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(workspace)
        .args([
            "-c",
            "core.quotePath=false",
            "status",
            "--porcelain",
            "-uall",
        ])
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git status failed in {}: {}",
            workspace.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.get(3..))
        .map(|path| PathBuf::from(path.rsplit(" -> ").next().unwrap_or(path)))
        .collect())
}

/// What the agent changed: the files dirty now that were clean before the task. Files the
/// tests then create (caches, build output) are not among them.
async fn agent_changes(
    ready: &Ready,
    before: &BTreeSet<PathBuf>,
) -> Result<BTreeSet<PathBuf>, String> {
    Ok(dirty(&ready.workspace)
        .await?
        .difference(before)
        .cloned()
        .collect())
}

/// Commits exactly `paths` (the agent's changes).
async fn commit(
    ready: &Ready,
    task: &Task,
    paths: &BTreeSet<PathBuf>,
) -> Result<Option<String>, String> {
    if paths.is_empty() {
        return Ok(None);
    }
    let first = task.prompt.lines().next().unwrap_or_default();
    let summary: String = first.chars().take(60).collect();
    ready
        .commits
        .commit(CommitRequest {
            message: format!("{}: {summary}", ready.spec.name),
            paths: paths.iter().cloned().collect(),
        })
        .await
}

/// patch-bot: patch, test, and again with the failure, until the tests pass; then commit.
async fn patch(ready: &Ready, task: &Task) -> Result<TaskResult, String> {
    let before = dirty(&ready.workspace).await?;
    let mut changed = BTreeSet::new();
    let mut prompt = task.prompt.clone();
    for attempt in 1..=PATCH_ATTEMPTS {
        task.progress(format!("patch attempt {attempt}"), None);
        let said = ask(ready, task, prompt.clone()).await?;
        changed.extend(agent_changes(ready, &before).await?);
        let (passed, output) = run_tests(ready, task).await?;
        if passed {
            let commit = commit(ready, task, &changed).await?;
            let text = match &commit {
                Some(id) => format!("{said}\n\nThe tests pass; the fix is commit {id}."),
                None => format!("{said}\n\nThe tests pass; nothing needed changing."),
            };
            return Ok(TaskResult {
                text,
                output: Some(json!({"commit": commit, "attempts": attempt})),
            });
        }
        task.log(
            LogLevel::Info,
            format!("attempt {attempt}: the tests still fail"),
        );
        prompt = format!(
            "{}\n\nThe tests still fail after your last change:\n{output}\nFix the code so that they pass.",
            task.prompt
        );
    }
    Err(format!(
        "the tests still fail after {PATCH_ATTEMPTS} patches; nothing was committed"
    ))
}

/// test-writer-bot: new tests must fail before the behaviour exists; then they are committed.
async fn write_tests(ready: &Ready, task: &Task) -> Result<TaskResult, String> {
    let before = dirty(&ready.workspace).await?;
    let said = ask(ready, task, task.prompt.clone()).await?;
    let changed = agent_changes(ready, &before).await?;
    let (passed, output) = run_tests(ready, task).await?;
    if passed {
        return Err(format!(
            "the new tests already pass, so they do not pin new behaviour; nothing was committed. Test output:\n{output}"
        ));
    }
    let commit = commit(ready, task, &changed).await?;
    Ok(TaskResult {
        text: format!(
            "{said}\n\nThe new tests fail as they should; commit {}.",
            commit.as_deref().unwrap_or("(none)")
        ),
        output: Some(json!({"commit": commit})),
    })
}

/// doc-bot: documents the changed items and commits that.
async fn document(ready: &Ready, task: &Task) -> Result<TaskResult, String> {
    let before = dirty(&ready.workspace).await?;
    let said = ask(ready, task, task.prompt.clone()).await?;
    let changed = agent_changes(ready, &before).await?;
    let commit = commit(ready, task, &changed).await?;
    Ok(TaskResult {
        text: said,
        output: Some(json!({"commit": commit})),
    })
}
