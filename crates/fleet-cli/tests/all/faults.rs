//! Fault injection, end to end: `fleet run` against a local mock of the Anthropic Messages API
//! that misbehaves as told (`tests/fixtures/faults/model.py`): rate limits with and without
//! `retry-after`, a quota, overload, a server error, a connection reset mid-stream, a stream
//! cut short, a frame that is not JSON, a stream that stalls past the idle timeout; and a host
//! name that does not resolve. Each call ends recovered or null with a clear cause, the run
//! neither panics nor hangs, and its store is consistent afterwards.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::mock_model::MockModel;
use super::store_concurrency::check_log;
use super::user::Project;

/// The faults' mock model.
struct Model(MockModel);

impl Model {
    fn start(dir: &Path) -> Self {
        Self(MockModel::start("faults/model.py", dir))
    }

    /// How many requests each fault got.
    fn attempts(&self, fault: &str) -> usize {
        self.0
            .requests()
            .iter()
            .filter(|r| r["fault"] == fault)
            .count()
    }
}

impl std::ops::Deref for Model {
    type Target = MockModel;
    fn deref(&self) -> &MockModel {
        &self.0
    }
}

/// `fleet run faults --json` against `base_url`; (exit code, the run's summary, stderr). Fails
/// the test if the run takes more than a minute: a fault must never hang a run.
fn run(p: &Project, base_url: &str) -> (i32, Value, String) {
    let mut child = p
        .fleet(["run", "faults", "--json"])
        .env("ANTHROPIC_API_KEY", "sk-ant-faults")
        .env("ANTHROPIC_BASE_URL", base_url)
        .env("FLEET_IDLE_TIMEOUT_SECS", "1")
        .env("FLEET_MAX_RETRIES", "2")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run hung: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "run_ended")
        .map(|v| v["summary"].clone())
        .unwrap_or_else(|| panic!("no run_ended event: {stdout}{stderr}"));
    (out.status.code().unwrap_or(-1), summary, stderr)
}

/// Every unit of every run in the store has ended (none left running), as `fleet trace` shows.
fn every_unit_ended(p: &Project) {
    let (code, trace, err) = p.output(["trace"]);
    assert_eq!(code, 0, "{err}");
    for line in trace.lines().skip(2) {
        let state = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !["running", "pending", "paused"].contains(&state),
            "a unit never ended: {trace}"
        );
    }
}

const RECOVERED: [&str; 6] = [
    "ok",
    "429-retry-after",
    "429-no-retry-after",
    "529",
    "500",
    "reset",
];

