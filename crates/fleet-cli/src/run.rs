//! `fleet run` and `fleet ask`: a workflow or one primary-agent turn, drawn live on a terminal,
//! as plain lines elsewhere, or as JSON lines with `--json`; Ctrl-C stops cleanly and says how
//! to resume.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::spec::{Capability, SpecSet};
use fleet_core::{
    AgentCall, AgentRunner, CallContext, Journal, SharedStore, SqliteStore, Thread, TurnState, Usd,
    WorkUnitDraft, WorkUnitId, WorkUnitKind, WorkUnitState,
};
use fleet_providers::{
    AgentRouter, ClaudeCodeRunner, CodexRunner, ModelAgentRunner, RunnerDefaults,
};
use fleet_workflow::testkit::FakeModel;
use fleet_workflow::{
    CallState, Resume, RunEvent, RunId, RunOptions, RunState, RunSummary, Script, WorkflowEngine,
};
use serde_json::{Value, json};

use crate::app::{App, RemoveOnDrop, UsageError};
use crate::config::ConfigError;
use crate::render::{self, Paint, Style};
use crate::{RunArgs, exit};

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// How many in-flight calls the live view lists before it says "and N more".
const SHOWN_IN_FLIGHT: usize = 8;

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
        let thread = fleet_core::EventStore::snapshot(store, id)
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
    } else {
        catalog.find(&named).map_err(UsageError)?
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

/// `--args`: JSON, or `@file` holding JSON.
fn parse_args(text: &str) -> anyhow::Result<Value> {
    let (what, body) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_owned(),
            std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("--args @{path}: cannot read: {e}")))?,
        ),
        None => ("--args".to_owned(), text.to_owned()),
    };
    serde_json::from_str(&body).map_err(|e| {
        UsageError(format!(
            "{what}: not JSON ({e}); write e.g. --args '{{\"path\": \"src\"}}' or --args @args.json"
        ))
        .into()
    })
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
fn runner(
    app: &App,
    provider: Arc<dyn fleet_core::DynProvider>,
    specs: Arc<SpecSet>,
    specialists: Arc<dyn fleet_core::DynAgentRunner>,
) -> ModelAgentRunner<Arc<dyn fleet_core::DynProvider>> {
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
fn specialists(
    app: &App,
    provider: Arc<dyn fleet_core::DynProvider>,
) -> anyhow::Result<Arc<dyn fleet_core::DynAgentRunner>> {
    let prices = Arc::new(
        fleet_core::PriceTable::builtin()
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
                fleet_providers::claude_code::NAME,
                Arc::new(ClaudeCodeRunner::new(claude, root, prices)),
            )
            .route("codex-exec", Arc::new(codex_runner.clone().exec()))
            .route(fleet_providers::codex::NAME, Arc::new(codex_runner)),
    ))
}

/// The runner of a workflow's calls: a call that names a specialist goes to it
/// ([`specialists`]); any other runs on fleet's agent loop.
fn workflow_runner(
    app: &App,
    provider: Arc<dyn fleet_core::DynProvider>,
    specs: Arc<SpecSet>,
) -> anyhow::Result<Arc<dyn fleet_core::DynAgentRunner>> {
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
        Some(fake_model(app)?)
    } else {
        None
    };
    let (runner, said) = match &fake {
        Some(fake) => (
            Arc::new(fake.clone()) as Arc<dyn fleet_core::DynAgentRunner>,
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
    if let Some(fake) = &fake {
        // What the benchmarks read: what the model saw, and what this process took.
        eprintln!(
            "fake model: {} calls answered, at most {} in flight (cap {cap}); workload {:.2} ms; peak RSS {:.1} MiB before the store closes",
            fake.stats.calls.load(Ordering::SeqCst),
            fake.stats.peak.load(Ordering::SeqCst),
            workload.as_secs_f64() * 1e3,
            peak_rss_mib().unwrap_or(f64::NAN),
        );
    }
    Ok(match summary.state {
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
        RunState::Failed if summary.budget_exhausted => exit::BUDGET,
        RunState::Failed => exit::FAILED,
    })
}

/// The benchmarks' fake model, with `FLEET_FAKE_LATENCY_MS` (a latency per call instead of
/// one scheduler hop) and `FLEET_FAKE_STALL_AFTER` (calls after that many never answer).
fn fake_model(app: &App) -> anyhow::Result<FakeModel> {
    let number = |name: &str| -> anyhow::Result<Option<u64>> {
        app.env(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    ConfigError(format!(
                        "{name}={v:?} is not a whole number; set it to one, or unset it"
                    ))
                })
            })
            .transpose()
            .map_err(Into::into)
    };
    Ok(FakeModel {
        latency: number("FLEET_FAKE_LATENCY_MS")?.map(Duration::from_millis),
        stall_after: number("FLEET_FAKE_STALL_AFTER")?,
        ..FakeModel::new()
    })
}

