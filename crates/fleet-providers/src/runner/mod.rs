//! Agent runners: what runs one `agent()` call. The agent loop over a model provider, the
//! coding-agent CLIs (Claude Code and Codex) driven as subprocesses, and the router that picks
//! one per call from the agent's spec.

pub mod agent;
pub mod coding_cli;
pub mod router;
