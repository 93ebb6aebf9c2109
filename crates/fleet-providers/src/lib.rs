//! Model adapters and the agent loop of fleet.
//!
//! - **Adapters** implementing [`fleet_core::Provider`]: [`AnthropicProvider`] (Messages API),
//!   [`OpenAiProvider`] (Chat Completions — also Ollama, vLLM, llama.cpp — and Responses), the
//!   deterministic [`OfflineProvider`] (the default when no key is configured) and the
//!   [`ScriptedProvider`] that replays recorded cassettes in tests. Each adapter keeps its wire
//!   types private and its conversions pure; the shared [`HttpClient`] does pooling, timeouts and
//!   retries.
//!
//! Not here: the workflow engine, the sandbox, the CLI.

pub mod agent;
pub mod anthropic;
pub mod decode;
pub mod host;
pub mod http;
pub mod offline;
pub mod openai;
pub mod scripted;
pub mod sse;
mod stream;

pub use agent::tools::{Tool, ToolContext, ToolOutput};
pub use agent::{ModelAgentRunner, RunnerBuilder, RunnerDefaults};
pub use anthropic::AnthropicProvider;
pub use host::HostCommands;
pub use http::{ApiKey, HttpClient, HttpConfig, RetryPolicy};
pub use offline::OfflineProvider;
pub use openai::{OpenAiApi, OpenAiProvider};
pub use scripted::{Cassette, RecordingProvider, ScriptedProvider};
