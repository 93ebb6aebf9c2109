use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::activity::{ActivityKind, LogLevel};

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn unit(
    thread: ThreadId,
    turn: TurnId,
    parent: Option<WorkUnitId>,
    kind: WorkUnitKind,
    state: WorkUnitState,
) -> WorkUnitRecord {
    WorkUnitRecord::new(thread, turn, parent, kind, state, at(1))
}

fn new_thread() -> (ThreadId, Option<Thread>) {
    let id = ThreadId::new();
    let mut thread = None;
    apply(
        &mut thread,
        id,
        &Event::ThreadCreated {
            thread_id: id,
            title: None,
            at: at(0),
        },
    )
    .unwrap();
    (id, thread)
}

fn start_turn(thread: &mut Option<Thread>, id: ThreadId) -> (TurnId, WorkUnitId) {
    let turn = TurnId::new();
    let root = unit(
        id,
        turn,
        None,
        WorkUnitKind::PrimaryAgent,
        WorkUnitState::Running,
    );
    let root_id = root.id;
    apply(
        thread,
        id,
        &Event::TurnStarted {
            turn_id: turn,
            input: None,
            root: Box::new(root),
            at: at(1),
        },
    )
    .unwrap();
    (turn, root_id)
}

fn child(
    thread: &mut Option<Thread>,
    id: ThreadId,
    turn: TurnId,
    parent: WorkUnitId,
) -> WorkUnitId {
    let u = unit(
        id,
        turn,
        Some(parent),
        WorkUnitKind::DelegatedAgent,
        WorkUnitState::Running,
    );
    let uid = u.id;
    apply(
        thread,
        id,
        &Event::WorkUnitUpserted {
            work_unit: Box::new(u),
        },
    )
    .unwrap();
    uid
}

#[test]
fn a_state_change_carries_only_the_change_and_keeps_the_unit_finished() {
    let (id, mut thread) = new_thread();
    let (turn, root) = start_turn(&mut thread, id);
    let mut pending = unit(
        id,
        turn,
        Some(root),
        WorkUnitKind::DelegatedAgent,
        WorkUnitState::Pending,
    );
    pending.label = Some("digger".into());
    let call = pending.id;
    apply(
        &mut thread,
        id,
        &Event::WorkUnitUpserted {
            work_unit: Box::new(pending),
        },
    )
    .unwrap();
    let change = |state, error: Option<&str>, s| Event::WorkUnitStateChanged {
        work_unit_id: call,
        state,
        error: error.map(str::to_owned),
        at: at(s),
    };
    apply(&mut thread, id, &change(WorkUnitState::Running, None, 5)).unwrap();
    apply(
        &mut thread,
        id,
        &change(WorkUnitState::Failed, Some("boom"), 9),
    )
    .unwrap();
    let t = thread.as_ref().unwrap();
    let u = t.work_unit(call).unwrap();
    assert_eq!(u.state, WorkUnitState::Failed);
    assert_eq!((u.started_at, u.ended_at), (Some(at(5)), Some(at(9))));
    assert_eq!((u.updated_at, u.error.as_deref()), (at(9), Some("boom")));
    assert_eq!(
        u.label.as_deref(),
        Some("digger"),
        "the rest of the unit is kept"
    );
    let before = t.clone();
    assert_eq!(
        apply(&mut thread, id, &change(WorkUnitState::Running, None, 10)),
        Err(Violation::IllegalTransition {
            unit: call,
            from: WorkUnitState::Failed,
            to: WorkUnitState::Running
        })
    );
    let ghost = WorkUnitId::new();
    let lost = Event::WorkUnitStateChanged {
        work_unit_id: ghost,
        state: WorkUnitState::Running,
        error: None,
        at: at(11),
    };
    assert_eq!(
        apply(&mut thread, id, &lost),
        Err(Violation::WorkUnitMissing(ghost))
    );
    assert_eq!(
        thread.as_ref(),
        Some(&before),
        "a refused change changes nothing"
    );
    // On the wire: the type, the unit, the state, the time; no error when there is none.
    let json = serde_json::to_value(change(WorkUnitState::Running, None, 5)).unwrap();
    assert_eq!(json["type"], "work_unit_state_changed");
    assert_eq!(json["state"], "running");
    assert!(json.get("error").is_none());
    assert_eq!(
        serde_json::from_value::<Event>(json).unwrap(),
        change(WorkUnitState::Running, None, 5)
    );
}

