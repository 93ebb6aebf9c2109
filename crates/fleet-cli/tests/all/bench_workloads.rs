//! The benchmarks' workloads as a user runs them: `fleet run` of the bundled scripts with the
//! fake model (what `cargo bench -p fleet-cli --features bench --bench peers` measures), a process killed with
//! SIGKILL mid-fan-out, and its resume redoing only the unfinished call.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::user::Project;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../benches/workflows")
        .join(name)
}

/// The numbers of the fake model's last line: answered, peak in flight, cap.
fn fake_line(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("fake model: "))
        .unwrap_or_else(|| panic!("no fake-model line in:\n{stderr}"));
    let n: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1], n[2])
}

#[test]
fn the_fake_model_answers_every_call_within_the_cap_and_reports_it() {
    let p = Project::init();
    let fanout = script("fanout.js");
    let (code, stdout, stderr) = p.output([
        "run".as_ref(),
        fanout.as_os_str(),
        "--provider".as_ref(),
        "fake".as_ref(),
        "--concurrency".as_ref(),
        "4".as_ref(),
        "--args".as_ref(),
        r#"{"calls": 40}"#.as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result, serde_json::json!({"calls": 40, "answered": 40}));
    let (answered, peak, cap) = fake_line(&stderr);
    assert_eq!((answered, cap), (40, 4), "{stderr}");
    assert!((1..=4).contains(&peak), "{stderr}");
    assert!(stderr.contains("peak RSS"), "{stderr}");

    // The pipeline makes 3 calls per item, within --max-calls.
    let pipeline = script("pipeline.js");
    let (code, stdout, stderr) = p.output([
        "run".as_ref(),
        pipeline.as_os_str(),
        "--provider".as_ref(),
        "fake".as_ref(),
        "--max-calls".as_ref(),
        "30".as_ref(),
        "--args".as_ref(),
        r#"{"items": 10}"#.as_ref(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        serde_json::json!({"items": 10, "answered": 10})
    );
    assert_eq!(fake_line(&stderr).0, 30);

    // Elsewhere than `fleet run` the fake model is refused with the way out.
    let (code, _, stderr) = p.output(["ask", "--provider", "fake", "hello"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("use it with `fleet run`"), "{stderr}");
}

#[test]
fn a_run_killed_after_finished_calls_resumes_redoing_only_the_unfinished_one() {
    let p = Project::init();
    let fanout = script("fanout.js");
    let mut first = p
        .fleet([
            "run".as_ref(),
            fanout.as_os_str(),
            "--provider".as_ref(),
            "fake".as_ref(),
            "--json".as_ref(),
            "--args".as_ref(),
            r#"{"calls": 60}"#.as_ref(),
        ])
        .env("FLEET_FAKE_STALL_AFTER", "59")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut run_id, mut finished) = (String::new(), 0);
    for line in BufReader::new(first.stdout.take().unwrap()).lines() {
        let event: Value = serde_json::from_str(&line.unwrap()).unwrap();
        match event["type"].as_str() {
            Some("run_started") => run_id = event["run_id"].as_str().unwrap().to_owned(),
            Some("agent_finished") if event["state"] == "completed" => {
                finished += 1;
                if finished == 59 {
                    break;
                }
            }
            _ => {}
        }
    }
    // SIGKILL: the 59 calls reported finished must already be on disk.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(finished, 59);

    let (code, stdout, stderr) = p.output(["run", "--resume", &run_id, "--provider", "fake"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        serde_json::json!({"calls": 60, "answered": 60})
    );
    assert_eq!(fake_line(&stderr).0, 1, "exactly one call redone: {stderr}");
    assert!(stderr.contains("59 cached"), "{stderr}");
}
