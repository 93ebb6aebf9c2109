//! The desk an agent works at: its spec, its workspace and its agent loop.

use std::path::PathBuf;
use std::sync::Arc;

use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
use fleet_core::command::WorkUnitDraft;
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::spec::AgentSpec;
use fleet_core::store::memory::MemoryStore;
use fleet_core::work_unit::WorkUnitKind;
use fleet_providers::HostCommands;
use fleet_providers::runner::agent::ModelAgentRunner;
use fleet_sandbox::CommitQueue;
use fleet_sandbox::worker::{RoleError, Task, WorkerContext};

/// What a specialist's tasks work with.
pub struct Desk {
    /// The agent's spec, as the supervisor sent it.
    pub spec: Arc<AgentSpec>,
    /// Where it works (writable; usually a git repository).
    pub workspace: PathBuf,
    pub(crate) commits: CommitQueue,
}

impl Desk {
    /// The desk `initialize` describes.
    ///
    /// # Errors
    /// The spec is not an agent spec, or the supervisor offers no model gateway.
    pub fn new(ctx: &WorkerContext) -> Result<Self, RoleError> {
        let spec: AgentSpec = serde_json::from_value(ctx.spec.clone())
            .map_err(|e| format!("initialize: the spec is not an agent spec: {e}"))?;
        if ctx.gateway.is_none() {
            return Err(format!(
                "the supervisor has no model gateway, so {} cannot reach a model \
                 (give the supervisor a provider: Supervisor::with_gateway)",
                spec.name
            )
            .into());
        }
        Ok(Self {
            spec: Arc::new(spec),
            workspace: ctx.workspace.clone(),
            commits: CommitQueue::new(&ctx.workspace),
        })
    }

    /// One run of the agent loop on `prompt` (the spec's system prompt, tools, capabilities and
    /// limits), in the workspace, cancelled with the task; every model turn goes through the
    /// supervisor's gateway. Returns the agent's final text.
    ///
    /// # Errors
    /// The loop failed: a refused or failed model turn, a limit reached, the task cancelled.
    pub async fn ask(&self, task: &Task, prompt: &str) -> Result<String, RoleError> {
        let runner = ModelAgentRunner::builder(task.model())
            .workdir(&self.workspace)
            .commands(Arc::new(HostCommands))
            .build();
        // The worker's own journal is scratch: the supervisor records what counts.
        let store: SharedStore = Arc::new(MemoryStore::new());
        let journal = Journal::create(store, None)
            .await
            .map_err(|e| e.to_string())?;
        let (_, root) = journal
            .start_turn(None, WorkUnitDraft::new(WorkUnitKind::PrimaryAgent))
            .await
            .map_err(|e| e.to_string())?;
        let call = AgentCall {
            agent: Some(self.spec.clone()),
            ..AgentCall::new(prompt.to_owned())
        };
        let mut ctx = CallContext::new(journal, root);
        ctx.cancel = task.cancel.clone();
        let outcome = runner.run(call, ctx).await.map_err(|e| e.to_string())?;
        Ok(outcome.text)
    }
}
