//! The seam between the workflow primitives and the JavaScript engine that runs scripts.
//!
//! A [`ScriptEngine`] owns the realm: it evaluates a [`Script`], exposes the primitives to it and
//! calls back into a [`Host`] for everything with an effect (agent calls, phases, logs, budget
//! reads, nested workflows). The host is engine-agnostic; [`crate::QuickJs`] is the engine.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::activity::LogLevel;
use fleet_core::money::Usd;
use fleet_core::provider::CancelToken;
use fleet_core::sync::BoxFuture;
use serde_json::Value;

use crate::script::{Script, ScriptError};

/// A workflow frame: the top-level script is frame 0, each nested `workflow()` gets its own.
pub type FrameId = u32;

/// What an asynchronous primitive resolves to: a JSON value, or why it rejects.
pub type HostResult = Result<Value, Rejection>;

/// Why a primitive rejects (or throws at once): the message the script's error carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    message: String,
}

impl Rejection {
    /// A rejection with `message`.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message the script sees.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Rejection {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for Rejection {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<crate::catalog::CatalogError> for Rejection {
    fn from(error: crate::catalog::CatalogError) -> Self {
        Self::new(error.to_string())
    }
}

/// A nested workflow the host has opened (and recorded) for a frame's `workflow()` call.
#[derive(Debug, Clone)]
pub struct ChildWorkflow {
    /// Its frame.
    pub frame: FrameId,
    /// Its script.
    pub script: Arc<Script>,
    /// Its arguments.
    pub args: Option<Value>,
}

/// The run's budget as the script sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BudgetView {
    /// The output-token target, if any.
    pub tokens_total: Option<u64>,
    /// Output tokens spent so far.
    pub tokens_spent: u64,
    /// The dollar cap, if any.
    pub usd_total: Option<Usd>,
    /// Dollars spent so far.
    pub usd_spent: Usd,
}

/// The effects behind the primitives. Methods are called on the engine's thread and must not
/// block; work that waits is returned as a future, which the engine runs on the host's tokio
/// runtime.
pub trait Host: Send + Sync + 'static {
    /// `agent(prompt, opts)`: `Err` rejects at once (cap reached, budget spent, bad option).
    ///
    /// # Errors
    /// The message `agent()` rejects with.
    fn agent(
        &self,
        frame: FrameId,
        prompt: String,
        opts: Option<Value>,
    ) -> Result<BoxFuture<'static, HostResult>, Rejection>;

    /// `phase(title)`.
    fn phase(&self, frame: FrameId, title: String);

    /// `log(message)`, and the engine's own warnings.
    fn log(&self, frame: FrameId, level: LogLevel, message: String);

    /// `budget.*`.
    fn budget(&self) -> BudgetView;

    /// `workflow(nameOrRef, args)`: finds and records the nested workflow.
    ///
    /// # Errors
    /// The message `workflow()` rejects with (unknown name, nested too deep).
    fn open_workflow(
        &self,
        frame: FrameId,
        reference: Value,
        args: Option<Value>,
    ) -> Result<BoxFuture<'static, Result<ChildWorkflow, Rejection>>, Rejection>;

    /// A nested workflow ended; the future records it.
    fn close_workflow(
        &self,
        frame: FrameId,
        outcome: Result<&Value, &str>,
    ) -> BoxFuture<'static, ()>;
}

/// Per-run limits of the script itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// CPU time the script may use (not time spent waiting on agents).
    pub cpu: Duration,
    /// Heap the script may use, in bytes.
    pub heap_bytes: usize,
    /// Most items per `parallel()` / `pipeline()` call.
    pub max_items: usize,
    /// Most JavaScript stack, in bytes.
    pub stack_bytes: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            cpu: Duration::from_secs(60),
            heap_bytes: 256 << 20,
            max_items: 4096,
            stack_bytes: 4 << 20,
        }
    }
}

/// Why a script did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptFailure {
    /// The body does not compile.
    #[error("{0}")]
    Compile(ScriptError),
    /// An uncaught throw.
    #[error("{message}{}", stack_suffix(.stack))]
    Threw {
        /// `Name: message`.
        message: String,
        /// The script's stack (`at … (file:line:column)` lines).
        stack: String,
    },
    /// The script used more CPU time than allowed.
    #[error("the script used more than {0:?} of CPU time (limits.cpu); the run was ended")]
    CpuLimit(Duration),
    /// The script's heap hit its cap.
    #[error("the script's heap exceeded {0} bytes (limits.heap_bytes); the run was ended")]
    HeapLimit(usize),
    /// The run was stopped.
    #[error("the run was stopped")]
    Stopped,
    /// The script waits on a promise nothing can settle.
    #[error(
        "the script is waiting on a promise that can never settle (no agent call or nested workflow is in flight)"
    )]
    NeverSettles,
    /// The engine itself failed.
    #[error("script engine: {0}")]
    Engine(String),
}

fn stack_suffix(stack: &str) -> String {
    if stack.trim().is_empty() {
        String::new()
    } else {
        format!("\n{}", stack.trim_end())
    }
}

/// What a run gives the engine.
pub struct EngineRun {
    /// The script.
    pub script: Arc<Script>,
    /// `args`.
    pub args: Option<Value>,
    /// The primitives' effects.
    pub host: Arc<dyn Host>,
    /// The script's limits.
    pub limits: ScriptLimits,
    /// Stops the script (it is interrupted wherever it is).
    pub stop: CancelToken,
}

/// A JavaScript engine for workflow scripts.
pub trait ScriptEngine: Send + Sync {
    /// The engine's name.
    fn name(&self) -> &'static str;

    /// Runs the script to its result (`None`: it returned `undefined`). Must be called within
    /// a tokio runtime, which runs the host's futures; the script itself runs on the engine's
    /// own threads, so a CPU-bound script does not hold up the runtime.
    fn run(&self, run: EngineRun) -> BoxFuture<'static, Result<Option<Value>, ScriptFailure>>;
}
