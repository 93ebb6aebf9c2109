//! Conformance suites for fleet-core's seams (feature `testkit`).
//!
//! Every [`EventStore`] implementation runs [`event_store_conformance`]; a new implementation
//! is done when it passes. Each check panics with a message naming what broke.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use jiff::Timestamp;

use crate::activity::{ActivityKind, LogLevel};
use crate::command::{Command, Recorder};
use crate::event::{Event, TurnState};
use crate::id::{ThreadId, TurnId};
use crate::store::{CheckedEvents, EventStore, ExpectedVersion, StoreError};
use crate::thread::{Violation, project};
use crate::usage::TokenUsage;
use crate::work_unit::{WorkUnitKind, WorkUnitRecord, WorkUnitState};

/// A `thread_created` event for `id`.
#[must_use]
pub fn created(id: ThreadId) -> Event {
    Event::ThreadCreated {
        thread_id: id,
        title: Some("conformance".into()),
        at: Timestamp::now(),
    }
}

/// A `turn_started` event with a running workflow root; returns the event, turn and root record.
#[must_use]
pub fn turn_started(thread: ThreadId) -> (Event, TurnId, WorkUnitRecord) {
    let turn = TurnId::new();
    let root = WorkUnitRecord::new(
        thread,
        turn,
        None,
        WorkUnitKind::Workflow,
        WorkUnitState::Running,
        Timestamp::now(),
    );
    (
        Event::TurnStarted {
            turn_id: turn,
            input: None,
            root: Box::new(root.clone()),
            at: Timestamp::now(),
        },
        turn,
        root,
    )
}

/// Runs every check against stores made by `make` (a fresh, empty store each call).
pub async fn event_store_conformance<S, F, Fut>(make: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    versions_and_conflicts(&make().await).await;
    refused_appends_store_nothing(&make().await).await;
    reading_pages_in_order(&make().await).await;
    snapshot_matches_projection(&make().await).await;
    subscriptions_see_every_event(&make().await).await;
    concurrent_writers_one_wins(&make().await).await;
    checked_appends_are_versioned_and_fold_in(&make().await).await;
}

/// Checked appends (what recorders and journals send) need only the version to match, and the
/// store's model holds them afterwards: reads, snapshots and plain appends checked against
/// the model all see them.
async fn checked_appends_are_versioned_and_fold_in<S: EventStore>(store: &S) {
    let id = ThreadId::new();
    let (turn, turn_id, root) = turn_started(id);
    store
        .append_checked(id, CheckedEvents::new(0, vec![created(id), turn.clone()]))
        .await
        .expect("a checked append to a new stream");
    match store
        .append_checked(id, CheckedEvents::new(1, vec![turn]))
        .await
    {
        Err(e @ StoreError::Conflict { actual: 2, .. }) => assert!(e.is_retryable()),
        other => panic!("a checked append at the wrong version must conflict, got {other:?}"),
    }
    let running = |unit, state| Event::WorkUnitStateChanged {
        work_unit_id: unit,
        state,
        error: None,
        at: Timestamp::now(),
    };
    let child = WorkUnitRecord::new(
        id,
        turn_id,
        Some(root.id),
        WorkUnitKind::DelegatedAgent,
        WorkUnitState::Pending,
        Timestamp::now(),
    );
    let added = store
        .append_checked(
            id,
            CheckedEvents::new(
                2,
                vec![
                    Event::WorkUnitUpserted {
                        work_unit: Box::new(child.clone()),
                    },
                    running(child.id, WorkUnitState::Running),
                ],
            ),
        )
        .await
        .expect("checked events at the stream's version");
    assert_eq!(added.version, 4);
    // A plain append is checked against a model that holds the checked events.
    store
        .append(
            id,
            ExpectedVersion::Exact(4),
            vec![running(child.id, WorkUnitState::Completed)],
        )
        .await
        .expect("the unit the checked events made exists");
    match store
        .append(
            id,
            ExpectedVersion::Exact(5),
            vec![running(child.id, WorkUnitState::Running)],
        )
        .await
    {
        Err(StoreError::Rejected { index: 0, .. }) => {}
        other => panic!("a finished unit cannot run again, got {other:?}"),
    }
    let events = store.read_stream(id, 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        store.read_stream(id, 3, 1).await.unwrap()[0].version,
        4,
        "reads start mid-append"
    );
    let snapshot = store.snapshot(id).await.unwrap().expect("the thread");
    assert_eq!(
        Some(snapshot.clone()),
        project(id, events.iter().map(|e| &e.event))
    );
    assert_eq!(
        snapshot.work_unit(child.id).map(|u| u.state),
        Some(WorkUnitState::Completed)
    );
}

