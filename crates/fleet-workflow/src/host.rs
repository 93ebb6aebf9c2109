//! The primitives' effects for one run: agent calls (caps, budgets, the resume journal, the
//! concurrency limit, recording), phases, logs and nested workflows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::agent::{AgentCall, AgentError, CallContext, DynAgentRunner};
use fleet_core::budget::{BudgetError, BudgetId, BudgetLimits, Budgets};
use fleet_core::command::WorkUnitDraft;
use fleet_core::id::WorkUnitId;
use fleet_core::journal::Journal;
use fleet_core::money::{Cost, Usd};
use fleet_core::provider::{BoxFuture, CancelToken, ErrorKind, ProviderError};
use fleet_core::spec::AgentSpec;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::call::{CallOptions, call_key};
use crate::catalog::Catalog;
use crate::engine::{BudgetView, ChildWorkflow, FrameId, Host, HostResult};
use crate::events::{CallCounts, CallNote, CallState, RunEvent};
use crate::resume::ResumeJournal;
use crate::script::Script;
use crate::shared::RunShared;
use crate::worktree::Worktree;

/// The run-wide concurrency limit. It halves when a provider answers 429/529 and grows back
/// one slot per success, so a fan-out backs off instead of failing and never bursts back.
pub(crate) struct Limiter {
    semaphore: Semaphore,
    max: usize,
    /// Current target and permits still to retire.
    state: Mutex<(usize, usize)>,
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            semaphore: Semaphore::new(max),
            max,
            state: Mutex::new((max, 0)),
        }
    }

    async fn acquire(&self) -> bool {
        match self.semaphore.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self) {
        self.finished(false);
    }

    /// A call gave its slot back; one that `succeeded` also grows the limit back by one
    /// slot, up to the maximum (one lock for both).
    fn finished(&self, succeeded: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut permits = 0;
        let mut give = |state: &mut (usize, usize)| {
            if state.1 > 0 {
                state.1 -= 1;
            } else {
                permits += 1;
            }
        };
        give(&mut state);
        if succeeded && state.0 < self.max {
            state.0 += 1;
            give(&mut state);
        }
        if permits > 0 {
            self.semaphore.add_permits(permits);
        }
    }

    fn overloaded(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let lower = (state.0 / 2).max(1);
        state.1 += state.0 - lower;
        state.0 = lower;
    }

    /// The current limit.
    pub(crate) fn current(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

struct Frame {
    unit: WorkUnitId,
    phase: Option<String>,
    script: Arc<Script>,
}

/// Tallies for the summary.
#[derive(Default)]
pub(crate) struct Tally {
    pub counts: CallCounts,
    pub nulls: Vec<CallNote>,
    pub failures: Vec<CallNote>,
    pub usage: TokenUsage,
    pub cost: Cost,
}

/// Limits and budgets of a run, as the host enforces them.
#[derive(Debug, Clone)]
pub(crate) struct HostConfig {
    pub max_agent_calls: u32,
    pub tokens_total: Option<u64>,
    pub usd_total: Option<Usd>,
    pub rate_limit_retries: u32,
    pub agent_concurrency: HashMap<String, usize>,
    pub phase_budgets: HashMap<String, crate::options::PhaseBudget>,
    /// The repository `isolation: 'worktree'` calls get worktrees of.
    pub workdir: std::path::PathBuf,
    pub model_aliases: HashMap<String, String>,
}

pub(crate) struct RunHost {
    pub shared: Arc<RunShared>,
    pub journal: Journal,
    pub runner: Arc<dyn DynAgentRunner>,
    pub specs: Arc<HashMap<String, Arc<AgentSpec>>>,
    pub catalog: Arc<Catalog>,
    pub budgets: Budgets,
    pub run_budget: BudgetId,
    pub config: HostConfig,
    pub limiter: Arc<Limiter>,
    pub resume: ResumeJournal,
    pub handle: Handle,
    pub cancel: CancelToken,
    pub tracker: TaskTracker,
    frames: Mutex<Vec<Frame>>,
    calls: AtomicU32,
    seq: AtomicU64,
    occurrences: Mutex<FxHashMap<String, u32>>,
    strict_ok: AtomicBool,
    pub tally: Mutex<Tally>,
    /// Whether a budget refused an agent() call.
    pub budget_exhausted: std::sync::atomic::AtomicBool,
    /// The highest budget notice given: 0 none, 1 at 80 %, 2 at 100 % or more.
    warned_budget: AtomicU8,
    me: OnceLock<Weak<RunHost>>,
    /// Budget nodes per agent type (its spec's `cost_budget`) and per phase, made on first use.
    nodes: Mutex<HashMap<String, BudgetId>>,
    /// Concurrency limits per agent type.
    type_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// In-flight calls: unit and start time (for progress events).
    pub in_flight: Mutex<FxHashMap<WorkUnitId, Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a live call ended, for the tally.
enum Ending {
    Answer(Value),
    Null(String),
    Failed(String),
}

impl RunHost {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<RunShared>,
        journal: Journal,
        runner: Arc<dyn DynAgentRunner>,
        specs: Arc<HashMap<String, Arc<AgentSpec>>>,
        catalog: Arc<Catalog>,
        config: HostConfig,
        concurrency: usize,
        resume: ResumeJournal,
        root: WorkUnitId,
        script: Arc<Script>,
        cancel: CancelToken,
    ) -> Self {
        let budgets = Budgets::new();
        let run_budget = budgets.add(
            "run",
            None,
            BudgetLimits {
                output_tokens: config.tokens_total,
                usd: config.usd_total,
            },
        );
        Self {
            shared,
            journal,
            runner,
            specs,
            catalog,
            budgets,
            run_budget,
            config,
            limiter: Arc::new(Limiter::new(concurrency)),
            resume,
            handle: Handle::current(),
            cancel,
            tracker: TaskTracker::new(),
            frames: Mutex::new(vec![Frame {
                unit: root,
                phase: None,
                script,
            }]),
            calls: AtomicU32::new(0),
            seq: AtomicU64::new(0),
            occurrences: Mutex::new(FxHashMap::default()),
            strict_ok: AtomicBool::new(true),
            tally: Mutex::new(Tally::default()),
            budget_exhausted: std::sync::atomic::AtomicBool::new(false),
            warned_budget: AtomicU8::new(0),
            me: OnceLock::new(),
            nodes: Mutex::new(HashMap::new()),
            type_limits: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(FxHashMap::default()),
        }
    }

    /// Lets calls reach the host after the script's thread hands them off.
    pub(crate) fn init_self(self: &Arc<Self>) {
        let _ = self.me.set(Arc::downgrade(self));
    }

    fn weak(&self) -> Weak<RunHost> {
        self.me.get().cloned().unwrap_or_default()
    }

    fn frame_unit(&self, frame: FrameId) -> Option<WorkUnitId> {
        lock(&self.frames).get(frame as usize).map(|f| f.unit)
    }

    /// Records in the background; the first failure fails the run at its end.
    fn record(&self, work: impl std::future::Future<Output = Result<(), String>> + Send + 'static) {
        let shared = self.shared.clone();
        self.tracker.spawn_on(
            async move {
                if let Err(e) = work.await {
                    shared.record_failed(e);
                }
            },
            &self.handle,
        );
    }

    fn node(&self, key: String, limits: BudgetLimits) -> BudgetId {
        *lock(&self.nodes)
            .entry(key.clone())
            .or_insert_with(|| self.budgets.add(key, Some(self.run_budget), limits))
    }

    /// The budgets a call is charged to: its phase's, its agent type's (the spec's
    /// `cost_budget`), its own cap, or else the run's.
    fn charge_targets(
        &self,
        phase: Option<&str>,
        spec: Option<&AgentSpec>,
        opts: &CallOptions,
    ) -> Result<Vec<BudgetId>, String> {
        let mut targets = Vec::new();
        if let Some(phase) = phase
            && let Some(budget) = self.config.phase_budgets.get(phase)
        {
            let node = self.node(
                format!("phase:{phase}"),
                BudgetLimits {
                    output_tokens: budget.tokens,
                    usd: budget.usd,
                },
            );
            if let (Some(total), Some(status)) = (budget.tokens, self.budgets.status(node))
                && status.spent.output_tokens >= total
            {
                self.budget_exhausted.store(true, Ordering::Relaxed);
                return Err(format!(
                    "Phase '{phase}' token budget exceeded ({} / {total} output tokens). Raise the phase's budget to go on.",
                    status.spent.output_tokens
                ));
            }
            targets.push(node);
        }
        let parent = spec.map(|spec| {
            self.node(
                format!("agent:{}", spec.name),
                BudgetLimits {
                    output_tokens: None,
                    usd: Some(spec.effective_cost_budget()),
                },
            )
        });
        if opts.budget_tokens.is_some() || opts.budget_usd.is_some() {
            targets.push(self.budgets.add(
                "agent call",
                Some(parent.unwrap_or(self.run_budget)),
                BudgetLimits {
                    output_tokens: opts.budget_tokens,
                    usd: opts.budget_usd.and_then(Usd::from_dollars),
                },
            ));
        } else if let Some(parent) = parent {
            targets.push(parent);
        }
        if targets.is_empty() {
            targets.push(self.run_budget);
        }
        Ok(targets)
    }

    fn type_limit(&self, agent_type: Option<&str>) -> Option<Arc<Semaphore>> {
        let name = agent_type?;
        let max = *self.config.agent_concurrency.get(name)?;
        Some(
            lock(&self.type_limits)
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(max.max(1))))
                .clone(),
        )
    }

    /// Whether the run has a token or dollar budget (without one, no call reads the spend).
    fn budgeted(&self) -> bool {
        self.config.tokens_total.is_some() || self.config.usd_total.is_some()
    }

    fn check_budget(&self) -> Result<(), String> {
        if !self.budgeted() {
            return Ok(());
        }
        let view = self.budget();
        if let Some(total) = view.tokens_total
            && view.tokens_spent >= total
        {
            return Err(format!(
                "Workflow token budget exceeded ({} / {total} output tokens). Agents in flight finish; no new agent() call starts. Raise the run's token budget to go on.",
                view.tokens_spent
            ));
        }
        if let Some(status) = self.budgets.status(self.run_budget)
            && let Some(limit) = status.limits.usd
            && status.spent.usd >= limit
        {
            return Err(format!(
                "Workflow dollar budget exceeded ({} / {limit}). Agents in flight finish; no new agent() call starts. Raise the run's dollar budget to go on.",
                status.spent.usd
            ));
        }
        Ok(())
    }

    fn warn_budget(&self) {
        if !self.budgeted() {
            return;
        }
        let view = self.budget();
        let share = |spent: f64, total: f64| if total > 0.0 { spent / total } else { 0.0 };
        let token_share = view
            .tokens_total
            .map_or(0.0, |t| share(view.tokens_spent as f64, t as f64));
        let usd_share = view.usd_total.map_or(0.0, |t| share(view.usd_spent, t));
        let level = |s: f64| u8::from(s >= 0.8) + u8::from(s >= 1.0);
        let reached = level(token_share).max(level(usd_share));
        // One notice at 80 %, and another if a turn whose prompt was larger than estimated
        // carries the spend to the cap or past it.
        if reached > self.warned_budget.fetch_max(reached, Ordering::Relaxed) {
            let tokens = level(token_share) == reached;
            // The share it says is the real one (a call that finished past the threshold can
            // take it well past 80 %).
            let percent = |spent: f64, total: f64| (spent / total * 100.0).floor();
            let message = if tokens {
                let total = view.tokens_total.unwrap_or(0);
                format!(
                    "{}% of the token budget is spent ({} / {total} output tokens)",
                    percent(view.tokens_spent as f64, total as f64),
                    view.tokens_spent,
                )
            } else {
                let total = view.usd_total.unwrap_or(0.0);
                format!(
                    "{}% of the dollar budget is spent (${:.4} / ${total:.4})",
                    percent(view.usd_spent, total),
                    view.usd_spent,
                )
            };
            self.shared.emit(RunEvent::BudgetWarning { message });
        }
    }

    fn resolve_spec(&self, name: &str) -> Result<Arc<AgentSpec>, String> {
        if let Some(spec) = self.specs.get(name) {
            return Ok(spec.clone());
        }
        let mut known: Vec<&String> = self.specs.keys().collect();
        known.sort();
        let suggestion = crate::suggest::did_you_mean(known.iter().map(|k| k.as_str()), name);
        let list = if known.is_empty() {
            "none are declared (add agents/<name>.yaml)".to_owned()
        } else {
            known
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "agent(): unknown agentType '{name}'; declared agents: {list}.{suggestion}"
        ))
    }
}