#[test]
fn revert_drops_descendants_transitively_even_across_turns() {
    let (id, mut thread) = new_thread();
    let (t1, r1) = start_turn(&mut thread, id);
    apply(
        &mut thread,
        id,
        &Event::TurnCompleted {
            turn_id: t1,
            state: TurnState::Completed,
            at: at(2),
        },
    )
    .unwrap();
    let (t2, r2) = start_turn(&mut thread, id);
    // A → B → C where B names the later turn but hangs under the first turn's root, and C names
    // the first turn: dropping turn 2 drops B, and C with it.
    let a = child(&mut thread, id, t1, r1);
    let b = child(&mut thread, id, t2, a);
    let c = child(&mut thread, id, t1, b);
    let log = |u| Event::ActivityAppended {
        activity: Box::new(Activity {
            id: ActivityId::new(),
            turn_id: None,
            work_unit_id: Some(u),
            at: at(3),
            kind: ActivityKind::Log {
                level: LogLevel::Info,
                message: "x".into(),
            },
        }),
    };
    for u in [a, b, c, r2] {
        apply(&mut thread, id, &log(u)).unwrap();
    }
    let changes = apply(
        &mut thread,
        id,
        &Event::ThreadReverted {
            to_turn: Some(t1),
            at: at(4),
        },
    )
    .unwrap();
    let t = thread.unwrap();
    assert_eq!(t.turns.iter().map(|t| t.id).collect::<Vec<_>>(), vec![t1]);
    let mut left: Vec<_> = t.work_units.keys().copied().collect();
    left.sort();
    let mut expected = vec![r1, a];
    expected.sort();
    assert_eq!(left, expected);
    assert!(t.work_unit(a).unwrap().children.is_empty(), "A forgets B");
    assert_eq!(
        t.activities
            .iter()
            .map(|x| x.work_unit_id)
            .collect::<Vec<_>>(),
        vec![Some(a)]
    );
    let mut removed = changes.removed_work_units.clone();
    removed.sort();
    let mut expected_removed = vec![b, c, r2];
    expected_removed.sort();
    assert_eq!(removed, expected_removed);
    assert_eq!(
        changes.work_units,
        vec![a],
        "A's row changes (its children)"
    );
}

