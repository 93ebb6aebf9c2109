use super::*;
use crate::command::{Command, Recorder};
use crate::event::TurnState;
use crate::thread::project;
use crate::work_unit::{WorkUnitKind, WorkUnitState};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const FIXTURE_V1: &str = include_str!("../../../tests/fixtures/store-v1.sql");

#[test]
fn a_version_1_database_migrates_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch(FIXTURE_V1)
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let version: u32 = store
        .reader()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 4);
    runtime().block_on(async {
        let id = ThreadId::parse("0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0b").unwrap();
        let events = store.read_stream(id, 0, 100).await.unwrap();
        assert_eq!(events.len(), 7, "every old event decodes");
        let projected = project(id, events.iter().map(|e| &e.event)).unwrap();
        let snapshot = store.snapshot(id).await.unwrap().unwrap();
        assert_eq!(
            snapshot, projected,
            "old rows read as the projector folds old events"
        );
        assert_eq!(snapshot.activities[0].work_unit_id, None);
        assert_eq!(
            snapshot.subtree_usage(snapshot.turns[0].root_id).input,
            1000
        );
        // The new ledger was filled from the old events.
        let by_model = store.usage_by_model(None).unwrap();
        assert_eq!(by_model.len(), 1);
        assert_eq!(by_model[0].model.as_deref(), Some("claude-haiku-4-5"));
        assert_eq!(
            (by_model[0].usage.input, by_model[0].usage.output),
            (1000, 200)
        );
        assert_eq!(
            by_model[0].cost,
            Cost {
                usd: Usd::from_nanos(2_000_000),
                unpriced: 0
            }
        );
        // And new events append after the old ones.
        let mut rec = Recorder::open(&store, id).await.unwrap();
        rec.start_turn(WorkUnitKind::PrimaryAgent, Some("again".into()))
            .await
            .unwrap();
        assert_eq!(
            store
                .read_all(0, 100)
                .await
                .unwrap()
                .last()
                .unwrap()
                .position,
            8
        );
    });
    // Opening again does not migrate twice.
    drop(store);
    SqliteStore::open(&path).unwrap();
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the database is at schema version 99, newer than this fleet supports ({SCHEMA_VERSION}): upgrade fleet"
        )
    );
}