impl Host for RunHost {
    fn agent(
        &self,
        frame: FrameId,
        prompt: String,
        opts: Option<Value>,
    ) -> Result<BoxFuture<'static, HostResult>, String> {
        let mut opts = CallOptions::parse(opts.as_ref())?;
        if let Some(model) = &mut opts.model
            && let Some(real) = self.config.model_aliases.get(model.as_str())
        {
            model.clone_from(real);
        }
        for key in &opts.unknown {
            self.log(
                frame,
                LogLevel::Warn,
                format!("agent(): unknown option `{key}` ignored"),
            );
        }
        if self.cancel.is_cancelled() {
            return Err("the run is stopping; no new agent() call starts".into());
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.config.max_agent_calls {
            return Err(format!(
                "Workflow agent() call cap reached ({}). Split the work across runs, or raise the run's agent-call limit.",
                self.config.max_agent_calls
            ));
        }
        self.check_budget().inspect_err(|_| {
            self.budget_exhausted.store(true, Ordering::Relaxed);
        })?;
        let spec = opts
            .agent_type
            .as_deref()
            .map(|name| self.resolve_spec(name))
            .transpose()?;
        let parent = self
            .frame_unit(frame)
            .ok_or("agent(): the calling workflow is gone")?;
        let phase = opts.phase.clone().or_else(|| {
            lock(&self.frames)
                .get(frame as usize)
                .and_then(|f| f.phase.clone())
        });
        let base = opts.base_key(&prompt);
        let key = {
            let mut occurrences = lock(&self.occurrences);
            let occurrence = occurrences.get(&base).copied().unwrap_or(0);
            let key = call_key(&base, occurrence);
            occurrences.insert(base, occurrence + 1);
            key
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let cached = self.resume.lookup(&key, seq, &self.strict_ok);
        let mut call = AgentCall::new(prompt);
        call.label = opts.label.clone();
        let label = call.display_label();
        call.phase = phase.clone();
        call.agent = spec;
        call.model = opts.model.clone();
        call.effort = opts.effort;
        call.schema = opts.schema.clone();
        call.capabilities = opts.capabilities.clone();
        call.max_tool_calls = opts.max_tool_calls;
        call.timeout = opts.timeout_ms.map(Duration::from_millis);
        if let Some(tokens) = opts.budget_tokens {
            call.max_tokens = Some(u32::try_from(tokens).unwrap_or(u32::MAX));
        }
        let charge_to = self.charge_targets(phase.as_deref(), call.agent.as_deref(), &opts)?;
        let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
        draft.label = Some(label.clone());
        draft.phase = phase.clone();
        draft.agent = opts.agent_type.clone();
        draft.model = call
            .model
            .clone()
            .or_else(|| call.agent.as_ref().map(|s| s.model.clone()));
        let ctx = CallSite {
            host: self.weak(),
            parent,
            key,
            seq,
            label,
            phase,
            agent_type: opts.agent_type.clone(),
            draft,
            charge_to,
            type_limit: self.type_limit(opts.agent_type.as_deref()),
            worktree: opts.isolation.is_some(),
            _token: self.tracker.token(),
        };
        // Boxed, so that the call's future holds pointers to them: a fan-out keeps a
        // thousand of these futures at once.
        let ctx = Box::new(ctx);
        Ok(match cached {
            Some(value) => Box::pin(ctx.serve_cached(value)),
            None => Box::pin(ctx.run_live(Box::new(call))),
        })
    }

    fn phase(&self, frame: FrameId, title: String) {
        let (previous, unit) = {
            let mut frames = lock(&self.frames);
            let Some(f) = frames.get_mut(frame as usize) else {
                return;
            };
            (f.phase.replace(title.clone()), f.unit)
        };
        if let Some(previous) = previous {
            self.shared.emit(RunEvent::PhaseEnded { title: previous });
        }
        self.shared.emit(RunEvent::PhaseStarted {
            title: title.clone(),
        });
        // Recorded now, in the script's order with its calls; only the outcome is awaited.
        let recorded = self.journal.activity(unit, ActivityKind::Phase { title });
        self.record(async move { recorded.await.map_err(|e| e.to_string()) });
    }

    fn log(&self, frame: FrameId, level: LogLevel, message: String) {
        self.shared.emit(RunEvent::Log {
            level,
            message: message.clone(),
        });
        let Some(unit) = self.frame_unit(frame) else {
            return;
        };
        let recorded = self
            .journal
            .activity(unit, ActivityKind::Log { level, message });
        self.record(async move { recorded.await.map_err(|e| e.to_string()) });
    }

    fn budget(&self) -> BudgetView {
        let status = self.budgets.status(self.run_budget);
        let (tokens_spent, usd_spent) = status
            .as_ref()
            .map_or((0, 0.0), |s| (s.spent.output_tokens, s.spent.usd.dollars()));
        BudgetView {
            tokens_total: self.config.tokens_total,
            tokens_spent,
            usd_total: self.config.usd_total.map(Usd::dollars),
            usd_spent,
        }
    }

    fn open_workflow(
        &self,
        frame: FrameId,
        reference: Value,
        args: Option<Value>,
    ) -> Result<BoxFuture<'static, Result<ChildWorkflow, String>>, String> {
        if frame != 0 {
            return Err(
                "workflow() cannot be called from a nested workflow: only one level of nesting is allowed"
                    .into(),
            );
        }
        let base_dir = lock(&self.frames)
            .first()
            .and_then(|f| f.script.path())
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        let script = self.catalog.resolve(&reference, base_dir.as_deref())?;
        let parent = self
            .frame_unit(frame)
            .ok_or("workflow(): the caller is gone")?;
        let child_frame = {
            let mut frames = lock(&self.frames);
            frames.push(Frame {
                unit: parent,
                phase: None,
                script: script.clone(),
            });
            u32::try_from(frames.len() - 1).unwrap_or(u32::MAX)
        };
        let journal = self.journal.clone();
        let host = self.weak();
        let token = self.tracker.token();
        Ok(Box::pin(async move {
            let _token = token;
            let mut draft = WorkUnitDraft::new(WorkUnitKind::Workflow);
            draft.label = Some(script.meta.name.clone());
            let unit = journal
                .start_work_unit(parent, draft)
                .await
                .map_err(|e| format!("workflow(): cannot record the nested run: {e}"))?;
            if let Some(host) = host.upgrade()
                && let Some(f) = lock(&host.frames).get_mut(child_frame as usize)
            {
                f.unit = unit;
            }
            Ok(ChildWorkflow {
                frame: child_frame,
                script,
                args,
            })
        }))
    }

