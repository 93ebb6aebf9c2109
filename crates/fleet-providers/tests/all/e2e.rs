//! End to end with the real `claude` and `codex` CLIs (installed from the npm registry into
//! `.ci/tools` by `.ci/run`), each pointed at a mock model server on 127.0.0.1 that speaks the
//! Anthropic Messages / OpenAI Responses streaming formats and scripts a turn in which the model
//! spawns a subagent. What is asserted is the work-unit tree fleet records.
//!
//! Without the CLIs the tests say why and skip, unless `FLEET_E2E_CLIS` names where they must
//! be (as `.ci/run` does), in which case their absence fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_core::activity::ActivityKind;
use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
use fleet_core::pricing::PriceTable;
use fleet_core::store::EventStore;
use fleet_core::store::memory::MemoryStore;
use fleet_core::thread::Thread;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use fleet_providers::runner::coding_cli::claude_code::ClaudeCodeRunner;
use fleet_providers::runner::coding_cli::codex::CodexRunner;

use super::claude_code::{assert_finished_units_stay_finished, by_label};
use super::spec;

/// The directory holding `claude` and `codex`, or why there is none (to skip).
pub(crate) fn clis() -> Result<PathBuf, String> {
    let required = std::env::var_os("FLEET_E2E_CLIS").map(PathBuf::from);
    let dir = required.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/tools/node_modules/.bin")
    });
    let present = dir.join("claude").exists() && dir.join("codex").exists();
    match (present, required) {
        (true, _) => Ok(dir),
        (false, Some(_)) => panic!(
            "FLEET_E2E_CLIS={} has no claude and codex: `.ci/run` installs them there",
            dir.display()
        ),
        (false, None) => Err(format!(
            "the claude and codex CLIs are not installed in {} (`.ci/run` installs them with npm)",
            dir.display()
        )),
    }
}