#[test]
fn appends_survive_reopening_and_rows_match_the_projector() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/fleet.db");
    let rt = runtime();
    let (id, before) = rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        let mut rec = Recorder::create(&store, Some("durable".into()))
            .await
            .unwrap();
        let (turn, root) = rec.start_turn(WorkUnitKind::Workflow, None).await.unwrap();
        let child = rec
            .start_work_unit(root, WorkUnitKind::DelegatedAgent, |d| {
                d.model = Some("gpt-5-mini".into())
            })
            .await
            .unwrap();
        rec.execute(Command::RecordUsage {
            work_unit_id: child,
            model: None,
            usage: crate::usage::TokenUsage::from_openai(1000, 100, 800),
        })
        .await
        .unwrap();
        rec.execute(Command::RecordUsage {
            work_unit_id: child,
            model: Some("my-local-model".into()),
            usage: crate::usage::TokenUsage {
                output: 7,
                ..Default::default()
            },
        })
        .await
        .unwrap();
        rec.finish_work_unit(child, WorkUnitState::Failed, Some("boom".into()))
            .await
            .unwrap();
        rec.complete_turn(turn, TurnState::Failed).await.unwrap();
        (rec.thread().id, rec.thread().clone())
    });
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        let after = store.snapshot(id).await.unwrap().unwrap();
        assert_eq!(after, before);
        let events = store.read_stream(id, 0, 100).await.unwrap();
        assert_eq!(
            Some(after.clone()),
            project(id, events.iter().map(|e| &e.event))
        );
        // Rebuilding the projection tables from the events gives the same rows.
        let stats = store.rebuild_projections().await.unwrap();
        assert_eq!((stats.events, stats.threads, stats.skipped), (7, 1, 0));
        assert_eq!(store.snapshot(id).await.unwrap().unwrap(), after);
        assert_eq!(store.thread_ids().unwrap(), vec![id]);
        // The ledger: the priced model and the unknown one, which is never $0.
        let by_model = store.usage_by_model(None).unwrap();
        assert_eq!(by_model.len(), 2);
        let mini = by_model
            .iter()
            .find(|m| m.model.as_deref() == Some("gpt-5-mini"))
            .unwrap();
        // 200 uncached × $0.25 + 800 cached × $0.025 + 100 output × $2, per million.
        assert_eq!(
            mini.cost,
            Cost {
                usd: Usd::from_nanos(50_000 + 20_000 + 200_000),
                unpriced: 0
            }
        );
        let local = by_model
            .iter()
            .find(|m| m.model.as_deref() == Some("my-local-model"))
            .unwrap();
        assert_eq!(
            local.cost,
            Cost {
                usd: Usd::ZERO,
                unpriced: 1
            }
        );
        assert!(
            store
                .usage_by_model(Some(Timestamp::now() + jiff::SignedDuration::from_hours(1)))
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn rows_behind_the_log_are_read_through_and_caught_up() {
    // The writer writes projection rows in batches, and a killed process leaves events whose
    // rows were never written. Readers apply the events after the rows' version; the next
    // writer writes the rows it finds behind.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let rt = runtime();
    let (id, events) = rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        let mut rec = Recorder::create(&store, Some("behind".into()))
            .await
            .unwrap();
        let (turn, root) = rec.start_turn(WorkUnitKind::Workflow, None).await.unwrap();
        for _ in 0..3 {
            let unit = rec
                .start_work_unit(root, WorkUnitKind::DelegatedAgent, |_| {})
                .await
                .unwrap();
            rec.finish_work_unit(unit, WorkUnitState::Completed, None)
                .await
                .unwrap();
        }
        rec.complete_turn(turn, TurnState::Completed).await.unwrap();
        let id = rec.thread().id;
        (id, store.read_stream(id, 0, 100).await.unwrap())
    });
    let all: Vec<Event> = events.iter().map(|e| e.event.clone()).collect();
    assert_eq!(all.len(), 9);
    // Put the rows back to the thread's first three events.
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(
            "DELETE FROM threads; DELETE FROM turns; DELETE FROM work_units; DELETE FROM activities;",
        )
        .unwrap();
        rows::write_all(&tx, &project(id, &all[..3]).unwrap()).unwrap();
        tx.commit().unwrap();
        let lagging = rows::load_thread(&conn, id).unwrap();
        assert_eq!(lagging.behind_events, 6, "the rows are 6 events behind");
    }
    rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.snapshot(id).await.unwrap(), project(id, &all));
        assert_eq!(store.thread_ids().unwrap(), vec![id]);
        // The next append brings the rows up to date when the writer next projects (here,
        // when the store closes).
        let (next, _, _) = crate::testkit::turn_started(id);
        store
            .append(id, ExpectedVersion::Exact(9), vec![next.clone()])
            .await
            .unwrap();
        drop(store);
        let mut with_next = all.clone();
        with_next.push(next);
        let conn = Connection::open(&path).unwrap();
        let caught_up = rows::load_thread(&conn, id).unwrap();
        assert_eq!(caught_up.behind_events, 0, "every row is written");
        assert_eq!(caught_up.thread, project(id, &with_next));
        let units: i64 = conn
            .query_row("SELECT COUNT(*) FROM work_units", [], |r| r.get(0))
            .unwrap();
        assert_eq!(units, 5, "two roots and three calls, each a row");
    });
}

#[test]
fn snapshots_taken_while_the_writer_projects_are_the_log_at_their_version() {
    // Readers race the writer, which writes rows whenever it goes idle: every snapshot must be
    // the fold of the log up to its own version, never rows of one moment and events of another.
    // A race, so a reader without its read transaction fails this only now and then (one run
    // in four when tried), never a correct one.
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(dir.path().join("fleet.db")).unwrap());
    let rt = runtime();
    rt.block_on(async {
        let mut rec = Recorder::create(store.clone(), Some("race".into()))
            .await
            .unwrap();
        let (_, root) = rec.start_turn(WorkUnitKind::Workflow, None).await.unwrap();
        let id = rec.thread().id;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut versions = std::collections::BTreeSet::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let snap = store.snapshot(id).await.unwrap().unwrap();
                    let n = usize::try_from(snap.version).unwrap();
                    let log = store.read_stream(id, 0, n).await.unwrap();
                    assert_eq!(
                        Some(&snap),
                        project(id, log.iter().map(|e| &e.event)).as_ref()
                    );
                    versions.insert(snap.version);
                    tokio::task::yield_now().await;
                }
                versions
            })
        };
        for i in 0..120 {
            let unit = rec
                .start_work_unit(root, WorkUnitKind::DelegatedAgent, |_| {})
                .await
                .unwrap();
            // Usage adds up: a reader that applied an event twice would count it twice.
            rec.execute(Command::RecordUsage {
                work_unit_id: unit,
                model: None,
                usage: crate::usage::TokenUsage {
                    output: 5,
                    ..Default::default()
                },
            })
            .await
            .unwrap();
            rec.finish_work_unit(unit, WorkUnitState::Completed, None)
                .await
                .unwrap();
            if i % 4 == 3 {
                // Long enough for the writer to go idle and write the rows.
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let versions = reader.await.unwrap();
        assert!(
            versions.len() > 10,
            "the reader saw the thread grow: {versions:?}"
        );
        let rows: i64 = store
            .reader()
            .query_row("SELECT version FROM threads", [], |r| r.get(0))
            .unwrap();
        assert!(
            rows > 2,
            "the writer wrote rows between bursts (at version {rows})"
        );
    });
}