    fn close_workflow(
        &self,
        frame: FrameId,
        outcome: Result<&Value, &str>,
    ) -> BoxFuture<'static, ()> {
        let unit = self.frame_unit(frame);
        let journal = self.journal.clone();
        let (state, error) = match outcome {
            Ok(_) => (WorkUnitState::Completed, None),
            Err(message) => (WorkUnitState::Failed, Some(message.to_owned())),
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            if let Some(unit) = unit
                && let Err(e) = journal.set_state(unit, state, error).await
            {
                shared.record_failed(e.to_string());
            }
        })
    }
}

/// How an admitted attempt of a call ended.
enum Attempt {
    /// The call ended so, with what it spent: settle it once that is durable. The attempt's
    /// future is gone by then, so a call waiting for the commit holds only what settling needs.
    Settle(Ending, Option<(TokenUsage, Cost)>),
    /// The provider was overloaded: try again after this pause.
    Retry(Duration),
}

/// Everything a call needs once it leaves the script's thread.
struct CallSite {
    host: Weak<RunHost>,
    parent: WorkUnitId,
    key: String,
    seq: u64,
    label: String,
    phase: Option<String>,
    agent_type: Option<String>,
    draft: WorkUnitDraft,
    charge_to: Vec<BudgetId>,
    type_limit: Option<Arc<Semaphore>>,
    /// `isolation: 'worktree'`.
    worktree: bool,
    /// Keeps the run's tracker open until the call is over.
    _token: TaskTrackerToken,
}

