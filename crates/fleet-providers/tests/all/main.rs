//! Integration tests of fleet-providers: adapters against a local server replaying wire-exact
//! fixtures, and the agent loop against the scripted provider.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adapters;
mod agent_loop;
mod server;