/// This process's peak resident set (`VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// How a run is shown.
enum View {
    Json,
    Human(Live),
}

impl View {
    fn event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match self {
            Self::Json => {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(&mut out, event)?;
                writeln!(out)
            }
            Self::Human(live) => {
                let lines = live.event(event);
                live.show(&lines)
            }
        }
    }

    fn tick(&mut self) -> std::io::Result<()> {
        match self {
            Self::Json => Ok(()),
            Self::Human(live) => {
                live.spin += 1;
                live.show(&[])
            }
        }
    }

    fn note(&mut self, text: &str) -> std::io::Result<()> {
        match self {
            Self::Json => Ok(()),
            Self::Human(live) => {
                let line = live.style.paint(Paint::Yellow, text);
                live.show(&[line])
            }
        }
    }

    fn clear(&mut self) -> std::io::Result<()> {
        match self {
            Self::Json => Ok(()),
            Self::Human(live) => live.erase(),
        }
    }

    fn finish(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        match self {
            Self::Json => {
                let mut out = std::io::stdout().lock();
                let line = json!({
                    "type": "result",
                    "run_id": summary.run_id,
                    "state": summary.state,
                    "result": summary.result,
                    "error": summary.error,
                });
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)
            }
            Self::Human(live) => {
                live.erase()?;
                live.done = true;
                let mut err = std::io::stderr().lock();
                write!(err, "{}", summary_table(summary, live.style))?;
                drop(err);
                let mut out = std::io::stdout().lock();
                match &summary.result {
                    Value::Null => Ok(()),
                    Value::String(text) => writeln!(out, "{text}"),
                    other => writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(other).unwrap_or_default()
                    ),
                }
            }
        }
    }
}

/// One agent call in flight.
struct Flight {
    label: String,
    agent: Option<String>,
    started: Instant,
    tokens: u64,
    tool_calls: u64,
}

/// The live picture of a run: lines that stay (phases, finished calls, logs) above a region
/// redrawn in place (calls in flight with a spinner, and a status line).
struct Live {
    style: Style,
    name: String,
    started: Instant,
    phase: Option<String>,
    flights: BTreeMap<WorkUnitId, Flight>,
    completed: u64,
    cached: u64,
    null: u64,
    failed: u64,
    tokens: u64,
    cost: f64,
    region: render::LiveRegion,
    spin: usize,
    done: bool,
}

impl Live {
    fn new(style: Style, name: String) -> Self {
        Self {
            style,
            name,
            started: Instant::now(),
            phase: None,
            flights: BTreeMap::new(),
            completed: 0,
            cached: 0,
            null: 0,
            failed: 0,
            tokens: 0,
            cost: 0.0,
            region: render::LiveRegion::new(style),
            spin: 0,
            done: false,
        }
    }