impl CallSite {
    async fn serve_cached(self: Box<Self>, value: Value) -> HostResult {
        let host = self.host.upgrade().ok_or("the run is gone")?;
        let mut draft = self.draft;
        draft.state = WorkUnitState::Completed;
        let unit = host
            .journal
            .start_work_unit(self.parent, draft)
            .await
            .map_err(|e| format!("cannot record the call: {e}"))?;
        host.journal
            .activity(
                unit,
                ActivityKind::AgentResult {
                    key: self.key,
                    seq: self.seq,
                    result: value.clone(),
                    cached: true,
                },
            )
            .await
            .map_err(|e| format!("cannot record the call: {e}"))?;
        host.journal
            .flush()
            .await
            .map_err(|e| format!("cannot record the call: {e}"))?;
        lock(&host.tally).counts.cached += 1;
        host.shared.emit(RunEvent::AgentStarted {
            work_unit_id: unit,
            label: self.label.clone(),
            phase: self.phase,
            agent_type: self.agent_type,
        });
        host.shared.emit(RunEvent::AgentFinished {
            work_unit_id: unit,
            label: self.label,
            state: CallState::Cached,
            reason: None,
            result_bytes: json_len(&value),
            usage: TokenUsage::default(),
            cost_usd: 0.0,
        });
        Ok(value)
    }

