//! Event store benchmarks: appends (single, batched, concurrent) into SQLite with durable
//! commits, and rebuilding the projection tables from 1,000,000 events.
//!
//! Targets on the 2-core reference machine: ≥ 50,000 events/s batched into SQLite; rebuild of
//! 1,000,000 events in ≤ 5 s. Run: `cargo bench -p fleet-benches --bench store`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fleet_core::Timestamp;
use fleet_core::activity::{Activity, ActivityKind, LogLevel};
use fleet_core::event::Event;
use fleet_core::id::{ActivityId, ThreadId};
use fleet_core::store::memory::MemoryStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_core::store::{EventStore, ExpectedVersion};
use fleet_core::testkit::{created, turn_started};
use fleet_core::usage::TokenUsage;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn log_events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event::ActivityAppended {
            activity: Box::new(Activity {
                id: ActivityId::new(),
                turn_id: None,
                work_unit_id: None,
                at: Timestamp::now(),
                kind: ActivityKind::Log {
                    level: LogLevel::Info,
                    message: format!("line {i}"),
                },
            }),
        })
        .collect()
}

/// A thread with a running turn, ready for usage events on its root.
async fn usage_thread<S: EventStore>(store: &S) -> (ThreadId, Vec<Event>) {
    let id = ThreadId::new();
    let (turn, _, root) = turn_started(id);
    store
        .append(id, ExpectedVersion::NoStream, vec![created(id), turn])
        .await
        .unwrap();
    let usage = (0..1000)
        .map(|_| Event::UsageRecorded {
            work_unit_id: root.id,
            model: Some("claude-haiku-4-5".into()),
            usage: TokenUsage {
                input: 20,
                output: 5,
                ..TokenUsage::default()
            },
            cost: None,
            at: Timestamp::now(),
        })
        .collect();
    (id, usage)
}

fn appends(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("bench.db")).unwrap());
    let memory = MemoryStore::new();
    let mut group = c.benchmark_group("append");
    group.measurement_time(Duration::from_secs(5));

    let id = ThreadId::new();
    rt.block_on(store.append(id, ExpectedVersion::NoStream, vec![created(id)]))
        .unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("sqlite/single", |b| {
        b.iter_batched(
            || log_events(1),
            |events| {
                rt.block_on(store.append(id, ExpectedVersion::Any, events))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    group.throughput(Throughput::Elements(1000));
    group.bench_function("sqlite/batch_1000_logs", |b| {
        b.iter_batched(
            || log_events(1000),
            |events| {
                rt.block_on(store.append(id, ExpectedVersion::Any, events))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let (usage_id, usage) = rt.block_on(usage_thread(&*store));
    group.bench_function("sqlite/batch_1000_usage", |b| {
        b.iter_batched(
            || usage.clone(),
            |events| {
                rt.block_on(store.append(usage_id, ExpectedVersion::Any, events))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    let mid = ThreadId::new();
    rt.block_on(memory.append(mid, ExpectedVersion::NoStream, vec![created(mid)]))
        .unwrap();
    group.bench_function("memory/batch_1000_logs", |b| {
        b.iter_batched(
            || log_events(1000),
            |events| {
                rt.block_on(memory.append(mid, ExpectedVersion::Any, events))
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });

    // 64 writers appending one event each, at once: group commit shares the fsync.
    let threads: Vec<ThreadId> = (0..64)
        .map(|_| {
            let t = ThreadId::new();
            rt.block_on(store.append(t, ExpectedVersion::NoStream, vec![created(t)]))
                .unwrap();
            t
        })
        .collect();
    group.throughput(Throughput::Elements(64));
    group.bench_function("sqlite/64_concurrent_single", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = threads
                    .iter()
                    .map(|t| {
                        let (store, t) = (store.clone(), *t);
                        tokio::spawn(async move {
                            store
                                .append(t, ExpectedVersion::Any, log_events(1))
                                .await
                                .unwrap()
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            });
        });
    });
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("rebuild.db")).unwrap();
    // 1,000,000 events over 100 threads: each a turn with 10 units and 9,988 usage/log events.
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..100 {
            let (id, usage) = usage_thread(&store).await;
            let mut written = 2;
            while written < 10_000 {
                let mut batch = usage.clone();
                batch.extend(log_events(1000));
                batch.truncate(10_000 - written);
                written += batch.len();
                store.append(id, ExpectedVersion::Any, batch).await.unwrap();
            }
        }
    });
    let total = rt.block_on(store.read_all(0, usize::MAX)).unwrap().len();
    assert_eq!(total, 1_000_000);
    eprintln!(
        "setup: 1,000,000 events appended in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut group = c.benchmark_group("rebuild");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(1_000_000));
    group.bench_function("sqlite/1M_events", |b| {
        b.iter(|| rt.block_on(store.rebuild_projections()).unwrap())
    });
    group.finish();
}

criterion_group!(benches, appends, rebuild);
criterion_main!(benches);
