//! The Claude Code runner against a fake `claude` that replays recorded stream-json sessions:
//! subagents and a nested one, a child failing, unknown message types, a malformed line, late
//! and repeated terminal signals, a CLI that dies mid-stream, permission requests answered from
//! capabilities, plan mode, two turns on one process, background subagents and an interrupt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleet_core::agent::{AgentCall, AgentError, AgentRunner, CallContext};
use fleet_core::event::Event;
use fleet_core::journal::Journal;
use fleet_core::pricing::PriceTable;
use fleet_core::store::EventStore;
use fleet_core::store::memory::MemoryStore;
use fleet_core::thread::Thread;
use fleet_core::work_unit::WorkUnitState;
use fleet_providers::runner::coding_cli::claude_code::ClaudeCodeRunner;

use super::spec;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude_code")
}

struct Ran {
    store: Arc<MemoryStore>,
    thread: Thread,
    result: Result<fleet_core::agent::AgentOutcome, AgentError>,
    record: serde_json::Value,
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
    journal: Journal,
    root: fleet_core::id::WorkUnitId,
    runner: ClaudeCodeRunner,
}

impl Setup {
    async fn new(session: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, journal, root) = super::journal().await;
        let runner = ClaudeCodeRunner::new(
            fixtures().join("fake_claude.py"),
            dir.path(),
            Arc::new(PriceTable::builtin().unwrap()),
        )
        .env(
            "FAKE_CLAUDE_SESSION",
            fixtures().join(session).display().to_string(),
        )
        .env(
            "FAKE_CLAUDE_RECORD",
            dir.path().join("argv.json").display().to_string(),
        );
        Self {
            dir,
            store,
            journal,
            root,
            runner,
        }
    }

    fn ctx(&self) -> CallContext {
        CallContext::new(self.journal.clone(), self.root)
    }

    fn record(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("argv.json")).unwrap())
            .unwrap()
    }

    async fn thread(&self) -> Thread {
        self.store
            .snapshot(self.journal.thread_id())
            .await
            .unwrap()
            .unwrap()
    }
}

async fn run(session: &str, call: AgentCall) -> Ran {
    let setup = Setup::new(session).await;
    let result = setup.runner.run(call, setup.ctx()).await;
    let thread = setup.thread().await;
    let record = setup.record();
    let store = setup.store.clone();
    Ran {
        store,
        thread,
        result,
        record,
    }
}