    async fn run_live(self: Box<Self>, call: Box<AgentCall>) -> HostResult {
        let host = self.host.upgrade().ok_or("the run is gone")?;
        let mut attempt = 0;
        loop {
            let mut draft = self.draft.clone();
            draft.state = WorkUnitState::Pending;
            let unit = host
                .journal
                .start_work_unit(self.parent, draft)
                .await
                .map_err(|e| format!("cannot record the call: {e}"))?;
            host.shared.emit(RunEvent::AgentStarted {
                work_unit_id: unit,
                label: self.label.clone(),
                phase: self.phase.clone(),
                agent_type: self.agent_type.clone(),
            });
            let type_permit = match &self.type_limit {
                Some(limit) => tokio::select! {
                    permit = limit.clone().acquire_owned() => permit.ok(),
                    () = host.cancel.cancelled() => None,
                },
                None => None,
            };
            let admitted = (self.type_limit.is_none() || type_permit.is_some())
                && tokio::select! {
                    ok = host.limiter.acquire() => ok,
                    () = host.cancel.cancelled() => false,
                };
            if !admitted {
                let _ = host
                    .journal
                    .set_state(
                        unit,
                        WorkUnitState::Cancelled,
                        Some("the run was stopped".into()),
                    )
                    .await;
                return self
                    .settle(
                        &host,
                        unit,
                        Ending::Failed("the run was stopped".into()),
                        None,
                    )
                    .await;
            }
            // Everything from here on is boxed: the calls still waiting for a slot (most of a
            // fan-out's, all at once) then hold a small future each.
            match Box::pin(self.attempt(&host, unit, &call, type_permit, &mut attempt)).await {
                Attempt::Settle(ending, spent) => {
                    return self.settle(&host, unit, ending, spent).await;
                }
                Attempt::Retry(pause) => tokio::time::sleep(pause).await,
            }
        }
    }

