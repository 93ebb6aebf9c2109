//! `fleet start` for real: the three sample agents under the supervisor, sandboxed, on a
//! scripted model whose every task costs $0.25; the TUI driven under tmux (send-keys,
//! capture-pane), and the headless log.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::user::{Project, fleet_copy};

/// Why the test cannot run here, if it cannot (never on CI, which sets FLEET_SANDBOX_REQUIRE).
fn unavailable(need_tmux: bool) -> Option<String> {
    let required = std::env::var("FLEET_SANDBOX_REQUIRE").as_deref() == Ok("1");
    if let Err(e) = fleet_sandbox::landlock_available() {
        assert!(!required, "FLEET_SANDBOX_REQUIRE=1 but {e}");
        return Some(e.to_string());
    }
    if need_tmux
        && !Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        assert!(
            !required,
            "FLEET_SANDBOX_REQUIRE=1 but tmux is missing (.ci/run installs it)"
        );
        return Some("tmux is not installed".into());
    }
    None
}

/// A project made by `fleet init` (whose git workspace the sandboxed agents may write), a
/// copy of `fleet` the unprivileged user can run, and a cassette: every model turn says it is
/// done and spends 230k input and 4k output tokens of claude-haiku-4-5 ($0.25), as metered by
/// the supervisor's gateway.
fn project() -> (Project, PathBuf, PathBuf) {
    let p = Project::init();
    std::fs::set_permissions(p.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(p.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // `fleet init` made the workspace a git repository; as root, `fleet start` hands it to
    // the workers' group itself.
    let workspace = p.root().join("workspace");
    assert!(
        workspace.join(".git").is_dir(),
        "fleet init makes workspace/ a git repository"
    );
    let turn = serde_json::json!({"expect": {}, "events": [
        {"type": "text_delta", "text": "Documented the public items."},
        {"type": "usage", "usage": {"input": 230_000, "output": 4_000}},
        {"type": "done", "stop_reason": "end_turn"}
    ]});
    // In the project: the sandbox lets the workers read nothing else of it.
    let cassette = p.root().join("cassette.json");
    std::fs::write(
        &cassette,
        serde_json::json!({"exchanges": vec![turn; 5]}).to_string(),
    )
    .unwrap();
    let fleet = fleet_copy(p.dir.path());
    (p, fleet, cassette)
}

/// `fleet send AGENT TASK` from the project: (exit code, stdout, stderr).
fn send(p: &Project, fleet: &Path, agent: &str, task: &str) -> (i32, String, String) {
    let out = Command::new(fleet)
        .args(["send", agent, task])
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

/// A tmux server of this test's own.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            socket: format!("fleet-test-{}-{n}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `command` in a 160×40 session named `fleet`.
    fn start(&self, command: &str) {
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "fleet",
            "-x",
            "160",
            "-y",
            "40",
            command,
        ]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "fleet"])
    }

    /// Waits until the screen shows every one of `needles`.
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {needles:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The line of the cost overlay about `agent`.
fn cost_line<'a>(screen: &'a str, agent: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(&format!("│{agent} ")) && l.contains(" / $"))
        .unwrap_or_else(|| panic!("no cost line for {agent}:\n{screen}"))
}

