//! Integration tests of fleet-providers: adapters against a local server replaying wire-exact
//! fixtures, and the agent loop against the scripted provider.

mod adapters;
mod agent_loop;
mod server;
