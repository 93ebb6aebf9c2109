//! Resume: the content-keyed journal in the store, across attempts and process restarts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleet_core::activity::ActivityKind;
use fleet_core::store::sqlite::SqliteStore;
use fleet_workflow::{Resume, RunId, RunState};
use serde_json::json;

use super::*;

fn fan(n: usize, extra: &str) -> String {
    format!(
        "const r = await parallel(Array.from({{ length: {n} }}, (_, i) => () => agent('item ' + i{extra})));\nreturn r;"
    )
}

async fn attempt(
    store: &SharedStore,
    body: &str,
    resume: Option<Resume>,
    fake: FakeModel,
) -> (RunId, Arc<RunSummary>, u64) {
    let engine = WorkflowEngine::new(store.clone(), Arc::new(fake.clone()));
    let handle = engine
        .start(script(body), RunOptions::default(), resume)
        .await
        .unwrap();
    let summary = handle.wait().await;
    (
        handle.id(),
        summary,
        fake.stats.calls.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn resume_after_completion_makes_zero_live_calls() {
    let store = memory();
    let body = fan(20, "");
    let (id, first, live) = attempt(&store, &body, None, FakeModel::new()).await;
    assert_eq!((first.calls.completed, live), (20, 20));
    let resume = Some(Resume {
        run_id: id,
        strict: false,
    });
    let (same, second, live) = attempt(&store, &body, resume, FakeModel::new()).await;
    assert_eq!(same, id);
    assert_eq!(
        (second.calls.cached, second.calls.completed, live),
        (20, 0, 0)
    );
    assert_eq!(second.result, first.result);
}

#[tokio::test]
async fn an_edited_prompt_runs_live_alone_or_with_every_later_call_in_strict_mode() {
    let store = memory();
    let body = "const out = [];\nfor (const p of ['a', 'b', 'c', 'd']) out.push(await agent('step ' + p));\nreturn out;";
    let (id, _, _) = attempt(&store, body, None, FakeModel::new()).await;
    let edited = body.replace("'b'", "'B'");
    let keyed = Some(Resume {
        run_id: id,
        strict: false,
    });
    let (_, summary, live) = attempt(&store, &edited, keyed, FakeModel::new()).await;
    assert_eq!((summary.calls.cached, live), (3, 1));
    assert_eq!(
        summary.result,
        json!(["ok:step a", "ok:step B", "ok:step c", "ok:step d"])
    );

    // Strict: against the previous attempt (a, B, c, d), edit `c`: a and B are served, c and d
    // run live.
    let edited = edited.replace("'c'", "'C'");
    let strict = Some(Resume {
        run_id: id,
        strict: true,
    });
    let (_, summary, live) = attempt(&store, &edited, strict, FakeModel::new()).await;
    assert_eq!((summary.calls.cached, live), (2, 2));
}

#[tokio::test]
async fn a_fan_out_that_finishes_in_another_order_still_resumes_fully() {
    let store = memory();
    // First attempt: item 17 fails (null, not journaled); the rest finish in an order set by
    // varying latencies.
    let first = FakeModel {
        fail_on: Some("item 17".into()),
        ..FakeModel::with_latency(Duration::from_millis(3))
    };
    let body = fan(50, "");
    let (id, summary, _) = attempt(&store, &body, None, first).await;
    assert_eq!((summary.calls.completed, summary.calls.null), (49, 1));
    // Second attempt: a different concurrency changes the completion order entirely.
    let options = RunOptions {
        concurrency: 3,
        ..RunOptions::default()
    };
    let fake = FakeModel::new();
    let engine = WorkflowEngine::new(store.clone(), Arc::new(fake.clone()));
    let handle = engine
        .start(
            script(&body),
            options,
            Some(Resume {
                run_id: id,
                strict: false,
            }),
        )
        .await
        .unwrap();
    let summary = handle.wait().await;
    assert_eq!((summary.calls.cached, summary.calls.completed), (49, 1));
    assert_eq!(fake.stats.calls.load(Ordering::SeqCst), 1);
    assert_eq!(summary.result[17], json!("ok:item 17"));
}

/// Run by `a_killed_process_resumes_without_redoing_finished_calls` in a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry() {
    let Ok(db) = std::env::var("FLEET_WORKFLOW_TEST_CHILD_DB") else {
        return; // Not the child.
    };
    let store: SharedStore = Arc::new(SqliteStore::open(&db).unwrap());
    let engine = WorkflowEngine::new(
        store,
        Arc::new(FakeModel::with_latency(Duration::from_millis(25))),
    );
    let options = RunOptions {
        concurrency: 4,
        ..RunOptions::default()
    };
    let handle = engine
        .start(script(&fan(40, "")), options, None)
        .await
        .unwrap();
    println!("RUN {}", handle.id());
    let mut seen = 0;
    loop {
        let events = handle.next_events(seen).await;
        seen += events.len();
        for event in events {
            if let RunEvent::AgentFinished { label, .. } = event {
                println!("DONE {label}");
            }
        }
    }
}

#[tokio::test]
async fn a_killed_process_resumes_without_redoing_finished_calls() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "resume::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FLEET_WORKFLOW_TEST_CHILD_DB", &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut run_id = None;
    let mut done = 0;
    while done < 15 {
        let line = lines.next().expect("the child ended early").unwrap();
        // libtest may print its own `test … ` prefix on the first line.
        if let Some(at) = line.find("RUN ") {
            run_id = Some(line[at + 4..].trim().parse::<RunId>().unwrap());
        } else if line.starts_with("DONE ") {
            done += 1;
        }
    }
    // SIGKILL: no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let run_id = run_id.unwrap();

    let store: SharedStore = Arc::new(SqliteStore::open(&db).unwrap());
    let journaled = store
        .snapshot_dyn(run_id)
        .await
        .unwrap()
        .unwrap()
        .activities
        .iter()
        .filter(|a| matches!(a.kind, ActivityKind::AgentResult { .. }))
        .count() as u64;
    assert!((15..40).contains(&journaled), "{journaled} journaled");
    let fake = FakeModel::new();
    let (_, summary, live) = attempt(
        &store,
        &fan(40, ""),
        Some(Resume {
            run_id,
            strict: false,
        }),
        fake,
    )
    .await;
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    assert_eq!((summary.calls.cached, live), (journaled, 40 - journaled));
    assert_eq!(summary.result[39], json!("ok:item 39"));
    // The killed attempt's turn and its unfinished units read as interrupted.
    let thread = store.snapshot_dyn(run_id).await.unwrap().unwrap();
    assert_eq!(thread.turns.len(), 2);
    assert_eq!(
        thread.turns[0].state,
        fleet_core::event::TurnState::Interrupted
    );
    assert!(thread.work_units.values().all(|u| u.state.is_terminal()));
}

#[tokio::test]
async fn resuming_an_unknown_run_is_a_clear_error() {
    let engine = WorkflowEngine::new(memory(), Arc::new(FakeModel::new()));
    let id = RunId::new();
    let err = engine
        .start(
            script("return 1;"),
            RunOptions::default(),
            Some(Resume {
                run_id: id,
                strict: false,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("run {id} is not in the store; `fleet runs` lists the runs")
    );
}