#[test]
fn every_fault_ends_recovered_or_with_its_cause_and_the_store_stays_consistent() {
    let p = Project::init();
    let model = Model::start(p.root().as_path());
    let faults: Vec<&str> = RECOVERED
        .iter()
        .copied()
        .chain(["429-quota", "truncated", "invalid-json", "stall"])
        .collect();
    std::fs::write(
        p.root().join(".fleet/workflows/faults.js"),
        format!(
            "export const meta = {{ name: 'faults', description: 'one call per fault' }};\n\
             const faults = {};\n\
             return await parallel(faults.map((f) => () => agent(`fault:${{f}} answer ok`, {{ label: f }})));\n",
            serde_json::to_string(&faults).unwrap()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (code, summary, stderr) = run(&p, &format!("http://127.0.0.1:{}", model.port));
    let took = started.elapsed();
    eprintln!("{} faults in {took:?}", faults.len());
    // Some calls came back null: the run completes and says how many.
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["state"], "completed", "{summary}");
    let result = summary["result"].as_array().unwrap();
    for (fault, answer) in faults.iter().zip(result) {
        let recovered = RECOVERED.contains(fault);
        assert_eq!(
            answer.as_str() == Some("ok"),
            recovered,
            "{fault}: {answer}"
        );
    }
    let causes: Vec<(String, String)> = summary["nulls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["label"].as_str().unwrap().to_owned(),
                n["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let cause = |label: &str| {
        causes
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("{label} is not null: {causes:?}"))
    };
    assert!(
        cause("429-quota").contains("You exceeded your current quota"),
        "{causes:?}"
    );
    assert!(
        cause("truncated").contains("the connection closed before the answer was complete"),
        "{causes:?}"
    );
    assert!(
        cause("invalid-json").contains("malformed stream"),
        "{causes:?}"
    );
    assert!(cause("stall").contains("timed out"), "{causes:?}");
    assert_eq!(causes.len(), 4, "{causes:?}");
    // What recovered was retried once; a spending cap and a malformed answer are not retried
    // (they cannot get better); a cut or stalled stream is, up to FLEET_MAX_RETRIES.
    for fault in &RECOVERED[1..] {
        assert!(model.attempts(fault) >= 2, "{fault} was retried");
    }
    assert_eq!(model.attempts("ok"), 1);
    assert_eq!(model.attempts("429-quota"), 1);
    assert_eq!(model.attempts("invalid-json"), 1);
    assert!(model.attempts("truncated") >= 3, "retried up to the limit");
    assert!(model.attempts("stall") >= 2, "retried after the timeout");

    // A host name that cannot resolve (an empty label: refused by the resolver itself, so no
    // query leaves the machine): every call comes to nothing, so the run fails, saying why.
    let (code, summary, stderr) = run(&p, "http://model..local");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(summary["state"], "failed", "{summary}");
    assert!(
        summary["error"]
            .as_str()
            .unwrap()
            .starts_with("every agent() call came to nothing"),
        "{summary}"
    );
    let first = summary["nulls"][0]["reason"].as_str().unwrap();
    assert!(
        first.contains("dns error") || first.contains("failed to lookup address"),
        "{first}"
    );

    // Nothing half-written: every unit ended, and the log's batches are whole and in order.
    every_unit_ended(&p);
    assert_eq!(check_log(&p.root().join(".fleet/fleet.db")), 2);
}

/// The mock's served turn (100 input and 5 output tokens of claude-haiku-4-5), in dollars.
const SERVED_TURN: f64 = 100.0 * 1e-6 + 5.0 * 5e-6;

#[test]
fn calls_in_flight_at_a_kill_stay_on_the_bill_as_unconfirmed_charges() {
    let p = Project::init();
    let model = Model::start(p.root().as_path());
    std::fs::write(
        p.root().join(".fleet/workflows/faults.js"),
        "export const meta = { name: 'faults', description: 'slow calls' };\n\
         return await parallel(Array.from({ length: 12 }, (_, i) => () =>\n\
           agent(`fault:slow call ${i}`, { label: `slow ${i}` })));\n",
    )
    .unwrap();
    let env = |cmd: &mut Command| {
        cmd.env("ANTHROPIC_API_KEY", "sk-ant-faults")
            .env(
                "ANTHROPIC_BASE_URL",
                format!("http://127.0.0.1:{}", model.port),
            )
            .env("FLEET_CONCURRENCY", "4")
            .env("NO_COLOR", "1");
    };
    let mut cmd = p.fleet(["run", "faults"]);
    env(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) while the first four calls wait for their answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while model.attempts("slow") < 4 {
        assert!(
            Instant::now() < deadline,
            "the calls never reached the model"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The provider served (and billed) every request it got.
    std::thread::sleep(Duration::from_millis(3200));
    let served = model.attempts("slow");
    assert_eq!(served, 4);

    let (_, runs, _) = p.output(["runs"]);
    let id = runs
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{runs}"))
        .to_owned();
    let (code, cost, err) = p.output(["cost", "--run", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(cost.contains("unconfirmed"), "{cost}");
    assert!(
        cost.contains("4 call(s) were in flight when their process ended"),
        "{cost}"
    );
    let unconfirmed: f64 = cost
        .lines()
        .find(|l| l.starts_with("unconfirmed"))
        .and_then(|l| l.split("up to $").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{cost}"));
    // The bill never undercounts: what it knows plus what it cannot confirm covers what the
    // provider served.
    assert!(
        unconfirmed >= served as f64 * SERVED_TURN,
        "${unconfirmed} < {served} served turns: {cost}"
    );
    let (_, runs, _) = p.output(["runs"]);
    assert!(
        runs.contains("1 run(s) also owe up to") && runs.contains("4 call(s) were in flight"),
        "{runs}"
    );
    // The bill of every run finds the same charges (from the store's rows, not per run).
    let (code, all, err) = p.output(["cost"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        all.contains("4 call(s) were in flight when their process ended"),
        "{all}"
    );
    let up_to = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("unconfirmed"))
            .and_then(|l| l.split("up to $").nth(1))
            .map(|n| n.trim().to_owned())
    };
    assert_eq!(up_to(&all), up_to(&cost), "{all}");
    let (_, trace, _) = p.output(["trace"]);
    assert_eq!(
        trace.matches("unconfirmed: up to").count(),
        4,
        "each unit in flight says so: {trace}"
    );

    // Resumed, the calls run again (and answer at once this time); the charges of the killed
    // attempt stay on the bill, since the provider kept them.
    let mut cmd = p.fleet(["run", "--resume", &id]);
    env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, cost, _) = p.output(["cost", "--run", &id]);
    assert!(
        cost.contains("4 call(s) were in flight when their process ended"),
        "{cost}"
    );
    assert!(
        cost.contains("claude-haiku-4-5"),
        "what the resume spent is confirmed: {cost}"
    );
    assert_eq!(check_log(&p.root().join(".fleet/fleet.db")), 1);
}
