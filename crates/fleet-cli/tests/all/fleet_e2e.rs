//! The design's definition of done, end to end: `fleet start --headless` with the three sample
//! agents of `fleet init` (and a probe worker in Python), sandboxed, on a local mock of the
//! Anthropic Messages API that scripts their tool calls. Only the supervisor reaches the mock:
//! it holds the API keys; the workers hold none and cannot connect.
//!
//! - patch-bot fixes a failing test, and the fix is a commit;
//! - test-writer-bot commits a test that fails until the behaviour exists;
//! - doc-bot documents the changed file, and commits that;
//! - the probe reports its environment, arguments and `initialize` params: neither key is in
//!   them, and its own connection to the model server is refused.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::mock_model::MockModel;
use super::user::{Project, fleet_copy};

const ANTHROPIC_KEY: &str = "sk-ant-e2e-7f3c9a1b5d";
const OPENAI_KEY: &str = "sk-openai-e2e-2b8e4d6f0a";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fleet_e2e")
        .join(name)
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A project from `fleet init`, its workspace a small Python project with a failing test, and
/// a fourth agent served by the probe worker.
fn project() -> (Project, PathBuf) {
    let p = Project::init();
    for dir in [p.dir.path().to_path_buf(), p.root()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let workspace = p.root().join("workspace");
    std::fs::write(
        workspace.join("calc.py"),
        "def add(a, b):\n    return a - b\n",
    )
    .unwrap();
    std::fs::write(
        workspace.join("test_calc.py"),
        "import unittest\n\nfrom calc import add\n\n\nclass Add(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n",
    )
    .unwrap();
    git(&workspace, &["add", "."]);
    git(
        &workspace,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "calc, with a bug",
        ],
    );
    std::fs::create_dir(p.root().join("workers")).unwrap();
    std::fs::copy(fixture("probe.py"), p.root().join("workers/probe.py")).unwrap();
    std::fs::write(
        p.root().join("agents/probe.yaml"),
        "name: probe\nrole: reports what its worker was given\nmodel: claude-haiku-4-5\n\
         worker: [python3, workers/probe.py]\n",
    )
    .unwrap();
    let fleet = fleet_copy(p.dir.path());
    (p, fleet)
}

