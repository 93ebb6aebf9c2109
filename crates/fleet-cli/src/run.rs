//! `fleet run`: a workflow, drawn live on a terminal, as plain lines elsewhere, or as JSON
//! lines with `--json`; Ctrl-C stops cleanly and says how to resume. (`fleet ask` is in
//! `ask.rs`; both build their agent runner here.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_core::activity::ActivityKind;
use fleet_core::journal::SharedStore;
use fleet_core::money::Usd;
use fleet_core::spec::SpecSet;
use fleet_core::store::sqlite::SqliteStore;
use fleet_providers::runner::agent::{ModelAgentRunner, RunnerDefaults};
use fleet_providers::runner::coding_cli::claude_code::ClaudeCodeRunner;
use fleet_providers::runner::coding_cli::codex::CodexRunner;
use fleet_providers::runner::router::AgentRouter;
use fleet_workflow::{Resume, RunEvent, RunId, RunOptions, RunState, Script, WorkflowEngine};
use serde_json::Value;

use crate::app::{App, RemoveOnDrop, UsageError};
use crate::bench_model::BenchModel;
use crate::live::{Live, View};
use crate::render::Paint;
use crate::{RunArgs, exit};

/// `fleet run`.
pub(crate) fn run(app: &App, args: RunArgs) -> anyhow::Result<u8> {
    App::runtime()?.block_on(run_workflow(app, args))
}

/// Where the workflow comes from and with what arguments.
struct Chosen {
    script: Arc<Script>,
    args: Option<Value>,
    resume: Option<Resume>,
}

async fn choose(app: &App, store: &SqliteStore, args: &RunArgs) -> anyhow::Result<Chosen> {
    let catalog = app.catalog();
    let mut run_args = match &args.args {
        Some(text) => Some(parse_args(text)?),
        None => None,
    };
    let mut resume = None;
    let mut named = args.workflow.clone();
    if let Some(id) = &args.resume {
        let id = app.resolve_run(store, id)?;
        let thread = fleet_core::store::EventStore::snapshot(store, id)
            .await?
            .with_context(|| format!("run {id} is in the list but has no events"))?;
        let started = thread.activities.iter().rev().find_map(|a| match &a.kind {
            ActivityKind::RunStarted {
                name, source, args, ..
            } => Some((name.clone(), source.clone(), args.clone())),
            _ => None,
        });
        let Some((name, source, old_args)) = started else {
            return Err(UsageError(format!(
                "{id} is not a workflow run (a `fleet ask` thread?): only workflow runs resume"
            ))
            .into());
        };
        if named.is_none() {
            named = Some(
                if source.starts_with("builtin:") || !Path::new(&source).is_file() {
                    name
                } else {
                    source
                },
            );
        }
        if run_args.is_none() {
            run_args = old_args;
        }
        resume = Some(Resume {
            run_id: id,
            strict: args.strict_resume,
        });
    }
    let named = named.ok_or_else(|| UsageError("name a workflow, or --resume a run".into()))?;
    let as_path = app.config.cwd.join(&named);
    let script = if (named.ends_with(".js") || named.contains('/')) && as_path.is_file() {
        Arc::new(Script::load(&as_path).map_err(|e| anyhow::anyhow!("{e}"))?)
    } else if named.ends_with(".js") {
        return Err(UsageError(format!(
            "{named}: no such file (run from the directory it is relative to, or give a workflow name)"
        ))
        .into());
    } else if let (None, Some(bad)) = (catalog.get(&named), catalog.unregistered(&named)) {
        // The workflow is there but its script is bad: an invalid input (exit 1), not a usage
        // error.
        return Err(anyhow::anyhow!(
            "workflow '{named}' cannot be registered: {bad}"
        ));
    } else {
        catalog
            .find(&named)
            .map_err(|e| UsageError(e.to_string()))?
    };
    for problem in &catalog.errors {
        eprintln!("fleet: workflow not registered: {problem}");
    }
    Ok(Chosen {
        script,
        args: run_args,
        resume,
    })
}

/// `--args`: JSON, or `@file` holding JSON; or, as Claude Code passes a workflow's args
/// verbatim, any other text, which is the string itself (`--args wave1` is `"wave1"`). Text
/// that starts as JSON does (`{`, `[`, `"`) must be JSON: a typo there is an error, not a string.
fn parse_args(text: &str) -> anyhow::Result<Value> {
    let (what, body) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_owned(),
            std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("--args @{path}: cannot read: {e}")))?,
        ),
        None => ("--args".to_owned(), text.to_owned()),
    };
    let looks_like_json = body.trim_start().starts_with(['{', '[', '"']);
    match serde_json::from_str(&body) {
        Ok(value) => Ok(value),
        Err(_) if what == "--args" && !looks_like_json => Ok(Value::String(body)),
        Err(e) => Err(UsageError(format!(
            "{what}: not JSON ({e}); write e.g. --args '{{\"path\": \"src\"}}', --args @args.json, or a plain string (--args wave1)"
        ))
        .into()),
    }
}

