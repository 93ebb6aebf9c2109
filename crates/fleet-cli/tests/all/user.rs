//! `fleet` driven as a user drives it: a fresh project directory and home per test, nothing
//! from the caller's environment, output compared with reviewed snapshots where it is meant to
//! be read.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use serde_json::Value;

/// A project directory with a home of its own.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    /// An empty directory (not yet a fleet project).
    pub(crate) fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::create_dir(dir.path().join("project")).unwrap();
        Self { dir }
    }

    /// A project made by `fleet init`.
    pub(crate) fn init() -> Self {
        let p = Self::empty();
        p.fleet(["init"]).assert().success();
        p
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `fleet args…` in the project, with only PATH and HOME from outside.
    pub(crate) fn fleet<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet"));
        cmd.args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home());
        cmd
    }

    /// Runs and returns (exit code, stdout, stderr).
    pub(crate) fn output<I, S>(&self, args: I) -> (i32, String, String)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.fleet(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// Snapshot settings that hide what changes from run to run: ids, times, dates, paths.
    pub(crate) fn settings(&self) -> insta::Settings {
        let mut s = insta::Settings::clone_current();
        s.add_filter(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[ID]",
        );
        // A short id: an id's last 8 hex digits.
        s.add_filter(r"\b[0-9a-f]{8}\b", "[SHORT]");
        s.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?", "[DATE]");
        s.add_filter(r" +\d+(\.\d+)?(ms|s)\b", " [T]");
        s.add_filter(r"\b\d+m\d{2}s\b", "[T]");
        s.add_filter(
            &regex_escape(&self.root().display().to_string()),
            "[PROJECT]",
        );
        s.add_filter(&regex_escape(&self.home().display().to_string()), "[HOME]");
        s
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `text` with each run of lines starting with `prefix` sorted: calls that run in parallel
/// finish in any order.
fn in_any_order(text: &str, prefix: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.starts_with(prefix) {
            run.push(line);
            continue;
        }
        run.sort_unstable();
        out.extend(run.drain(..).map(str::to_owned));
        out.push(line.to_owned());
    }
    out.pop();
    out.join("\n")
}

/// The run id in `run <id> (name)`.
fn run_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")
                .or_else(|| l.strip_prefix("resuming run "))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run line in:\n{stderr}"))
        .to_owned()
}

