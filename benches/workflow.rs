//! Workflow-engine benchmarks: the cost the engine adds around agent calls.
//!
//! Targets on the 2-core reference machine: start a run and finish a trivial script ≤ 1 ms;
//! overhead per `agent()` call with an instant runner, sequential and in `parallel`, ≤ 10 µs;
//! a fan-out of 10,000 calls through `parallel` at concurrency 64 ≤ 0.5 s and ≤ 200 MB peak
//! RSS; resume of a 1,000-call run entirely from the journal ≤ 100 ms.
//! Run: `cargo bench -p fleet-benches --bench workflow`.
//!
//! The runner is the benchmarks' fake model (`fleet_workflow::testkit::FakeModel`): it records
//! its work unit's state and usage like a real runner and answers after one scheduler hop. The
//! store is the in-memory one; `benches/store.rs` measures SQLite on its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::journal::SharedStore;
use fleet_core::money::Cost;
use fleet_core::store::memory::MemoryStore;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::WorkUnitState;
use fleet_workflow::testkit::FakeModel;
use fleet_workflow::{Resume, RunOptions, RunState, Script, ScriptLimits, WorkflowEngine};

fn script(body: &str) -> Arc<Script> {
    Arc::new(
        Script::parse(
            "bench.js",
            format!("export const meta = {{ name: 'bench', description: 'b' }};\n{body}"),
        )
        .unwrap(),
    )
}

fn engine(store: SharedStore) -> WorkflowEngine {
    WorkflowEngine::new(store, Arc::new(FakeModel::new()))
}

/// A runner that answers at once: it only marks the engine's unit completed, as any runner
/// must. What is left is the engine's own cost per call.
struct Instant0;

impl AgentRunner for Instant0 {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let unit = ctx.work_unit.expect("the engine records the unit");
        ctx.journal
            .set_state(unit, WorkUnitState::Completed, None)
            .await?;
        Ok(AgentOutcome {
            work_unit_id: unit,
            text: call.prompt,
            output: None,
            model: "instant".into(),
            usage: TokenUsage::default(),
            cost: Cost::default(),
            model_requests: 1,
            tool_calls: 0,
        })
    }
}

fn options(concurrency: usize, calls: u32) -> RunOptions {
    RunOptions {
        concurrency,
        max_agent_calls: calls,
        limits: ScriptLimits {
            max_items: 10_000,
            ..ScriptLimits::default()
        },
        ..RunOptions::default()
    }
}

async fn run_once(engine: &WorkflowEngine, script: &Arc<Script>, options: RunOptions) -> Duration {
    let started = Instant::now();
    let handle = engine.start(script.clone(), options, None).await.unwrap();
    let summary = handle.wait().await;
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    started.elapsed()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let trivial = script("return 1;");
    c.bench_function("workflow/start_and_finish_trivial_script", |b| {
        let engine = engine(Arc::new(MemoryStore::new()));
        b.iter(|| rt.block_on(run_once(&engine, &trivial, RunOptions::default())));
    });

    let mut per_call = c.benchmark_group("workflow/agent_call_overhead");
    for (runner, name, body, calls) in [
        (
            "fake_model",
            "sequential_x1000",
            "for (let i = 0; i < 1000; i++) await agent('call ' + i);",
            1000u32,
        ),
        (
            "fake_model",
            "parallel_x1000",
            "await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('call ' + i)));",
            1000,
        ),
        (
            "instant",
            "sequential_x1000",
            "for (let i = 0; i < 1000; i++) await agent('call ' + i);",
            1000,
        ),
        (
            "instant",
            "parallel_x1000",
            "await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('call ' + i)));",
            1000,
        ),
    ] {
        let script = script(body);
        per_call.bench_function(format!("{runner}/{name}"), |b| {
            b.iter_custom(|iters| {
                let script = script.clone();
                rt.block_on(async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        // A fresh store per run keeps each run's thread small, as in real use.
                        let store: SharedStore = Arc::new(MemoryStore::new());
                        let engine = if runner == "instant" {
                            WorkflowEngine::new(store, Arc::new(Instant0))
                        } else {
                            engine(store)
                        };
                        total += run_once(&engine, &script, options(16, calls)).await;
                    }
                    // Report per call, not per run.
                    total / calls
                })
            });
        });
    }
    per_call.finish();

    let mut fanout = c.benchmark_group("workflow/fanout_10000");
    fanout.sample_size(10);
    let wide = script(
        "const r = await parallel(Array.from({ length: 10000 }, (_, i) => () => agent('call ' + i)));\nreturn r.length;",
    );
    fanout.bench_function("parallel_concurrency_64", |b| {
        b.iter_custom(|iters| {
            let wide = wide.clone();
            rt.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let engine = engine(Arc::new(MemoryStore::new()));
                    total += run_once(&engine, &wide, options(64, 10_000)).await;
                }
                total
            })
        });
    });
    fanout.finish();
    report_fanout_rss();

    let mut resume = c.benchmark_group("workflow/resume");
    resume.sample_size(20);
    let thousand = script(
        "const r = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('call ' + i)));\nreturn r.length;",
    );
    resume.bench_function("1000_calls_from_the_journal", |b| {
        b.iter_custom(|iters| {
            let thousand = thousand.clone();
            rt.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store: SharedStore = Arc::new(MemoryStore::new());
                    let engine = engine(store.clone());
                    let first = engine
                        .start(thousand.clone(), options(16, 1000), None)
                        .await
                        .unwrap();
                    let run_id = first.id();
                    first.wait().await;
                    let started = Instant::now();
                    let again = engine
                        .start(
                            thousand.clone(),
                            options(16, 1000),
                            Some(Resume {
                                run_id,
                                strict: false,
                            }),
                        )
                        .await
                        .unwrap();
                    let summary = again.wait().await;
                    total += started.elapsed();
                    assert_eq!(summary.calls.cached, 1000);
                }
                total
            })
        });
    });
    resume.finish();
}

/// Set in the child process that runs one fan-out to measure its peak RSS alone.
const RSS_CHILD: &str = "FLEET_BENCH_FANOUT_RSS_CHILD";

/// Peak RSS of a process that runs one 10,000-call fan-out and exits, so the figure is the
/// fan-out's own and not criterion's or the earlier benchmarks'.
fn report_fanout_rss() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    match std::process::Command::new(exe).env(RSS_CHILD, "1").output() {
        Ok(out) if out.status.success() => {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        }
        Ok(out) => eprintln!(
            "the fan-out RSS child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("cannot start the fan-out RSS child: {e}"),
    }
}

#[allow(clippy::print_stdout)]
fn fanout_rss_child() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let wide = script(
        "const r = await parallel(Array.from({ length: 10000 }, (_, i) => () => agent('call ' + i)));\nreturn r.length;",
    );
    let before = peak_rss_mib();
    let took = rt.block_on(async {
        let engine = engine(Arc::new(MemoryStore::new()));
        run_once(&engine, &wide, options(64, 10_000)).await
    });
    println!(
        "one 10,000-call fan-out in a fresh process: {took:.1?}, peak RSS {:.1} MiB (process before the run: {before:.1} MiB)",
        peak_rss_mib()
    );
}

criterion_group!(workflow, benches);

fn main() {
    if std::env::var_os(RSS_CHILD).is_some() {
        fanout_rss_child();
        return;
    }
    workflow();
    Criterion::default().configure_from_args().final_summary();
}