async fn versions_and_conflicts<S: EventStore>(store: &S) {
    let id = ThreadId::new();
    let a = store
        .append(id, ExpectedVersion::NoStream, vec![created(id)])
        .await
        .expect("first append");
    assert_eq!(a.version, 1);
    assert_eq!(a.first_position, a.last_position);
    match store
        .append(id, ExpectedVersion::NoStream, vec![created(id)])
        .await
    {
        Err(StoreError::Conflict { actual: 1, .. }) => {}
        other => panic!("NoStream on an existing stream must conflict, got {other:?}"),
    }
    let (turn, _, _) = turn_started(id);
    match store
        .append(id, ExpectedVersion::Exact(5), vec![turn.clone()])
        .await
    {
        Err(e @ StoreError::Conflict { .. }) => assert!(e.is_retryable()),
        other => panic!("a wrong expected version must conflict, got {other:?}"),
    }
    let b = store
        .append(id, ExpectedVersion::Exact(1), vec![turn])
        .await
        .expect("exact version");
    assert_eq!(b.version, 2);
    assert!(b.first_position > a.last_position, "positions increase");
    assert!(
        matches!(
            store.append(id, ExpectedVersion::Any, vec![]).await,
            Err(StoreError::Empty(_))
        ),
        "empty appends are refused"
    );
    let log = ActivityKind::Log {
        level: LogLevel::Info,
        message: "hi".into(),
    };
    let event = Event::ActivityAppended {
        activity: Box::new(crate::activity::Activity {
            id: crate::id::ActivityId::new(),
            turn_id: None,
            work_unit_id: None,
            at: Timestamp::now(),
            kind: log,
        }),
    };
    assert_eq!(
        store
            .append(id, ExpectedVersion::Any, vec![event])
            .await
            .expect("any version")
            .version,
        3
    );
}

async fn refused_appends_store_nothing<S: EventStore>(store: &S) {
    let id = ThreadId::new();
    // Not starting with thread_created.
    let (turn, _, root) = turn_started(id);
    match store
        .append(id, ExpectedVersion::NoStream, vec![turn.clone()])
        .await
    {
        Err(StoreError::Rejected {
            index: 0,
            violation: Violation::ThreadMissing(_),
            ..
        }) => {}
        other => panic!("a stream must start with thread_created, got {other:?}"),
    }
    assert!(store.read_stream(id, 0, 10).await.unwrap().is_empty());
    assert!(
        store.snapshot(id).await.unwrap().is_none(),
        "a refused first append leaves no stream"
    );
    // A batch whose second event is refused stores nothing of the batch.
    let mut finished = root.clone();
    finished.state = WorkUnitState::Completed;
    let mut again = root.clone();
    again.state = WorkUnitState::Running;
    let batch = vec![
        created(id),
        turn,
        Event::WorkUnitUpserted {
            work_unit: Box::new(finished),
        },
        Event::WorkUnitUpserted {
            work_unit: Box::new(again),
        },
    ];
    match store.append(id, ExpectedVersion::NoStream, batch).await {
        Err(StoreError::Rejected {
            index: 3,
            violation:
                Violation::IllegalTransition {
                    from: WorkUnitState::Completed,
                    to: WorkUnitState::Running,
                    ..
                },
            ..
        }) => {}
        other => panic!("a finished unit must never run again, got {other:?}"),
    }
    assert!(
        store.read_stream(id, 0, 10).await.unwrap().is_empty(),
        "nothing of a refused batch is stored"
    );
    // The same stream then takes valid events, from version 0.
    let ok = store
        .append(
            id,
            ExpectedVersion::NoStream,
            vec![created(id), turn_started(id).0],
        )
        .await
        .expect("valid batch");
    assert_eq!(ok.version, 2);
}

async fn reading_pages_in_order<S: EventStore>(store: &S) {
    let a = ThreadId::new();
    let b = ThreadId::new();
    let start = *store.head().borrow();
    store
        .append(a, ExpectedVersion::NoStream, vec![created(a)])
        .await
        .unwrap();
    store
        .append(b, ExpectedVersion::NoStream, vec![created(b)])
        .await
        .unwrap();
    let mut rec = Recorder::open(store, a).await.unwrap();
    let (_, root) = rec
        .start_turn(WorkUnitKind::PrimaryAgent, None)
        .await
        .unwrap();
    for i in 0..10 {
        rec.execute(Command::RecordUsage {
            work_unit_id: root,
            model: None,
            usage: TokenUsage {
                output: i,
                ..TokenUsage::default()
            },
        })
        .await
        .unwrap();
    }
    let stream = store.read_stream(a, 0, 100).await.unwrap();
    assert_eq!(stream.len(), 12);
    assert!(
        stream
            .iter()
            .enumerate()
            .all(|(i, e)| e.version == i as u64 + 1 && e.thread_id == a),
        "versions 1..n"
    );
    assert!(stream.windows(2).all(|w| w[0].position < w[1].position));
    let page = store.read_stream(a, 5, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    let all = store.read_all(start, 1000).await.unwrap();
    assert_eq!(all.len(), 13);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all[1].thread_id, b);
    let after = store.read_all(all[4].position, 2).await.unwrap();
    assert_eq!(
        after.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![all[5].position, all[6].position]
    );
    assert_eq!(*store.head().borrow(), all.last().unwrap().position);
}