#[test]
fn refused_events_change_nothing() {
    let (id, mut thread) = new_thread();
    let (turn, root) = start_turn(&mut thread, id);
    let before = thread.clone();
    let mut done = unit(
        id,
        turn,
        Some(root),
        WorkUnitKind::DelegatedAgent,
        WorkUnitState::Completed,
    );
    apply(
        &mut thread,
        id,
        &Event::WorkUnitUpserted {
            work_unit: Box::new(done.clone()),
        },
    )
    .unwrap();
    let after_done = thread.clone();
    done.state = WorkUnitState::Running;
    let err = apply(
        &mut thread,
        id,
        &Event::WorkUnitUpserted {
            work_unit: Box::new(done.clone()),
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        Violation::IllegalTransition {
            unit: done.id,
            from: WorkUnitState::Completed,
            to: WorkUnitState::Running
        }
    );
    assert_eq!(thread, after_done);
    // Immutable fields, orphans, second roots, wrong thread, unknown turn.
    let mut moved = done.clone();
    moved.state = WorkUnitState::Completed;
    moved.parent_id = None;
    assert_eq!(
        apply(
            &mut thread,
            id,
            &Event::WorkUnitUpserted {
                work_unit: Box::new(moved)
            }
        )
        .unwrap_err(),
        Violation::Immutable {
            unit: done.id,
            field: "parent_id"
        }
    );
    let ghost = WorkUnitId::new();
    let orphan = unit(
        id,
        turn,
        Some(ghost),
        WorkUnitKind::DelegatedAgent,
        WorkUnitState::Running,
    );
    assert!(
        matches!(apply(&mut thread, id, &Event::WorkUnitUpserted { work_unit: Box::new(orphan) }), Err(Violation::ParentMissing { parent, .. }) if parent == ghost)
    );
    let second_root = unit(
        id,
        turn,
        None,
        WorkUnitKind::PrimaryAgent,
        WorkUnitState::Running,
    );
    assert!(matches!(
        apply(
            &mut thread,
            id,
            &Event::WorkUnitUpserted {
                work_unit: Box::new(second_root)
            }
        ),
        Err(Violation::SecondRoot(_))
    ));
    let other = unit(
        ThreadId::new(),
        turn,
        Some(root),
        WorkUnitKind::DelegatedAgent,
        WorkUnitState::Running,
    );
    assert!(matches!(
        apply(
            &mut thread,
            id,
            &Event::WorkUnitUpserted {
                work_unit: Box::new(other)
            }
        ),
        Err(Violation::WrongThread { .. })
    ));
    let (t2, _) = (TurnId::new(), ());
    let r2 = unit(
        id,
        t2,
        None,
        WorkUnitKind::PrimaryAgent,
        WorkUnitState::Running,
    );
    assert_eq!(
        apply(
            &mut thread,
            id,
            &Event::TurnStarted {
                turn_id: t2,
                input: None,
                root: Box::new(r2),
                at: at(5)
            }
        )
        .unwrap_err(),
        Violation::TurnStillRunning(turn)
    );
    assert_eq!(thread, after_done);
    assert_ne!(before, after_done);
    assert_eq!(
        thread.as_ref().unwrap().version,
        3,
        "created, turn started, unit completed"
    );
}

#[test]
fn usage_rolls_up_the_tree() {
    let (id, mut thread) = new_thread();
    let (turn, root) = start_turn(&mut thread, id);
    let a = child(&mut thread, id, turn, root);
    let b = child(&mut thread, id, turn, a);
    for (u, out, cost) in [
        (root, 1, Some(crate::money::Usd::from_nanos(10))),
        (a, 10, None),
        (b, 100, Some(crate::money::Usd::from_nanos(5))),
    ] {
        let e = Event::UsageRecorded {
            work_unit_id: u,
            model: None,
            usage: TokenUsage {
                output: out,
                ..TokenUsage::default()
            },
            cost,
            at: at(2),
        };
        apply(&mut thread, id, &e).unwrap();
    }
    let t = thread.unwrap();
    assert_eq!(t.subtree_usage(root).output, 111);
    assert_eq!(t.subtree_usage(a).output, 110);
    let cost = t.subtree_cost(root);
    assert_eq!((cost.usd.nanos(), cost.unpriced), (15, 1));
    assert_eq!(
        t.subtree(root)
            .iter()
            .map(|(d, u)| (*d, u.id))
            .collect::<Vec<_>>(),
        vec![(0, root), (1, a), (2, b)]
    );
}

/// Older records decode with defaults for what was added later: an activity without
/// `work_unit_id`, a thread without work units, usage without cache fields.
#[test]
fn old_json_decodes_with_defaults() {
    let thread: Thread = serde_json::from_str(
        r#"{"id":"0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0b","created_at":"2026-01-02T03:04:05Z","updated_at":"2026-01-02T03:04:05Z",
            "turns":[],"activities":[{"id":"0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0c","at":"2026-01-02T03:04:06Z",
            "kind":{"type":"message","role":"user","text":"hello"}}]}"#,
    )
    .unwrap();
    assert!(thread.work_units.is_empty());
    assert_eq!(thread.version, 0);
    assert_eq!(thread.activities[0].work_unit_id, None);
    assert_eq!(thread.activities[0].turn_id, None);
    let event: Event = serde_json::from_str(
        r#"{"type":"usage_recorded","work_unit_id":"0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0d","usage":{"input":3,"output":4},"at":"2026-01-02T03:04:07Z"}"#,
    )
    .unwrap();
    let Event::UsageRecorded {
        usage, cost, model, ..
    } = event
    else {
        panic!("wrong variant")
    };
    assert_eq!((usage.cache_read, cost, model), (0, None, None));
    let activity: Event = serde_json::from_str(
        r#"{"type":"activity_appended","activity":{"id":"0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0e","at":"2026-01-02T03:04:08Z","kind":{"type":"log","level":"info","message":"x"}}}"#,
    )
    .unwrap();
    assert!(
        matches!(activity, Event::ActivityAppended { activity } if activity.work_unit_id.is_none())
    );
}

/// Persisted event JSON is a public format: pin it.
#[test]
fn event_json_shape_is_stable() {
    let thread = ThreadId::parse("0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0b").unwrap();
    let turn = TurnId::parse("0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a01").unwrap();
    let mut root = unit(
        thread,
        turn,
        None,
        WorkUnitKind::Workflow,
        WorkUnitState::Running,
    );
    root.id = WorkUnitId::parse("0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a02").unwrap();
    root.label = Some("review".into());
    let json = serde_json::to_value(Event::TurnStarted {
        turn_id: turn,
        input: Some("go".into()),
        root: Box::new(root),
        at: at(0),
    })
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "type": "turn_started",
            "turn_id": "0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a01",
            "input": "go",
            "root": {
                "id": "0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a02",
                "thread_id": "0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a0b",
                "turn_id": "0190b0e4-6f1c-7d2a-9b3e-5c4d3e2f1a01",
                "kind": "workflow",
                "state": "running",
                "label": "review",
                "started_at": "2027-01-15T08:00:01Z",
                "updated_at": "2027-01-15T08:00:01Z"
            },
            "at": "2027-01-15T08:00:00Z"
        })
    );
}

