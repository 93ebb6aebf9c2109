//! The Codex runner against a fake `codex` that speaks the app-server's JSON-RPC and replays
//! recorded notification sessions: subagents spawned and nested, a child thread's events before
//! the spawn names it, a child failing, a child's own `turn/completed`, an approval, unknown
//! methods and a malformed line, a crash mid-turn, an interrupt, a resumed thread, and the
//! `codex exec --json` fallback.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleet_core::activity::ActivityKind;
use fleet_core::agent::{AgentCall, AgentError, AgentRunner, CallContext};
use fleet_core::journal::Journal;
use fleet_core::pricing::PriceTable;
use fleet_core::store::EventStore;
use fleet_core::store::memory::MemoryStore;
use fleet_core::thread::Thread;
use fleet_core::work_unit::WorkUnitState;
use fleet_providers::runner::coding_cli::codex::CodexRunner;
use serde_json::Value;

use super::claude_code::{assert_finished_units_stay_finished, by_label};
use super::spec;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/codex")
}

struct Setup {
    dir: tempfile::TempDir,
    store: Arc<MemoryStore>,
    journal: Journal,
    root: fleet_core::id::WorkUnitId,
    runner: CodexRunner,
}

impl Setup {
    async fn new(session: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, journal, root) = super::journal().await;
        let runner = CodexRunner::new(
            fixtures().join("fake_codex.py"),
            dir.path(),
            Arc::new(PriceTable::builtin().unwrap()),
        )
        .env(
            "FAKE_CODEX_SESSION",
            fixtures().join(session).display().to_string(),
        )
        .env(
            "FAKE_CODEX_RECORD",
            dir.path().join("record.json").display().to_string(),
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

    fn record(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("record.json")).unwrap())
            .unwrap()
    }

    /// The requests and answers fleet sent, in order.
    fn sent(&self) -> Vec<Value> {
        self.record()["inputs"].as_array().unwrap().clone()
    }

    async fn thread(&self) -> Thread {
        self.store
            .snapshot(self.journal.thread_id())
            .await
            .unwrap()
            .unwrap()
    }
}

