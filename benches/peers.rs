//! The four peer workloads of `shared/specs/benchmarks.md`, in process: `fanout`, `pipeline`,
//! `fanout-lat50` and `resume`, each a QuickJS script (`benches/workflows/`) run by the real
//! engine against a durable SQLite store (WAL, `synchronous = FULL`) with the benchmarks' fake
//! model (`fleet_workflow::testkit::FakeModel`) at concurrency 16.
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
use fleet_core::{SharedStore, SqliteStore};
use fleet_workflow::testkit::FakeModel;
use fleet_workflow::{RunOptions, RunState, Script, WorkflowEngine};

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

/// Runs `script` once in a fresh SQLite store; returns the workload time.
async fn run_once(dir: &std::path::Path, script: &Arc<Script>, fake: &FakeModel) -> Duration {
    let store: SharedStore = Arc::new(SqliteStore::open(dir.join("fleet.db")).unwrap());
    let engine = WorkflowEngine::new(store, Arc::new(fake.clone()));
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
}

criterion_group!(peers, benches);

fn main() {
    peers();
    Criterion::default().configure_from_args().final_summary();
}