    /// Takes in an event; returns the lines it leaves behind.
    fn event(&mut self, event: &RunEvent) -> Vec<String> {
        let s = self.style;
        match event {
            RunEvent::RunStarted {
                run_id, resumed, ..
            } => vec![format!(
                "{} {} {}",
                s.paint(Paint::Bold, if *resumed { "resuming run" } else { "run" }),
                run_id.short(),
                s.paint(Paint::Dim, &format!("({})", self.name))
            )],
            RunEvent::PhaseStarted { title } => {
                self.phase = Some(title.clone());
                vec![s.paint(Paint::Bold, &format!("▶ {title}"))]
            }
            RunEvent::AgentStarted {
                work_unit_id,
                label,
                agent_type,
                ..
            } => {
                self.flights.insert(
                    *work_unit_id,
                    Flight {
                        label: label.clone(),
                        agent: agent_type.clone(),
                        started: Instant::now(),
                        tokens: 0,
                        tool_calls: 0,
                    },
                );
                Vec::new()
            }
            RunEvent::AgentProgress {
                work_unit_id,
                usage,
                tool_calls,
                ..
            } => {
                if let Some(f) = self.flights.get_mut(work_unit_id) {
                    f.tokens = usage.total();
                    f.tool_calls = *tool_calls;
                }
                Vec::new()
            }
            RunEvent::AgentFinished {
                work_unit_id,
                label,
                state,
                reason,
                usage,
                cost_usd,
                ..
            } => {
                let flight = self.flights.remove(work_unit_id);
                let elapsed = flight.map_or(0, |f| {
                    u64::try_from(f.started.elapsed().as_millis()).unwrap_or(u64::MAX)
                });
                self.tokens += usage.total();
                self.cost += cost_usd;
                let reason = reason.as_deref().unwrap_or("no reason given");
                let line = match state {
                    CallState::Completed => {
                        self.completed += 1;
                        format!(
                            "  {} {label} {}",
                            s.paint(Paint::Green, "✓"),
                            s.paint(
                                Paint::Dim,
                                &format!(
                                    "{} tokens · {} · {}",
                                    render::tokens(usage.total()),
                                    render::dollars(*cost_usd),
                                    render::duration_ms(elapsed)
                                )
                            )
                        )
                    }
                    CallState::Cached => {
                        self.cached += 1;
                        format!(
                            "  {} {label} {}",
                            s.paint(Paint::Cyan, "↺"),
                            s.paint(Paint::Dim, "(from the journal)")
                        )
                    }
                    CallState::Null => {
                        self.null += 1;
                        format!("  {} {label} → null: {reason}", s.paint(Paint::Yellow, "∅"))
                    }
                    CallState::Failed => {
                        self.failed += 1;
                        format!("  {} {label}: {reason}", s.paint(Paint::Red, "✗"))
                    }
                };
                vec![line]
            }
            RunEvent::Log { level, message } => {
                let mark = match level {
                    LogLevel::Warn | LogLevel::Error => s.paint(Paint::Yellow, "!"),
                    _ => s.paint(Paint::Dim, "·"),
                };
                vec![format!("  {mark} {message}")]
            }
            RunEvent::BudgetWarning { message } => {
                vec![format!("  {} {message}", s.paint(Paint::Yellow, "$"))]
            }
            _ => Vec::new(),
        }
    }

