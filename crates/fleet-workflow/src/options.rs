//! How a run is asked for: [`RunOptions`] (budgets, caps, limits, aliases) and [`Resume`].

use std::collections::HashMap;
use std::time::Duration;

use fleet_core::money::Usd;
use serde_json::Value;

use crate::engine::ScriptLimits;
use crate::events::RunId;

/// How to run a workflow.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `args` (deep-copied into the script).
    pub args: Option<Value>,
    /// The run's output-token target (`budget.total`).
    pub budget_tokens: Option<u64>,
    /// The run's dollar cap (`budget.usd.total`): calls are admitted only if their worst case
    /// fits.
    pub budget_usd: Option<Usd>,
    /// Most agent calls in flight at once.
    pub concurrency: usize,
    /// Most `agent()` calls in the whole run (nested workflows included).
    pub max_agent_calls: u32,
    /// The script's CPU, heap and item limits.
    pub limits: ScriptLimits,
    /// How many times a call the provider refused with 429/529 is retried (at lower
    /// concurrency) before it resolves `null`.
    pub rate_limit_retries: u32,
    /// How often in-flight calls report progress.
    pub progress_interval: Duration,
    /// Most calls in flight at once per `agentType` (within `concurrency`).
    pub agent_concurrency: HashMap<String, usize>,
    /// Budgets per phase title: a call in that phase is also charged to it.
    pub phase_budgets: HashMap<String, PhaseBudget>,
    /// The git repository `isolation: 'worktree'` calls get their worktrees from (`None`: the
    /// current directory).
    pub workdir: Option<std::path::PathBuf>,
    /// Model names scripts may use for real ones, as Claude Code's `haiku`, `sonnet` and
    /// `opus` (see [`default_model_aliases`]); set others for other providers.
    pub model_aliases: HashMap<String, String>,
    /// Any call that comes back `null` (or fails) fails the run, although the script went on
    /// without it (the CLI's `--fail-on-null`, config `run.fail_on_null`). Off, a run fails
    /// only when every call came to nothing.
    pub fail_on_null: bool,
}

/// Claude Code's model aliases, as Anthropic model ids.
#[must_use]
pub fn default_model_aliases() -> HashMap<String, String> {
    [
        ("haiku", "claude-haiku-4-5"),
        ("sonnet", "claude-sonnet-4-5"),
        ("opus", "claude-opus-4-5"),
    ]
    .into_iter()
    .map(|(alias, model)| (alias.to_owned(), model.to_owned()))
    .collect()
}

/// A phase's budget: an output-token target (checked before each call, as the run's is) and a
/// dollar cap (admission by reservation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseBudget {
    /// Output tokens.
    pub tokens: Option<u64>,
    /// Dollars.
    pub usd: Option<Usd>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            args: None,
            budget_tokens: None,
            budget_usd: None,
            concurrency: 16,
            max_agent_calls: 1000,
            limits: ScriptLimits::default(),
            rate_limit_retries: 3,
            progress_interval: Duration::from_secs(1),
            agent_concurrency: HashMap::new(),
            phase_budgets: HashMap::new(),
            workdir: None,
            model_aliases: default_model_aliases(),
            fail_on_null: false,
        }
    }
}

/// Which run to resume, and how.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    /// The run.
    pub run_id: RunId,
    /// Claude Code's rule: only the unchanged prefix, in start order, is served.
    pub strict: bool,
}