/// The mock model server (a Python script of the fixtures), stopped on drop.
pub(crate) struct MockModel {
    child: Child,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl MockModel {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mock_model/server.py"))
            .arg(&port_file)
            .arg(dir.path().join("requests.jsonl"))
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the mock model server");
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "the mock model server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Self {
            child,
            base: format!("http://127.0.0.1:{}", port.trim()),
            _dir: dir,
        }
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment that runs the real CLIs offline against `mock`, in `home`.
pub(crate) fn offline_env(mock: &MockModel, home: &Path) -> Vec<(String, String)> {
    let codex_home = home.join("codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model = \"gpt-5-mini\"\nmodel_provider = \"mock\"\n\n[model_providers.mock]\nname = \"mock\"\nbase_url = \"{}/v1\"\nwire_api = \"responses\"\nenv_key = \"MOCK_MODEL_KEY\"\n\n[analytics]\nenabled = false\n\n[features]\nplugins = false\n",
            mock.base
        ),
    )
    .unwrap();
    [
        ("HOME", home.display().to_string()),
        ("ANTHROPIC_BASE_URL", mock.base.clone()),
        ("ANTHROPIC_API_KEY", "sk-ant-mock".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("CODEX_HOME", codex_home.display().to_string()),
        ("MOCK_MODEL_KEY", "mock".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

struct Ran {
    store: Arc<MemoryStore>,
    thread: Thread,
    outcome: fleet_core::agent::AgentOutcome,
    workdir: tempfile::TempDir,
}

/// Runs `call` on the real `cli` (`claude`, `codex` or `codex-exec`) against a fresh mock.
async fn run(cli: &str, call: AgentCall) -> Option<Ran> {
    let dir = match clis() {
        Ok(dir) => dir,
        Err(why) => {
            eprintln!("skipping the end-to-end test: {why}");
            return None;
        }
    };
    let mock = MockModel::start();
    let home = tempfile::tempdir().unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let env = offline_env(&mock, home.path());
    let prices = Arc::new(PriceTable::builtin().unwrap());
    let (store, journal, root) = super::journal().await;
    let ctx = CallContext::new(journal.clone(), root);
    let result = if cli == "claude" {
        let mut runner = ClaudeCodeRunner::new(dir.join("claude"), workdir.path(), prices);
        for (k, v) in env {
            runner = runner.env(k, v);
        }
        runner.run(call, ctx).await
    } else {
        let mut runner = CodexRunner::new(dir.join("codex"), workdir.path(), prices);
        for (k, v) in env {
            runner = runner.env(k, v);
        }
        if cli == "codex-exec" {
            runner = runner.exec();
        }
        runner.run(call, ctx).await
    };
    let outcome = result.unwrap_or_else(|e| panic!("{cli}: {e}"));
    let thread = store.snapshot(journal.thread_id()).await.unwrap().unwrap();
    assert_finished_units_stay_finished(&store, &thread).await;
    // Every line the real CLI wrote read as its wire type: none was skipped.
    let skipped: Vec<&str> = thread
        .activities
        .iter()
        .filter_map(|a| match &a.kind {
            ActivityKind::Log { message, .. } if message.contains(": skipped ") => {
                Some(message.as_str())
            }
            _ => None,
        })
        .collect();
    assert!(skipped.is_empty(), "{cli}: {skipped:?}");
    Some(Ran {
        store,
        thread,
        outcome,
        workdir,
    })
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
async fn real_claude_code_spawns_a_subagent_into_the_tree() {
    let call = AgentCall {
        agent: Some(spec(
            "name: lead\nrole: leads\nmodel: claude-sonnet-4-5\ncapabilities: [read_files, spawn_subagents]\n",
        )),
        ..AgentCall::new("[spawn] find out")
    };
    let Some(ran) = run("claude", call).await else {
        return;
    };
    let t = &ran.thread;
    let root = t.work_unit(ran.outcome.work_unit_id).unwrap();
    assert_eq!(root.state, WorkUnitState::Completed);
    assert!(
        ran.outcome.text.starts_with("done: "),
        "{}",
        ran.outcome.text
    );
    let child = by_label(t, "Say hello");
    assert_eq!(child.record.parent_id, Some(root.id));
    assert_eq!(child.kind, WorkUnitKind::DelegatedAgent);
    assert_eq!(child.state, WorkUnitState::Completed);
    assert_eq!(child.agent.as_deref(), Some("general-purpose"));
    assert_eq!(messages(t, child.id), ["hello from the subagent"]);
    let refs = child.provider_refs.clone().unwrap();
    assert_eq!(refs.provider, "claude-code");
    assert!(refs.task.is_some() && refs.thread.is_some(), "{refs:?}");
    assert_eq!(
        root.provider_refs.as_ref().unwrap().thread,
        refs.thread,
        "one session"
    );
    // The subagent's own request is the child's; the tree costs what the CLI counted.
    assert_eq!((child.usage.input, child.usage.output), (100, 20));
    let total = t.subtree_usage(root.id);
    assert!(total.input >= 400 && total.input % 100 == 0, "{total:?}");
    assert!(t.subtree_cost(root.id).usd.dollars() > 0.0);
    let children = t
        .work_units
        .values()
        .filter(|u| u.record.parent_id == Some(root.id))
        .count();
    assert_eq!(children, 1, "one subagent, once");
}

#[tokio::test]
async fn real_claude_code_in_plan_mode_records_the_proposed_plan() {
    let call = AgentCall {
        agent: Some(spec(
            "name: planner\nrole: plans\nmodel: claude-sonnet-4-5\npermission_mode: plan\ncapabilities: [read_files]\n",
        )),
        ..AgentCall::new("[plan] fix the bug")
    };
    let Some(ran) = run("claude", call).await else {
        return;
    };
    let plan = "1. Read the code.\n2. Fix the bug.\n3. Run the tests.";
    assert_eq!(ran.outcome.output.as_ref().unwrap()["plan"], plan);
    let proposed: Vec<String> = ran
        .thread
        .activities_of(ran.outcome.work_unit_id)
        .filter_map(|a| match &a.kind {
            ActivityKind::ProposedPlan { plan } => Some(plan.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proposed, [plan]);
    assert_eq!(ran.outcome.text.trim(), "plan recorded");
}

#[tokio::test]
async fn real_claude_code_asks_fleet_before_running_a_command() {
    let bash = |caps: &str| AgentCall {
        agent: Some(spec(&format!(
            "name: runner\nrole: runs\nmodel: claude-haiku-4-5\ncapabilities: [{caps}]\n"
        ))),
        ..AgentCall::new("[bash] leave a mark")
    };
    let Some(refused) = run("claude", bash("read_files")).await else {
        return;
    };
    assert!(
        refused.outcome.text.starts_with("bash denied: ")
            && refused.outcome.text.contains("run_commands"),
        "{}",
        refused.outcome.text
    );
    assert!(!refused.workdir.path().join("fleet-bash.txt").exists());
    let allowed = run("claude", bash("read_files, run_commands"))
        .await
        .unwrap();
    assert!(
        allowed.outcome.text.starts_with("bash ran: fleet-bash"),
        "{}",
        allowed.outcome.text
    );
    assert!(allowed.workdir.path().join("fleet-bash.txt").exists());
    drop(allowed.store);
}

#[tokio::test]
async fn real_codex_app_server_spawns_a_subagent_into_the_tree() {
    let call = AgentCall {
        agent: Some(spec(
            "name: lead\nrole: leads\nmodel: gpt-5-mini\ncapabilities: [read_files]\n",
        )),
        ..AgentCall::new("[spawn] find out")
    };
    let Some(ran) = run("codex", call).await else {
        return;
    };
    let t = &ran.thread;
    let root = t.work_unit(ran.outcome.work_unit_id).unwrap();
    assert_eq!(root.state, WorkUnitState::Completed);
    let child = by_label(t, "Say hello from the subagent.");
    assert_eq!(child.record.parent_id, Some(root.id));
    assert_eq!(child.state, WorkUnitState::Completed, "from agentsStates");
    assert_eq!(messages(t, child.id), ["hello from the subagent"]);
    let refs = child.provider_refs.clone().unwrap();
    let root_refs = root.provider_refs.clone().unwrap();
    assert_eq!(refs.provider, "codex");
    assert_ne!(
        refs.thread, root_refs.thread,
        "the child has its own thread"
    );
    assert!(refs.turn.is_some() && refs.item.is_some(), "{refs:?}");
    // Each thread's requests are its own: the child made one, the root three.
    assert_eq!(
        (
            child.usage.input,
            child.usage.cache_read,
            child.usage.output
        ),
        (60, 40, 20)
    );
    assert_eq!(
        (root.usage.input, root.usage.cache_read, root.usage.output),
        (180, 120, 60)
    );
    assert!(t.subtree_cost(root.id).usd.dollars() > 0.0);
}

#[tokio::test]
async fn real_codex_exec_records_the_spawn() {
    let call = AgentCall {
        agent: Some(spec("name: quick\nrole: answers\nmodel: gpt-5-mini\n")),
        ..AgentCall::new("[spawn] find out")
    };
    let Some(ran) = run("codex-exec", call).await else {
        return;
    };
    let t = &ran.thread;
    let root = t.work_unit(ran.outcome.work_unit_id).unwrap();
    assert_eq!(root.state, WorkUnitState::Completed);
    let child = by_label(t, "Say hello from the subagent.");
    assert_eq!(child.record.parent_id, Some(root.id));
    assert_eq!(child.state, WorkUnitState::Completed);
    assert!(root.provider_refs.as_ref().unwrap().thread.is_some());
    assert_eq!(
        (root.usage.input, root.usage.cache_read, root.usage.output),
        (180, 120, 60)
    );
}
