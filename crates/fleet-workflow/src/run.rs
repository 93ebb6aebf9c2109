//! The run manager: start runs (each returns its id at once), watch their events, stop them,
//! wait for their summaries; many at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fleet_core::activity::ActivityKind;
use fleet_core::agent::DynAgentRunner;
use fleet_core::command::{Command, CommandError, WorkUnitDraft};
use fleet_core::event::TurnState;
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::provider::CancelToken;
use fleet_core::spec::AgentSpec;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use serde_json::Value;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::engine::{EngineRun, ScriptEngine, ScriptFailure};
use crate::events::{RunEvent, RunId, RunState, RunSummary};
use crate::host::{HostConfig, HostParts, RunHost};
use crate::options::{Resume, RunOptions};
use crate::outcome::came_to_nothing;
use crate::quickjs::QuickJs;
use crate::resume::ResumeJournal;
use crate::script::Script;
use crate::shared::RunShared;

/// A run could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The store refused.
    #[error("cannot record the run: {0}")]
    Record(#[from] CommandError),
    /// The run to resume is not in the store.
    #[error("run {0} is not in the store; `fleet runs` lists the runs")]
    UnknownRun(RunId),
    /// The run to resume is still running in this process.
    #[error("run {0} is still running; stop it before resuming")]
    StillRunning(RunId),
    /// The catalog has no workflow of that name.
    #[error(transparent)]
    Workflow(#[from] crate::catalog::CatalogError),
}

/// A started run.
#[derive(Clone)]
pub struct RunHandle {
    shared: Arc<RunShared>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl RunHandle {
    /// The run's id.
    #[must_use]
    pub fn id(&self) -> RunId {
        self.shared.id
    }

    /// The workflow's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// `Running`, or how it ended.
    #[must_use]
    pub fn state(&self) -> RunState {
        self.shared
            .state
            .borrow()
            .as_ref()
            .map_or(RunState::Running, |s| s.state)
    }

    /// Stops the run: the script is interrupted, agents in flight are cancelled and their work
    /// units recorded `cancelled`.
    pub fn stop(&self) {
        self.shared.cancel.cancel();
    }

    /// The events so far, from index `from`.
    #[must_use]
    pub fn events_since(&self, from: usize) -> Vec<RunEvent> {
        let events = self
            .shared
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        events
            .get(from..)
            .map(<[RunEvent]>::to_vec)
            .unwrap_or_default()
    }

    /// Waits for events after index `from` (or the end of the run) and returns them; empty
    /// once the run has ended and every event was read.
    pub async fn next_events(&self, from: usize) -> Vec<RunEvent> {
        let mut count = self.shared.count.subscribe();
        let mut done = self.shared.state.subscribe();
        loop {
            let events = self.events_since(from);
            if !events.is_empty() || done.borrow().is_some() {
                return events;
            }
            tokio::select! {
                r = count.changed() => if r.is_err() { return Vec::new() },
                r = done.changed() => if r.is_err() { return Vec::new() },
            }
        }
    }

    /// Waits for the run to end and returns its summary.
    pub async fn wait(&self) -> Arc<RunSummary> {
        let mut done = self.shared.state.subscribe();
        loop {
            if let Some(summary) = done.borrow().clone() {
                return summary;
            }
            if done.changed().await.is_err() {
                // The sender lives in `shared`, which we hold; this cannot happen.
                continue;
            }
        }
    }
}

/// Starts and tracks workflow runs.
pub struct WorkflowEngine {
    store: SharedStore,
    runner: Arc<dyn DynAgentRunner>,
    specs: Arc<HashMap<String, Arc<AgentSpec>>>,
    catalog: Arc<Catalog>,
    engine: Arc<dyn ScriptEngine>,
    runs: Mutex<HashMap<RunId, RunHandle>>,
}

impl std::fmt::Debug for WorkflowEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowEngine")
            .field("engine", &self.engine.name())
            .finish_non_exhaustive()
    }
}

