//! The project's sandboxed specialists: the supervisor that `fleet start` keeps, and the pool a
//! `fleet run` or `fleet ask` delegates to when a workflow's `agent({agentType})` or the primary
//! agent's `spawn_subagent` names an agent of `agents/*.yaml`.
//!
//! The supervisor is the workers' model gateway: it holds the provider (and its credentials),
//! meters every turn and charges the agent's budget, the fleet's, and the caller's (a run's).
//! A specialist whose sandbox cannot be set up here fails its calls with the reason; it never
//! runs unsandboxed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::budget::{BudgetLimits, Budgets};
use fleet_core::money::Usd;
use fleet_core::provider::DynProvider;
use fleet_core::spec::AgentSpec;
use fleet_sandbox::{PlanError, Prepared, Sandbox, SpecialistRunner, Supervisor, WorkerPlan};
use tokio::sync::OnceCell;

use crate::WORKER;
use crate::app::App;

/// A supervisor whose gateway is `provider`, charging each agent's budget under the fleet's
/// (`fleet.budget_usd`), its workers the `fleet` program's own (`fleet __worker`), sandboxed by
/// its hidden helper.
pub(crate) fn supervisor(app: &App, provider: Arc<dyn DynProvider>) -> anyhow::Result<Supervisor> {
    let exe = std::env::current_exe().context("cannot find the fleet program")?;
    let sandbox = Sandbox::new(&exe, vec![crate::SANDBOX_HELPER.into()]);
    let budgets = Budgets::new();
    let fleet_budget = app
        .config
        .fleet_budget_usd()
        .and_then(Usd::from_dollars)
        .map(|usd| {
            budgets.add(
                "the fleet",
                None,
                BudgetLimits {
                    output_tokens: None,
                    usd: Some(usd),
                },
            )
        });
    Ok(Supervisor::new(sandbox, app.prices()?)
        .charging(budgets, fleet_budget)
        .with_gateway(provider))
}

/// A specialist's plan: its sandbox, from its spec, with nothing of the provider in it (no
/// settings, no keys: its model turns go through the supervisor's gateway); its worker the
/// spec's `worker:` program, else `fleet __worker`.
pub(crate) fn plan(spec: &AgentSpec, root: &Path) -> anyhow::Result<Result<WorkerPlan, PlanError>> {
    let exe = std::env::current_exe().context("cannot find the fleet program")?;
    Ok(WorkerPlan::for_project(spec, root, &exe, &[WORKER.into()]))
}

/// Makes the plan's writable paths exist and, as root, writable by the workers; what it did.
pub(crate) fn prepare(spec: &AgentSpec, plan: &WorkerPlan) -> anyhow::Result<Vec<Prepared>> {
    for dir in &plan.policy.writable {
        if !dir.exists() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {} for {}", dir.display(), spec.name))?;
        }
    }
    fleet_sandbox::prepare_writable(&plan.policy)
        .with_context(|| format!("cannot prepare the writable paths of {}", spec.name))
}

/// Whether an agent was added to the supervisor, or why it cannot be.
type Added = OnceCell<Result<(), String>>;

/// The runner a run delegates specialists to: each agent is added to the supervisor at its
/// first call (so a run that delegates nothing starts nothing), then its calls run on its
/// sandboxed workers.
pub(crate) struct Delegation {
    supervisor: Supervisor,
    runner: SpecialistRunner,
    root: std::path::PathBuf,
    /// Most workers per agent: the run's concurrency cap, so that the cap is what limits a
    /// fan-out to one specialist, as for calls run in process.
    workers: usize,
    /// Per agent: added, or why it cannot be.
    added: Mutex<HashMap<String, Arc<Added>>>,
}

impl Delegation {
    pub(crate) fn new(app: &App, provider: Arc<dyn DynProvider>) -> anyhow::Result<Self> {
        let supervisor = supervisor(app, provider)?;
        Ok(Self {
            runner: SpecialistRunner::new(supervisor.clone()),
            supervisor,
            root: app.config.root().to_owned(),
            workers: app
                .config
                .concurrency()
                .unwrap_or_else(|| fleet_workflow::RunOptions::default().concurrency)
                .max(1),
            added: Mutex::default(),
        })
    }

    /// Adds `spec`'s agent to the supervisor once; why it cannot be, if it cannot.
    async fn ensure(&self, spec: &AgentSpec) -> Result<(), String> {
        let cell = self
            .added
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(spec.name.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| async {
            let mut plan = plan(spec, &self.root)
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            plan.max = plan.max.max(self.workers);
            for done in prepare(spec, &plan).map_err(|e| format!("{e:#}"))? {
                eprintln!("fleet: {}: {done}", spec.name);
            }
            self.supervisor.add(plan).await.map_err(|e| e.to_string())
        })
        .await
        .clone()
    }
}

impl AgentRunner for Delegation {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let Some(spec) = call.agent.clone() else {
            return Err(AgentError::Config(
                "a delegated call names its specialist (agentType)".into(),
            ));
        };
        if let Err(reason) = self.ensure(&spec).await {
            return Err(AgentError::Config(format!(
                "specialist {} cannot run in its sandbox here, and specialists never run \
                 unsandboxed: {reason}",
                spec.name
            )));
        }
        self.runner.run(call, ctx).await
    }
}

impl Drop for Delegation {
    fn drop(&mut self) {
        let added = self.added.get_mut().unwrap_or_else(PoisonError::into_inner);
        for name in added.keys() {
            self.supervisor.kill(name);
        }
    }
}