async fn snapshot_matches_projection<S: EventStore>(store: &S) {
    let mut rec = Recorder::create(store, Some("tree".into())).await.unwrap();
    let id = rec.thread().id;
    let (t1, r1) = rec
        .start_turn(WorkUnitKind::PrimaryAgent, Some("first".into()))
        .await
        .unwrap();
    let a = rec
        .start_work_unit(r1, WorkUnitKind::DelegatedAgent, |d| {
            d.label = Some("a".into())
        })
        .await
        .unwrap();
    let b = rec
        .start_work_unit(a, WorkUnitKind::DelegatedAgent, |d| {
            d.label = Some("b".into())
        })
        .await
        .unwrap();
    rec.execute(Command::RecordUsage {
        work_unit_id: b,
        model: Some("claude-haiku-4-5".into()),
        usage: TokenUsage {
            input: 10,
            output: 5,
            ..TokenUsage::default()
        },
    })
    .await
    .unwrap();
    rec.execute(Command::AppendActivity {
        turn_id: None,
        work_unit_id: Some(b),
        kind: ActivityKind::Log {
            level: LogLevel::Info,
            message: "in b".into(),
        },
    })
    .await
    .unwrap();
    rec.finish_work_unit(b, WorkUnitState::Completed, None)
        .await
        .unwrap();
    rec.finish_work_unit(a, WorkUnitState::Completed, None)
        .await
        .unwrap();
    rec.finish_work_unit(r1, WorkUnitState::Completed, None)
        .await
        .unwrap();
    rec.complete_turn(t1, TurnState::Completed).await.unwrap();
    let (_, r2) = rec
        .start_turn(WorkUnitKind::PrimaryAgent, Some("second".into()))
        .await
        .unwrap();
    let c = rec
        .start_work_unit(r2, WorkUnitKind::DelegatedAgent, |_| {})
        .await
        .unwrap();
    rec.execute(Command::AppendActivity {
        turn_id: None,
        work_unit_id: Some(c),
        kind: ActivityKind::Phase { title: "p".into() },
    })
    .await
    .unwrap();
    let events = store.read_stream(id, 0, 1000).await.unwrap();
    let projected = project(id, events.iter().map(|e| &e.event)).expect("projected");
    let stored = store.snapshot(id).await.unwrap().expect("stored");
    assert_eq!(
        stored, projected,
        "the store's read model is the projector's"
    );
    assert_eq!(
        &stored,
        rec.thread(),
        "the recorder's read model is the store's"
    );
    assert_eq!(stored.subtree_usage(r1).output, 5);
    // Revert to the first turn: the second turn's units and activities are gone.
    rec.execute(Command::RevertThread { to_turn: Some(t1) })
        .await
        .unwrap();
    let stored = store.snapshot(id).await.unwrap().unwrap();
    assert_eq!(stored.turns.len(), 1);
    assert!(stored.work_unit(r2).is_none() && stored.work_unit(c).is_none());
    assert_eq!(stored.activities.len(), 1);
    let events = store.read_stream(id, 0, 1000).await.unwrap();
    assert_eq!(Some(stored), project(id, events.iter().map(|e| &e.event)));
}

async fn subscriptions_see_every_event<S: EventStore>(store: &S) {
    let start = *store.head().borrow();
    let mut sub = store.subscribe(start);
    let id = ThreadId::new();
    let writer = async {
        store
            .append(id, ExpectedVersion::NoStream, vec![created(id)])
            .await
            .unwrap();
        let (turn, _, _) = turn_started(id);
        store
            .append(id, ExpectedVersion::Exact(1), vec![turn])
            .await
            .unwrap();
    };
    let reader = async {
        let first = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("first event in time")
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("second event in time")
            .unwrap();
        (first, second)
    };
    let ((), (first, second)) = tokio::join!(writer, reader);
    assert_eq!((first.version, second.version), (1, 2));
    assert_eq!(first.thread_id, id);
    assert_eq!(sub.position(), second.position);
}

async fn concurrent_writers_one_wins<S: EventStore>(store: &S) {
    let id = ThreadId::new();
    store
        .append(id, ExpectedVersion::NoStream, vec![created(id)])
        .await
        .unwrap();
    let attempts = (0..16).map(|i| {
        let log = ActivityKind::Log {
            level: LogLevel::Debug,
            message: format!("writer {i}"),
        };
        let activity = crate::activity::Activity {
            id: crate::id::ActivityId::new(),
            turn_id: None,
            work_unit_id: None,
            at: Timestamp::now(),
            kind: log,
        };
        store.append(
            id,
            ExpectedVersion::Exact(1),
            vec![Event::ActivityAppended {
                activity: Box::new(activity),
            }],
        )
    });
    let results = join_all(attempts).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one writer wins version 2"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::Conflict { actual: 2, .. }))
    );
}

/// Polls every future until all are ready, so they really run at the same time whether a
/// store queues its appends when `append` is called or only when the future is first polled.
async fn join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    poll_fn(|cx| {
        for (future, slot) in pending.iter_mut().zip(done.iter_mut()) {
            if slot.is_none()
                && let Poll::Ready(output) = future.as_mut().poll(cx)
            {
                *slot = Some(output);
            }
        }
        if done.iter().all(Option::is_some) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}
