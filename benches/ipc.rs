//! The worker protocol: JSON-RPC round trips through real worker processes.
//!
//! Four echo workers (`benches/echo_worker.rs`, built on `fleet_sandbox::worker::serve`), each
//! started through the sandbox helper (with Landlock when the kernel has it); 10,000 small
//! `task/run` calls in flight across them at once. Target on the 2-core reference machine:
//! ≥ 50,000 calls/s. Then one call at a time straight to a worker and through the `Supervisor`
//! (the difference is the supervisor's overhead per task), and 10,000 calls through a pool of
//! four workers (one task per worker at a time).
//! Run: `cargo bench -p fleet-benches --bench ipc`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleet_core::ipc::{InitializeParams, TaskLimits, TaskResult, TaskRunParams};
use fleet_core::sandbox::SandboxPolicy;
use fleet_core::spec::LandlockMode;
use fleet_sandbox::{Sandbox, Supervisor, WorkerPlan, WorkerProcess};
use futures_util::future::join_all;

const WORKERS: usize = 4;
const CALLS: usize = 10_000;
const WORKER: &str = env!("CARGO_BIN_EXE_fleet-bench-echo-worker");

fn sandbox() -> Sandbox {
    Sandbox::new(env!("CARGO_BIN_EXE_fleet-bench-sandbox-helper"), Vec::new())
}

/// The echo worker's policy: the default one, with its own binary readable and executable.
fn policy(landlock: bool) -> SandboxPolicy {
    let mut policy = SandboxPolicy::default();
    policy.executable.push(WORKER.into());
    policy
        .readable
        .push(std::path::Path::new(WORKER).parent().unwrap().to_path_buf());
    if !landlock {
        policy.landlock = LandlockMode::Off;
    }
    policy
}

fn ping(i: usize) -> TaskRunParams {
    TaskRunParams {
        task_id: format!("t{i}"),
        prompt: "ping".into(),
        input: None,
    }
}

/// Time for `CALLS` calls in flight at once, `iters` times over.
async fn fan_out<F>(iters: u64, call: impl Fn(usize) -> F) -> Duration
where
    F: Future<Output = TaskResult> + Send + 'static,
{
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let started = Instant::now();
        for done in join_all((0..CALLS).map(|i| tokio::spawn(call(i)))).await {
            assert_eq!(done.unwrap().text, "ping");
        }
        total += started.elapsed();
    }
    total
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let landlock = fleet_sandbox::landlock_available().is_ok();
    if !landlock {
        eprintln!("workers run without Landlock: the kernel has none");
    }
    let workers: Vec<Arc<WorkerProcess>> = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..WORKERS {
            let command = sandbox()
                .tokio_command(&policy(landlock), WORKER, [""; 0])
                .unwrap();
            let process = WorkerProcess::spawn(command).unwrap();
            process
                .initialize(InitializeParams {
                    protocol: fleet_core::ipc::PROTOCOL_VERSION,
                    spec: serde_json::json!({"name": "echo"}),
                    workspace: std::env::temp_dir(),
                    limits: TaskLimits::default(),
                    gateway: None,
                })
                .await
                .unwrap();
            out.push(Arc::new(process));
        }
        out
    });
    // A pool of four workers of one agent: each call takes a free worker, forwards its
    // notifications and charges its usage.
    let supervisor = rt.block_on(async {
        let supervisor = Supervisor::new(
            sandbox(),
            Arc::new(fleet_core::pricing::PriceTable::builtin().unwrap()),
        );
        let mut plan = WorkerPlan::new("echo", WORKER, policy(landlock));
        plan.spec = serde_json::json!({"name": "echo"});
        plan.min = WORKERS;
        plan.max = WORKERS;
        supervisor.add(plan).await.unwrap();
        supervisor
    });

    let mut group = c.benchmark_group("ipc");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(20);
    group.bench_function(
        format!("task_run_round_trips_{WORKERS}_workers_x{CALLS}"),
        |b| {
            b.iter_custom(|iters| {
                rt.block_on(fan_out(iters, |i| {
                    let worker = workers[i % WORKERS].clone();
                    async move { worker.run_task(ping(i)).await.unwrap() }
                }))
            });
        },
    );
    group.finish();

    // Overhead per task: one call at a time, straight to a worker and through the supervisor.
    let mut group = c.benchmark_group("supervisor/overhead_per_task");
    group.bench_function("direct_to_a_worker", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            rt.block_on(workers[0].run_task(ping(i))).unwrap()
        });
    });
    group.bench_function("through_the_supervisor", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            rt.block_on(supervisor.call("echo", ping(i))).unwrap()
        });
    });
    group.finish();

    let mut group = c.benchmark_group("supervisor");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(20);
    group.bench_function(format!("call_{WORKERS}_pooled_workers_x{CALLS}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(fan_out(iters, |i| {
                let supervisor = supervisor.clone();
                async move { supervisor.call("echo", ping(i)).await.unwrap().result }
            }))
        });
    });
    group.finish();
}

criterion_group!(ipc, benches);
criterion_main!(ipc);