    /// Runs one admitted attempt of the call recorded as `unit`.
    async fn attempt(
        &self,
        host: &RunHost,
        unit: WorkUnitId,
        call: &AgentCall,
        type_permit: Option<tokio::sync::OwnedSemaphorePermit>,
        attempt: &mut u32,
    ) -> Attempt {
        lock(&host.in_flight).insert(unit, Instant::now());
        let ctx = CallContext {
            journal: host.journal.clone(),
            parent: self.parent,
            work_unit: Some(unit),
            budgets: host.budgets.clone(),
            charge_to: self.charge_to.clone(),
            cancel: host.cancel.child_token(),
        };
        let mut attempt_call = call.clone();
        let worktree = if self.worktree {
            // Boxed, like the worktree's clean-up below: creating one runs git, and a
            // future that holds that inline makes every call's future kilobytes larger.
            match Box::pin(Worktree::create(
                &host.config.workdir,
                &format!("{}-{}", self.seq, unit),
            ))
            .await
            {
                Ok(worktree) => {
                    attempt_call.workdir = Some(worktree.path.clone());
                    Some(worktree)
                }
                Err(e) => {
                    lock(&host.in_flight).remove(&unit);
                    host.limiter.release();
                    let reason = e;
                    let _ = host
                        .journal
                        .set_state(unit, WorkUnitState::Failed, Some(reason.clone()))
                        .await;
                    return Attempt::Settle(Ending::Failed(reason), None);
                }
            }
        } else {
            None
        };
        let outcome = host.runner.run_dyn(attempt_call, ctx).await;
        if let Some(worktree) = worktree {
            Box::pin(self.close_worktree(host, unit, worktree)).await;
        }
        lock(&host.in_flight).remove(&unit);
        host.limiter.finished(outcome.is_ok());
        drop(type_permit);
        let ending = match outcome {
            Ok(outcome) => {
                let value = outcome.output.unwrap_or(Value::String(outcome.text));
                let journaled = host
                    .journal
                    .activity(
                        unit,
                        ActivityKind::AgentResult {
                            key: self.key.clone(),
                            seq: self.seq,
                            result: value.clone(),
                            cached: false,
                        },
                    )
                    .await;
                if let Err(e) = journaled {
                    host.shared.record_failed(e.to_string());
                }
                {
                    let mut tally = lock(&host.tally);
                    tally.usage += outcome.usage;
                    tally.cost += outcome.cost;
                }
                return Attempt::Settle(Ending::Answer(value), Some((outcome.usage, outcome.cost)));
            }
            Err(AgentError::Provider(ProviderError::Api {
                kind: ErrorKind::RateLimited | ErrorKind::Overloaded,
                message,
                ..
            })) if *attempt < host.config.rate_limit_retries && !host.cancel.is_cancelled() => {
                host.limiter.overloaded();
                *attempt += 1;
                host.shared.emit(RunEvent::Log {
                    level: LogLevel::Warn,
                    message: format!(
                        "{}: provider overloaded ({message}); concurrency lowered to {}, retrying",
                        self.label,
                        host.limiter.current()
                    ),
                });
                return Attempt::Retry(Duration::from_millis(
                    250 * u64::from(*attempt) + u64::from(self.seq as u32 % 97) * 3,
                ));
            }
            // Like a terminal provider error: the agent died after its retries.
            Err(e @ (AgentError::Provider(_) | AgentError::Worker(_))) => {
                Ending::Null(e.to_string())
            }
            Err(AgentError::Cancelled) if !host.cancel.is_cancelled() => {
                Ending::Null("skipped".into())
            }
            // Refused for a budget (the run's, or a sandboxed specialist's at the gateway):
            // the run ends as a budget that ran out, as when it is refused at admission.
            Err(AgentError::Budget(e)) => {
                host.budget_exhausted.store(true, Ordering::Relaxed);
                Ending::Failed(refused_by_budget(&e))
            }
            Err(e) => Ending::Failed(e.to_string()),
        };
        Attempt::Settle(ending, None)
    }