fn messages(t: &Thread, unit: fleet_core::id::WorkUnitId) -> Vec<String> {
    t.activities_of(unit)
        .filter_map(|a| match &a.kind {
            ActivityKind::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn app_server_subagents_become_a_tree_with_states_refs_and_costs() {
    let setup = Setup::new("subagents.jsonl").await;
    let call = AgentCall {
        agent: Some(spec(
            "name: reviewer\nrole: reviews\nmodel: gpt-5\ncapabilities: [read_files]\nsystem: be brief\n",
        )),
        ..AgentCall::new("review the parser")
    };
    let outcome = setup.runner.run(call, setup.ctx()).await.unwrap();
    assert_eq!(
        outcome.text,
        "The parser is fine; the tests do not compile."
    );

    // The handshake, the thread with the spec's model, sandbox and instructions, the turn.
    let sent = setup.sent();
    let methods: Vec<&str> = sent.iter().filter_map(|m| m["method"].as_str()).collect();
    assert_eq!(
        methods,
        ["initialize", "initialized", "thread/start", "turn/start"]
    );
    let start = &sent[2]["params"];
    assert_eq!(
        (
            start["model"].as_str(),
            start["sandbox"].as_str(),
            start["approvalPolicy"].as_str(),
            start["developerInstructions"].as_str()
        ),
        (
            Some("gpt-5"),
            Some("read-only"),
            Some("untrusted"),
            Some("be brief")
        )
    );
    assert_eq!(sent[3]["params"]["threadId"], "thr-root");
    assert_eq!(sent[3]["params"]["input"][0]["text"], "review the parser");
    // The approval was refused (the agent may not run commands); other requests get an error.
    let answer = |id: &str| sent.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(answer("approve-1")["result"]["decision"], "decline");
    assert_eq!(answer("other-1")["error"]["code"], -32601);

    let t = setup.thread().await;
    let root = t.work_unit(outcome.work_unit_id).unwrap();
    assert_eq!(root.state, WorkUnitState::Completed);
    let a = by_label(&t, "explore the parser");
    let a1 = by_label(&t, "look at the lexer");
    let b = by_label(&t, "run the tests");
    assert_eq!(a.record.parent_id, Some(root.id));
    assert_eq!(b.record.parent_id, Some(root.id));
    assert_eq!(a1.record.parent_id, Some(a.id), "nested under its spawner");
    assert_eq!(
        (a.state, a1.state, b.state),
        (
            WorkUnitState::Completed,
            WorkUnitState::Completed,
            WorkUnitState::Failed
        ),
        "states come from agentsStates"
    );
    assert_eq!(b.error.as_deref(), Some("the tests do not compile"));
    let refs = a.provider_refs.clone().unwrap();
    assert_eq!(
        (
            refs.provider.as_str(),
            refs.thread.as_deref(),
            refs.item.as_deref(),
            refs.turn.as_deref()
        ),
        ("codex", Some("thr-a"), Some("call_1"), Some("turn-a"))
    );
    let root_refs = root.provider_refs.clone().unwrap();
    assert_eq!(
        (root_refs.thread.as_deref(), root_refs.turn.as_deref()),
        (Some("thr-root"), Some("turn-root"))
    );
    // The child's message that came before the spawn named it is the child's.
    assert_eq!(messages(&t, a.id), ["The parser is fine."]);
    assert_eq!(messages(&t, a1.id), ["The lexer is fine."]);
    assert!(t.activities_of(b.id).any(
        |x| matches!(&x.kind, ActivityKind::Log { message, .. } if message.contains("run_commands"))
    ));
    assert!(
        t.activities_of(b.id)
            .any(|x| matches!(&x.kind, ActivityKind::ToolCall { name, .. } if name == "command"))
    );
    assert_eq!(a.model.as_deref(), Some("gpt-5-mini"));

    // Usage per thread, priced per model (cached input inside input).
    assert_eq!(
        (a.usage.input, a.usage.cache_read, a.usage.output),
        (800, 200, 50)
    );
    assert_eq!(
        (root.usage.input, root.usage.cache_read, root.usage.output),
        (2000, 1000, 300)
    );
    let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-9, "{got} != {want}");
    close(root.cost.usd.dollars(), 0.005_625);
    close(a.cost.usd.dollars(), 0.000_305);
    close(a1.cost.usd.dollars(), 0.000_165);
    close(t.subtree_cost(root.id).usd.dollars(), 0.006_095);
    assert_finished_units_stay_finished(&setup.store, &t).await;
}

#[tokio::test]
async fn granted_commands_are_approved_and_a_thread_can_be_resumed() {
    let setup = Setup::new("subagents.jsonl").await;
    let call = AgentCall {
        agent: Some(spec(
            "name: doer\nrole: does\nmodel: gpt-5\ncapabilities: [read_files, write_files, run_commands]\n",
        )),
        ..AgentCall::new("again")
    };
    let mut session = setup.runner.open(&call, Some("thr-root")).await.unwrap();
    assert_eq!(session.thread_id(), "thr-root");
    session.turn(call, setup.ctx()).await.unwrap();
    session.close().await;
    let sent = setup.sent();
    let resume = sent
        .iter()
        .find(|m| m["method"] == "thread/resume")
        .unwrap();
    assert_eq!(resume["params"]["threadId"], "thr-root");
    assert_eq!(resume["params"]["sandbox"], "workspace-write");
    let answer = sent.iter().find(|m| m["id"] == "approve-1").unwrap();
    assert_eq!(answer["result"]["decision"], "accept");
}

#[tokio::test]
async fn an_app_server_that_dies_fails_the_turn_with_its_stderr_tail() {
    let setup = Setup::new("crash.jsonl").await;
    let err = setup
        .runner
        .run(AgentCall::new("look deeper"), setup.ctx())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("codex app-server ended before its turn did"),
        "{err}"
    );
    assert!(err.contains("exit status: 101"), "{err}");
    assert!(err.contains("stream disconnected"), "{err}");
    let t = setup.thread().await;
    let dig = by_label(&t, "dig");
    assert_eq!(dig.state, WorkUnitState::Failed);
    let root = t.work_unit(dig.record.parent_id.unwrap()).unwrap();
    assert_eq!(root.state, WorkUnitState::Failed);
    assert_finished_units_stay_finished(&setup.store, &t).await;
}

#[tokio::test]
async fn cancelling_interrupts_the_turn() {
    let setup = Setup::new("interrupt.jsonl").await;
    let ctx = setup.ctx();
    let cancel = ctx.cancel.clone();
    let journal = setup.journal.clone();
    let runner = setup.runner.clone();
    let task = tokio::spawn(async move { runner.run(AgentCall::new("dig deep"), ctx).await });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !journal
        .read(|t| {
            t.work_units
                .values()
                .any(|u| u.label.as_deref() == Some("slow digging"))
        })
        .await
    {
        assert!(std::time::Instant::now() < deadline, "no subagent");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let result = task.await.unwrap();
    assert!(matches!(result, Err(AgentError::Cancelled)), "{result:?}");
    let interrupt = setup
        .sent()
        .into_iter()
        .find(|m| m["method"] == "turn/interrupt")
        .expect("turn/interrupt was sent");
    assert_eq!(
        (
            interrupt["params"]["threadId"].as_str(),
            interrupt["params"]["turnId"].as_str()
        ),
        (Some("thr-root"), Some("turn-root"))
    );
    let t = setup.thread().await;
    assert_eq!(by_label(&t, "dig deep").state, WorkUnitState::Cancelled);
    assert_eq!(by_label(&t, "slow digging").state, WorkUnitState::Cancelled);
    assert_finished_units_stay_finished(&setup.store, &t).await;
}

#[tokio::test]
async fn exec_fallback_records_the_spawn_and_the_turns_usage() {
    let setup = Setup::new("exec.jsonl").await;
    let runner = setup.runner.clone().exec();
    let call = AgentCall {
        agent: Some(spec("name: quick\nrole: answers\nmodel: gpt-5-mini\n")),
        ..AgentCall::new("say hello")
    };
    let outcome = runner.run(call, setup.ctx()).await.unwrap();
    assert_eq!(outcome.text, "done: hello from the subagent");
    let argv: Vec<String> = serde_json::from_value(setup.record()["argv"].clone()).unwrap();
    assert_eq!(
        argv,
        [
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--model",
            "gpt-5-mini",
            "--sandbox",
            "read-only",
            "say hello"
        ]
    );
    let t = setup.thread().await;
    let root = t.work_unit(outcome.work_unit_id).unwrap();
    let kid = by_label(&t, "Say hello from the subagent.");
    assert_eq!(kid.record.parent_id, Some(root.id));
    assert_eq!(kid.state, WorkUnitState::Completed);
    assert_eq!(
        kid.provider_refs.as_ref().unwrap().item.as_deref(),
        Some("item_1")
    );
    assert_eq!(
        root.provider_refs.as_ref().unwrap().thread.as_deref(),
        Some("thr-exec")
    );
    assert_eq!(
        (root.usage.input, root.usage.cache_read, root.usage.output),
        (180, 120, 60)
    );
    assert!(t.activities_of(root.id).any(|x| matches!(&x.kind, ActivityKind::Log { message, .. } if message.contains("not a JSON object"))));
    let events = setup.store.read_stream(t.id, 0, usize::MAX).await.unwrap();
    assert!(!events.is_empty());
    assert_finished_units_stay_finished(&setup.store, &t).await;
}