/// Leaves this process's pid where `fleet stop` and `fleet status` look for it, until the run
/// is over. Without it `fleet stop` cannot reach the run, so failing to write it is said.
pub(crate) fn pid_file(dir: &Path, run: RunId) -> Option<RemoveOnDrop> {
    let path = dir.join(format!("{run}.pid"));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, std::process::id().to_string()));
    match written {
        Ok(()) => Some(RemoveOnDrop(path)),
        Err(e) => {
            eprintln!(
                "fleet: cannot write {} (fleet stop will not reach this run): {e}",
                path.display()
            );
            None
        }
    }
}

/// The agent loop on `provider`, for calls that name no specialist; those its
/// `spawn_subagent` starts go to `specialists`.
pub(crate) fn runner(
    app: &App,
    provider: Arc<dyn fleet_core::provider::DynProvider>,
    specs: Arc<SpecSet>,
    specialists: Arc<dyn fleet_core::agent::DynAgentRunner>,
) -> ModelAgentRunner<Arc<dyn fleet_core::provider::DynProvider>> {
    let mut builder = ModelAgentRunner::builder(provider)
        .workdir(app.config.root())
        .specs(specs)
        .delegate(specialists);
    if let Some(model) = app.config.model() {
        builder = builder.defaults(RunnerDefaults {
            model: model.to_owned(),
            ..RunnerDefaults::default()
        });
    }
    builder.build()
}

/// Where calls that name a specialist of `agents/*.yaml` go: an agent whose spec says
/// `provider: claude-code`, `codex` or `codex-exec` runs on that CLI
/// (`FLEET_CLAUDE_BIN`/`FLEET_CODEX_BIN`, else `claude`/`codex` on PATH); any other in its
/// sandboxed worker, through the supervisor (its model turns through the gateway).
pub(crate) fn specialists(
    app: &App,
    provider: Arc<dyn fleet_core::provider::DynProvider>,
) -> anyhow::Result<Arc<dyn fleet_core::agent::DynAgentRunner>> {
    let prices = Arc::new(
        fleet_core::pricing::PriceTable::builtin()
            .map_err(|d| anyhow::anyhow!("the built-in price table: {d}"))?,
    );
    let root = app.config.root();
    let claude = app
        .env("FLEET_CLAUDE_BIN")
        .unwrap_or_else(|| "claude".into());
    let codex = app.env("FLEET_CODEX_BIN").unwrap_or_else(|| "codex".into());
    let codex_runner = CodexRunner::new(codex, root, Arc::clone(&prices));
    let sandboxed = Arc::new(crate::specialists::Delegation::new(app, provider)?);
    Ok(Arc::new(
        AgentRouter::new(sandboxed)
            .route(
                fleet_providers::runner::coding_cli::claude_code::NAME,
                Arc::new(ClaudeCodeRunner::new(claude, root, prices)),
            )
            .route("codex-exec", Arc::new(codex_runner.clone().exec()))
            .route(
                fleet_providers::runner::coding_cli::codex::NAME,
                Arc::new(codex_runner),
            ),
    ))
}

/// The runner of a workflow's calls: a call that names a specialist goes to it
/// ([`specialists`]); any other runs on fleet's agent loop.
fn workflow_runner(
    app: &App,
    provider: Arc<dyn fleet_core::provider::DynProvider>,
    specs: Arc<SpecSet>,
) -> anyhow::Result<Arc<dyn fleet_core::agent::DynAgentRunner>> {
    let specialists = specialists(app, provider.clone())?;
    Ok(Arc::new(
        AgentRouter::new(Arc::new(runner(app, provider, specs, specialists.clone())))
            .specialists(specialists),
    ))
}

/// How often `fleet run` reads the run's events.
const FRAME: Duration = Duration::from_millis(20);

