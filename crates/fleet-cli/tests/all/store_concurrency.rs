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
        // Slow enough that a run is seen midway even on a loaded machine (about 4 s a run).
        .env("FLEET_OFFLINE_LATENCY_MS", "150")
        .env("FLEET_CONCURRENCY", "8");
    cmd
}

/// The store's batches, checked: positions never shared, every stream's versions from 1 with
/// no gap. Returns the number of threads.
pub(crate) fn check_log(db: &Path) -> usize {
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

/// `fleet runs`' rows: (id, name, state).
fn runs(p: &Project) -> Vec<(String, String, String)> {
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
            let name = words.nth(1)?.to_owned();
            let state = words.next()?.to_owned();
            Some((id, name, state))
        })
        .collect()
}

/// How many calls of each run have finished, by run id (one look at the store for all).
fn progress(db: &Path) -> std::collections::HashMap<String, usize> {
    let script = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
n = {}
for (thread, events) in db.execute("SELECT thread_id, events FROM event_batches"):
    for e in json.loads(events):
        if e.get("type") == "activity_appended" and e["activity"]["kind"].get("type") == "agent_result":
            n[thread] = n.get(thread, 0) + 1
for t, c in n.items():
    print(t, c)
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (id, n) = l.split_once(' ')?;
            Some((id.to_owned(), n.parse().ok()?))
        })
        .collect()
}

#[test]
fn eight_runs_on_one_store_lose_nothing_and_the_killed_ones_resume() {
    let p = Project::init();
    let db = p.root().join(".fleet/fleet.db");
    let calls: Vec<String> = (0..CALLS).map(|i| format!("c-{i}")).collect();
    // One workflow per process, so that a run in the list names the process that makes it.
    for i in 0..RUNS {
        std::fs::write(
            p.root().join(format!(".fleet/workflows/many-{i}.js")),
            format!(
                "export const meta = {{ name: 'many-{i}', description: '{CALLS} calls' }};\n\
                 const labels = {};\n\
                 const done = await parallel(labels.map((l) => () => agent('do ' + l, {{ label: l }})));\n\
                 return done.filter(Boolean).length;\n",
                serde_json::to_string(&calls).unwrap()
            ),
        )
        .unwrap();
    }
    let mut children: Vec<Option<Child>> = (0..RUNS)
        .map(|i| {
            Some(
                fleet(&p, &["run", &format!("many-{i}")])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Readers while they write: listing must neither fail nor block them. Two runs are killed
    // (SIGKILL) midway: the first two seen with some calls finished and many still to go.
    let mut killed: Vec<(String, usize)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while killed.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no two runs were seen midway: {:?}",
            progress(&db)
        );
        let listed = runs(&p);
        let done = progress(&db);
        for (id, workflow, _) in &listed {
            let Some(i) = workflow
                .strip_prefix("many-")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            // The list shows each run's short id: the end of its full one.
            let finished = done
                .iter()
                .find(|(full, _)| full.ends_with(id.as_str()))
                .map_or(0, |(_, n)| *n);
            if killed.len() < 2
                && (CALLS / 20..CALLS * 3 / 4).contains(&finished)
                && let Some(mut child) = children[i].take()
            {
                child.kill().unwrap();
                child.wait().unwrap();
                killed.push((id.clone(), i));
            }
        }
    }
    let mut finished = 0;
    for (i, child) in children.into_iter().enumerate() {
        let Some(child) = child else { continue };
        let out = child.wait_with_output().unwrap();
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
    assert_eq!(finished, RUNS - 2);
    let listed = runs(&p);
    let interrupted: Vec<&String> = listed
        .iter()
        .filter(|(_, _, state)| state == "interrupted")
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(interrupted.len(), 2, "two runs were killed: {listed:?}");
    for (id, _) in &killed {
        assert!(interrupted.contains(&id), "{id} was killed: {listed:?}");
        let before = progress(&db)
            .iter()
            .find(|(full, _)| full.ends_with(id.as_str()))
            .map_or(0, |(_, n)| *n);
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
        runs(&p).iter().all(|(_, _, state)| state == "completed"),
        "{:?}",
        runs(&p)
    );
    assert_eq!(check_log(&db), RUNS);
}
