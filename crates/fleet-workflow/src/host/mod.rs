//! The primitives' effects for one run: agent calls (caps, budgets, the resume journal, the
//! concurrency limit, recording), phases, logs and nested workflows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use fleet_core::agent::DynAgentRunner;
use fleet_core::budget::{BudgetId, BudgetLimits, Budgets};
use fleet_core::id::WorkUnitId;
use fleet_core::journal::Journal;
use fleet_core::money::{Cost, Usd};
use fleet_core::provider::CancelToken;
use fleet_core::spec::AgentSpec;
use fleet_core::sync::lock;
use fleet_core::usage::TokenUsage;
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::call::CallOptions;
use crate::catalog::Catalog;
use crate::engine::{FrameId, Host};
use crate::events::{CallCounts, CallNote, RunEvent};
use crate::resume::ResumeJournal;
use crate::script::Script;
use crate::shared::RunShared;

mod call_site;
mod limiter;
mod script_api;

pub(crate) use self::limiter::Limiter;

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
    /// Itself, for the calls it hands off to reach it.
    me: Weak<RunHost>,
    /// Budget nodes per agent type (its spec's `cost_budget`) and per phase, made on first use.
    nodes: Mutex<HashMap<String, BudgetId>>,
    /// Concurrency limits per agent type.
    type_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// In-flight calls: unit and start time (for progress events).
    pub in_flight: Mutex<FxHashMap<WorkUnitId, Instant>>,
}

/// How a live call ended, for the tally.
enum Ending {
    Answer(Value),
    Null(String),
    Failed(String),
}

/// What a run's host is made of.
pub(crate) struct HostParts {
    /// What the run's handle shares.
    pub(crate) shared: Arc<RunShared>,
    /// Where the run is recorded.
    pub(crate) journal: Journal,
    /// What runs its agent calls.
    pub(crate) runner: Arc<dyn DynAgentRunner>,
    /// The agent specs `agentType` names.
    pub(crate) specs: Arc<HashMap<String, Arc<AgentSpec>>>,
    /// The workflows `workflow()` names.
    pub(crate) catalog: Arc<Catalog>,
    /// Its limits and budgets.
    pub(crate) config: HostConfig,
    /// How many calls may run at once.
    pub(crate) concurrency: usize,
    /// The results an earlier attempt journaled.
    pub(crate) resume: ResumeJournal,
    /// The run's root unit.
    pub(crate) root: WorkUnitId,
    /// The workflow.
    pub(crate) script: Arc<Script>,
    /// Stops the run.
    pub(crate) cancel: CancelToken,
}

impl RunHost {
    /// The host of a run, in one step: the calls it hands off reach it through a weak
    /// reference to itself, made as it is built.
    pub(crate) fn start(parts: HostParts) -> Arc<Self> {
        let HostParts {
            shared,
            journal,
            runner,
            specs,
            catalog,
            config,
            concurrency,
            resume,
            root,
            script,
            cancel,
        } = parts;
        let budgets = Budgets::new();
        let run_budget = budgets.add(
            "run",
            None,
            BudgetLimits {
                output_tokens: config.tokens_total,
                usd: config.usd_total,
            },
        );
        Arc::new_cyclic(|me| Self {
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
            me: me.clone(),
            nodes: Mutex::new(HashMap::new()),
            type_limits: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(FxHashMap::default()),
        })
    }

    fn weak(&self) -> Weak<RunHost> {
        self.me.clone()
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
                    usd: opts.budget_usd,
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
        let usd_share = view
            .usd_total
            .map_or(0.0, |t| share(view.usd_spent.dollars(), t.dollars()));
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
                let total = view.usd_total.unwrap_or_default().dollars();
                let spent = view.usd_spent.dollars();
                format!(
                    "{}% of the dollar budget is spent (${spent:.4} / ${total:.4})",
                    percent(spent, total),
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
        let suggestion = crate::catalog::suggestion(name, known.iter().map(|k| k.as_str()));
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