async fn run_workflow(app: &App, args: RunArgs) -> anyhow::Result<u8> {
    // Listening from the start: a signal that arrives while no one listens is lost.
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt());
    let store = app.open_store()?;
    let chosen = choose(app, &store, &args).await?;
    let specs = Arc::new(app.specs()?);
    for problem in &specs.errors {
        eprintln!("fleet: agent spec not loaded: {problem}");
    }
    let fake = if app.config.fake_model() {
        Some(BenchModel::from_env(app)?)
    } else {
        None
    };
    let (runner, said) = match &fake {
        Some(fake) => (
            fake.runner(),
            "provider: fake (the benchmarks' model: no model is called, nothing is billed)"
                .to_owned(),
        ),
        None => {
            let (provider, said) = app.provider()?;
            (workflow_runner(app, provider, Arc::clone(&specs))?, said)
        }
    };
    let engine = WorkflowEngine::new(Arc::clone(&store) as SharedStore, runner)
        .with_specs(specs.specs.iter().cloned())
        .with_catalog(app.catalog());
    let mut options = RunOptions {
        args: chosen.args,
        budget_tokens: app.config.budget_tokens(),
        fail_on_null: app.config.fail_on_null(),
        budget_usd: app.config.budget_usd().and_then(Usd::from_dollars),
        workdir: Some(app.config.root().to_owned()),
        ..RunOptions::default()
    };
    if let Some(n) = app.config.concurrency() {
        options.concurrency = n;
    }
    if let Some(n) = app.config.max_calls() {
        options.max_agent_calls = n;
    }
    let cap = options.concurrency;
    let name = chosen.script.meta.name.clone();
    let started = Instant::now();
    let handle = engine.start(chosen.script, options, chosen.resume).await?;
    let run_id = handle.id();
    let _pid = pid_file(&app.runs_dir(), run_id);

    let mut view = if args.json {
        View::Json
    } else {
        eprintln!("{}", app.style.paint(Paint::Dim, &said));
        View::Human(Live::new(app.style, name))
    };
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut next_frame = tokio::time::Instant::now();
    let mut interrupts = 0u32;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate());
    let summary = loop {
        tokio::select! {
            events = async {
                // Read at most a frame's worth at a time (or at once when the run ends):
                // waking for every event of a fan-out would cost the run's own threads
                // thousands of wake-ups a second.
                tokio::select! {
                    biased;
                    _ = handle.wait() => {}
                    () = tokio::time::sleep_until(next_frame) => {}
                }
                handle.next_events(seen).await
            } => {
                next_frame = tokio::time::Instant::now() + FRAME;
                seen += events.len();
                let mut ended = None;
                for event in &events {
                    if let RunEvent::RunEnded { summary } = event {
                        ended = Some(summary.clone());
                    }
                    view.event(event)?;
                }
                if let Some(summary) = ended {
                    break summary;
                }
                if events.is_empty() {
                    // The run is over without a RunEnded (it cannot be, but do not spin).
                    break Box::new((*handle.wait().await).clone());
                }
            }
            _ = tick.tick() => view.tick()?,
            () = recv(&mut int) => {
                interrupts += 1;
                if interrupts > 1 {
                    view.clear()?;
                    eprintln!("fleet: interrupted again; leaving at once. Resume with: fleet run --resume {}", run_id.short());
                    return Ok(exit::INTERRUPTED);
                }
                view.note("stopping: agents in flight are cancelled, finished calls are kept (Ctrl-C again to leave at once)")?;
                handle.stop();
            }
            () = recv(&mut term) => {
                interrupts += 1;
                handle.stop();
            }
        }
    };
    let workload = started.elapsed();
    view.finish(&summary)?;
    // Other fleet processes on the same store made this one wait: say how long, once it is
    // worth saying.
    let contention = store.contention();
    if contention.waited >= Duration::from_millis(500) && !args.json {
        eprintln!(
            "  store: waited {:.1} s in all ({} times) for other fleet processes writing to {}",
            contention.waited.as_secs_f64(),
            contention.waits,
            store.path().display()
        );
    }
    if let Some(fake) = &fake {
        fake.report(cap, workload);
    }
    Ok(match summary.state {
        // A budget that refused calls is reported even when the script went on without them.
        RunState::Completed | RunState::Failed if summary.budget_exhausted => exit::BUDGET,
        RunState::Completed => exit::OK,
        RunState::Stopped | RunState::Running => {
            if !args.json {
                eprintln!(
                    "\ninterrupted: {} finished calls are saved. Resume with:\n  fleet run --resume {}",
                    summary.calls.completed + summary.calls.cached,
                    run_id.short()
                );
            }
            exit::INTERRUPTED
        }
        RunState::Failed => exit::FAILED,
    })
}

pub(crate) fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

pub(crate) async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