/// An abstract step; indices pick among the ids made so far (or an unknown one).
#[derive(Debug, Clone)]
enum Step {
    StartTurn {
        workflow: bool,
    },
    CompleteTurn {
        turn: usize,
        state: u8,
    },
    NewUnit {
        parent: usize,
        turn: usize,
    },
    SetState {
        unit: usize,
        state: u8,
    },
    ChangeState {
        unit: usize,
        state: u8,
    },
    Usage {
        unit: usize,
        output: u16,
    },
    Activity {
        unit: Option<usize>,
        turn: Option<usize>,
    },
    Revert {
        turn: Option<usize>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => any::<bool>().prop_map(|workflow| Step::StartTurn { workflow }),
        2 => (any::<usize>(), 0..5u8).prop_map(|(turn, state)| Step::CompleteTurn { turn, state }),
        6 => (any::<usize>(), any::<usize>()).prop_map(|(parent, turn)| Step::NewUnit { parent, turn }),
        3 => (any::<usize>(), 0..7u8).prop_map(|(unit, state)| Step::SetState { unit, state }),
        3 => (any::<usize>(), 0..7u8).prop_map(|(unit, state)| Step::ChangeState { unit, state }),
        2 => (any::<usize>(), any::<u16>()).prop_map(|(unit, output)| Step::Usage { unit, output }),
        2 => (proptest::option::of(any::<usize>()), proptest::option::of(any::<usize>())).prop_map(|(unit, turn)| Step::Activity { unit, turn }),
        1 => proptest::option::of(any::<usize>()).prop_map(|turn| Step::Revert { turn }),
    ]
}

const STATES: [WorkUnitState; 7] = [
    WorkUnitState::Pending,
    WorkUnitState::Running,
    WorkUnitState::Paused,
    WorkUnitState::Completed,
    WorkUnitState::Failed,
    WorkUnitState::Cancelled,
    WorkUnitState::Interrupted,
];
const TURN_STATES: [TurnState; 5] = [
    TurnState::Running,
    TurnState::Completed,
    TurnState::Failed,
    TurnState::Cancelled,
    TurnState::Interrupted,
];

/// Turns steps into concrete events with deterministic ids, picking from the ids made so far
/// and sometimes from ids that do not exist.
fn events_for(steps: &[Step]) -> (ThreadId, Vec<Event>) {
    let mut seed = 1u128;
    let mut fresh = || {
        seed += 1;
        Uuid::from_u128(seed)
    };
    let thread = ThreadId::from_uuid(fresh()).unwrap();
    let mut turns: Vec<TurnId> = vec![TurnId::from_uuid(Uuid::from_u128(u128::MAX)).unwrap()];
    let mut units: Vec<WorkUnitRecord> = Vec::new();
    let ghost = WorkUnitId::from_uuid(Uuid::from_u128(u128::MAX - 1)).unwrap();
    let mut events = vec![Event::ThreadCreated {
        thread_id: thread,
        title: None,
        at: at(0),
    }];
    for (i, s) in steps.iter().enumerate() {
        let now = at(i as i64 + 1);
        let pick_turn = |k: usize| turns[k % turns.len()];
        let event = match s {
            Step::StartTurn { workflow } => {
                let turn = TurnId::from_uuid(fresh()).unwrap();
                turns.push(turn);
                let kind = if *workflow {
                    WorkUnitKind::Workflow
                } else {
                    WorkUnitKind::PrimaryAgent
                };
                let mut root =
                    WorkUnitRecord::new(thread, turn, None, kind, WorkUnitState::Running, now);
                root.id = WorkUnitId::from_uuid(fresh()).unwrap();
                units.push(root.clone());
                Event::TurnStarted {
                    turn_id: turn,
                    input: None,
                    root: Box::new(root),
                    at: now,
                }
            }
            Step::CompleteTurn { turn, state } => Event::TurnCompleted {
                turn_id: pick_turn(*turn),
                state: TURN_STATES[*state as usize],
                at: now,
            },
            Step::NewUnit { parent, turn } => {
                let parent = if units.is_empty() || parent % 7 == 0 {
                    ghost
                } else {
                    units[parent % units.len()].id
                };
                let mut u = WorkUnitRecord::new(
                    thread,
                    pick_turn(*turn),
                    Some(parent),
                    WorkUnitKind::DelegatedAgent,
                    WorkUnitState::Pending,
                    now,
                );
                u.id = WorkUnitId::from_uuid(fresh()).unwrap();
                units.push(u.clone());
                Event::WorkUnitUpserted {
                    work_unit: Box::new(u),
                }
            }
            Step::SetState { unit, state } => {
                if units.is_empty() {
                    continue;
                }
                let k = unit % units.len();
                units[k].state = STATES[*state as usize];
                units[k].updated_at = now;
                Event::WorkUnitUpserted {
                    work_unit: Box::new(units[k].clone()),
                }
            }
            Step::ChangeState { unit, state } => {
                // Sometimes a unit that does not exist.
                let id = if units.is_empty() || unit % 11 == 0 {
                    ghost
                } else {
                    units[unit % units.len()].id
                };
                Event::WorkUnitStateChanged {
                    work_unit_id: id,
                    state: STATES[*state as usize],
                    error: (unit % 3 == 0).then(|| "boom".to_owned()),
                    at: now,
                }
            }
            Step::Usage { unit, output } => {
                let id = if units.is_empty() {
                    ghost
                } else {
                    units[unit % units.len()].id
                };
                Event::UsageRecorded {
                    work_unit_id: id,
                    model: None,
                    usage: TokenUsage {
                        output: u64::from(*output),
                        ..TokenUsage::default()
                    },
                    cost: None,
                    at: now,
                }
            }
            Step::Activity { unit, turn } => {
                let work_unit_id =
                    unit.and_then(|k| (!units.is_empty()).then(|| units[k % units.len()].id));
                let activity = Activity {
                    id: ActivityId::from_uuid(fresh()).unwrap(),
                    turn_id: turn.map(pick_turn),
                    work_unit_id,
                    at: now,
                    kind: ActivityKind::Phase { title: "p".into() },
                };
                Event::ActivityAppended {
                    activity: Box::new(activity),
                }
            }
            Step::Revert { turn } => Event::ThreadReverted {
                to_turn: turn.map(pick_turn),
                at: now,
            },
        };
        events.push(event);
    }
    (thread, events)
}

