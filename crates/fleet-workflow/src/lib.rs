//! The workflow engine of fleet: Claude-Code-compatible workflow scripts run on an embedded
//! JavaScript engine (QuickJS), with resume from a journal of finished agent calls.
//!
//! A [`WorkflowEngine`] starts runs of [`Script`]s. Each run is a thread in the store: the run is
//! a `workflow` work unit, every `agent()` call a `delegated_agent` child, phases and log lines
//! are activities, and every finished call's result is journaled under a content key so that a
//! resumed run serves it instead of paying for it again.
//!
//! ```no_run
//! # async fn demo(store: fleet_core::journal::SharedStore,
//! #               runner: std::sync::Arc<dyn fleet_core::agent::DynAgentRunner>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use fleet_workflow::{RunOptions, WorkflowEngine};
//!
//! let engine = WorkflowEngine::new(store, runner);
//! let run = engine.start_named("review-code", RunOptions::default()).await?;
//! let summary = run.wait().await;
//! println!("{}: {}", summary.state.as_str(), summary.result);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod call;
mod catalog;
mod engine;
mod events;
mod host;
mod lex;
mod malloc;
mod options;
mod outcome;
mod quickjs;
mod resume;
mod run;
mod script;
mod shared;
#[cfg(feature = "testkit")]
pub mod testkit;
mod worktree;

pub use catalog::{Catalog, CatalogError, Entry, Source};
pub use engine::{
    BudgetView, ChildWorkflow, EngineRun, FrameId, Host, HostResult, Rejection, ScriptEngine,
    ScriptFailure, ScriptLimits,
};
pub use events::{CallCounts, CallNote, CallState, RunEvent, RunId, RunState, RunSummary};
pub use malloc::tune_malloc;
pub use options::{PhaseBudget, Resume, RunOptions, default_model_aliases};
pub use quickjs::QuickJs;
pub use run::{RunHandle, StartError, WorkflowEngine};
pub use script::{Meta, PhaseMeta, Script, ScriptError};