#[test]
fn the_fleet_tui_shows_agents_cost_rising_a_paused_agent_and_quits_cleanly() {
    if let Some(why) = unavailable(true) {
        eprintln!("skipping the fleet TUI test: {why}");
        return;
    }
    let (p, fleet, cassette) = project();
    let tmux = Tmux::new();
    let command = format!(
        "cd '{}' && env -i PATH=\"$PATH\" HOME='{}' TERM=xterm-256color FLEET_PROVIDER=scripted FLEET_CASSETTE='{}' '{}' start; echo FLEET-EXIT=$?; sleep 60",
        p.root().display(),
        p.home().display(),
        cassette.display(),
        fleet.display()
    );
    tmux.start(&command);
    let screen = tmux.wait_for(&[
        "doc-bot",
        "patch-bot",
        "test-writer-bot",
        "3 agents supervised",
    ]);
    assert!(
        cost_line(&screen, "doc-bot").contains("$0.00 / $0.50"),
        "{screen}"
    );
    assert!(
        cost_line(&screen, "patch-bot").contains("$0.00 / $2.00"),
        "{screen}"
    );
    assert!(
        cost_line(&screen, "test-writer-bot").contains("$0.00 / $1.00"),
        "{screen}"
    );

    let (code, out, err) = send(&p, &fleet, "doc-bot", "document the public items");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Documented the public items.\n");
    let screen = tmux.wait_for(&["$0.25 / $0.50", "task 1 done"]);
    assert!(cost_line(&screen, "doc-bot").contains("50%"), "{screen}");
    assert!(
        screen.contains("spent $0.25"),
        "the header shows the total: {screen}"
    );

    // The second task takes doc-bot to its budget: it is paused, with the reason.
    let (code, _, err) = send(&p, &fleet, "doc-bot", "document some more");
    assert_eq!(code, 0, "{err}");
    let screen = tmux.wait_for(&["$0.50 / $0.50", "PAUSED"]);
    assert!(
        cost_line(&screen, "doc-bot").contains("PAUSED: agent doc-bot used up"),
        "{screen}"
    );
    assert!(screen.contains("paused: doc-bot"), "{screen}");
    let (code, _, err) = send(&p, &fleet, "doc-bot", "and more");
    assert_eq!(code, 4, "a paused agent exits with the budget code: {err}");
    assert!(err.contains("agent doc-bot is paused"), "{err}");
    assert!(
        err.contains("used up") && err.contains("press r"),
        "says how to resume: {err}"
    );
    // The other agents are not affected.
    assert!(
        cost_line(&screen, "patch-bot").contains("$0.00 / $2.00"),
        "{screen}"
    );

    tmux.run(&["send-keys", "-t", "fleet", "q"]);
    let screen = tmux.wait_for(&["FLEET-EXIT="]);
    assert!(screen.contains("FLEET-EXIT=0"), "{screen}");
    let (code, _, err) = send(&p, &fleet, "doc-bot", "anyone there?");
    assert_eq!(code, 1);
    assert!(err.contains("no fleet is running here"), "{err}");

    // The session is in the store: its tasks as units, with what the gateway metered.
    let inspect = |args: &[&str]| {
        let out = Command::new(&fleet)
            .args(args)
            .current_dir(p.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", p.home())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let runs = inspect(&["runs"]);
    let row = runs
        .lines()
        .find(|l| l.contains(" fleet "))
        .unwrap_or_else(|| panic!("the session is a run of kind fleet:\n{runs}"));
    assert!(row.contains("completed") && row.contains("$0.50"), "{runs}");
    let id = row.split_whitespace().next().unwrap();
    let trace = inspect(&["trace", id]);
    assert!(
        trace.contains("task 1: document the public items")
            && trace.contains("task 2: document some more")
            && trace.contains("doc-bot: PAUSED: agent doc-bot used up"),
        "{trace}"
    );
    let cost = inspect(&["cost", "--run", id]);
    assert!(
        cost.contains("claude-haiku-4-5") && cost.contains("0.50"),
        "{cost}"
    );
}

#[test]
fn headless_start_logs_the_same_as_lines() {
    if let Some(why) = unavailable(false) {
        eprintln!("skipping the headless fleet test: {why}");
        return;
    }
    let (p, fleet, cassette) = project();
    let mut child = Command::new(&fleet)
        .args(["start", "--headless"])
        .current_dir(p.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.home())
        .env("FLEET_PROVIDER", "scripted")
        .env("FLEET_CASSETTE", &cassette)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines arrive through a channel so that a fleet that goes quiet fails the test (with what
    // it said) instead of hanging it.
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
    let pid = rustix::process::Pid::from_child(&child);
    let mut seen = Vec::new();
    // Waits until every needle has been said, in any order (a pause and the reply to the task
    // that caused it come from two sources and may come either way round).
    let mut until_all = |needles: &[&str]| {
        let mut missing: Vec<&str> = needles.to_vec();
        while !missing.is_empty() {
            let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) else {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                panic!("no {missing:?} within a minute (or the fleet ended); it said: {seen:?}");
            };
            missing.retain(|needle| !line.contains(needle));
            seen.push(line);
        }
    };
    until_all(&["3 agents supervised"]);
    for _ in 0..2 {
        let (code, _, err) = send(&p, &fleet, "doc-bot", "document it");
        assert_eq!(code, 0, "{err}");
    }
    until_all(&[
        "doc-bot: PAUSED: agent doc-bot used up; doc-bot has spent $0.50 of its $0.50 budget",
        "doc-bot: task 2 done: 1 model turns, $0.25; doc-bot has spent $0.50 of $0.50",
    ]);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    until_all(&["fleet stopped; spent $0.50 in all"]);
    assert!(child.wait().unwrap().success());
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "{seen:?}");
}

#[test]
fn fleet_run_on_a_terminal_draws_the_live_tree_then_the_summary() {
    if let Some(why) = unavailable_tmux() {
        eprintln!("skipping the live-run test: {why}");
        return;
    }
    let p = Project::init();
    let tmux = Tmux::new();
    let command = format!(
        "cd '{}' && env -i PATH=\"$PATH\" HOME='{}' TERM=xterm-256color FLEET_OFFLINE_LATENCY_MS=1500 '{}' run hello; echo FLEET-EXIT=$?; sleep 60",
        p.root().display(),
        p.home().display(),
        env!("CARGO_BIN_EXE_fleet"),
    );
    tmux.start(&command);
    // While the three calls run: one line each with a spinner, and the status line.
    let live = tmux.wait_for(&[
        "look at layout",
        "look at tests",
        "look at docs",
        "3 running",
    ]);
    assert!(live.contains("hello · Look · 3 running · 0 done"), "{live}");
    assert!(
        live.lines()
            .filter(|l| l.contains("tokens · 0 tools ·"))
            .count()
            >= 3,
        "{live}"
    );
    let done = tmux.wait_for(&["FLEET-EXIT=0"]);
    assert!(done.contains("completed in"), "{done}");
    assert!(done.contains("4 completed"), "{done}");
    // The live region is gone: no spinner line is left behind.
    assert!(!done.contains(" running · "), "{done}");
}

/// Why tmux tests cannot run here (never on CI).
fn unavailable_tmux() -> Option<String> {
    if Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return None;
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI but tmux is missing (.ci/run installs it)"
    );
    Some("tmux is not installed".into())
}