#[test]
fn help_shows_every_command_and_the_exit_codes() {
    let p = Project::empty();
    let (code, help, _) = p.output(["--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("help", help);
    let (code, run_help, _) = p.output(["run", "--help"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("run_help", run_help);
    for command in [
        "runs",
        "status",
        "stop",
        "trace",
        "cost",
        "ask",
        "workflows",
        "agents",
        "schema",
        "init",
        "start",
        "send",
        "config",
        "completions",
    ] {
        let (code, out, _) = p.output([command, "--help"]);
        assert_eq!(code, 0, "{command} --help");
        assert!(out.contains("Usage: fleet"), "{command}: {out}");
    }
}

#[test]
fn init_makes_a_project_that_runs_hello_and_refuses_to_overwrite() {
    let p = Project::empty();
    let (code, out, _) = p.output(["init"]);
    assert_eq!(code, 0, "{out}");
    for file in [
        "fleet.toml",
        "agents/patch-bot.yaml",
        "agents/test-writer-bot.yaml",
        "agents/doc-bot.yaml",
        ".fleet/workflows/hello.js",
    ] {
        assert!(p.root().join(file).is_file(), "{file} missing");
    }
    std::fs::write(p.root().join("agents/doc-bot.yaml"), "name: mine\n").unwrap();
    let (code, _, err) = p.output(["init"]);
    assert_eq!(code, 2);
    p.settings()
        .bind(|| insta::assert_snapshot!("init_refuses", err));
    assert_eq!(
        std::fs::read_to_string(p.root().join("agents/doc-bot.yaml")).unwrap(),
        "name: mine\n",
        "init overwrote a file"
    );

    // Outside a TTY: plain lines on stderr, the result on stdout, no escape codes.
    let p = Project::init();
    let (code, out, err) = p.output(["run", "hello"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains('\x1b') && !out.contains('\x1b'), "{err}");
    assert!(
        err.starts_with("provider: offline (no API key configured"),
        "{err}"
    );
    assert!(out.starts_with("[offline model"), "{out}");
    p.settings()
        .bind(|| insta::assert_snapshot!("run_hello_progress", in_any_order(&err, "  ✓ look at")));
    assert!(
        p.root().join(".fleet/fleet.db").is_file(),
        "the store is in the project"
    );

    let (code, trace, _) = p.output(["trace"]);
    assert_eq!(code, 0);
    p.settings().bind(|| {
        insta::assert_snapshot!("trace", in_any_order(&trace, "completed   ├─ look at"));
    });
    let (code, runs, _) = p.output(["runs"]);
    assert_eq!(code, 0);
    p.settings().bind(|| insta::assert_snapshot!("runs", runs));
    let (code, status, _) = p.output(["status", &run_id(&err)[..8]]);
    assert_eq!(code, 0);
    assert!(status.contains("calls     4 completed"), "{status}");
    let (code, cost, _) = p.output(["cost"]);
    assert_eq!(code, 0);
    assert!(
        cost.contains("claude-haiku-4-5") && cost.contains("total"),
        "{cost}"
    );
    let (code, cost_run, _) = p.output(["cost", "--run", &run_id(&err)]);
    assert_eq!(code, 0);
    assert!(
        cost_run.contains("run ") && cost_run.contains("claude-haiku-4-5"),
        "{cost_run}"
    );
    let (code, _, bad_since) = p.output(["cost", "--since", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(bad_since.contains("write YYYY-MM-DD"), "{bad_since}");
    let (code, cost_since, _) = p.output(["cost", "--since", "2000-01-01"]);
    assert_eq!(code, 0);
    assert!(cost_since.contains("claude-haiku-4-5"), "{cost_since}");
}

#[test]
fn the_json_stream_is_one_event_per_line_and_the_result_last() {
    let p = Project::init();
    let (code, out, err) = p.output([
        "run",
        "hello",
        "--json",
        "--args",
        r#"{"topics": ["tests"]}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    // Progress reports come by the clock, so they are left out of the snapshot.
    let types: Vec<&str> = lines
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .filter(|t| *t != "agent_progress")
        .collect();
    insta::assert_snapshot!("json_event_types", types.join("\n"));
    let last = lines.last().unwrap();
    assert_eq!(last["state"], "completed");
    assert!(
        last["result"]
            .as_str()
            .unwrap()
            .starts_with("[offline model")
    );
    let ended = lines.iter().find(|l| l["type"] == "run_ended").unwrap();
    assert_eq!(ended["summary"]["calls"]["completed"], 2);
    assert!(
        !err.contains("provider:"),
        "--json keeps stderr quiet: {err}"
    );
}

#[test]
fn args_are_json_or_else_the_string_itself_as_claude_code_passes_them() {
    let p = Project::init();
    std::fs::write(
        p.root().join(".fleet/workflows/echo.js"),
        "export const meta = { name: 'echo', description: 'returns its args' };\nreturn args;\n",
    )
    .unwrap();
    for (given, expected) in [
        ("wave1", serde_json::json!("wave1")),
        ("fix the parser", serde_json::json!("fix the parser")),
        ("42", serde_json::json!(42)),
        (r#"{"path": "src"}"#, serde_json::json!({"path": "src"})),
    ] {
        let (code, stdout, stderr) = p.output(["run", "echo", "--args", given]);
        assert_eq!(code, 0, "{given}: {stderr}");
        // A string result is printed as its text; anything else as JSON.
        let result = match &expected {
            serde_json::Value::String(_) => serde_json::Value::String(stdout.trim().to_owned()),
            _ => serde_json::from_str(&stdout).unwrap(),
        };
        assert_eq!(result, expected, "{given}");
    }
    // What starts as JSON must be JSON: a typo is an error, never a string.
    let (code, _, stderr) = p.output(["run", "echo", "--args", "[1, 2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("not JSON") && stderr.contains("--args wave1"),
        "{stderr}"
    );
}

#[test]
fn mistakes_get_one_line_with_the_cause_a_hint_and_their_exit_code() {
    let p = Project::init();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["run", "helo"], 2, "unknown_workflow"),
        (vec!["run", "hello", "--args", "{path: 1}"], 2, "bad_args"),
        (
            vec!["run", "hello", "--concurrency", "0"],
            2,
            "bad_concurrency",
        ),
        (
            vec!["run", "hello", "--budget-usd", "lots"],
            2,
            "bad_budget",
        ),
        (vec!["run", "missing.js"], 2, "missing_script"),
        (vec!["trace", "ffffffff"], 2, "unknown_run"),
        (
            vec!["run", "hello", "--provider", "antropic"],
            3,
            "unknown_provider",
        ),
        (
            vec!["run", "hello", "--provider", "anthropic"],
            3,
            "provider_without_key",
        ),
    ];
    for (args, want, name) in cases {
        let (code, out, err) = p.output(&args);
        assert_eq!(code, want, "{args:?}: {out}{err}");
        // One line with the cause; the parser adds its pointer to --help.
        let said: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        assert!(
            said.len() == 1 || (said.len() == 2 && said[1].contains("--help")),
            "{args:?} says one line: {err}"
        );
        p.settings().bind(|| insta::assert_snapshot!(name, err));
    }
    std::fs::write(p.root().join("fleet.toml"), "[run]\nconcurency = 4\n").unwrap();
    let (code, _, err) = p.output(["run", "hello"]);
    assert_eq!(code, 3);
    p.settings()
        .bind(|| insta::assert_snapshot!("bad_config", err));
    std::fs::write(p.root().join("fleet.toml"), "").unwrap();
    std::fs::write(
        p.root().join(".fleet/workflows/broken.js"),
        "export const meta = { name: 'broken', description: 'throws' };\nthrow new Error('no luck');\n",
    )
    .unwrap();
    let (code, _, err) = p.output(["run", "broken"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("error: ") && err.contains("no luck"), "{err}");
    // A workflow file without its `meta` header is named, with what it lacks.
    std::fs::write(
        p.root().join(".fleet/workflows/headless.js"),
        "return await agent('hi');\n",
    )
    .unwrap();
    let (code, _, err) = p.output(["run", "headless"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("workflow 'headless' cannot be registered: ")
            && err.contains(".fleet/workflows/headless.js:1:1: ")
            && err.contains("a workflow starts with `export const meta = {"),
        "{err}"
    );
    let (code, _, err) = p.output([
        "run",
        "hello",
        "--budget-tokens",
        "1",
        "--args",
        r#"{"topics": ["a"]}"#,
    ]);
    assert_eq!(code, 4, "a spent token budget exits 4: {err}");
    assert!(err.contains("token budget exceeded"), "{err}");
}

#[test]
fn config_layers_and_show_redacts_secrets() {
    let p = Project::init();
    std::fs::create_dir_all(p.home().join(".config/fleet")).unwrap();
    std::fs::write(
        p.home().join(".config/fleet/config.toml"),
        "[provider]\nopenai_api_key = \"sk-very-secret\"\nmodel = \"user-model\"\n",
    )
    .unwrap();
    std::fs::write(
        p.root().join("fleet.toml"),
        "[run]\nconcurrency = 3\n[provider]\nmodel = \"project-model\"\n",
    )
    .unwrap();
    let out = p
        .fleet(["config", "show"])
        .env("FLEET_PROVIDER", "offline")
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(!shown.contains("sk-very-secret"));
    p.settings()
        .bind(|| insta::assert_snapshot!("config_show", shown));
    // The project's model wins over the user's, and names the calls' model in the trace.
    let out = p
        .fleet(["run", "hello"])
        .env("FLEET_PROVIDER", "offline")
        .output()
        .unwrap();
    assert!(out.status.success());
    let (_, trace, _) = p.output(["trace"]);
    assert!(trace.contains("project-model"), "{trace}");
}

#[test]
fn workflows_agents_and_completions_list_what_is_there() {
    let p = Project::init();
    let (code, list, _) = p.output(["workflows", "list"]);
    assert_eq!(code, 0);
    p.settings()
        .bind(|| insta::assert_snapshot!("workflows_list", list));
    let (code, show, _) = p.output(["workflows", "show", "hello"]);
    assert_eq!(code, 0);
    p.settings()
        .bind(|| insta::assert_snapshot!("workflows_show", show));
    let (code, agents, _) = p.output(["agents", "list"]);
    assert_eq!(code, 0);
    p.settings()
        .bind(|| insta::assert_snapshot!("agents_list", agents));
    let (code, script, _) = p.output(["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        script.contains("_fleet()") && script.contains("workflows"),
        "{script}"
    );
}

/// Reads a child's stderr on a thread, line by line.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects lines until one contains `needle`.
fn wait_for(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return;
            }
        }
    }
    panic!("no line with {needle:?} in:\n{}", seen.join("\n"));
}

/// `fleet run hello` in the background, each model answer taking `latency_ms`, and its
/// stderr lines.
fn run_hello_slowly(p: &Project, latency_ms: u64) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = p
        .fleet(["run", "hello"])
        .env("FLEET_OFFLINE_LATENCY_MS", latency_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    (child, rx)
}

fn interrupt(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_child(child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_reruns_only_the_unfinished_call() {
    let p = Project::init();
    let (mut child, rx) = run_hello_slowly(&p, 700);
    let mut seen = Vec::new();
    // The three parallel calls have finished and the fourth is in flight.
    wait_for(&rx, &mut seen, "▶ Sum up");
    interrupt(&child);
    let status = child.wait().unwrap();
    seen.extend(rx.iter());
    let err = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    let id = run_id(&err);
    assert!(
        err.contains(&format!(
            "3 finished calls are saved. Resume with:\n  fleet run --resume {id}"
        )),
        "{err}"
    );
    let (_, status_text, _) = p.output(["status", &id]);
    assert!(status_text.contains("stopped"), "{status_text}");

    let (code, out, err) = p.output(["run", "--resume", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let finished: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "agent_finished")
        .collect();
    let states: Vec<&str> = finished
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "cached").count(),
        3,
        "the finished calls come from the journal: {states:?}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "completed").count(),
        1,
        "{states:?}"
    );
    let (_, trace, _) = p.output(["trace", &id]);
    assert!(trace.contains("attempt 2 · completed"), "{trace}");
}

#[test]
fn fleet_stop_stops_a_run_in_another_process() {
    let p = Project::init();
    let (mut child, rx) = run_hello_slowly(&p, 5000);
    let mut seen = Vec::new();
    wait_for(&rx, &mut seen, "▶ Look");
    let id = run_id(&seen.join("\n"));
    let (_, status, _) = p.output(["status", &id]);
    assert!(
        status.contains("running") && status.contains("fleet stop"),
        "{status}"
    );
    assert_eq!(id.len(), 8, "the short id: {id}");
    let (code, out, err) = p.output(["stop", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("resume it with: fleet run --resume {id}")),
        "{out}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let (code, out, _) = p.output(["stop", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("is not running (stopped)"), "{out}");
}

#[test]
fn ask_delegates_to_a_specialist_in_the_same_tree() {
    let p = Project::init();
    let task = "look over the docs\ncall spawn_subagent {\"prompt\": \"document src\", \"agent_type\": \"doc-bot\", \"label\": \"document src\"}\ncall subagent_result {\"task_id\": \"task_1\"}";
    let (code, out, err) = p.output(["ask", task]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[offline model"), "{out}");
    let (_, trace, _) = p.output(["trace"]);
    p.settings()
        .bind(|| insta::assert_snapshot!("ask_trace", trace));
    let (_, runs, _) = p.output(["runs"]);
    assert!(runs.contains("ask "), "{runs}");
}

/// The path of the test's copy of `fleet` (for the sandbox's unprivileged user).
pub(crate) fn fleet_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("fleet");
    std::fs::copy(env!("CARGO_BIN_EXE_fleet"), &copy).unwrap();
    // A process another test forks while the copy is open for writing holds it open until it
    // execs; running the copy fails with ETXTBSY until then.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Command::new(&copy).arg("--version").output() {
            Ok(out) if out.status.success() => return copy,
            Err(e) if e.raw_os_error() == Some(26) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("the copy of fleet does not run: {other:?}"),
        }
    }
}

#[test]
fn a_run_whose_every_call_came_back_null_fails_with_the_causes() {
    let p = Project::init();
    // Every turn fails at the provider: the hello workflow's calls all come back null.
    let failing = serde_json::json!({"expect": {}, "error": {"kind": "server", "message": "the provider is down"}});
    let cassette = p.root().join("down.json");
    std::fs::write(
        &cassette,
        serde_json::json!({"exchanges": vec![failing; 8]}).to_string(),
    )
    .unwrap();
    let out = p
        .fleet(["run", "hello"])
        .env("FLEET_PROVIDER", "scripted")
        .env("FLEET_CASSETTE", &cassette)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("every agent() call came to nothing (")
            && err.contains("the provider is down"),
        "{err}"
    );
}

#[test]
fn some_null_calls_are_counted_and_fail_on_null_makes_them_fail_the_run() {
    let p = Project::init();
    std::fs::write(
        p.root().join(".fleet/workflows/three.js"),
        "export const meta = { name: 'three', description: 'three calls, one fails' };\n\
         const r = await parallel(['a', 'b', 'c'].map((l) => () => agent('task ' + l, { label: l })));\n\
         return r.filter(Boolean).length;\n",
    )
    .unwrap();
    let ok = serde_json::json!({"expect": {}, "events": [
        {"type": "text_delta", "text": "done"},
        {"type": "usage", "usage": {"input": 10, "output": 2}},
        {"type": "done", "stop_reason": "end_turn"}
    ]});
    let down = serde_json::json!({"expect": {"messages": [{"content": [{"text": "task b"}]}]},
        "error": {"kind": "server", "message": "the provider is down"}});
    let cassette = p.root().join("one-down.json");
    // Each call takes the first unused exchange it matches: b the failing ones (it is asked
    // three times: a stream that fails midway is asked again twice), a and c the rest.
    std::fs::write(
        &cassette,
        serde_json::json!({"order": "any", "exchanges": [down.clone(), down.clone(), down, ok.clone(), ok]}).to_string(),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = p
            .fleet(["run", "three"].iter().chain(extra))
            .env("FLEET_PROVIDER", "scripted")
            .env("FLEET_CASSETTE", &cassette)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Without the flag the run completes and its summary counts the null call.
    let (code, out, err) = run(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "2");
    assert!(
        err.contains("1 of 3 calls came back null")
            && err.contains("b → null: ")
            && err.contains("the provider is down"),
        "{err}"
    );
    // With it, the same run fails with the cause (exit 1).
    let (code, _, err) = run(&["--fail-on-null"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--fail-on-null is set (1 null, 0 failed of 3)")
            && err.contains("b: ")
            && err.contains("failed"),
        "{err}"
    );
    // And the config key does what the flag does.
    let (code, _, err) = {
        let out = p
            .fleet(["run", "three"])
            .env("FLEET_PROVIDER", "scripted")
            .env("FLEET_CASSETTE", &cassette)
            .env("FLEET_FAIL_ON_NULL", "true")
            .output()
            .unwrap();
        (
            out.status.code(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn a_missing_agents_directory_and_a_fleet_toml_that_is_not_a_file_are_errors_with_the_fix() {
    let p = Project::init();
    std::fs::remove_dir_all(p.root().join("agents")).unwrap();
    for args in [["agents", "list"], ["agents", "validate"]] {
        let (code, _, err) = p.output(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("agents does not exist") && err.contains("fleet init"),
            "{err}"
        );
    }
    let odd = Project::empty();
    std::fs::create_dir(odd.root().join("fleet.toml")).unwrap();
    let (code, _, err) = odd.output(["runs"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("fleet.toml is not a file"), "{err}");
}

#[test]
fn a_run_is_named_by_either_end_of_its_id_and_an_ambiguous_name_lists_the_runs() {
    let p = Project::init();
    for _ in 0..2 {
        let (code, _, err) = p.output(["run", "hello"]);
        assert_eq!(code, 0, "{err}");
    }
    let (_, runs, _) = p.output(["runs"]);
    let shorts: Vec<&str> = runs
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(shorts.len(), 2, "{runs}");
    assert!(shorts.iter().all(|s| s.len() == 8), "{runs}");
    // `fleet status` shows the whole id; the short one is its end.
    let ids: Vec<String> = shorts
        .iter()
        .map(|short| {
            let (code, status, err) = p.output(["status", short]);
            assert_eq!(code, 0, "{err}");
            let full = status
                .lines()
                .find_map(|l| l.trim().strip_prefix("id "))
                .unwrap_or_else(|| panic!("{status}"))
                .trim()
                .to_owned();
            assert!(full.ends_with(short), "{full} {short}");
            full
        })
        .collect();
    // Started moments apart, they share their start (the time; its first 8 digits change
    // every 65 s, so a pair may straddle that and share only 7); their ends are random.
    let common: String = ids[0]
        .chars()
        .zip(ids[1].chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    assert!(common.len() >= 6, "{ids:?}");
    let (code, _, err) = p.output(["trace", &common[..common.len().min(8)]]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("matches 2 runs") && err.contains(&ids[0]) && err.contains(&ids[1]),
        "{err}"
    );
    for short in &shorts {
        let (code, trace, err) = p.output(["trace", short]);
        assert_eq!(code, 0, "{err}");
        assert!(trace.contains(short), "{trace}");
    }
}
