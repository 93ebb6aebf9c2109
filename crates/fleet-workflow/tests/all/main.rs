//! fleet-workflow's integration tests: the workflow-api spec, behaviour by behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod resume;
mod worktree;

use std::sync::Arc;

use fleet_core::journal::SharedStore;
use fleet_core::store::memory::MemoryStore;
use fleet_workflow::testkit::FakeModel;
use fleet_workflow::{RunEvent, RunOptions, RunSummary, Script, WorkflowEngine};

pub(crate) fn memory() -> SharedStore {
    Arc::new(MemoryStore::new())
}

pub(crate) fn script(body: &str) -> Arc<Script> {
    let source = format!("export const meta = {{ name: 't', description: 'test' }};\n{body}");
    Arc::new(Script::parse("wf.js", source).unwrap())
}

pub(crate) struct Ran {
    pub(crate) summary: Arc<RunSummary>,
    pub(crate) events: Vec<RunEvent>,
    pub(crate) fake: FakeModel,
}

impl Ran {
    pub(crate) fn logs(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                RunEvent::Log { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn error(&self) -> String {
        self.summary.error.clone().unwrap_or_default()
    }
}

pub(crate) async fn run_with(body: &str, options: RunOptions, fake: FakeModel) -> Ran {
    let engine = WorkflowEngine::new(memory(), Arc::new(fake.clone()));
    let handle = engine.start(script(body), options, None).await.unwrap();
    let summary = handle.wait().await;
    Ran {
        summary,
        events: handle.events_since(0),
        fake,
    }
}

pub(crate) async fn run(body: &str) -> Ran {
    run_with(body, RunOptions::default(), FakeModel::new()).await
}
