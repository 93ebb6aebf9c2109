//! The shared vocabulary of fleet, and the crate embedders add first.
//!
//! fleet runs fleets of LLM agents: workflow scripts and primary agents delegate work to cheap
//! specialists, each in its own sandbox, with every token and dollar accounted for and every piece
//! of delegated work a node in one persisted tree. This crate holds what every part of fleet
//! shares and nothing that talks to the network, runs JavaScript or makes OS calls:
//!
//! - **The work-unit model**: [`Thread`]s of [`Turn`]s, each turn a tree of [`WorkUnit`]s
//!   (primary agent, delegated agents, workflows), with [`Activity`]s pointing at the unit they
//!   belong to.
//! - **Events**: state changes only by appending [`Event`]s; [`Command`]s are validated into
//!   them and the pure projector ([`apply`], [`project`]) folds them into the read model.
//! - **The event store**: the [`EventStore`] seam, with [`MemoryStore`] and the durable
//!   [`SqliteStore`] (feature `sqlite`, on by default).
//! - **Agent specs**: [`spec::AgentSpec`] for `agents/<name>.yaml`, with errors located to the
//!   line, column and field.
//! - **Costs**: [`TokenUsage`] kept by kind, a dated [`PriceTable`], and hierarchical
//!   [`Budgets`] that reserve a call's worst case before it is made.
//! - **The seams** the other crates implement: [`Provider`] (a model behind any wire format,
//!   streaming normalized [`StreamEvent`]s), [`AgentRunner`] (one agent call, recorded as a work
//!   unit through a shared [`Journal`]), [`CommandSandbox`] (programs run for agents), and
//!   [`EventStore`].
//!
//! # Example
//!
//! Record a turn in which a primary agent delegates to a subagent, and read the tree back:
//!
//! ```
//! use fleet_core::{Command, MemoryStore, Recorder, TokenUsage, WorkUnitKind, WorkUnitState};
//!
//! # tokio_test_block_on(async {
//! let store = MemoryStore::new();
//! let mut thread = Recorder::create(&store, Some("review".into())).await?;
//! let (turn, root) = thread.start_turn(WorkUnitKind::PrimaryAgent, Some("review src/".into())).await?;
//! let child = thread.start_work_unit(root, WorkUnitKind::DelegatedAgent, |u| {
//!     u.label = Some("scan src/lib.rs".into());
//!     u.model = Some("claude-haiku-4-5".into());
//! }).await?;
//! thread.execute(Command::RecordUsage {
//!     work_unit_id: child,
//!     model: Some("claude-haiku-4-5".into()),
//!     usage: TokenUsage { input: 1_000, output: 200, ..TokenUsage::default() },
//! }).await?;
//! thread.finish_work_unit(child, WorkUnitState::Completed, None).await?;
//! thread.finish_work_unit(root, WorkUnitState::Completed, None).await?;
//! thread.complete_turn(turn, fleet_core::TurnState::Completed).await?;
//!
//! let view = thread.thread();
//! assert_eq!(view.children(root).count(), 1);
//! assert_eq!(view.subtree_usage(root).output, 200);
//! assert_eq!(view.subtree_cost(root).usd.to_string(), "$0.002000"); // 1000×$1 + 200×$5 per M
//! # Ok::<(), fleet_core::CommandError>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod activity;
pub mod agent;
pub mod budget;
pub mod command;
mod diagnostic;
pub mod event;
pub mod exec;
pub mod id;
pub mod ipc;
pub mod journal;
pub mod money;
pub mod pricing;
pub mod provider;
pub mod sandbox;
pub mod spec;
pub mod store;
pub mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod thread;
pub mod usage;
pub mod work_unit;
mod yaml;

pub use activity::{Activity, ActivityKind, LogLevel, Role};
pub use agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext, DynAgentRunner};
pub use budget::{
    Amount, BudgetError, BudgetId, BudgetLimits, Budgets, Demand, Measure, Reservation,
};
pub use command::{Command, CommandError, Recorder, WorkUnitDraft};
pub use diagnostic::{Diagnostic, Diagnostics};
pub use event::{BudgetAlert, Event, RecordedEvent, TurnState};
pub use exec::{CommandOutput, CommandRequest, CommandSandbox, DynCommandSandbox, ExecError};
pub use id::{ActivityId, IdError, ThreadId, TurnId, WorkUnitId};
pub use jiff::Timestamp;
pub use journal::{Journal, SharedStore};
pub use money::{Cost, Usd};
pub use pricing::{ModelPrice, PriceTable};
pub use provider::{
    CancelToken, Capabilities, Content, DynProvider, EventStream, Message, MessageRole,
    ModelRequest, ModelResponse, Provider, ProviderError, StopReason, StreamEvent, ToolChoice,
    ToolSpec,
};
pub use sandbox::SandboxPolicy;
pub use store::memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{
    Appended, CheckedEvents, DynEventStore, EventStore, ExpectedVersion, StoreError, Subscription,
};
pub use thread::{Changes, Thread, Turn, Violation, apply, apply_into, project};
pub use usage::TokenUsage;
pub use work_unit::{ProviderRefs, WorkUnit, WorkUnitKind, WorkUnitRecord, WorkUnitState};
