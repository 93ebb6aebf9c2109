//! Many processes, one store, nothing lost: eight `fleet run`s of 200 calls each on one SQLite
//! store at once, with readers listing runs while they go; two are killed (SIGKILL) midway and
//! resumed. Every run completes, every stream's versions are gapless, no two batches share a
//! position, and no call that finished before a kill is made again.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::user::Project;

const RUNS: usize = 8;
const CALLS: usize = 200;

fn fleet(p: &Project, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet"));
    cmd.args(args)
        .current_dir(p.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", p.home())
        .env("NO_COLOR", "1")
        .env("FLEET_PROVIDER", "offline")
        .env("FLEET_OFFLINE_LATENCY_MS", "60")
        .env("FLEET_CONCURRENCY", "8");
    cmd
}

/// The store's batches, checked: positions never shared, every stream's versions from 1 with
/// no gap. Returns the number of threads.
fn check_log(db: &Path) -> usize {
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT first_position, last_position, thread_id, first_version, last_version, events FROM event_batches ORDER BY first_position").fetchall()
last = 0
for first, end, _, fv, lv, events in rows:
    assert first > last, f"positions overlap at {first}"
    assert end - first == lv - fv == len(json.loads(events)) - 1, f"batch at {first} miscounts"
    last = end
threads = {}
for _, _, thread, fv, lv, _ in sorted(rows, key=lambda r: (r[2], r[3])):
    expected = threads.get(thread, 0) + 1
    assert fv == expected, f"thread {thread}: version {fv} after {expected - 1}"
    threads[thread] = lv
print(len(threads))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the log is not consistent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// `fleet runs`' rows: (id, state).
fn runs(p: &Project) -> Vec<(String, String)> {
    let out = fleet(p, &["runs", "--limit", "100"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let id = words.next()?.to_owned();
            let state = words.nth(2)?.to_owned();
            Some((id, state))
        })
        .collect()
}

/// How many of `run`'s calls finished: their results are in the journal (a call whose unit
/// completed but whose result the kill kept from the journal is not finished: it is redone).
fn finished_calls(db: &Path, run: &str) -> usize {
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = 0
for (events,) in db.execute("SELECT events FROM event_batches WHERE thread_id = ?", (sys.argv[2],)):
    for e in json.loads(events):
        if e.get("type") == "activity_appended" and e["activity"]["kind"].get("type") == "agent_result":
            n += 1
print(n)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .arg(run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn eight_runs_on_one_store_lose_nothing_and_the_killed_ones_resume() {
    let p = Project::init();
    let calls: Vec<String> = (0..CALLS).map(|i| format!("c-{i}")).collect();
    std::fs::write(
        p.root().join(".fleet/workflows/many.js"),
        format!(
            "export const meta = {{ name: 'many', description: '{CALLS} calls' }};\n\
             const labels = {};\n\
             const done = await parallel(labels.map((l) => () => agent('do ' + l, {{ label: l }})));\n\
             return done.filter(Boolean).length;\n",
            serde_json::to_string(&calls).unwrap()
        ),
    )
    .unwrap();
    let mut children: Vec<Child> = (0..RUNS)
        .map(|_| {
            fleet(&p, &["run", "many"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Readers while they write: listing must neither fail nor block them. Until every run
    // has started (a process killed before its first event would leave no run to resume),
    // then a little longer, so that the kills land midway.
    let deadline = Instant::now() + Duration::from_secs(30);
    while runs(&p).len() < RUNS {
        assert!(
            Instant::now() < deadline,
            "the runs did not start: {:?}",
            runs(&p)
        );
    }
    let midway = Instant::now() + Duration::from_millis(100);
    while Instant::now() < midway {
        let out = fleet(&p, &["runs"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Two are killed midway.
    for child in children.iter_mut().take(2) {
        child.kill().unwrap();
    }
    let mut finished = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if i >= 2 {
            assert!(
                out.status.success(),
                "run {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                CALLS.to_string()
            );
            finished += 1;
        }
    }
    assert_eq!(finished, RUNS - 2);
    let listed = runs(&p);
    let killed: Vec<&(String, String)> = listed
        .iter()
        .filter(|(_, state)| state == "interrupted")
        .collect();
    assert_eq!(killed.len(), 2, "two runs were killed: {listed:?}");
    for (id, _) in killed {
        let before = finished_calls(&p.root().join(".fleet/fleet.db"), id);
        assert!(before < CALLS, "killed midway, not after the end");
        let out = fleet(&p, &["run", "--resume", id]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            CALLS.to_string()
        );
        // Nothing that finished before the kill is made again: it comes from the journal.
        let summary = err
            .lines()
            .find(|l| l.trim_start().starts_with("calls"))
            .unwrap_or_else(|| panic!("{err}"));
        let numbers: Vec<usize> = summary
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(
            (numbers[0], numbers[1]),
            (CALLS - before, before),
            "completed and cached on resume: {summary}"
        );
    }
    assert!(
        runs(&p).iter().all(|(_, state)| state == "completed"),
        "{:?}",
        runs(&p)
    );
    assert_eq!(check_log(&p.root().join(".fleet/fleet.db")), RUNS);
}
