//! End-to-end runs of the built-in workflows on the real agent loop with the offline provider
//! and the SQLite store: every phase runs and the result has the documented shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use fleet_core::journal::SharedStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_providers::model::offline::OfflineProvider;
use fleet_providers::runner::agent::ModelAgentRunner;
use fleet_workflow::{RunEvent, RunOptions, RunState, RunSummary, WorkflowEngine};
use serde_json::{Value, json};

async fn run_builtin(name: &str, args: Value) -> (Arc<RunSummary>, Vec<String>, SharedStore) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.md"), "fleet runs agents.\n").unwrap();
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("fleet.db")).unwrap());
    let runner = ModelAgentRunner::builder(Arc::new(OfflineProvider::new()))
        .workdir(dir.path())
        .build();
    let engine = WorkflowEngine::new(store.clone(), Arc::new(runner));
    let options = RunOptions {
        args: Some(args),
        ..RunOptions::default()
    };
    let handle = engine.start_named(name, options).await.unwrap();
    let summary = handle.wait().await;
    let phases = handle
        .events_since(0)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::PhaseStarted { title } => Some(title),
            _ => None,
        })
        .collect();
    (summary, phases, store)
}

fn assert_ran(summary: &RunSummary, phases: &[String], expected: &[&str]) {
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    assert_eq!(phases, expected);
    assert_eq!(summary.calls.failed + summary.calls.null, 0, "{summary:?}");
    assert!(summary.calls.completed >= expected.len() as u64 - 1);
    assert!(summary.usage.output > 0);
}

fn strings(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_research_works_from_the_given_sources_and_says_so() {
    let args = json!({"question": "What does fleet run?", "sources": ["notes.md"], "text": "fleet is an SDK."});
    let (summary, phases, store) = run_builtin("deep-research", args).await;
    assert_ran(
        &summary,
        &phases,
        &["Scope", "Search", "Extract", "Verify", "Synthesize"],
    );
    let r = &summary.result;
    assert_eq!(r["question"], json!("What does fleet run?"));
    assert!(r["answer"].is_string());
    assert_eq!(r["sources"], json!(["notes.md"]));
    assert_eq!(
        r["limitations"],
        json!(
            "No web access: this research used only the sources given (notes.md) and the text passed in args."
        )
    );
    let claims = r["claims"].as_array().unwrap();
    assert!(!claims.is_empty());
    for c in claims {
        assert!(c["claim"].is_string() && c["source"].is_string() && c["reason"].is_string());
        assert!(["supported", "refuted", "uncertain"].contains(&c["verdict"].as_str().unwrap()));
    }
    // The run is one tree in the store: the workflow unit and a delegated child per call.
    let thread = store.snapshot_dyn(summary.run_id).await.unwrap().unwrap();
    let root = thread.turns[0].root_id;
    assert_eq!(
        thread.children(root).count() as u64,
        summary.calls.completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_research_refuses_to_start_without_a_question() {
    let (summary, _, _) = run_builtin("deep-research", json!({})).await;
    assert_eq!(summary.state, RunState::Failed);
    assert!(
        summary
            .error
            .as_deref()
            .unwrap()
            .starts_with("Error: deep-research needs a question")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_code_finds_verifies_and_ranks() {
    let (summary, phases, _) = run_builtin("review-code", json!({"path": "src"})).await;
    assert_ran(&summary, &phases, &["Scope", "Find", "Verify", "Rank"]);
    let r = &summary.result;
    assert_eq!(r["path"], json!("src"));
    assert!(strings(&r["angles"]) && !r["angles"].as_array().unwrap().is_empty());
    assert!(r["summary"].is_string());
    assert!(r["rejected"].is_u64());
    let order = ["critical", "high", "medium", "low"];
    let ranks: Vec<usize> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(
                f["title"].is_string() && f["file"].is_string() && f["confirmed"] == json!(true)
            );
            order.iter().position(|o| *o == f["severity"]).unwrap()
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_issues_scans_slices_in_parallel_and_deduplicates() {
    let (summary, phases, _) = run_builtin(
        "find-issues",
        json!({"path": ".", "slices": ["a", "b", "c"]}),
    )
    .await;
    // Given slices, the slicing agent is skipped but the phase still opens.
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    assert_eq!(phases, ["Slice", "Scan", "Verify", "Rank"]);
    let r = &summary.result;
    assert_eq!(r["slices"], json!(["a", "b", "c"]));
    assert!(r["issues"].is_array() && r["candidates"].is_u64() && r["duplicates"].is_u64());
    assert!(r["issues"].as_array().unwrap().len() as u64 <= r["candidates"].as_u64().unwrap());
    assert!(summary.calls.completed >= 3);
}
