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

/// An agent spec from YAML (its file named after its `name:`).
pub(crate) fn spec(yaml: &str) -> std::sync::Arc<fleet_core::spec::AgentSpec> {
    let name = yaml
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .unwrap()
        .to_owned();
    std::sync::Arc::new(
        fleet_core::spec::AgentSpec::from_yaml(std::path::Path::new(&format!("{name}.yaml")), yaml)
            .unwrap(),
    )
}

/// A memory store with a thread whose turn's root is a primary agent.
pub(crate) async fn journal() -> (
    std::sync::Arc<fleet_core::store::memory::MemoryStore>,
    fleet_core::journal::Journal,
    fleet_core::id::WorkUnitId,
) {
    let store = std::sync::Arc::new(fleet_core::store::memory::MemoryStore::new());
    let journal = fleet_core::journal::Journal::create(
        store.clone() as fleet_core::journal::SharedStore,
        None,
    )
    .await
    .unwrap();
    let (_, root) = journal
        .start_turn(
            None,
            fleet_core::command::WorkUnitDraft::new(
                fleet_core::work_unit::WorkUnitKind::PrimaryAgent,
            ),
        )
        .await
        .unwrap();
    (store, journal, root)
}

mod send_sync {
    use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
    use fleet_core::journal::Journal;
    use fleet_providers::model::anthropic::AnthropicProvider;
    use fleet_providers::model::offline::OfflineProvider;
    use fleet_providers::model::openai::OpenAiProvider;
    use fleet_providers::model::scripted::ScriptedProvider;
    use fleet_providers::runner::agent::ModelAgentRunner;
    use fleet_providers::transport::http::HttpClient;

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