    /// The redrawn region.
    fn frame(&self) -> Vec<String> {
        let s = self.style;
        let spin = SPINNER[self.spin % SPINNER.len()];
        let mut lines: Vec<String> = self
            .flights
            .values()
            .take(SHOWN_IN_FLIGHT)
            .map(|f| {
                let agent = f
                    .agent
                    .as_ref()
                    .map(|a| format!(" [{a}]"))
                    .unwrap_or_default();
                format!(
                    "  {} {}{agent} {}",
                    s.paint(Paint::Cyan, spin),
                    render::fit(&f.label, 60),
                    s.paint(
                        Paint::Dim,
                        &format!(
                            "{} tokens · {} tools · {}",
                            render::tokens(f.tokens),
                            f.tool_calls,
                            render::duration_ms(
                                u64::try_from(f.started.elapsed().as_millis()).unwrap_or(u64::MAX)
                            )
                        )
                    )
                )
            })
            .collect();
        if self.flights.len() > SHOWN_IN_FLIGHT {
            lines.push(s.paint(
                Paint::Dim,
                &format!(
                    "  … and {} more in flight",
                    self.flights.len() - SHOWN_IN_FLIGHT
                ),
            ));
        }
        lines.push(format!(
            "{} {}{} · {} running · {} done · {} null · {} failed · {} tokens · {} · {}",
            s.paint(Paint::Cyan, spin),
            s.paint(Paint::Bold, &self.name),
            self.phase
                .as_ref()
                .map(|p| format!(" · {p}"))
                .unwrap_or_default(),
            self.flights.len(),
            self.completed + self.cached,
            self.null,
            self.failed,
            render::tokens(self.tokens),
            render::dollars(self.cost),
            render::duration_ms(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(0)),
        ));
        lines
    }

    /// Prints `lines` above the live region and redraws it (on a terminal), or just the lines.
    fn show(&mut self, lines: &[String]) -> std::io::Result<()> {
        if self.done {
            return Ok(());
        }
        let mut region = std::mem::take(&mut self.region);
        let shown = region.show(lines, || self.frame());
        self.region = region;
        shown
    }

    /// Removes the live region.
    fn erase(&mut self) -> std::io::Result<()> {
        self.region.erase()
    }
}

/// The table drawn when a run ends.
fn summary_table(summary: &RunSummary, s: Style) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let state = match summary.state {
        RunState::Completed => s.paint(Paint::Green, "completed"),
        RunState::Failed => s.paint(Paint::Red, "failed"),
        RunState::Stopped | RunState::Running => s.paint(Paint::Yellow, "stopped"),
    };
    let u = &summary.usage;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} {}  {state} in {}",
        s.paint(Paint::Bold, &summary.name),
        summary.run_id.short(),
        render::duration_ms(summary.wall_ms)
    );
    let _ = writeln!(
        out,
        "  calls   {:>6} completed {:>6} cached {:>6} null {:>6} failed",
        summary.calls.completed, summary.calls.cached, summary.calls.null, summary.calls.failed
    );
    let _ = writeln!(
        out,
        "  tokens  {:>6} in        {:>6} out    {:>6} cache read ({})",
        render::tokens(u.input + u.cache_read + u.cache_write + u.cache_write_1h),
        render::tokens(u.output),
        render::tokens(u.cache_read),
        s.cache_bar(u.cache_hit_ratio()),
    );
    let _ = writeln!(
        out,
        "  cost    {:>6}{}",
        render::dollars(summary.cost_usd),
        if summary.unpriced {
            " (some usage had no price)"
        } else {
            ""
        }
    );
    // The first few causes; the rest are in the trace.
    const SHOWN: usize = 5;
    for note in summary.nulls.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  {} {} → null: {}",
            s.paint(Paint::Yellow, "∅"),
            note.label,
            note.reason
        );
    }
    for note in summary.failures.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            s.paint(Paint::Red, "✗"),
            note.label,
            note.reason
        );
    }
    let hidden =
        summary.nulls.len().saturating_sub(SHOWN) + summary.failures.len().saturating_sub(SHOWN);
    if hidden > 0 {
        let _ = writeln!(
            out,
            "  … and {hidden} more: fleet trace {}",
            summary.run_id.short()
        );
    }
    if summary.state == RunState::Completed && summary.calls.null > 0 {
        let _ = writeln!(
            out,
            "  {}",
            s.paint(
                Paint::Dim,
                &format!(
                    "{} of {} calls came back null; the script went on without them (--fail-on-null fails the run instead)",
                    summary.calls.null,
                    summary.calls.completed
                        + summary.calls.cached
                        + summary.calls.null
                        + summary.calls.failed
                )
            )
        );
    }
    if let Some(error) = &summary.error
        && summary.state == RunState::Failed
    {
        let _ = writeln!(out, "  {} {error}", s.paint(Paint::Red, "error:"));
    }
    let _ = writeln!(
        out,
        "  {}",
        s.paint(
            Paint::Dim,
            &format!("trace: fleet trace {}", summary.run_id.short())
        )
    );
    out
}