impl WorkflowEngine {
    /// An engine recording into `store` and running agent calls with `runner`, with the
    /// built-in workflows and no agent specs.
    #[must_use]
    pub fn new(store: SharedStore, runner: Arc<dyn DynAgentRunner>) -> Self {
        Self {
            store,
            runner,
            specs: Arc::default(),
            catalog: Arc::new(Catalog::builtins()),
            engine: Arc::new(QuickJs),
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// The agents `agentType` can name.
    #[must_use]
    pub fn with_specs(mut self, specs: impl IntoIterator<Item = AgentSpec>) -> Self {
        self.specs = Arc::new(
            specs
                .into_iter()
                .map(|s| (s.name.clone(), Arc::new(s)))
                .collect(),
        );
        self
    }

    /// The workflows `workflow()` and [`WorkflowEngine::start_named`] can name.
    #[must_use]
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Arc::new(catalog);
        self
    }

    /// Another script engine.
    #[must_use]
    pub fn with_script_engine(mut self, engine: Arc<dyn ScriptEngine>) -> Self {
        self.engine = engine;
        self
    }

    /// The catalog.
    #[must_use]
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The run with `id`, if this engine started it.
    #[must_use]
    pub fn run(&self, id: RunId) -> Option<RunHandle> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Every run this engine started.
    #[must_use]
    pub fn runs(&self) -> Vec<RunHandle> {
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Starts the catalog's workflow `name`.
    ///
    /// # Errors
    /// [`StartError::Workflow`] for a name the catalog does not have (it lists the known
    /// ones); else as [`WorkflowEngine::start`].
    pub async fn start_named(
        &self,
        name: &str,
        options: RunOptions,
    ) -> Result<RunHandle, StartError> {
        let script = self.catalog.find(name)?;
        self.start(script, options, None).await
    }

    /// Starts `script`, or resumes run `resume` with it: records the run and returns at once;
    /// the script runs in the background.
    ///
    /// # Errors
    /// [`StartError`] when the run cannot be recorded or the run to resume is unknown.
    pub async fn start(
        &self,
        script: Arc<Script>,
        options: RunOptions,
        resume: Option<Resume>,
    ) -> Result<RunHandle, StartError> {
        let (journal, journaled) = match resume {
            None => (
                Journal::begin(self.store.clone(), Some(script.meta.name.clone()))?,
                ResumeJournal::none(),
            ),
            Some(resume) => {
                if self
                    .run(resume.run_id)
                    .is_some_and(|r| r.state() == RunState::Running)
                {
                    return Err(StartError::StillRunning(resume.run_id));
                }
                let journal = match Journal::open(self.store.clone(), resume.run_id).await {
                    Ok(journal) => journal,
                    Err(CommandError::NoThread(id)) => return Err(StartError::UnknownRun(id)),
                    Err(e) => return Err(e.into()),
                };
                close_interrupted(&journal.write_behind()).await?;
                let journaled = journal
                    .read(|thread| ResumeJournal::from_thread(thread, resume.strict))
                    .await;
                (journal, journaled)
            }
        };
        let mut root = WorkUnitDraft::new(WorkUnitKind::Workflow);
        root.label = Some(script.meta.name.clone());
        let input = options.args.as_ref().map(Value::to_string);
        // The start needs no fsync of its own: the first call's flush (or the end's) covers it.
        let fast = journal.write_behind();
        let (turn, root_id) = fast.start_turn(input, root).await?;
        fast.activity(
            root_id,
            ActivityKind::RunStarted {
                name: script.meta.name.clone(),
                description: script.meta.description.clone(),
                phases: script.meta.phases.iter().map(|p| p.title.clone()).collect(),
                source: script.origin.clone(),
                args: options.args.clone(),
            },
        )
        .await?;
        let cancel = CancelToken::new();
        let shared = Arc::new(RunShared {
            id: journal.thread_id(),
            name: script.meta.name.clone(),
            events: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            state: watch::Sender::new(None),
            cancel: cancel.clone(),
            record_error: Mutex::new(None),
        });
        shared.emit(RunEvent::RunStarted {
            run_id: shared.id,
            name: script.meta.name.clone(),
            description: script.meta.description.clone(),
            phases: script.meta.phases.iter().map(|p| p.title.clone()).collect(),
            resumed: resume.is_some(),
        });
        if resume.is_some() {
            shared.emit(RunEvent::Log {
                level: fleet_core::activity::LogLevel::Info,
                message: format!(
                    "resuming: {} journaled call results available",
                    journaled.len()
                ),
            });
        }
        let host = RunHost::start(HostParts {
            shared: shared.clone(),
            // The calls record without waiting for the disk between their events; each call
            // flushes before it is acknowledged.
            journal: journal.write_behind(),
            runner: self.runner.clone(),
            specs: self.specs.clone(),
            catalog: self.catalog.clone(),
            config: HostConfig {
                max_agent_calls: options.max_agent_calls,
                tokens_total: options.budget_tokens,
                usd_total: options.budget_usd,
                rate_limit_retries: options.rate_limit_retries,
                agent_concurrency: options.agent_concurrency.clone(),
                phase_budgets: options.phase_budgets.clone(),
                workdir: options
                    .workdir
                    .clone()
                    .unwrap_or_else(|| std::path::PathBuf::from(".")),
                model_aliases: options.model_aliases.clone(),
            },
            concurrency: options.concurrency,
            resume: journaled,
            root: root_id,
            script: script.clone(),
            cancel: cancel.clone(),
        });
        let handle = RunHandle {
            shared: shared.clone(),
        };
        self.runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(shared.id, handle.clone());
        let engine = self.engine.clone();
        tokio::spawn(drive(engine, host, script, options, turn, root_id, journal));
        Ok(handle)
    }
}

/// Marks what a killed process left running as interrupted, so a new attempt can start.
async fn close_interrupted(journal: &Journal) -> Result<(), CommandError> {
    let (turn, open_units) = journal
        .read(|thread| {
            let turn = thread
                .turns
                .last()
                .filter(|t| t.state == TurnState::Running)
                .map(|t| t.id);
            let units: Vec<_> = thread
                .work_units
                .values()
                .filter(|u| Some(u.turn_id) == turn && !u.state.is_terminal())
                .map(|u| u.id)
                .collect();
            (turn, units)
        })
        .await;
    let Some(turn) = turn else {
        return Ok(());
    };
    for unit in open_units.into_iter().rev() {
        journal
            .set_state(
                unit,
                WorkUnitState::Interrupted,
                Some("the process running it went away".into()),
            )
            .await?;
    }
    journal
        .execute(Command::CompleteTurn {
            turn_id: turn,
            state: TurnState::Interrupted,
        })
        .await
        .map(drop)
}

/// Why a run whose agent calls all came to nothing, some of them `null`, did nothing (`None`
/// when one answered, or when it made none). Rejections alone are the script's to handle: one
/// it did not catch failed the run already, and one it caught it chose to survive.
async fn drive(
    engine: Arc<dyn ScriptEngine>,
    host: Arc<RunHost>,
    script: Arc<Script>,
    options: RunOptions,
    turn: fleet_core::id::TurnId,
    root: fleet_core::id::WorkUnitId,
    journal: Journal,
) {
    let started = Instant::now();
    let shared = host.shared.clone();
    let cancel = host.cancel.clone();
    let progress = tokio::spawn(report_progress(host.clone(), options.progress_interval));
    let outcome = engine
        .run(EngineRun {
            script: script.clone(),
            args: options.args.clone(),
            host: host.clone(),
            limits: options.limits,
            stop: cancel.clone(),
        })
        .await;
    // The run is over either way: nothing it started may keep going.
    let stopped = cancel.is_cancelled();
    cancel.cancel();
    host.tracker.close();
    host.tracker.wait().await;
    progress.abort();
    let (mut state, result, mut error) = match outcome {
        Ok(result) => (RunState::Completed, result.unwrap_or(Value::Null), None),
        Err(ScriptFailure::Stopped) => (RunState::Stopped, Value::Null, Some("stopped".into())),
        Err(failure) if stopped => (RunState::Stopped, Value::Null, Some(failure.to_string())),
        Err(failure) => (RunState::Failed, Value::Null, Some(failure.to_string())),
    };
    let record_error = shared
        .record_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(e) = record_error {
        state = RunState::Failed;
        error.get_or_insert(format!("recording failed: {e}"));
    }
    let tally = std::mem::take(&mut *host.tally.lock().unwrap_or_else(PoisonError::into_inner));
    // A run whose every call came to nothing did nothing, whatever the script returned: it
    // fails, with the first causes, so that a CI job does not go green on it.
    if state == RunState::Completed
        && let Some(why) = came_to_nothing(
            &tally.counts,
            &tally.nulls,
            &tally.failures,
            options.fail_on_null,
        )
    {
        state = RunState::Failed;
        error = Some(why);
    }
    let summary = RunSummary {
        run_id: shared.id,
        name: script.meta.name.clone(),
        state,
        result,
        error: error.clone(),
        calls: tally.counts,
        nulls: tally.nulls,
        failures: tally.failures,
        usage: tally.usage,
        cost_usd: tally.cost.usd,
        unpriced: tally.cost.unpriced > 0,
        budget_exhausted: host
            .budget_exhausted
            .load(std::sync::atomic::Ordering::Relaxed),
        wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let (unit_state, turn_state) = match state {
        RunState::Completed | RunState::Running => (WorkUnitState::Completed, TurnState::Completed),
        RunState::Stopped => (WorkUnitState::Cancelled, TurnState::Cancelled),
        RunState::Failed => (WorkUnitState::Failed, TurnState::Failed),
    };
    let summary_json = serde_json::to_value(&summary).unwrap_or(Value::Null);
    let mut summary = summary;
    // Three events, one fsync.
    let fast = journal.write_behind();
    let recorded = async {
        fast.activity(
            root,
            ActivityKind::RunEnded {
                state: state.as_str().into(),
                summary: summary_json,
            },
        )
        .await?;
        fast.set_state(root, unit_state, error).await?;
        fast.execute(Command::CompleteTurn {
            turn_id: turn,
            state: turn_state,
        })
        .await?;
        journal.flush().await
    }
    .await;
    if let Err(e) = recorded {
        summary.state = RunState::Failed;
        summary.error = Some(format!("cannot record the end of the run: {e}"));
    }
    if let Some(title) = last_phase(&shared) {
        shared.emit(RunEvent::PhaseEnded { title });
    }
    let summary = Arc::new(summary);
    shared.emit(RunEvent::RunEnded {
        summary: Box::new((*summary).clone()),
    });
    shared.state.send_replace(Some(summary));
}

fn last_phase(shared: &RunShared) -> Option<String> {
    let events = shared.events.lock().unwrap_or_else(PoisonError::into_inner);
    let mut open = None;
    for event in events.iter() {
        match event {
            RunEvent::PhaseStarted { title } => open = Some(title.clone()),
            RunEvent::PhaseEnded { .. } => open = None,
            _ => {}
        }
    }
    open
}

async fn report_progress(host: Arc<RunHost>, every: Duration) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let units: Vec<_> = host
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(u, t)| (*u, *t))
            .collect();
        if units.is_empty() {
            continue;
        }
        let reports = host
            .journal
            .read(|thread| {
                units
                    .iter()
                    .map(|(unit, since)| {
                        let usage = thread.work_unit(*unit).map(|u| u.usage).unwrap_or_default();
                        let tool_calls = thread
                            .activities_of(*unit)
                            .filter(|a| matches!(a.kind, ActivityKind::ToolCall { .. }))
                            .count() as u64;
                        RunEvent::AgentProgress {
                            work_unit_id: *unit,
                            usage,
                            tool_calls,
                            elapsed_ms: u64::try_from(since.elapsed().as_millis()).unwrap_or(0),
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        for report in reports {
            host.shared.emit(report);
        }
    }
}