    /// Removes an unchanged worktree, or logs where the changes were kept.
    async fn close_worktree(&self, host: &RunHost, unit: WorkUnitId, worktree: Worktree) {
        let (level, message) = match worktree.finish().await {
            Ok(None) => return,
            Ok(Some(kept)) => (LogLevel::Info, format!("{}: {kept}", self.label)),
            Err(e) => (
                LogLevel::Warn,
                format!("{}: cannot clean up its worktree: {e}", self.label),
            ),
        };
        host.shared.emit(RunEvent::Log {
            level,
            message: message.clone(),
        });
        if let Err(e) = host
            .journal
            .activity(unit, ActivityKind::Log { level, message })
            .await
        {
            host.shared.record_failed(e.to_string());
        }
    }

    /// Waits until everything the call recorded is durable, then reports how it ended: no
    /// call is acknowledged (its promise settled, its end reported) before its events are on
    /// disk.
    async fn settle(
        &self,
        host: &RunHost,
        unit: WorkUnitId,
        ending: Ending,
        spent: Option<(TokenUsage, Cost)>,
    ) -> HostResult {
        if let Err(e) = host.journal.flush().await {
            let reason = format!("cannot record the call: {e}");
            host.shared.record_failed(e.to_string());
            return self.finish(host, unit, Ending::Failed(reason), spent);
        }
        self.finish(host, unit, ending, spent)
    }