fn check_invariants(t: &Thread) -> Result<(), TestCaseError> {
    let roots: HashSet<WorkUnitId> = t.turns.iter().map(|turn| turn.root_id).collect();
    for unit in t.work_units.values() {
        match unit.parent_id {
            None => prop_assert!(
                roots.contains(&unit.id),
                "a parentless unit that is not a turn root"
            ),
            Some(p) => {
                let parent = t.work_units.get(&p);
                prop_assert!(
                    parent.is_some(),
                    "unit {} has a missing parent {}",
                    unit.id,
                    p
                );
                prop_assert!(
                    parent.is_some_and(|p| p.children.contains(&unit.id)),
                    "parent does not list its child"
                );
            }
        }
        for c in &unit.children {
            prop_assert!(
                t.work_units
                    .get(c)
                    .is_some_and(|c| c.parent_id == Some(unit.id)),
                "a listed child is missing or elsewhere"
            );
        }
    }
    for root in &roots {
        prop_assert!(t.work_units.contains_key(root), "a turn without its root");
    }
    for a in &t.activities {
        if let Some(u) = a.work_unit_id {
            prop_assert!(
                t.work_units.contains_key(&u),
                "an activity of a missing unit"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No projection ever holds a unit whose parent is missing; roots, children lists and
    /// activities stay consistent; a finished unit never shows running again.
    #[test]
    fn projections_stay_consistent(steps in proptest::collection::vec(step(), 0..80)) {
        let (id, events) = events_for(&steps);
        let mut thread = None;
        let mut finished: HashSet<WorkUnitId> = HashSet::new();
        for event in &events {
            let _ = apply(&mut thread, id, event);
            let t = thread.as_ref().unwrap();
            check_invariants(t)?;
            for unit in t.work_units.values() {
                if finished.contains(&unit.id) {
                    prop_assert!(unit.state.is_terminal(), "unit {} was finished and shows {}", unit.id, unit.state);
                }
                if unit.state.is_terminal() {
                    finished.insert(unit.id);
                }
            }
        }
    }

    /// Folding is deterministic, and folding step by step equals folding at once.
    #[test]
    fn folding_is_deterministic(steps in proptest::collection::vec(step(), 0..60)) {
        let (id, events) = events_for(&steps);
        let once = project(id, &events);
        prop_assert_eq!(&once, &project(id, &events));
        let mut incremental = None;
        for e in &events {
            let _ = apply(&mut incremental, id, e);
        }
        prop_assert_eq!(&once, &incremental);
        // The read model survives a JSON round trip unchanged.
        let json = serde_json::to_string(&once).unwrap();
        let back: Option<Thread> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(once, back);
    }
}
