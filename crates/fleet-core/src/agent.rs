//! The agent seam: an [`AgentRunner`] runs one agent call (prompt in, answer out), recording it
//! as a `delegated_agent` work unit and charging its tokens and dollars to budgets.
//!
//! The workflow engine's `agent()`, a primary agent's delegation tools and the supervisor all
//! talk to agents only through this trait. `fleet-providers` implements it over any
//! [`Provider`](crate::provider::Provider); the sandbox crate implements it over worker processes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::budget::{BudgetError, BudgetId, Budgets};
use crate::command::CommandError;
use crate::id::WorkUnitId;
use crate::journal::Journal;
use crate::money::Cost;
use crate::provider::{CancelToken, ProviderError};
use crate::spec::{AgentSpec, Capability, Effort};
use crate::sync::BoxFuture;
use crate::usage::TokenUsage;

/// One agent call: what to ask and within which limits.
#[derive(Debug, Clone, Default)]
pub struct AgentCall {
    /// The task.
    pub prompt: String,
    /// The specialist to run (system prompt, model, capabilities, limits); `None` runs a plain
    /// agent on the runner's default model.
    pub agent: Option<Arc<AgentSpec>>,
    /// A short label for the work unit (defaults to the start of the prompt).
    pub label: Option<String>,
    /// The workflow phase it belongs to.
    pub phase: Option<String>,
    /// A model instead of the spec's.
    pub model: Option<String>,
    /// Reasoning effort instead of the spec's.
    pub effort: Option<Effort>,
    /// When set, the answer must be a JSON value valid against this schema, given through the
    /// `structured_output` tool.
    pub schema: Option<Value>,
    /// Capabilities instead of the spec's (they decide which built-in tools the agent gets).
    pub capabilities: Option<Vec<Capability>>,
    /// Most tool calls (instead of the spec's).
    pub max_tool_calls: Option<u32>,
    /// Most wall time (instead of the spec's).
    pub timeout: Option<Duration>,
    /// Most output tokens per model request (instead of the spec's).
    pub max_tokens: Option<u32>,
    /// The directory the agent's tools work in, instead of the runner's (a workflow's
    /// `isolation: 'worktree'` sets it to a fresh git worktree).
    pub workdir: Option<std::path::PathBuf>,
}

impl AgentCall {
    /// A call with just a prompt.
    #[must_use]
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// The label to show: the given one, or the prompt's first line cut to 60 characters.
    #[must_use]
    pub fn display_label(&self) -> String {
        if let Some(label) = &self.label {
            return label.clone();
        }
        let first = self.prompt.lines().next().unwrap_or_default();
        let mut label: String = first.chars().take(60).collect();
        if first.chars().count() > 60 {
            label.push('…');
        }
        label
    }
}

/// Where an agent call records itself and what it may spend.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The thread to record into.
    pub journal: Journal,
    /// The unit that delegates this call.
    pub parent: WorkUnitId,
    /// A unit already recorded for this call (pending), to use instead of creating one.
    pub work_unit: Option<WorkUnitId>,
    /// The budget ledger.
    pub budgets: Budgets,
    /// The budgets the call is charged to (their ancestors too).
    pub charge_to: Vec<BudgetId>,
    /// Cancels the call (and its background subagents).
    pub cancel: CancelToken,
}

impl CallContext {
    /// A context recording under `parent`, with no budgets.
    #[must_use]
    pub fn new(journal: Journal, parent: WorkUnitId) -> Self {
        Self {
            journal,
            parent,
            work_unit: None,
            budgets: Budgets::new(),
            charge_to: Vec::new(),
            cancel: CancelToken::new(),
        }
    }
}

/// What an agent call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutcome {
    /// The call's work unit.
    pub work_unit_id: WorkUnitId,
    /// The model's final text.
    pub text: String,
    /// The structured answer, when a schema was given.
    pub output: Option<Value>,
    /// The model that ran.
    pub model: String,
    /// Tokens of all the call's model requests.
    pub usage: TokenUsage,
    /// Their price.
    pub cost: Cost,
    /// Model requests made.
    pub model_requests: u32,
    /// Tool calls made.
    pub tool_calls: u32,
}