/// `fleet ask`.
pub(crate) fn ask(app: &App, task: &str, json: bool) -> anyhow::Result<u8> {
    App::runtime()?.block_on(ask_async(app, task, json))
}

async fn ask_async(app: &App, task: &str, json_out: bool) -> anyhow::Result<u8> {
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt());
    let store = app.open_store()?;
    let (provider, said) = app.provider()?;
    if !json_out {
        eprintln!("{}", app.style.paint(Paint::Dim, &said));
    }
    let specs = Arc::new(app.specs()?);
    let specialists = specialists(app, provider.clone())?;
    let runner = runner(app, provider, Arc::clone(&specs), specialists);
    let model = app.config.ask_model().to_owned();
    let journal = Journal::create(
        Arc::clone(&store) as SharedStore,
        Some(format!(
            "ask: {}",
            render::fit(task.lines().next().unwrap_or(task), 60)
        )),
    )
    .await?;
    let thread_id = journal.thread_id();
    let mut draft = WorkUnitDraft::new(WorkUnitKind::PrimaryAgent);
    draft.label = Some(render::fit(task.lines().next().unwrap_or(task), 60));
    draft.agent = Some("primary".into());
    draft.model = Some(model.clone());
    let (turn, primary) = journal.start_turn(Some(task.to_owned()), draft).await?;
    let _pid = pid_file(&app.runs_dir(), thread_id);

    let mut prompt = task.to_owned();
    if !specs.specs.is_empty() {
        prompt.push_str(
            "\n\nSpecialists you can delegate to: start each with spawn_subagent (agent_type = its name), \
             follow it with subagent_status / subagent_result, and answer when their work is in:\n",
        );
        for spec in &specs.specs {
            prompt.push_str(&format!(
                "- {}: {} ({}, budget {})\n",
                spec.name,
                spec.role,
                spec.model,
                spec.effective_cost_budget()
            ));
        }
    }
    let call = AgentCall {
        model: Some(model),
        capabilities: Some(vec![Capability::ReadFiles, Capability::SpawnSubagents]),
        ..AgentCall::new(prompt)
    };
    let cancel = fleet_core::CancelToken::new();
    let ctx = CallContext {
        work_unit: Some(primary),
        cancel: cancel.clone(),
        ..CallContext::new(journal.clone(), primary)
    };
    if !json_out {
        eprintln!(
            "{} {thread_id} {}",
            app.style.paint(Paint::Bold, "ask"),
            app.style
                .paint(Paint::Dim, &format!("({} specialists)", specs.specs.len()))
        );
    }
    // On its own task: the loop below awaits the journal, which the call may hold while it
    // writes, so the call must not depend on the loop polling it.
    let mut work = tokio::spawn(async move { runner.run(call, ctx).await });
    let mut watch = UnitWatch::new(app.style, !json_out);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            r = &mut work => break r.map_err(|e| fleet_core::AgentError::Config(format!("the agent task ended: {e}")))
                .and_then(|r| r),
            _ = tick.tick() => {
                let snapshot = journal.read(Clone::clone).await;
                watch.update(&snapshot)?;
            }
            () = recv(&mut int), if !interrupted => {
                interrupted = true;
                cancel.cancel();
            }
        }
    };
    let state = match &result {
        Ok(_) => TurnState::Completed,
        Err(_) if interrupted => TurnState::Cancelled,
        Err(_) => TurnState::Failed,
    };
    journal
        .execute(fleet_core::Command::CompleteTurn {
            turn_id: turn,
            state,
        })
        .await?;
    let thread = journal.read(Clone::clone).await;
    watch.update(&thread)?;
    watch.erase()?;
    if json_out {
        let mut out = std::io::stdout().lock();
        for event in fleet_core::EventStore::read_stream(&*store, thread_id, 0, usize::MAX).await? {
            serde_json::to_writer(&mut out, &event)?;
            writeln!(out)?;
        }
        let answer = match &result {
            Ok(o) => json!({"type": "answer", "thread_id": thread_id, "text": o.text}),
            Err(e) => json!({"type": "answer", "thread_id": thread_id, "error": e.to_string()}),
        };
        serde_json::to_writer(&mut out, &answer)?;
        writeln!(out)?;
    } else {
        eprintln!();
        eprint!(
            "{}",
            render::tree(
                &thread,
                &HashMap::new(),
                app.style,
                fleet_core::Timestamp::now()
            )
        );
        if let Ok(outcome) = &result {
            println!("{}", outcome.text);
        }
    }
    match result {
        Ok(_) => Ok(exit::OK),
        Err(_) if interrupted => Ok(exit::INTERRUPTED),
        Err(fleet_core::AgentError::Budget(e)) => {
            eprintln!("fleet: {e}");
            Ok(exit::BUDGET)
        }
        Err(e) => Err(e.into()),
    }
}

