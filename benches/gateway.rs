//! The model gateway: a model turn through the supervisor (a sandboxed worker asks for it over
//! its JSON-RPC connection; the supervisor reserves its worst case, forwards it, streams the
//! events back, meters and settles) against the same provider called in process.
//!
//! - `gateway/turn`: one turn at a time, on a zero-latency model. Target: the gateway adds
//!   ≤ 50 µs per turn.
//! - `gateway/64_concurrent`: 64 turns in flight at once (one task's 64 loops), on the
//!   zero-latency model (what the gateway costs when nothing else does) and on models whose
//!   turns take 10 ms and 100 ms (the throughput the gateway loses against a model that takes
//!   time, as every hosted one does). Target: ≤ 2 % lost.
//!
//! Run: `cargo bench -p fleet-benches --bench gateway`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fleet_benches::instant_model::{InstantModel, request};
use fleet_core::ipc::TaskRunParams;
use fleet_core::money::Usd;
use fleet_core::provider::{CancelToken, Provider};
use fleet_core::sandbox::SandboxPolicy;
use fleet_core::spec::LandlockMode;
use fleet_sandbox::{Sandbox, Supervisor, WorkerPlan};
use futures_util::future::join_all;

const WORKER: &str = env!("CARGO_BIN_EXE_fleet-bench-turn-worker");
const CONCURRENT: usize = 64;

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

async fn supervisor(model: InstantModel, landlock: bool) -> Supervisor {
    let supervisor = Supervisor::new(
        Sandbox::new(env!("CARGO_BIN_EXE_fleet-bench-sandbox-helper"), Vec::new()),
        Arc::new(fleet_core::pricing::PriceTable::builtin().unwrap()),
    )
    .with_gateway(Arc::new(model));
    let mut plan = WorkerPlan::new("turns", WORKER, policy(landlock));
    plan.spec = serde_json::json!({"name": "turns"});
    plan.model = Some("claude-haiku-4-5".into());
    plan.min = 1;
    plan.max = 1;
    // Priced turns, many of them: a budget the benchmark never reaches.
    plan.cost_budget = Usd::from_dollars(1e9).unwrap();
    supervisor.add(plan).await.unwrap();
    supervisor
}

/// `turns` turns in `concurrent` loops, as one task through the gateway.
async fn through_gateway(supervisor: &Supervisor, turns: u64, concurrent: usize) -> Duration {
    let started = Instant::now();
    let done = supervisor
        .call(
            "turns",
            TaskRunParams {
                task_id: format!("t{turns}"),
                prompt: format!("{turns} {concurrent}"),
                input: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        done.turns,
        u32::try_from(turns * concurrent as u64).unwrap()
    );
    started.elapsed()
}

/// The same turns on the provider in process.
async fn in_process(model: InstantModel, turns: u64, concurrent: usize) -> Duration {
    let started = Instant::now();
    join_all((0..concurrent).map(|_| {
        tokio::spawn(async move {
            for _ in 0..turns {
                model.complete(request(), CancelToken::new()).await.unwrap();
            }
        })
    }))
    .await;
    started.elapsed()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let landlock = fleet_sandbox::landlock_available().is_ok();
    if !landlock {
        eprintln!("the worker runs without Landlock: the kernel has none");
    }
    let instant = InstantModel::default();
    let slow = InstantModel {
        latency: Duration::from_millis(10),
    };
    let slower = InstantModel {
        latency: Duration::from_millis(100),
    };
    let gateway = rt.block_on(supervisor(instant, landlock));
    let slow_gateway = rt.block_on(supervisor(slow, landlock));
    let slower_gateway = rt.block_on(supervisor(slower, landlock));

    let mut group = c.benchmark_group("gateway/turn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("in_process", |b| {
        b.iter_custom(|iters| rt.block_on(in_process(instant, iters, 1)));
    });
    group.bench_function("through_the_gateway", |b| {
        b.iter_custom(|iters| rt.block_on(through_gateway(&gateway, iters, 1)));
    });
    group.finish();

    let mut group = c.benchmark_group(format!("gateway/{CONCURRENT}_concurrent"));
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function("in_process", |b| {
        b.iter_custom(|iters| rt.block_on(in_process(instant, iters, CONCURRENT)));
    });
    group.bench_function("through_the_gateway", |b| {
        b.iter_custom(|iters| rt.block_on(through_gateway(&gateway, iters, CONCURRENT)));
    });
    group.sample_size(10);
    group.bench_function("in_process_10ms_model", |b| {
        b.iter_custom(|iters| rt.block_on(in_process(slow, iters, CONCURRENT)));
    });
    group.bench_function("through_the_gateway_10ms_model", |b| {
        b.iter_custom(|iters| rt.block_on(through_gateway(&slow_gateway, iters, CONCURRENT)));
    });
    group.bench_function("in_process_100ms_model", |b| {
        b.iter_custom(|iters| rt.block_on(in_process(slower, iters, CONCURRENT)));
    });
    group.bench_function("through_the_gateway_100ms_model", |b| {
        b.iter_custom(|iters| rt.block_on(through_gateway(&slower_gateway, iters, CONCURRENT)));
    });
    group.finish();
}

criterion_group!(gateway, benches);
criterion_main!(gateway);
