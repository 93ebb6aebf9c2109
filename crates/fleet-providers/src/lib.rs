//! Model adapters for fleet (Anthropic Messages, OpenAI Chat Completions and Responses,
//! OpenAI-compatible servers, the Claude Code and Codex CLIs, an offline provider) and the agent
//! loop that turns a provider and tools into an `AgentRunner`.
//!
//! Nothing is here yet: this crate is filled by the providers work. It exists now so that the
//! workspace layout and the dependency rule (it depends on `fleet-core` only) hold from the start.