/// Follows a thread's units between snapshots: on a terminal, a live tree of what is running;
/// elsewhere, a line when a unit starts and when it ends.
struct UnitWatch {
    style: Style,
    enabled: bool,
    states: HashMap<WorkUnitId, WorkUnitState>,
    region: render::LiveRegion,
    spin: usize,
}

impl UnitWatch {
    fn new(style: Style, enabled: bool) -> Self {
        Self {
            style,
            enabled,
            states: HashMap::new(),
            region: render::LiveRegion::new(style),
            spin: 0,
        }
    }

    fn update(&mut self, thread: &Thread) -> std::io::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let s = self.style;
        let mut lines = Vec::new();
        for unit in thread.work_units.values() {
            let before = self.states.insert(unit.id, unit.state);
            if before == Some(unit.state) {
                continue;
            }
            let name = render::fit(&render::unit_name(unit), 60);
            let agent = unit.agent.as_deref().unwrap_or("-");
            match unit.state {
                WorkUnitState::Running
                    if before.is_none() || before == Some(WorkUnitState::Pending) =>
                {
                    lines.push(format!("  {} {name} [{agent}]", s.paint(Paint::Cyan, "→")));
                }
                WorkUnitState::Completed => lines.push(format!(
                    "  {} {name} [{agent}] {}",
                    s.paint(Paint::Green, "✓"),
                    s.paint(
                        Paint::Dim,
                        &format!(
                            "{} tokens · {}",
                            render::tokens(thread.subtree_usage(unit.id).total()),
                            render::dollars(thread.subtree_cost(unit.id).usd.dollars())
                        )
                    )
                )),
                WorkUnitState::Failed | WorkUnitState::Cancelled | WorkUnitState::Interrupted => {
                    lines.push(format!(
                        "  {} {name} [{agent}] {}: {}",
                        s.paint(Paint::Red, "✗"),
                        unit.state,
                        unit.error.as_deref().unwrap_or("no reason given")
                    ));
                }
                _ => {}
            }
        }
        self.spin += 1;
        let spin = SPINNER[self.spin % SPINNER.len()];
        self.region.show(&lines, || {
            thread
                .work_units
                .values()
                .filter(|u| !u.state.is_terminal())
                .map(|u| {
                    format!(
                        "  {} {} [{}] {}",
                        s.paint(Paint::Cyan, spin),
                        render::fit(&render::unit_name(u), 60),
                        u.agent.as_deref().unwrap_or("-"),
                        s.paint(
                            Paint::Dim,
                            &format!(
                                "{} tokens",
                                render::tokens(thread.subtree_usage(u.id).total())
                            )
                        )
                    )
                })
                .collect()
        })
    }

    fn erase(&mut self) -> std::io::Result<()> {
        self.region.erase()
    }
}