    fn finish(
        &self,
        host: &RunHost,
        unit: WorkUnitId,
        ending: Ending,
        spent: Option<(TokenUsage, Cost)>,
    ) -> HostResult {
        let (usage, cost) = spent.unwrap_or_default();
        let note = |reason: &str| CallNote {
            label: self.label.clone(),
            work_unit_id: Some(unit),
            reason: reason.to_owned(),
        };
        let (state, reason, result) = {
            let mut tally = lock(&host.tally);
            match ending {
                Ending::Answer(value) => {
                    tally.counts.completed += 1;
                    (CallState::Completed, None, Ok(value))
                }
                Ending::Null(reason) => {
                    tally.counts.null += 1;
                    tally.nulls.push(note(&reason));
                    (CallState::Null, Some(reason), Ok(Value::Null))
                }
                Ending::Failed(reason) => {
                    tally.counts.failed += 1;
                    tally.failures.push(note(&reason));
                    (CallState::Failed, Some(reason.clone()), Err(reason))
                }
            }
        };
        host.shared.emit(RunEvent::AgentFinished {
            work_unit_id: unit,
            label: self.label.clone(),
            state,
            reason,
            result_bytes: result.as_ref().map_or(0, json_len),
            usage,
            cost_usd: cost.usd.dollars(),
        });
        host.warn_budget();
        result
    }
}

/// How many bytes `value` is as JSON, without writing it out.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Why a call was refused, in the workflow's words when the run's or a phase's budget refused
/// it (as Claude Code words a spent budget), else the ledger's.
fn refused_by_budget(e: &BudgetError) -> String {
    let BudgetError::Exceeded { budget, what } = e else {
        return e.to_string();
    };
    let measure = if what.contains("output tokens") {
        "token"
    } else {
        "dollar"
    };
    if budget == "run" {
        format!(
            "Workflow {measure} budget exceeded ({what}). No new agent() call starts. Raise the run's {measure} budget to go on."
        )
    } else if let Some(phase) = budget.strip_prefix("phase:") {
        format!(
            "Phase '{phase}' {measure} budget exceeded ({what}). Raise the phase's budget to go on."
        )
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[tokio::test]
    async fn the_limit_halves_when_overloaded_and_grows_back_one_success_at_a_time() {
        let limiter = Limiter::new(4);
        for _ in 0..4 {
            assert!(limiter.acquire().await);
        }
        assert_eq!(limiter.semaphore.available_permits(), 0);
        limiter.overloaded();
        assert_eq!(limiter.current(), 2);
        // The first two slots given back retire instead of admitting anyone.
        limiter.release();
        limiter.finished(false);
        assert_eq!(limiter.semaphore.available_permits(), 0);
        // A success gives its slot back and grows the limit by one.
        limiter.finished(true);
        assert_eq!(
            (limiter.current(), limiter.semaphore.available_permits()),
            (3, 2)
        );
        limiter.finished(true);
        assert_eq!(
            (limiter.current(), limiter.semaphore.available_permits()),
            (4, 4)
        );
        // At the maximum, a success only gives its slot back.
        assert!(limiter.acquire().await);
        limiter.finished(true);
        assert_eq!(
            (limiter.current(), limiter.semaphore.available_permits()),
            (4, 4)
        );
    }
}