/// `fleet send` in the project; (exit code, stdout, stderr).
fn send(p: &Project, fleet: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(fleet)
        .arg("send")
        .args(args)
        .current_dir(p.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.home())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The fleet's log lines, as they come.
fn lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn the_three_sample_agents_do_their_work_on_a_real_wire_format_through_the_gateway() {
    if let Err(e) = fleet_sandbox::landlock_available() {
        assert!(
            std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
            "FLEET_SANDBOX_REQUIRE=1 but {e}"
        );
        eprintln!("skipping the fleet end-to-end test: {e}");
        return;
    }
    let (p, fleet) = project();
    let model = MockModel::start("fleet_e2e/anthropic_model.py", p.dir.path());
    let base = format!("http://127.0.0.1:{}", model.port);
    let mut child = Command::new(&fleet)
        .args(["start", "--headless"])
        .current_dir(p.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.home())
        .env("FLEET_PROVIDER", "anthropic")
        .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        .env("ANTHROPIC_BASE_URL", &base)
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .env("OPENAI_BASE_URL", format!("{base}/v1"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let pid = rustix::process::Pid::from_child(&child);
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !said
        .iter()
        .any(|l: &String| l.contains("4 agents supervised"))
    {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("the fleet did not start: {said:?}\n{err}");
        };
        said.push(line);
    }
    let workspace = p.root().join("workspace");
    let tests = "python3 -m unittest -q";

    // patch-bot: the failing test passes, and the fix is the last commit.
    let (code, out, err) = send(
        &p,
        &fleet,
        &[
            "patch-bot",
            "[patch] make the tests pass",
            "--test-command",
            tests,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let head = git(&workspace, &["rev-parse", "HEAD"]);
    assert!(out.contains(&format!("the fix is commit {head}")), "{out}");
    assert_eq!(
        git(&workspace, &["log", "-1", "--format=%s"]),
        "patch-bot: [patch] make the tests pass"
    );
    assert_eq!(
        git(&workspace, &["show", "--name-only", "--format=", "HEAD"]),
        "calc.py"
    );
    let passing = Command::new("python3")
        .args(["-m", "unittest", "-q"])
        .current_dir(&workspace)
        .output()
        .unwrap();
    assert!(passing.status.success(), "{passing:?}");

    // test-writer-bot: a new test, failing until subtract() exists, is committed.
    let (code, out, err) = send(
        &p,
        &fleet,
        &[
            "test-writer-bot",
            "[tests] pin down subtract(a, b)",
            "--input",
            r#"{"test_command": ["python3", "-m", "unittest", "test_subtract", "-q"]}"#,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("The new tests fail as they should"), "{out}");
    assert_eq!(
        git(&workspace, &["show", "--name-only", "--format=%s", "HEAD"]),
        "test-writer-bot: [tests] pin down subtract(a, b)\n\ntest_subtract.py"
    );
    let failing = Command::new("python3")
        .args(["-m", "unittest", "test_subtract", "-q"])
        .current_dir(&workspace)
        .output()
        .unwrap();
    assert!(
        !failing.status.success(),
        "the pinned test fails until subtract exists"
    );

    // doc-bot: docstrings on the changed file, committed.
    let (code, out, err) = send(&p, &fleet, &["doc-bot", "[docs] document calc.py"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Documented calc.py."), "{out}");
    assert!(
        git(&workspace, &["show", "HEAD:calc.py"]).contains("\"\"\"The sum of a and b.\"\"\""),
        "doc-bot committed its docstrings"
    );
    assert_eq!(
        git(&workspace, &["log", "--format=%an %s"])
            .lines()
            .take(3)
            .collect::<Vec<_>>(),
        [
            "fleet doc-bot: [docs] document calc.py",
            "fleet test-writer-bot: [tests] pin down subtract(a, b)",
            "fleet patch-bot: [patch] make the tests pass",
        ]
    );

    // The probe: no credential anywhere it can see, and no way to the model server.
    let (code, out, err) = send(
        &p,
        &fleet,
        &[
            "probe",
            "what were you given?",
            "--input",
            &format!(r#"{{"port": {}}}"#, model.port),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for key in [ANTHROPIC_KEY, OPENAI_KEY] {
        assert!(!out.contains(key), "a worker saw a key: {out}");
    }
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        report["connect"].as_str().unwrap().starts_with("refused"),
        "the worker reached the model server: {report}"
    );
    assert!(
        report["parent_environ"]
            .as_str()
            .unwrap()
            .starts_with("refused"),
        "the worker read the supervisor's environment: {report}"
    );
    let env = report["env"].as_object().unwrap();
    assert!(
        !env.keys()
            .any(|k| k.contains("API_KEY") || k.contains("BASE_URL")),
        "{env:?}"
    );
    assert_eq!(report["initialize"]["gateway"]["provider"], "anthropic");

    // Every model turn reached the server from the supervisor, with its key.
    let requests = model.requests();
    assert_eq!(
        requests.len(),
        6,
        "two turns each for the three bots: {requests:?}"
    );
    for request in &requests {
        assert_eq!(request["api_key"], ANTHROPIC_KEY, "{request}");
        assert_eq!(request["stream"], true, "{request}");
    }
    let models: Vec<&str> = requests
        .iter()
        .map(|r| r["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        [
            "claude-haiku-4-5",
            "claude-haiku-4-5",
            "gpt-5-mini",
            "gpt-5-mini",
            "claude-haiku-4-5",
            "claude-haiku-4-5"
        ]
    );

    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // What the gateway metered is in the store: four tasks under the session.
    let out = Command::new(&fleet)
        .args(["runs"])
        .current_dir(p.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.home())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let runs = String::from_utf8_lossy(&out.stdout);
    let row = runs
        .lines()
        .find(|l| l.contains(" fleet "))
        .unwrap_or_else(|| panic!("{runs}"));
    assert!(row.contains("completed"), "{runs}");
}

/// `fleet run` in the project, with `envs`; (exit code, stdout, stderr).
fn fleet_in(
    p: &Project,
    fleet: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (i32, String, String) {
    let out = Command::new(fleet)
        .args(args)
        .current_dir(p.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.home())
        .env("NO_COLOR", "1")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_workflows_specialist_runs_in_its_sandbox_and_is_charged_to_the_run() {
    if let Err(e) = fleet_sandbox::landlock_available() {
        assert!(
            std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() != Ok("1"),
            "FLEET_SANDBOX_REQUIRE=1 but {e}"
        );
        eprintln!("skipping: {e}");
        return;
    }
    let (p, fleet) = project();
    // Every turn spends 1k input and 4k output tokens of claude-haiku-4-5: $0.021.
    let turn = serde_json::json!({"expect": {}, "events": [
        {"type": "text_delta", "text": "Documented."},
        {"type": "usage", "usage": {"input": 1_000, "output": 4_000}},
        {"type": "done", "stop_reason": "end_turn"}
    ]});
    let cassette = p.root().join("cassette.json");
    std::fs::write(
        &cassette,
        serde_json::json!({"exchanges": vec![turn; 3]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        p.root().join(".fleet/workflows/docs.js"),
        "export const meta = { name: 'docs', description: 'doc-bot twice' };\n\
         const first = await agent('document a', { agentType: 'doc-bot', label: 'first' });\n\
         const second = await agent('document b', { agentType: 'doc-bot', label: 'second' });\n\
         return { first, second };\n",
    )
    .unwrap();
    let scripted = [
        ("FLEET_PROVIDER", "scripted"),
        ("FLEET_CASSETTE", cassette.to_str().unwrap()),
    ];
    // The run may spend $0.0215: the first call's $0.021 fits; what is left ($0.0005) is less
    // than the least a turn is admitted for (256 output tokens), so the second is refused.
    let mut envs = scripted.to_vec();
    envs.push(("FLEET_BUDGET_USD", "0.0215"));
    let (code, _, err) = fleet_in(&p, &fleet, &["run", "docs"], &envs);
    assert_eq!(code, 4, "the run's budget ran out: {err}");
    let (_, trace, _) = fleet_in(&p, &fleet, &["trace"], &[]);
    let first = trace
        .lines()
        .find(|l| l.contains(" first "))
        .unwrap_or_else(|| panic!("{trace}"));
    assert!(
        first.starts_with("completed")
            && first.contains("doc-bot")
            && first.contains("claude-haiku-4-5")
            && first.contains("$0.0210"),
        "the sandboxed specialist's metered turn is on its unit: {trace}"
    );
    assert!(
        trace.contains(
            "Workflow dollar budget exceeded (doc-bot's model turn was refused at the gateway: $0.0210 spent"
        ),
        "the second turn was refused at the gateway against the run's budget: {trace}"
    );

    // A specialist that cannot be sandboxed fails its call; it never runs outside.
    std::fs::write(
        p.root().join("agents/doc-bot.yaml"),
        "name: doc-bot\nrole: documents\nmodel: claude-haiku-4-5\nworker: [./no-such-worker]\n",
    )
    .unwrap();
    let (code, _, err) = fleet_in(&p, &fleet, &["run", "docs"], &scripted);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(
            "✗ first: agent call misconfigured: specialist doc-bot cannot run in its sandbox here, \
             and specialists never run unsandboxed: agent doc-bot: its worker program \
             `./no-such-worker` is not found"
        ),
        "{err}"
    );
}
