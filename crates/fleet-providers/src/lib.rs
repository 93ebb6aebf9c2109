//! Model adapters and the agent loop of fleet.
//!
//! - **Adapters** implementing [`fleet_core::provider::Provider`]: [`AnthropicProvider`](model::anthropic::AnthropicProvider) (Messages API),
//!   [`OpenAiProvider`](model::openai::OpenAiProvider) (Chat Completions — also Ollama, vLLM, llama.cpp — and Responses), the
//!   deterministic [`OfflineProvider`](model::offline::OfflineProvider) (the default when no key is configured) and the
//!   [`ScriptedProvider`](model::scripted::ScriptedProvider) that replays recorded cassettes in tests. Each adapter keeps its wire
//!   types private and its conversions pure; the shared [`HttpClient`](transport::http::HttpClient) does pooling, timeouts and
//!   retries.
//! - **The agent loop**: [`ModelAgentRunner`](runner::agent::ModelAgentRunner) turns a provider into a [`fleet_core::agent::AgentRunner`]
//!   that loops model → tool calls → results, with structured output, budgets reserved before
//!   each request, timeouts, cancellation, the built-in [`Tool`](runner::agent::tools::Tool)s its capabilities grant, and
//!   background subagents recorded as child work units.
//!
//! Not here: the workflow engine, the sandbox, the CLI.
//!
//! # Example
//!
//! One agent call on the offline provider, recorded into an in-memory store:
//!
//! ```
//! use std::sync::Arc;
//! use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
//! use fleet_core::command::WorkUnitDraft;
//! use fleet_core::journal::{Journal, SharedStore};
//! use fleet_core::store::memory::MemoryStore;
//! use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
//! use fleet_core::spec::Capability;
//! use fleet_providers::model::offline::OfflineProvider;
//! use fleet_providers::runner::agent::ModelAgentRunner;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("notes.txt"), "ship on friday")?;
//! let runner = ModelAgentRunner::builder(OfflineProvider::new()).workdir(dir.path()).build();
//!
//! let store: SharedStore = Arc::new(MemoryStore::new());
//! let journal = Journal::create(store, None).await?;
//! let (_, root) = journal.start_turn(None, WorkUnitDraft::new(WorkUnitKind::Workflow)).await?;
//! let call = AgentCall {
//!     capabilities: Some(vec![Capability::ReadFiles]),
//!     // The offline model calls the tools its prompt names on `call` lines.
//!     ..AgentCall::new("Summarise the notes.\ncall read_file {\"path\": \"notes.txt\"}")
//! };
//! let outcome = runner.run(call, CallContext::new(journal.clone(), root)).await?;
//! assert_eq!(outcome.tool_calls, 1);
//! assert!(outcome.text.contains("ship on friday"));
//! let state = journal.read(|t| t.work_unit(outcome.work_unit_id).map(|u| u.state)).await;
//! assert_eq!(state, Some(WorkUnitState::Completed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod commands;
mod env;
pub mod model;
pub mod runner;
pub mod transport;

pub use commands::HostCommands;
pub use env::{PROVIDERS, ProviderSettings, from_env, from_settings};
