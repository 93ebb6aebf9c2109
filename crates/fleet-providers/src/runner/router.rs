//! [`AgentRouter`]: each agent call on the runner its agent spec's `provider` names — Claude
//! Code, Codex, or the model agent loop — so one workflow can fan out to all of them and still
//! record one tree.

use std::collections::HashMap;
use std::sync::Arc;

use fleet_core::agent::{
    AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext, DynAgentRunner,
};

/// Runs a call on the runner registered for its spec's `provider`, else on the default one.
#[derive(Clone)]
pub struct AgentRouter {
    default: Arc<dyn DynAgentRunner>,
    routes: HashMap<String, Arc<dyn DynAgentRunner>>,
    specialists: Option<Arc<dyn DynAgentRunner>>,
}

impl std::fmt::Debug for AgentRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut routes: Vec<&String> = self.routes.keys().collect();
        routes.sort();
        f.debug_struct("AgentRouter")
            .field("routes", &routes)
            .finish_non_exhaustive()
    }
}

impl AgentRouter {
    /// A router sending every call to `default`.
    #[must_use]
    pub fn new(default: Arc<dyn DynAgentRunner>) -> Self {
        Self {
            default,
            routes: HashMap::new(),
            specialists: None,
        }
    }

    /// Sends calls whose agent spec says `provider: <provider>` to `runner`.
    #[must_use]
    pub fn route(mut self, provider: &str, runner: Arc<dyn DynAgentRunner>) -> Self {
        self.routes.insert(provider.to_owned(), runner);
        self
    }

    /// Sends calls that name an agent spec whose `provider` has no route of its own to
    /// `runner` (a supervisor's sandboxed specialists, say) instead of the default runner,
    /// which keeps the calls that name no spec.
    #[must_use]
    pub fn specialists(mut self, runner: Arc<dyn DynAgentRunner>) -> Self {
        self.specialists = Some(runner);
        self
    }

    /// The runner for `call`.
    fn runner_for(&self, call: &AgentCall) -> &Arc<dyn DynAgentRunner> {
        let Some(spec) = call.agent.as_ref() else {
            return &self.default;
        };
        spec.provider
            .as_deref()
            .and_then(|provider| self.routes.get(provider))
            .or(self.specialists.as_ref())
            .unwrap_or(&self.default)
    }
}

impl AgentRunner for AgentRouter {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let runner = Arc::clone(self.runner_for(&call));
        runner.run_dyn(call, ctx).await
    }
}