#[test]
fn concurrent_appends_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(dir.path().join("fleet.db")).unwrap());
    let rt = runtime();
    let ids: Vec<ThreadId> = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut rec = Recorder::create(store, None).await.unwrap();
                    let (_, root) = rec
                        .start_turn(WorkUnitKind::PrimaryAgent, None)
                        .await
                        .unwrap();
                    for _ in 0..5 {
                        rec.start_work_unit(root, WorkUnitKind::DelegatedAgent, |_| {})
                            .await
                            .unwrap();
                    }
                    rec.thread().id
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids
    });
    rt.block_on(async {
        let all = store.read_all(0, 10_000).await.unwrap();
        assert_eq!(all.len(), 32 * 7);
        assert!(
            all.windows(2).all(|w| w[1].position == w[0].position + 1),
            "positions have no gaps"
        );
        for id in ids {
            let snap = store.snapshot(id).await.unwrap().unwrap();
            assert_eq!(snap.work_units.len(), 6);
            assert_eq!(snap.version, 7);
        }
    });
}

#[test]
fn a_refused_append_in_a_group_does_not_touch_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("fleet.db")).unwrap();
    runtime().block_on(async {
        let good = ThreadId::new();
        let bad = ThreadId::new();
        // Queued together (appends are queued at call time), so they share a commit.
        let a = store.append(
            good,
            ExpectedVersion::NoStream,
            vec![crate::testkit::created(good)],
        );
        let b = store.append(
            bad,
            ExpectedVersion::NoStream,
            vec![crate::testkit::turn_started(bad).0],
        );
        let c = store.append(
            good,
            ExpectedVersion::Exact(1),
            vec![crate::testkit::turn_started(good).0],
        );
        let (a, b, c) = (a.await, b.await, c.await);
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        assert!(matches!(b, Err(StoreError::Rejected { .. })));
        assert_eq!(store.read_all(0, 10).await.unwrap().len(), 2);
        assert!(store.snapshot(bad).await.unwrap().is_none());
        assert_eq!(store.snapshot(good).await.unwrap().unwrap().turns.len(), 1);
    });
}

#[test]
fn the_ledger_sums_each_batch_by_model_and_counts_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("fleet.db")).unwrap();
    runtime().block_on(async {
        let mut rec = Recorder::create(&store, None).await.unwrap();
        let (_, root) = rec.start_turn(WorkUnitKind::Workflow, None).await.unwrap();
        let usage = |input| TokenUsage {
            input,
            output: 1,
            ..TokenUsage::default()
        };
        let priced = |model: &str, input, nanos| Command::RecordPricedUsage {
            work_unit_id: root,
            model: Some(model.into()),
            usage: usage(input),
            cost: Usd::from_nanos(nanos),
        };
        // One append: two models, one of them also unpriced once.
        let results = rec
            .execute_batch(vec![
                priced("a", 10, 100),
                priced("b", 20, 200),
                priced("a", 30, 300),
                Command::RecordUsage {
                    work_unit_id: root,
                    model: Some("a-unknown-model".into()),
                    usage: usage(40),
                },
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        // And one more append of model a.
        rec.execute(priced("a", 50, 500)).await.unwrap();
        let rows: i64 = store
            .reader()
            .query_row("SELECT COUNT(*) FROM usage_ledger", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows, 4,
            "a row per batch and model: (1, a), (1, b), (1, ?), (2, a)"
        );
        let by_model = store.usage_by_model(None).unwrap();
        let summary: Vec<_> = by_model
            .iter()
            .map(|m| {
                (
                    m.model.as_deref().unwrap_or("-"),
                    m.usage.input,
                    m.cost.usd.nanos(),
                    m.cost.unpriced,
                    m.records,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("a", 90, 900, 0, 3),
                ("a-unknown-model", 40, 0, 1, 1),
                ("b", 20, 200, 0, 1)
            ]
        );
        // Rebuilding the ledger from the log gives the same sums.
        store.rebuild_projections().await.unwrap();
        assert_eq!(store.usage_by_model(None).unwrap(), by_model);
    });
}

#[test]
fn a_store_another_process_holds_locked_is_waited_for_and_the_wait_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.contention(), Contention::default());
    // Another connection (as another process would) takes the write lock for 300 ms.
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
    });
    let started = std::time::Instant::now();
    let rt = runtime();
    rt.block_on(async {
        let mut rec = Recorder::create(&store, Some("waits".into()))
            .await
            .unwrap();
        rec.start_turn(WorkUnitKind::Workflow, None).await.unwrap();
    });
    release.join().unwrap();
    let waited = store.contention();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(250),
        "the append waited for the lock"
    );
    assert!(waited.waits >= 1, "{waited:?}");
    assert!(
        waited.waited >= std::time::Duration::from_millis(200) && waited.waited <= busy::MAX_WAIT,
        "{waited:?}"
    );
}