/// Why an agent call failed. The call's work unit (if it was recorded) is `failed` or
/// `cancelled` with this error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A budget refused the next model request.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// The call ran past its timeout.
    #[error("agent call timed out after {0:?}")]
    TimedOut(Duration),
    /// The call was cancelled.
    #[error("agent call cancelled")]
    Cancelled,
    /// The model's structured answer never matched the schema.
    #[error("structured output still invalid after {attempts} attempts: {error}")]
    InvalidOutput {
        /// Attempts made.
        attempts: u32,
        /// The last validation error.
        error: String,
    },
    /// The model kept calling tools past the limit.
    #[error("agent made more than {0} tool calls")]
    TooManyToolCalls(u32),
    /// The model stopped without answering (max tokens, refusal) or answered in a way the call
    /// cannot use.
    #[error("agent gave no usable answer: {0}")]
    NoAnswer(String),
    /// The call is misconfigured (an unknown model, a schema that is not a schema).
    #[error("agent call misconfigured: {0}")]
    Config(String),
    /// Recording failed.
    #[error(transparent)]
    Record(#[from] CommandError),
    /// The process running the agent failed: it died (after the retries its supervisor
    /// allows) or could not start. Says how it ended.
    #[error("the agent's worker failed: {0}")]
    Worker(String),
}

impl AgentError {
    /// Whether running the same call again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Provider(e) => e.is_retryable(),
            Self::TimedOut(_) | Self::Record(_) => true,
            Self::Budget(_)
            | Self::Cancelled
            | Self::InvalidOutput { .. }
            | Self::TooManyToolCalls(_)
            | Self::NoAnswer(_)
            | Self::Config(_)
            | Self::Worker(_) => false,
        }
    }
}

/// Runs agent calls.
pub trait AgentRunner: Send + Sync {
    /// Runs `call`, recording it under `ctx.parent` and charging `ctx.charge_to`.
    ///
    /// # Errors
    /// [`AgentError`]; the call's work unit is then recorded as failed or cancelled.
    fn run(
        &self,
        call: AgentCall,
        ctx: CallContext,
    ) -> impl Future<Output = Result<AgentOutcome, AgentError>> + Send;
}

/// [`AgentRunner`] for dynamic dispatch (`Arc<dyn DynAgentRunner>` is itself a runner).
pub trait DynAgentRunner: Send + Sync {
    /// As [`AgentRunner::run`].
    fn run_dyn(
        &self,
        call: AgentCall,
        ctx: CallContext,
    ) -> BoxFuture<'_, Result<AgentOutcome, AgentError>>;
}

impl<T: AgentRunner> DynAgentRunner for T {
    fn run_dyn(
        &self,
        call: AgentCall,
        ctx: CallContext,
    ) -> BoxFuture<'_, Result<AgentOutcome, AgentError>> {
        Box::pin(self.run(call, ctx))
    }
}

impl AgentRunner for dyn DynAgentRunner + '_ {
    fn run(
        &self,
        call: AgentCall,
        ctx: CallContext,
    ) -> impl Future<Output = Result<AgentOutcome, AgentError>> + Send {
        self.run_dyn(call, ctx)
    }
}

impl<T: AgentRunner + ?Sized> AgentRunner for Arc<T> {
    fn run(
        &self,
        call: AgentCall,
        ctx: CallContext,
    ) -> impl Future<Output = Result<AgentOutcome, AgentError>> + Send {
        (**self).run(call, ctx)
    }
}

impl<T: AgentRunner + ?Sized> AgentRunner for &T {
    fn run(
        &self,
        call: AgentCall,
        ctx: CallContext,
    ) -> impl Future<Output = Result<AgentOutcome, AgentError>> + Send {
        (**self).run(call, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_defaults_to_the_first_line_cut() {
        let call = AgentCall::new("Review the diff\nthen more");
        assert_eq!(call.display_label(), "Review the diff");
        let long = AgentCall::new("x".repeat(80));
        assert_eq!(long.display_label().chars().count(), 61);
        let named = AgentCall {
            label: Some("scan".into()),
            ..AgentCall::new("p")
        };
        assert_eq!(named.display_label(), "scan");
    }
}
