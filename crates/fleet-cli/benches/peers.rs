//! The peer workloads of `benches/README.md` as whole processes: `fleet run` of the
//! bundled benchmark scripts (`benches/workflows/`) with the benchmarks' fake model, each in a
//! fresh project with its SQLite store. Prints, per workload, the time from exec to exit, the
//! workload time inside the process, µs per call, the process's peak RSS (the kernel's
//! `ru_maxrss` for the whole process, exit included), the calls the fake
//! model answered and the most it saw in flight (never above the cap, or this fails), and for
//! `resume` how many calls the resumed process redid after the first was killed with SIGKILL
//! once 999 calls had finished.
//!
//! ```text
//! cargo bench -p fleet-cli --features bench --bench peers
//! ```

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The concurrency cap (`--concurrency 16` below).
const CAP: u64 = 16;

/// What one `fleet run` reported.
#[derive(Debug, Clone, Copy)]
struct Report {
    exec_to_exit: Duration,
    workload_ms: f64,
    answered: u64,
    peak: u64,
    rss_mib: f64,
}

fn workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/workflows")
}

/// A fresh project (its store is created by the first run in it).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.toml"), "").unwrap();
    dir
}

fn fleet(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleet"));
    command
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["run", "--provider", "fake", "--concurrency", "16"]);
    command
}

/// Reads the fake model's line: `fake model: N calls answered, at most P in flight (cap C);
/// workload W ms; peak RSS R MiB before the store closes`. The report takes the whole process's
/// peak, `rss_mib`, from the kernel instead.
fn parse(stderr: &str, exec_to_exit: Duration, rss_mib: f64) -> Report {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("fake model: "))
        .unwrap_or_else(|| panic!("no fake-model line in:\n{stderr}"));
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    let [answered, peak, _cap, workload_ms, _rss_before_close] = numbers[..] else {
        panic!("unexpected fake-model line: {line}");
    };
    Report {
        exec_to_exit,
        workload_ms,
        answered: answered as u64,
        peak: peak as u64,
        rss_mib,
    }
}

/// What a finished `fleet` process left: its output, whether it succeeded, how long it took
/// from exec to exit and its peak resident memory.
struct Finished {
    stdout: String,
    stderr: String,
    success: bool,
    took: Duration,
    rss_mib: f64,
}

/// Runs `command` to its end, reading its peak RSS from the kernel as it is reaped.
#[allow(clippy::zombie_processes)] // `reap` waits for it, with wait4 rather than `Child::wait`.
fn execute(command: &mut Command) -> Finished {
    use std::io::Read;
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        text
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let (status, rss_kib) = reap(&child);
    Finished {
        stdout,
        stderr: stderr.join().unwrap(),
        success: status == Some(0),
        took: started.elapsed(),
        rss_mib: rss_kib as f64 / 1024.0,
    }
}

/// Waits for `child` with `wait4`, which also returns the process's peak RSS (`ru_maxrss`, KiB):
/// all of its life, including the store's closing after the fake model's line. Returns the exit
/// code (`None`: killed by a signal) and the peak.
#[allow(unsafe_code)]
fn reap(child: &std::process::Child) -> (Option<i32>, i64) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `pid` is our own unreaped child, `status` and `usage` are valid for writes, and
    // wait4 fills `usage` whenever it returns the pid. `Child` is not waited on afterwards.
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, usage.as_mut_ptr()) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    // SAFETY: wait4 returned the pid, so it wrote `usage` (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss)
}

fn run(dir: &Path, script: &str, extra: &[&str], env: &[(&str, &str)]) -> (Report, String) {
    let mut command = fleet(dir);
    command
        .arg(workflows().join(script))
        .args(extra)
        .envs(env.iter().copied());
    let out = execute(&mut command);
    assert!(out.success, "fleet run {script} failed:\n{}", out.stderr);
    (parse(&out.stderr, out.took, out.rss_mib), out.stdout)
}