/// The control responses fleet wrote, by request id.
fn responses(record: &serde_json::Value) -> std::collections::HashMap<String, serde_json::Value> {
    record["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "control_response")
        .map(|i| {
            (
                i["response"]["request_id"].as_str().unwrap().to_owned(),
                i["response"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn permission_requests_are_answered_from_the_agents_capabilities() {
    let reader =
        spec("name: reader\nrole: reads\nmodel: claude-haiku-4-5\ncapabilities: [read_files]\n");
    let ran = run(
        "permissions.jsonl",
        AgentCall {
            agent: Some(reader),
            ..AgentCall::new("tidy up")
        },
    )
    .await;
    assert_eq!(ran.result.unwrap().text, "done");
    let joined = serde_json::from_value::<Vec<String>>(ran.record["argv"].clone())
        .unwrap()
        .join(" ");
    assert!(
        joined.contains("--permission-mode default --permission-prompt-tool stdio --allowedTools Read,Glob,Grep,LS,NotebookRead"),
        "{joined}"
    );
    let answers = responses(&ran.record);
    let bash = &answers["req-bash"]["response"];
    assert_eq!(bash["behavior"], "deny");
    assert!(
        bash["message"].as_str().unwrap().contains("run_commands"),
        "{bash}"
    );
    let write = &answers["req-write"]["response"];
    assert_eq!(write["behavior"], "deny");
    assert!(
        write["message"].as_str().unwrap().contains("write_files"),
        "{write}"
    );
    // Requests fleet registers nothing for get an error, not silence.
    assert_eq!(answers["req-hook"]["subtype"], "error");
    // The refusals are in the trace.
    let root = ran
        .thread
        .work_units
        .values()
        .find(|u| u.label.as_deref() == Some("tidy up"))
        .unwrap();
    let refused = ran
        .thread
        .activities_of(root.id)
        .filter(|a| matches!(&a.kind, fleet_core::activity::ActivityKind::Log { message, .. } if message.starts_with("refused ")))
        .count();
    assert_eq!(refused, 2);

    // Granted, the same requests are allowed with their input unchanged.
    let doer = spec(
        "name: doer\nrole: does\nmodel: claude-haiku-4-5\ncapabilities: [read_files, write_files, run_commands]\n",
    );
    let ran = run(
        "permissions.jsonl",
        AgentCall {
            agent: Some(doer),
            ..AgentCall::new("tidy up")
        },
    )
    .await;
    ran.result.unwrap();
    let answers = responses(&ran.record);
    assert_eq!(answers["req-bash"]["response"]["behavior"], "allow");
    assert_eq!(
        answers["req-bash"]["response"]["updatedInput"]["command"],
        "touch x && echo hi"
    );
    assert_eq!(answers["req-write"]["response"]["behavior"], "allow");
}

#[tokio::test]
async fn plan_mode_refuses_to_leave_and_records_the_proposed_plan() {
    let planner = spec(
        "name: planner\nrole: plans\nmodel: claude-sonnet-4-5\npermission_mode: plan\ncapabilities: [read_files, write_files]\n",
    );
    let ran = run(
        "plan.jsonl",
        AgentCall {
            agent: Some(planner),
            ..AgentCall::new("fix the bug")
        },
    )
    .await;
    let outcome = ran.result.unwrap();
    let plan = "1. Read the code.\n2. Fix the bug.";
    assert_eq!(
        outcome.output,
        Some(serde_json::json!({"plan": plan, "text": "Waiting for approval."}))
    );
    let joined = serde_json::from_value::<Vec<String>>(ran.record["argv"].clone())
        .unwrap()
        .join(" ");
    assert!(joined.contains("--permission-mode plan"), "{joined}");
    assert!(
        !joined.contains("Write"),
        "plan mode allows nothing that changes files: {joined}"
    );
    let answer = &responses(&ran.record)["req-plan"]["response"];
    assert_eq!(answer["behavior"], "deny");
    let proposed: Vec<&str> = ran
        .thread
        .activities_of(outcome.work_unit_id)
        .filter_map(|a| match &a.kind {
            fleet_core::activity::ActivityKind::ProposedPlan { plan } => Some(plan.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(proposed, [plan]);
    // The proposed plan is an event of the thread's log, for a reader of the stream.
    let events = ran
        .store
        .read_stream(ran.thread.id, 0, usize::MAX)
        .await
        .unwrap();
    assert!(events.iter().any(|e| {
        serde_json::to_string(&e.event)
            .unwrap()
            .contains("proposed_plan")
    }));
}

#[tokio::test]
async fn one_process_serves_every_turn_of_a_session() {
    let setup = Setup::new("two_turns.jsonl").await;
    let call = |prompt: &str| AgentCall {
        agent: Some(spec("name: helper\nrole: helps\nmodel: claude-haiku-4-5\n")),
        ..AgentCall::new(prompt)
    };
    let mut session = setup.runner.open(&call("first")).unwrap();
    let pid = session.pid();
    let first = session.turn(call("first"), setup.ctx()).await.unwrap();
    let second = session.turn(call("second"), setup.ctx()).await.unwrap();
    assert_eq!(session.pid(), pid);
    assert_eq!(session.turns(), 2);
    assert_eq!(session.session_id(), Some("sess-2"));
    session.close().await;
    assert_eq!(
        (first.text.as_str(), second.text.as_str()),
        ("first answer", "second answer")
    );
    // Both user messages went to the one process.
    let record = setup.record();
    let said: Vec<&str> = record["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "user")
        .map(|i| i["message"]["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(said, ["first", "second"]);
    // Each turn is its own unit and costs what that turn added to the session's usage.
    let t = setup.thread().await;
    let (a, b) = (
        t.work_unit(first.work_unit_id).unwrap(),
        t.work_unit(second.work_unit_id).unwrap(),
    );
    assert_eq!((a.usage.input, a.usage.output), (1000, 100));
    assert_eq!((b.usage.input, b.usage.output), (2000, 200));
    assert_eq!(
        a.provider_refs.as_ref().unwrap().thread.as_deref(),
        Some("sess-2")
    );
    assert_ne!(
        a.provider_refs.as_ref().unwrap().turn,
        b.provider_refs.as_ref().unwrap().turn
    );
    assert_finished_units_stay_finished(&setup.store, &t).await;
}

#[tokio::test]
async fn a_background_subagent_belongs_to_the_turn_that_started_it() {
    let ran = run("background.jsonl", AgentCall::new("delegate")).await;
    let outcome = ran.result.unwrap();
    assert_eq!(outcome.text, "done: hello from the subagent");
    let t = &ran.thread;
    let child = by_label(t, "Say hello");
    assert_eq!(child.state, WorkUnitState::Completed);
    assert_eq!(child.record.parent_id, Some(outcome.work_unit_id));
    let said: Vec<String> = t
        .activities_of(child.id)
        .filter_map(|x| match &x.kind {
            fleet_core::activity::ActivityKind::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["hello from the subagent"]);
    // The tree costs what both of the CLI's results say (400 in, 80 out).
    let total = t.subtree_usage(outcome.work_unit_id);
    assert_eq!((total.input, total.output), (400, 80));
    assert_finished_units_stay_finished(&ran.store, t).await;
}

#[tokio::test]
async fn cancelling_interrupts_the_cli_and_cancels_the_tree() {
    let setup = Setup::new("interrupt.jsonl").await;
    let ctx = setup.ctx();
    let cancel = ctx.cancel.clone();
    let journal = setup.journal.clone();
    let runner = setup.runner.clone();
    let task = tokio::spawn(async move { runner.run(AgentCall::new("dig deep"), ctx).await });
    // Once the subagent runs, stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let running = journal
            .read(|t| {
                t.work_units.values().any(|u| {
                    u.label.as_deref() == Some("slow digging") && u.state == WorkUnitState::Running
                })
            })
            .await;
        if running {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subagent never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let result = task.await.unwrap();
    assert!(matches!(result, Err(AgentError::Cancelled)), "{result:?}");
    // The CLI got its interrupt control request.
    let record = setup.record();
    assert!(
        record["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "control_request" && i["request"]["subtype"] == "interrupt"),
        "{record}"
    );
    let t = setup.thread().await;
    let root = by_label(&t, "dig deep");
    assert_eq!(root.state, WorkUnitState::Cancelled);
    assert_eq!(by_label(&t, "slow digging").state, WorkUnitState::Cancelled);
    assert_finished_units_stay_finished(&setup.store, &t).await;
}

/// No unit that reached a terminal state is ever recorded as non-terminal again.
pub(crate) async fn assert_finished_units_stay_finished(store: &MemoryStore, thread: &Thread) {
    let events = store.read_stream(thread.id, 0, usize::MAX).await.unwrap();
    let mut ended = std::collections::HashSet::new();
    for e in events {
        let (id, state) = match e.event {
            Event::WorkUnitUpserted { work_unit } => (work_unit.id, work_unit.state),
            Event::WorkUnitStateChanged {
                work_unit_id,
                state,
                ..
            } => (work_unit_id, state),
            _ => continue,
        };
        if state.is_terminal() {
            ended.insert(id);
        } else {
            let label = thread.work_unit(id).and_then(|u| u.label.clone());
            assert!(!ended.contains(&id), "{label:?} ran again after it ended");
        }
    }
}

pub(crate) fn by_label<'a>(thread: &'a Thread, label: &str) -> &'a fleet_core::work_unit::WorkUnit {
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
            fleet_core::activity::ActivityKind::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(said, ["The lexer is fine."]);
    assert!(t.activities_of(b.id).any(
        |x| matches!(&x.kind, fleet_core::activity::ActivityKind::ToolCall { name, .. } if name == "Bash")
    ));
    // The malformed line was skipped and said.
    assert!(t.activities_of(call_unit.id).any(|x| matches!(&x.kind, fleet_core::activity::ActivityKind::Log { message, .. } if message.contains("not a JSON object"))));

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
    assert!(err.contains("claude ended before its turn did"), "{err}");
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
