//! The Claude Code runner against a fake `claude` that replays recorded stream-json sessions:
//! subagents and a nested one, a child failing, unknown message types, a malformed line, late
//! and repeated terminal signals, and a CLI that dies mid-stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleet_core::event::Event;
use fleet_core::{
    AgentCall, AgentError, AgentRunner, CallContext, EventStore, Journal, MemoryStore, PriceTable,
    SharedStore, Thread, WorkUnitDraft, WorkUnitKind, WorkUnitState,
};
use fleet_providers::ClaudeCodeRunner;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude_code")
}

struct Ran {
    store: Arc<MemoryStore>,
    thread: Thread,
    result: Result<fleet_core::AgentOutcome, AgentError>,
    record: serde_json::Value,
}

async fn run(session: &str, call: AgentCall) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("argv.json");
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::create(store.clone() as SharedStore, None)
        .await
        .unwrap();
    let (_, root) = journal
        .start_turn(None, WorkUnitDraft::new(WorkUnitKind::PrimaryAgent))
        .await
        .unwrap();
    let runner = ClaudeCodeRunner::new(
        fixtures().join("fake_claude.py"),
        dir.path(),
        Arc::new(PriceTable::builtin().unwrap()),
    )
    .env(
        "FAKE_CLAUDE_SESSION",
        fixtures().join(session).display().to_string(),
    )
    .env("FAKE_CLAUDE_RECORD", record.display().to_string());
    let result = runner
        .run(call, CallContext::new(journal.clone(), root))
        .await;
    let thread = store.snapshot(journal.thread_id()).await.unwrap().unwrap();
    let record = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    Ran {
        store,
        thread,
        result,
        record,
    }
}

/// No unit that reached a terminal state is ever recorded as non-terminal again.
async fn assert_finished_units_stay_finished(store: &MemoryStore, thread: &Thread) {
    let events = store.read_stream(thread.id, 0, usize::MAX).await.unwrap();
    let mut ended = std::collections::HashSet::new();
    for e in events {
        if let Event::WorkUnitUpserted { work_unit } = e.event {
            if work_unit.state.is_terminal() {
                ended.insert(work_unit.id);
            } else {
                assert!(
                    !ended.contains(&work_unit.id),
                    "{:?} ran again after it ended",
                    work_unit.label
                );
            }
        }
    }
}

fn by_label<'a>(thread: &'a Thread, label: &str) -> &'a fleet_core::WorkUnit {
    thread
        .work_units
        .values()
        .find(|u| u.label.as_deref() == Some(label))
        .unwrap_or_else(|| panic!("no unit {label:?}"))
}