/// Runs `fanout` until 999 calls have finished (the fake model stalls the rest), kills the
/// process with SIGKILL, and resumes the run in a new one.
fn resume(dir: &Path) -> (Report, u64) {
    let mut first = fleet(dir)
        .arg(workflows().join("fanout.js"))
        .arg("--json")
        .env("FLEET_FAKE_STALL_AFTER", "999")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut run_id = None;
    let mut finished = 0;
    for line in BufReader::new(first.stdout.take().unwrap()).lines() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        match event["type"].as_str() {
            Some("run_started") => run_id = event["run_id"].as_str().map(str::to_owned),
            // A call is reported finished only once its events are durable.
            Some("agent_finished") if event["state"] == "completed" => {
                finished += 1;
                if finished == 999 {
                    break;
                }
            }
            _ => {}
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(finished, 999, "the first process ended early");
    let run_id = run_id.expect("a run_started event");
    let out = execute(fleet(dir).args(["--resume", &run_id]));
    assert!(out.success, "the resumed run failed:\n{}", out.stderr);
    let result: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(result["answered"], 1000, "{result}");
    let report = parse(&out.stderr, out.took, out.rss_mib);
    (report, report.answered)
}

fn median(mut reports: Vec<Report>) -> Report {
    reports.sort_by_key(|r| r.exec_to_exit);
    reports[reports.len() / 2]
}

fn check(report: &Report, calls: u64) {
    assert_eq!(report.answered, calls, "the fake model answered every call");
    assert!(
        report.peak <= CAP,
        "the fake model saw {} calls in flight, above the cap of {CAP}",
        report.peak
    );
}

/// Prints a row; `calls` divides the workload time into a time per call.
fn row(name: &str, calls: Option<u64>, r: &Report, note: &str) {
    let per_call = calls.map_or_else(
        || "—".to_owned(),
        |n| format!("{:.1} µs", r.workload_ms * 1e3 / n.max(1) as f64),
    );
    println!(
        "{name:<13} {:>9.1} ms {:>9.1} ms {per_call:>11} {:>7.1} MiB {:>6} {:>6}/{CAP}   {note}",
        r.exec_to_exit.as_secs_f64() * 1e3,
        r.workload_ms,
        r.rss_mib,
        r.answered,
        r.peak,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, picks workloads.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let runs = if std::env::var_os("CI").is_some() {
        3
    } else {
        7
    };
    println!(
        "{:<13} {:>12} {:>12} {:>11} {:>11} {:>6} {:>9}",
        "workload", "exec→exit", "workload", "per call", "peak RSS", "calls", "in flight"
    );
    if wanted("fanout") {
        let dir = project();
        let reports: Vec<_> = (0..runs)
            .map(|_| run(dir.path(), "fanout.js", &[], &[]).0)
            .collect();
        reports.iter().for_each(|r| check(r, 1000));
        let worst_rss = reports.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
        row(
            "fanout",
            Some(1000),
            &median(reports),
            &format!("median of {runs}; highest peak RSS {worst_rss:.1} MiB"),
        );
    }
    if wanted("pipeline") {
        let dir = project();
        let reports: Vec<_> = (0..runs)
            .map(|_| run(dir.path(), "pipeline.js", &["--max-calls", "1500"], &[]).0)
            .collect();
        reports.iter().for_each(|r| check(r, 1500));
        row(
            "pipeline",
            Some(1500),
            &median(reports),
            "500 items × 3 stages",
        );
    }
    if wanted("fanout-lat50") {
        let dir = project();
        let (report, _) = run(
            dir.path(),
            "fanout.js",
            &[],
            &[("FLEET_FAKE_LATENCY_MS", "50")],
        );
        check(&report, 1000);
        row(
            "fanout-lat50",
            None,
            &report,
            &format!(
                "{:.1} ms over the ideal 3150 ms",
                report.workload_ms - 3150.0
            ),
        );
    }
    if wanted("resume") {
        let reports: Vec<_> = (0..runs.min(3))
            .map(|_| {
                let dir = project();
                let (report, redone) = resume(dir.path());
                assert_eq!(redone, 1, "the resumed run redid {redone} calls, not 1");
                report
            })
            .collect();
        row(
            "resume",
            None,
            &median(reports),
            "calls redone: 1 of 1000 (the first process was killed after 999)",
        );
    }
}
