//! The shared vocabulary of fleet, and the crate embedders add first.
//!
//! fleet runs fleets of LLM agents: workflow scripts and primary agents delegate work to cheap
//! specialists, each in its own sandbox, with every token and dollar accounted for and every piece
//! of delegated work a node in one persisted tree. This crate holds what every part of fleet
//! shares and nothing that talks to the network, runs JavaScript or makes OS calls:
//!
//! - **The work-unit model**: [`Thread`](thread::Thread)s of [`Turn`](thread::Turn)s, each turn a tree of [`WorkUnit`](work_unit::WorkUnit)s
//!   (primary agent, delegated agents, workflows), with [`Activity`](activity::Activity)s pointing at the unit they
//!   belong to.
//! - **Events**: state changes only by appending [`Event`](event::Event)s; [`Command`](command::Command)s are validated into
//!   them and the pure projector ([`apply`](thread::apply), [`project`](thread::project)) folds them into the read model.
//! - **The event store**: the [`EventStore`](store::EventStore) seam, with [`MemoryStore`](store::memory::MemoryStore) and the durable
//!   [`SqliteStore`](store::sqlite::SqliteStore) (feature `sqlite`, on by default).
//! - **Agent specs**: [`spec::AgentSpec`] for `agents/<name>.yaml`, with errors located to the
//!   line, column and field.
//! - **Costs**: [`TokenUsage`](usage::TokenUsage) kept by kind, a dated [`PriceTable`](pricing::PriceTable), and hierarchical
//!   [`Budgets`](budget::Budgets) that reserve a call's worst case before it is made.
//! - **The seams** the other crates implement: [`Provider`](provider::Provider) (a model behind any wire format,
//!   streaming normalized [`StreamEvent`](provider::StreamEvent)s), [`AgentRunner`](agent::AgentRunner) (one agent call, recorded as a work
//!   unit through a shared [`Journal`](journal::Journal)), [`CommandSandbox`](exec::CommandSandbox) (programs run for agents), and
//!   [`EventStore`](store::EventStore).
//!
//! # Example
//!
//! Record a turn in which a primary agent delegates to a subagent, and read the tree back:
//!
//! ```
//! use fleet_core::command::{Command, Recorder};
//! use fleet_core::store::memory::MemoryStore;
//! use fleet_core::usage::TokenUsage;
//! use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
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
//! thread.complete_turn(turn, fleet_core::event::TurnState::Completed).await?;
//!
//! let view = thread.thread();
//! assert_eq!(view.children(root).count(), 1);
//! assert_eq!(view.subtree_usage(root).output, 200);
//! assert_eq!(view.subtree_cost(root).usd.to_string(), "$0.002000"); // 1000×$1 + 200×$5 per M
//! # Ok::<(), fleet_core::command::CommandError>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

#![deny(missing_docs)]

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

pub use diagnostic::{Diagnostic, Diagnostics};
pub use jiff::Timestamp;
