//! Integration tests of fleet-providers: adapters against a local server replaying wire-exact
//! fixtures, and the agent loop against the scripted provider.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod adapters;
mod agent_loop;
mod claude_code;
mod codex;
mod e2e;
mod server;

mod send_sync {
    use fleet_core::{AgentCall, AgentRunner, CallContext, Journal};
    use fleet_providers::{
        AnthropicProvider, HttpClient, ModelAgentRunner, OfflineProvider, OpenAiProvider,
        ScriptedProvider,
    };

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}

    #[test]
    fn handles_and_futures_cross_threads() {
        send_sync::<AnthropicProvider>();
        send_sync::<OpenAiProvider>();
        send_sync::<OfflineProvider>();
        send_sync::<ScriptedProvider>();
        send_sync::<HttpClient>();
        send_sync::<Journal>();
        send_sync::<ModelAgentRunner<OfflineProvider>>();
    }

    #[allow(dead_code)]
    fn run_future_is_send(runner: ModelAgentRunner<OfflineProvider>, ctx: CallContext) {
        send(&runner.run(AgentCall::new("x"), ctx));
    }
}