#[tokio::test]
async fn subagents_become_a_tree_with_states_refs_and_costs() {
    let spec: fleet_core::spec::AgentSpec = fleet_core::spec::AgentSpec::from_yaml(
        Path::new("reviewer.yaml"),
        "name: reviewer\nrole: reviews\nmodel: claude-sonnet-4-5\ncost_budget: 0.75\nmax_tool_calls: 12\nsystem: be brief\n",
    )
    .unwrap();
    let call = AgentCall {
        agent: Some(Arc::new(spec)),
        ..AgentCall::new("review the parser")
    };
    let ran = run("subagents.jsonl", call).await;
    let outcome = ran.result.unwrap();
    assert_eq!(
        outcome.text,
        "parse_expr needs a fix; the tests do not compile."
    );
    let t = &ran.thread;

    // The CLI was asked for stream-json both ways, with the spec's model, turns, budget and
    // system prompt, and got the prompt as a stream-json user message.
    let argv: Vec<String> = serde_json::from_value(ran.record["argv"].clone()).unwrap();
    let joined = argv.join(" ");
    for part in [
        "-p --output-format stream-json --input-format stream-json --verbose",
        "--model claude-sonnet-4-5",
        "--max-turns 12",
        "--max-budget-usd 0.7500",
        "--append-system-prompt be brief",
    ] {
        assert!(joined.contains(part), "{joined}");
    }
    assert_eq!(
        ran.record["input"]["message"]["content"][0]["text"],
        "review the parser"
    );

    let call_unit = t.work_unit(outcome.work_unit_id).unwrap();
    assert_eq!(call_unit.state, WorkUnitState::Completed);
    let a = by_label(t, "explore the parser");
    let a1 = by_label(t, "look at the lexer");
    let b = by_label(t, "run the tests");
    assert_eq!(a.record.parent_id, Some(call_unit.id));
    assert_eq!(b.record.parent_id, Some(call_unit.id));
    assert_eq!(
        a1.record.parent_id,
        Some(a.id),
        "the nested subagent sits under its parent"
    );
    assert_eq!(
        (a.state, a1.state, b.state),
        (
            WorkUnitState::Completed,
            WorkUnitState::Completed,
            WorkUnitState::Failed
        )
    );
    assert_eq!(
        b.error.as_deref(),
        Some("the tests do not compile"),
        "the first terminal signal wins"
    );
    assert_eq!(a.agent.as_deref(), Some("Explore"));
    let refs = a.provider_refs.clone().unwrap();
    assert_eq!(
        (
            refs.provider.as_str(),
            refs.thread.as_deref(),
            refs.item.as_deref(),
            refs.task.as_deref()
        ),
        (
            "claude-code",
            Some("sess-1"),
            Some("toolu_A"),
            Some("task-a")
        )
    );
    // Child messages are the child's activities.
    let said: Vec<String> = t
        .activities_of(a1.id)
        .filter_map(|x| match &x.kind {
            fleet_core::ActivityKind::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["The lexer is fine."]);
    assert!(t.activities_of(b.id).any(
        |x| matches!(&x.kind, fleet_core::ActivityKind::ToolCall { name, .. } if name == "Bash")
    ));
    // The malformed line was skipped and said.
    assert!(t.activities_of(call_unit.id).any(|x| matches!(&x.kind, fleet_core::ActivityKind::Log { message, .. } if message.contains("not a JSON object"))));

    // Usage: per message once, to the unit that sent it; the CLI's totals beyond that on the root.
    assert_eq!((a.usage.input, a.usage.output), (4500, 110));
    assert_eq!((a1.usage.input, a1.usage.output), (3000, 40));
    assert_eq!((b.usage.input, b.usage.output), (1500, 30));
    assert_eq!(
        (
            call_unit.usage.input,
            call_unit.usage.output,
            call_unit.usage.cache_read,
            call_unit.usage.cache_write
        ),
        (1800, 170, 9000, 2000)
    );
    let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-9, "{got} != {want}");
    close(a.cost.usd.dollars(), 0.00505);
    close(a1.cost.usd.dollars(), 0.0032);
    close(b.cost.usd.dollars(), 0.00165);
    close(t.subtree_cost(call_unit.id).usd.dollars(), 0.02805);
    assert_finished_units_stay_finished(&ran.store, t).await;
}

#[tokio::test]
async fn a_cli_that_dies_fails_the_unit_with_its_stderr_tail() {
    let ran = run("crash.jsonl", AgentCall::new("look deeper")).await;
    let err = ran.result.unwrap_err().to_string();
    assert!(err.contains("claude ended before its result"), "{err}");
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("API Error: Connection refused"), "{err}");
    let t = &ran.thread;
    let dig = by_label(t, "dig");
    assert_eq!(
        dig.state,
        WorkUnitState::Failed,
        "an open child fails with its session"
    );
    let root_call = t.work_unit(dig.record.parent_id.unwrap()).unwrap();
    assert_eq!(root_call.state, WorkUnitState::Failed);
    assert!(
        root_call
            .error
            .as_deref()
            .unwrap()
            .contains("Connection refused")
    );
    assert_finished_units_stay_finished(&ran.store, t).await;
}
