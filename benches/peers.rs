//! The four peer workloads of `benches/README.md`, in process: `fanout`, `pipeline`,
//! `fanout-lat50` and `resume`, each a QuickJS script (`benches/workflows/`) run by the real
//! engine against a durable SQLite store (WAL, `synchronous = FULL`) with the benchmarks' fake
//! model (`fleet_workflow::testkit::FakeModel`) at concurrency 16, with the allocator tuned as
//! the `fleet` binary tunes it ([`fleet_workflow::tune_malloc`]). Each timed run starts on a
//! synced file system (`sync(2)`), so that it does not pay for the harness's own writes before it.
//!
//! Run: `cargo bench -p fleet-benches --bench peers`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use fleet_core::journal::SharedStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_workflow::testkit::FakeModel;
use fleet_workflow::{CallState, Resume, RunEvent, RunOptions, RunState, Script, WorkflowEngine};

const FANOUT: &str = include_str!("workflows/fanout.js");
const PIPELINE: &str = include_str!("workflows/pipeline.js");

fn script(name: &str, text: &str) -> Arc<Script> {
    Arc::new(Script::parse(name, text.to_owned()).unwrap())
}

fn options() -> RunOptions {
    RunOptions {
        concurrency: 16,
        // The pipeline makes 1,500 calls; Claude Code's default cap is 1,000.
        max_agent_calls: 1500,
        ..RunOptions::default()
    }
}

/// Flushes the file system before a timed run, so that the run's commits do not also pay for
/// writing back what the harness did before it: the last iteration's store closing (its
/// checkpoint) and its deletion, or the copy of a killed run's store.
fn quiet_disk() {
    rustix::fs::sync();
}

/// Runs `script` once in a fresh SQLite store; returns the workload time.
async fn run_once(dir: &std::path::Path, script: &Arc<Script>, fake: &FakeModel) -> Duration {
    let store: SharedStore = Arc::new(SqliteStore::open(dir.join("fleet.db")).unwrap());
    let engine = WorkflowEngine::new(store, Arc::new(fake.clone()));
    quiet_disk();
    let started = Instant::now();
    let handle = engine.start(script.clone(), options(), None).await.unwrap();
    let summary = handle.wait().await;
    let took = started.elapsed();
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    took
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("peers");
    group.sample_size(20);
    for (name, script, calls) in [
        ("fanout", script("fanout.js", FANOUT), 1000u32),
        ("pipeline", script("pipeline.js", PIPELINE), 1500),
    ] {
        group.bench_function(format!("{name}/per_call"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let fake = FakeModel::new();
                        total += run_once(dir.path(), &script, &fake).await;
                        assert_eq!(fake.stats.calls.load(Ordering::SeqCst), u64::from(calls));
                        assert!(fake.stats.peak.load(Ordering::SeqCst) <= 16);
                    }
                    total / calls
                })
            });
        });
    }
    group.finish();

    let mut slow = c.benchmark_group("peers/fanout_lat50");
    slow.sample_size(10);
    let fanout = script("fanout.js", FANOUT);
    slow.bench_function("workload_ideal_3150ms", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let fake = FakeModel::with_latency(Duration::from_millis(50));
                    let took = run_once(dir.path(), &fanout, &fake).await;
                    assert!(fake.stats.peak.load(Ordering::SeqCst) <= 16);
                    eprintln!(
                        "fanout-lat50: {:.1} ms over the ideal 3150 ms",
                        took.as_secs_f64() * 1e3 - 3150.0
                    );
                    total += took;
                }
                total
            })
        });
    });
    slow.finish();

    let killed = killed_run();
    let mut resume = c.benchmark_group("peers/resume");
    resume.sample_size(20);
    resume.bench_function("after_kill_at_999_of_1000", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (took, redone, cached) = resume_once(&killed, &fanout).await;
                    assert_eq!((redone, cached), (1, 999));
                    total += took;
                }
                total
            })
        });
    });
    resume.finish();
}

/// A store left by a process killed with SIGKILL after 999 of `fanout`'s 1000 calls had
/// finished (the fake model stalled the last one), and the run's id.
struct Killed {
    dir: tempfile::TempDir,
    run_id: fleet_workflow::RunId,
}

/// Set in the child process that runs the fan-out to be killed.
const KILL_CHILD: &str = "FLEET_BENCH_RESUME_CHILD";

fn killed_run() -> Killed {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(KILL_CHILD, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // SIGKILL: nothing gets to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    let run_id = line.trim().parse().expect("the child prints the run id");
    Killed { dir, run_id }
}

/// The child: runs `fanout` until 999 calls are reported finished (each only once its events
/// are durable), prints the run id and waits to be killed.
#[allow(clippy::print_stdout)]
fn kill_child(dir: &std::path::Path) {
    use std::io::Write;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: SharedStore = Arc::new(SqliteStore::open(dir.join("fleet.db")).unwrap());
        let fake = FakeModel {
            stall_after: Some(999),
            ..FakeModel::new()
        };
        let engine = WorkflowEngine::new(store, Arc::new(fake));
        let handle = engine
            .start(script("fanout.js", FANOUT), options(), None)
            .await
            .unwrap();
        let (mut seen, mut finished) = (0, 0);
        while finished < 999 {
            let events = handle.next_events(seen).await;
            seen += events.len();
            finished += events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        RunEvent::AgentFinished {
                            state: CallState::Completed,
                            ..
                        }
                    )
                })
                .count();
        }
        println!("{}", handle.id());
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

/// Resumes the killed run in a copy of its store; returns the workload time, the calls the
/// fake model answered and the calls served from the journal.
async fn resume_once(killed: &Killed, script: &Arc<Script>) -> (Duration, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    for file in ["fleet.db", "fleet.db-wal"] {
        let from = killed.dir.path().join(file);
        if from.exists() {
            std::fs::copy(from, dir.path().join(file)).unwrap();
        }
    }
    let store: SharedStore = Arc::new(SqliteStore::open(dir.path().join("fleet.db")).unwrap());
    let fake = FakeModel::new();
    let engine = WorkflowEngine::new(store, Arc::new(fake.clone()));
    quiet_disk();
    let started = Instant::now();
    let handle = engine
        .start(
            script.clone(),
            options(),
            Some(Resume {
                run_id: killed.run_id,
                strict: false,
            }),
        )
        .await
        .unwrap();
    let summary = handle.wait().await;
    let took = started.elapsed();
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    (
        took,
        fake.stats.calls.load(Ordering::SeqCst),
        summary.calls.cached,
    )
}

criterion_group!(peers, benches);

fn main() {
    // As the `fleet` binary does at start-up (`FLEET_BENCH_GLIBC_DEFAULTS=1` measures without,
    // as a program embedding fleet that does not call it runs).
    if std::env::var_os("FLEET_BENCH_GLIBC_DEFAULTS").is_none() {
        let _ = fleet_workflow::tune_malloc();
    }
    if let Some(dir) = std::env::var_os(KILL_CHILD) {
        kill_child(std::path::Path::new(&dir));
        return;
    }
    peers();
    Criterion::default().configure_from_args().final_summary();
}
