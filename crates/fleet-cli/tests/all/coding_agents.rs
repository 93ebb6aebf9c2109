//! One workflow whose `agent()` calls run on the real Claude Code and the real Codex (agent
//! specs with `provider: claude-code` / `provider: codex`), both against a mock model server on
//! 127.0.0.1 that has each spawn a subagent: `fleet trace` shows the run as one tree.
//!
//! Without the CLIs (installed by `.ci/run` into `.ci/tools`) the test says why and skips,
//! unless `FLEET_E2E_CLIS` names where they must be.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::user::Project;

fn clis() -> Option<PathBuf> {
    let required = std::env::var_os("FLEET_E2E_CLIS").map(PathBuf::from);
    let dir = required.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/tools/node_modules/.bin")
    });
    if dir.join("claude").exists() && dir.join("codex").exists() {
        return Some(dir);
    }
    assert!(
        required.is_none(),
        "FLEET_E2E_CLIS={} has no claude and codex",
        dir.display()
    );
    eprintln!(
        "skipping the Claude Code + Codex workflow test: the CLIs are not installed in {} \
         (`.ci/run` installs them with npm)",
        dir.display()
    );
    None
}

struct Mock(Child);

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the providers crate's mock model server; returns it and its base URL.
fn mock(dir: &Path) -> (Mock, String) {
    let port_file = dir.join("mock-port");
    let child = Command::new("python3")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fleet-providers/tests/fixtures/mock_model/server.py"),
        )
        .arg(&port_file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mock = Mock(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(port) = std::fs::read_to_string(&port_file) {
            return (mock, format!("http://127.0.0.1:{}", port.trim()));
        }
        assert!(
            Instant::now() < deadline,
            "the mock model server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_workflow_on_claude_code_and_codex_is_one_tree() {
    let Some(bin) = clis() else { return };
    let p = Project::init();
    let (_mock, base) = mock(p.dir.path());
    let root = p.root();
    std::fs::write(
        root.join("agents/cc.yaml"),
        "name: cc\nrole: leads with Claude Code\nmodel: claude-sonnet-4-5\nprovider: claude-code\ncapabilities: [read_files, spawn_subagents]\n",
    )
    .unwrap();
    std::fs::write(
        root.join("agents/cx.yaml"),
        "name: cx\nrole: leads with Codex\nmodel: gpt-5-mini\nprovider: codex\ncapabilities: [read_files]\n",
    )
    .unwrap();
    std::fs::write(
        root.join(".fleet/workflows/both.js"),
        "export const meta = { name: 'both', description: 'Claude Code and Codex side by side', phases: [{ title: 'Ask' }] };\n\
         phase('Ask');\n\
         const [c, x] = await parallel([\n\
           () => agent('[spawn] find out', { agentType: 'cc', label: 'claude lead' }),\n\
           () => agent('[spawn] find out', { agentType: 'cx', label: 'codex lead' }),\n\
         ]);\n\
         return { c, x };\n",
    )
    .unwrap();
    let codex_home = p.home().join("codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "model_provider = \"mock\"\n[model_providers.mock]\nname = \"mock\"\nbase_url = \"{base}/v1\"\nwire_api = \"responses\"\nenv_key = \"MOCK_MODEL_KEY\"\n[analytics]\nenabled = false\n[features]\nplugins = false\n"
        ),
    )
    .unwrap();
    // The CLIs get their base URLs and keys from the environment fleet passes on; fleet's own
    // agent loop (unused here) stays offline.
    let mut run = p.fleet(["run", "both"]);
    run.env("FLEET_PROVIDER", "offline")
        .env("FLEET_CLAUDE_BIN", bin.join("claude"))
        .env("FLEET_CODEX_BIN", bin.join("codex"))
        .env("ANTHROPIC_BASE_URL", &base)
        .env("ANTHROPIC_API_KEY", "sk-ant-mock")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("CODEX_HOME", &codex_home)
        .env("MOCK_MODEL_KEY", "mock");
    let out = run.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        result["c"].as_str().unwrap().starts_with("done: "),
        "{result}"
    );
    assert!(result["x"].is_string(), "{result}");

    let (code, trace, err) = p.output(["trace"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = trace.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in the trace:\n{trace}"))
    };
    // A child is drawn below its parent, one level deeper.
    let (claude, claude_kid) = (at("claude lead"), at("Say hello  "));
    let (codex, codex_kid) = (at("codex lead"), at("Say hello from the subagent"));
    let column = |i: usize, label: &str| lines[i].find(label).unwrap();
    assert_eq!(claude_kid, claude + 1, "{trace}");
    assert_eq!(codex_kid, codex + 1, "{trace}");
    assert!(
        column(claude_kid, "Say hello") > column(claude, "claude lead"),
        "{trace}"
    );
    assert!(
        column(codex_kid, "Say hello") > column(codex, "codex lead"),
        "{trace}"
    );
    assert!(lines[claude_kid].contains("claude-sonnet-4-5"), "{trace}");
    assert!(lines[claude].contains("claude-sonnet-4-5"), "{trace}");
    assert!(lines[codex].contains("gpt-5-mini"), "{trace}");
    // Every unit completed: nothing failed or still running in the tree.
    assert!(
        !trace.contains("failed") && !trace.contains("running"),
        "{trace}"
    );
}