#[test]
fn unconfirmed_charges_are_found_from_the_rows_as_each_thread_finds_them() {
    use crate::activity::ActivityKind;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("fleet.db")).unwrap();
    let expected = runtime().block_on(async {
        let mut threads = Vec::new();
        for _ in 0..2 {
            let mut rec = Recorder::create(&store, None).await.unwrap();
            let (_, root) = rec.start_turn(WorkUnitKind::Workflow, None).await.unwrap();
            let unit = async |rec: &mut Recorder<&SqliteStore>| {
                rec.start_work_unit(root, WorkUnitKind::DelegatedAgent, |_| {})
                    .await
                    .unwrap()
            };
            let admit = |unit, nanos, before| Command::AppendActivity {
                turn_id: None,
                work_unit_id: Some(unit),
                kind: ActivityKind::TurnAdmitted {
                    model: "m".into(),
                    reserved: Usd::from_nanos(nanos),
                    tokens_before: before,
                },
            };
            let used = |unit| Command::RecordPricedUsage {
                work_unit_id: unit,
                model: Some("m".into()),
                usage: TokenUsage {
                    input: 5,
                    output: 5,
                    ..TokenUsage::default()
                },
                cost: Usd::from_nanos(7),
            };
            // In flight when the process ended: owes its second turn's reservation.
            let open = unit(&mut rec).await;
            rec.execute(admit(open, 100, 0)).await.unwrap();
            rec.execute(used(open)).await.unwrap();
            rec.execute(admit(open, 300, 10)).await.unwrap();
            // Its turn recorded usage: settled.
            let settled = unit(&mut rec).await;
            rec.execute(admit(settled, 500, 0)).await.unwrap();
            rec.execute(used(settled)).await.unwrap();
            // Finished (failed) before its usage came: settled too.
            let failed = unit(&mut rec).await;
            rec.execute(admit(failed, 700, 0)).await.unwrap();
            rec.finish_work_unit(failed, WorkUnitState::Failed, None)
                .await
                .unwrap();
            // Interrupted mid-turn: owes it.
            let interrupted = unit(&mut rec).await;
            rec.execute(admit(interrupted, 900, 0)).await.unwrap();
            rec.finish_work_unit(interrupted, WorkUnitState::Interrupted, None)
                .await
                .unwrap();
            threads.push(rec.thread().clone());
        }
        let mut expected: Vec<_> = threads
            .iter()
            .flat_map(|t| t.unconfirmed().into_iter().map(|(u, usd)| (t.id, u, usd)))
            .collect();
        assert_eq!(expected.len(), 4, "two a thread: {expected:?}");
        let mut found = store.unconfirmed(None).unwrap();
        expected.sort_by_key(|(_, u, _)| *u);
        found.sort_by_key(|(_, u, _)| *u);
        assert_eq!(found, expected);
        let owed: i64 = found.iter().map(|(_, _, usd)| usd.nanos()).sum();
        assert_eq!(owed, 2 * (300 + 900));
        // Threads last updated before `since` are left out.
        let later = Timestamp::now() + jiff::SignedDuration::from_secs(1);
        assert_eq!(store.unconfirmed(Some(later)).unwrap(), []);
        expected
    });
    // Reopened, every row is written (the writer projects as it closes): the same charges,
    // now from the rows alone.
    drop(store);
    let store = SqliteStore::open(dir.path().join("fleet.db")).unwrap();
    let behind: i64 = store
        .reader()
        .query_row(
            "SELECT COUNT(*) FROM threads t WHERE t.version < (SELECT MAX(last_version) FROM event_batches b WHERE b.thread_id = t.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(behind, 0);
    let mut found = store.unconfirmed(None).unwrap();
    found.sort_by_key(|(_, u, _)| *u);
    assert_eq!(found, expected);
}
