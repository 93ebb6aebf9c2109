//! Model adapters and the agent loop of fleet.
//!
//! - **Adapters** implementing [`fleet_core::Provider`]: [`AnthropicProvider`] (Messages API),
//!   [`OpenAiProvider`] (Chat Completions — also Ollama, vLLM, llama.cpp — and Responses), the
//!   deterministic [`OfflineProvider`] (the default when no key is configured) and the
//!   [`ScriptedProvider`] that replays recorded cassettes in tests. Each adapter keeps its wire
//!   types private and its conversions pure; the shared [`HttpClient`] does pooling, timeouts and
//!   retries.
//! - **The agent loop**: [`ModelAgentRunner`] turns a provider into a [`fleet_core::AgentRunner`]
//!   that loops model → tool calls → results, with structured output, budgets reserved before
//!   each request, timeouts, cancellation, the built-in [`Tool`]s its capabilities grant, and
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
//! use fleet_core::{AgentCall, AgentRunner, CallContext, Journal, MemoryStore, SharedStore,
//!                  WorkUnitDraft, WorkUnitKind, WorkUnitState};
//! use fleet_core::spec::Capability;
//! use fleet_providers::{ModelAgentRunner, OfflineProvider};
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

pub mod agent;
pub mod anthropic;
pub mod claude_code;
pub mod cli;
pub mod codex;
pub mod decode;
mod env;
pub mod host;
pub mod http;
pub mod model_router;
pub mod offline;
pub mod openai;
pub mod router;
pub mod scripted;
pub mod sse;
mod stream;

pub use agent::tools::{Tool, ToolContext, ToolOutput};
pub use agent::{ModelAgentRunner, RunnerBuilder, RunnerDefaults};
pub use anthropic::AnthropicProvider;
pub use claude_code::{ClaudeCodeRunner, ClaudeCodeSession, ClaudeStream};
pub use codex::{CodexExecStream, CodexRunner, CodexSession, CodexStream};
pub use env::{PROVIDERS, ProviderSettings, from_env, from_settings};
pub use host::HostCommands;
pub use http::{ApiKey, HttpClient, HttpConfig, RetryPolicy};
pub use model_router::ModelRouter;
pub use offline::OfflineProvider;
pub use openai::{OpenAiApi, OpenAiProvider};
pub use router::AgentRouter;
pub use scripted::{Cassette, RecordingProvider, ScriptedProvider};
