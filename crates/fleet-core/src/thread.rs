//! The thread read model and the pure projector that folds events into it.
//!
//! [`apply`] is the one place that knows what an event does. It checks an event fully before
//! changing anything, so a refused event leaves the thread as it was; stores use it to refuse
//! events that would break the model (a finished unit running again, a unit whose parent is
//! missing), and [`project`] uses it to rebuild a thread from its stream.
//!
//! Why this file (about 700 lines) reads best whole: the read model and `apply` are one
//! concept. Each field of [`Thread`] is changed only by the arms of `apply`, so the two read
//! best side by side; splitting them would put every field a file away from the only code that
//! changes it. The tests live apart, in `thread/tests.rs`.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::activity::Activity;
use crate::event::{BudgetAlert, Event, TurnState};
use crate::id::{ActivityId, ThreadId, TurnId, WorkUnitId};
use crate::money::Cost;
use crate::usage::TokenUsage;
use crate::work_unit::{WorkUnit, WorkUnitKind, WorkUnitRecord, WorkUnitState};

/// One turn of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// The turn.
    pub id: TurnId,
    /// Its root work unit.
    pub root_id: WorkUnitId,
    /// Where it is.
    pub state: TurnState,
    /// The request that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
}

/// A thread with its turns, its work units (a tree per turn) and its activities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The thread.
    pub id: ThreadId,
    /// A title for lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its last event happened.
    pub updated_at: Timestamp,
    /// How many events its stream holds.
    #[serde(default)]
    pub version: u64,
    /// Its turns, oldest first.
    #[serde(default)]
    pub turns: Vec<Turn>,
    /// Its work units by id (UUIDv7 ids sort by creation).
    #[serde(default)]
    pub work_units: BTreeMap<WorkUnitId, WorkUnit>,
    /// Its activities in the order they happened.
    #[serde(default)]
    pub activities: Vec<Activity>,
    /// Budgets that ran out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budget_alerts: Vec<BudgetAlert>,
    /// The ids of `activities`, to refuse a repeat in constant time. Derived, never stored:
    /// rebuilt whenever it is out of step with `activities`.
    #[serde(skip)]
    activity_ids: ActivityIndex,
}

/// A derived index that takes no part in equality or debugging output.
#[derive(Clone, Default)]
struct ActivityIndex(HashSet<ActivityId>);

impl PartialEq for ActivityIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for ActivityIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// Why an event cannot apply to a thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// Only `thread_created` can start a stream.
    #[error("thread {0} does not exist yet: its first event must be thread_created")]
    ThreadMissing(ThreadId),
    /// `thread_created` came twice.
    #[error("thread {0} already exists")]
    ThreadExists(ThreadId),
    /// An event names another thread than its stream.
    #[error("event for thread {found} appended to thread {stream}")]
    WrongThread {
        /// The stream.
        stream: ThreadId,
        /// The thread the event names.
        found: ThreadId,
    },
    /// A turn id was used twice.
    #[error("turn {0} already exists")]
    TurnExists(TurnId),
    /// A turn is not known.
    #[error("turn {0} does not exist")]
    TurnMissing(TurnId),
    /// A turn started while another was running.
    #[error("turn {0} is still running: complete it before starting another")]
    TurnStillRunning(TurnId),
    /// A finished turn was completed again.
    #[error("turn {0} has already ended")]
    TurnFinished(TurnId),
    /// A turn cannot be completed as `running`.
    #[error("a turn cannot be completed in state running")]
    TurnNotFinished,
    /// A root was not a root.
    #[error("the root of turn {turn} must have no parent and be a primary agent or workflow")]
    BadRoot {
        /// The turn.
        turn: TurnId,
    },
    /// A unit appeared without a parent outside `turn_started`.
    #[error(
        "work unit {0} has no parent: only a turn's root (recorded by turn_started) may have none"
    )]
    SecondRoot(WorkUnitId),
    /// A unit id was used twice.
    #[error("work unit {0} already exists")]
    WorkUnitExists(WorkUnitId),
    /// A unit is not known.
    #[error("work unit {0} does not exist")]
    WorkUnitMissing(WorkUnitId),
    /// A unit names a parent that is not known.
    #[error("work unit {unit} names parent {parent}, which does not exist")]
    ParentMissing {
        /// The unit.
        unit: WorkUnitId,
        /// Its missing parent.
        parent: WorkUnitId,
    },
    /// An upsert tried to change what a unit is.
    #[error("work unit {unit}: {field} cannot change once recorded")]
    Immutable {
        /// The unit.
        unit: WorkUnitId,
        /// The field.
        field: &'static str,
    },
    /// An upsert tried an impossible state change.
    #[error("work unit {unit} cannot go from {from} to {to}")]
    IllegalTransition {
        /// The unit.
        unit: WorkUnitId,
        /// Its state.
        from: WorkUnitState,
        /// The state asked for.
        to: WorkUnitState,
    },
    /// An activity id was used twice.
    #[error("activity {0} already exists")]
    ActivityExists(ActivityId),
}

/// What an applied event changed, so that stores can write just those rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Turns added or changed.
    pub turns: Vec<TurnId>,
    /// Work units added or changed.
    pub work_units: Vec<WorkUnitId>,
    /// Activities added.
    pub activities: Vec<ActivityId>,
    /// Turns removed by a revert.
    pub removed_turns: Vec<TurnId>,
    /// Work units removed by a revert.
    pub removed_work_units: Vec<WorkUnitId>,
    /// Activities removed by a revert.
    pub removed_activities: Vec<ActivityId>,
}

impl Changes {
    /// Forgets every change, keeping the memory.
    pub fn clear(&mut self) {
        self.turns.clear();
        self.work_units.clear();
        self.activities.clear();
        self.removed_turns.clear();
        self.removed_work_units.clear();
        self.removed_activities.clear();
    }

    /// Adds `other` to these (ids may repeat; stores write each once).
    pub fn merge(&mut self, other: Self) {
        self.turns.extend(other.turns);
        self.work_units.extend(other.work_units);
        self.activities.extend(other.activities);
        self.removed_turns.extend(other.removed_turns);
        self.removed_work_units.extend(other.removed_work_units);
        self.removed_activities.extend(other.removed_activities);
    }
}

/// Applies one event of `stream` to the thread (`None` before `thread_created`).
///
/// The event is checked completely before anything changes: on `Err` the thread is untouched.
///
/// # Errors
/// A [`Violation`] when the event cannot happen to the thread as it is.
pub fn apply(
    thread: &mut Option<Thread>,
    stream: ThreadId,
    event: &Event,
) -> Result<Changes, Violation> {
    let mut changes = Changes::default();
    apply_into(thread, stream, event, &mut changes)?;
    Ok(changes)
}

/// As [`apply`], adding what changed to `changes`: whoever folds many events (a store loading a
/// stream, a writer catching up) keeps one list instead of allocating and merging one per event.
///
/// # Errors
/// As [`apply`]; `changes` is then untouched too.
pub fn apply_into(
    thread: &mut Option<Thread>,
    stream: ThreadId,
    event: &Event,
    changes: &mut Changes,
) -> Result<(), Violation> {
    let Some(t) = thread else {
        return match event {
            Event::ThreadCreated {
                thread_id,
                title,
                at,
            } => {
                if *thread_id != stream {
                    return Err(Violation::WrongThread {
                        stream,
                        found: *thread_id,
                    });
                }
                *thread = Some(Thread {
                    id: stream,
                    title: title.clone(),
                    created_at: *at,
                    updated_at: *at,
                    version: 1,
                    turns: Vec::new(),
                    work_units: BTreeMap::new(),
                    activities: Vec::new(),
                    budget_alerts: Vec::new(),
                    activity_ids: ActivityIndex::default(),
                });
                Ok(())
            }
            _ => Err(Violation::ThreadMissing(stream)),
        };
    };
    t.apply_event_into(event, changes)
}

/// Folds a stream's events into its thread. Events that cannot apply (which a store never
/// accepts) are skipped, so a damaged stream still gives a consistent thread.
pub fn project<'a>(
    stream: ThreadId,
    events: impl IntoIterator<Item = &'a Event>,
) -> Option<Thread> {
    let mut thread = None;
    for event in events {
        // Skipping is the documented behaviour for events a store would have refused.
        let _ = apply(&mut thread, stream, event);
    }
    thread
}

impl Thread {
    /// A thread as stored elsewhere (for stores that keep the parts in their own tables).
    #[allow(clippy::too_many_arguments)]
    #[cfg(feature = "sqlite")]
    pub(crate) fn from_parts(
        id: ThreadId,
        title: Option<String>,
        created_at: Timestamp,
        updated_at: Timestamp,
        version: u64,
        turns: Vec<Turn>,
        work_units: BTreeMap<WorkUnitId, WorkUnit>,
        activities: Vec<Activity>,
        budget_alerts: Vec<BudgetAlert>,
    ) -> Self {
        Self {
            id,
            title,
            created_at,
            updated_at,
            version,
            turns,
            work_units,
            activities,
            budget_alerts,
            activity_ids: ActivityIndex::default(),
        }
    }

    /// Applies one event to this (existing) thread; see [`apply`].
    ///
    /// # Errors
    /// A [`Violation`] when the event cannot happen to the thread as it is; the thread is then
    /// untouched.
    pub fn apply_event(&mut self, event: &Event) -> Result<Changes, Violation> {
        let mut changes = Changes::default();
        self.apply_event_into(event, &mut changes)?;
        Ok(changes)
    }

    /// As [`Thread::apply_event`], adding what changed to `changes` (a caller that applies
    /// many events, or does not need the changes, reuses one instead of allocating per event).
    ///
    /// # Errors
    /// As [`Thread::apply_event`]; `changes` is then untouched too.
    pub fn apply_event_into(
        &mut self,
        event: &Event,
        changes: &mut Changes,
    ) -> Result<(), Violation> {
        self.apply_inner(event, changes)?;
        self.version += 1;
        Ok(())
    }

    fn apply_inner(&mut self, event: &Event, changes: &mut Changes) -> Result<(), Violation> {
        let at = match event {
            Event::ThreadCreated { .. } => return Err(Violation::ThreadExists(self.id)),
            Event::TurnStarted {
                turn_id,
                input,
                root,
                at,
            } => {
                if self.turns.iter().any(|t| t.id == *turn_id) {
                    return Err(Violation::TurnExists(*turn_id));
                }
                if let Some(running) = self.turns.iter().find(|t| !t.state.is_finished()) {
                    return Err(Violation::TurnStillRunning(running.id));
                }
                if root.parent_id.is_some()
                    || root.turn_id != *turn_id
                    || root.kind == WorkUnitKind::DelegatedAgent
                {
                    return Err(Violation::BadRoot { turn: *turn_id });
                }
                self.check_thread(root.thread_id)?;
                if self.work_units.contains_key(&root.id) {
                    return Err(Violation::WorkUnitExists(root.id));
                }
                self.turns.push(Turn {
                    id: *turn_id,
                    root_id: root.id,
                    state: TurnState::Running,
                    input: input.clone(),
                    started_at: *at,
                    ended_at: None,
                });
                self.work_units.insert(
                    root.id,
                    WorkUnit {
                        record: (**root).clone(),
                        usage: TokenUsage::default(),
                        cost: Cost::default(),
                        children: Vec::new(),
                    },
                );
                changes.turns.push(*turn_id);
                changes.work_units.push(root.id);
                *at
            }
            Event::TurnCompleted { turn_id, state, at } => {
                let turn = self
                    .turns
                    .iter_mut()
                    .find(|t| t.id == *turn_id)
                    .ok_or(Violation::TurnMissing(*turn_id))?;
                if turn.state.is_finished() {
                    return Err(Violation::TurnFinished(*turn_id));
                }
                if !state.is_finished() {
                    return Err(Violation::TurnNotFinished);
                }
                turn.state = *state;
                turn.ended_at = Some(*at);
                changes.turns.push(*turn_id);
                *at
            }
            Event::WorkUnitUpserted { work_unit } => {
                // A new unit also changes its parent's list of children.
                if let Some(parent) = self.upsert(work_unit)? {
                    changes.work_units.push(parent);
                }
                changes.work_units.push(work_unit.id);
                work_unit.updated_at
            }
            Event::WorkUnitStateChanged {
                work_unit_id,
                state,
                error,
                at,
            } => {
                let unit = self
                    .work_units
                    .get_mut(work_unit_id)
                    .ok_or(Violation::WorkUnitMissing(*work_unit_id))?;
                if !unit.state.can_become(*state) {
                    return Err(Violation::IllegalTransition {
                        unit: *work_unit_id,
                        from: unit.state,
                        to: *state,
                    });
                }
                unit.record.change_state(*state, error.clone(), *at);
                changes.work_units.push(*work_unit_id);
                *at
            }
            Event::ActivityAppended { activity } => {
                if let Some(turn) = activity.turn_id
                    && !self.turns.iter().any(|t| t.id == turn)
                {
                    return Err(Violation::TurnMissing(turn));
                }
                if let Some(unit) = activity.work_unit_id
                    && !self.work_units.contains_key(&unit)
                {
                    return Err(Violation::WorkUnitMissing(unit));
                }
                if self.activity_ids.0.len() != self.activities.len() {
                    self.activity_ids.0 = self.activities.iter().map(|a| a.id).collect();
                }
                if self.activity_ids.0.contains(&activity.id) {
                    return Err(Violation::ActivityExists(activity.id));
                }
                self.activity_ids.0.insert(activity.id);
                self.activities.push((**activity).clone());
                changes.activities.push(activity.id);
                activity.at
            }
            Event::UsageRecorded {
                work_unit_id,
                usage,
                cost,
                at,
                ..
            } => {
                let unit = self
                    .work_units
                    .get_mut(work_unit_id)
                    .ok_or(Violation::WorkUnitMissing(*work_unit_id))?;
                unit.usage += *usage;
                unit.cost.add(*cost);
                changes.work_units.push(*work_unit_id);
                *at
            }
            Event::BudgetExceeded { alert } => {
                if let Some(unit) = alert.work_unit_id
                    && !self.work_units.contains_key(&unit)
                {
                    return Err(Violation::WorkUnitMissing(unit));
                }
                self.budget_alerts.push(alert.clone());
                alert.at
            }
            Event::ThreadReverted { to_turn, at } => {
                changes.merge(self.revert(*to_turn)?);
                *at
            }
        };
        self.updated_at = self.updated_at.max(at);
        Ok(())
    }

    fn check_thread(&self, found: ThreadId) -> Result<(), Violation> {
        if found == self.id {
            Ok(())
        } else {
            Err(Violation::WrongThread {
                stream: self.id,
                found,
            })
        }
    }

    /// Records `record`; returns the parent when the unit is new.
    fn upsert(&mut self, record: &WorkUnitRecord) -> Result<Option<WorkUnitId>, Violation> {
        self.check_thread(record.thread_id)?;
        if let Some(existing) = self.work_units.get_mut(&record.id) {
            let same = |field: &'static str, equal: bool| {
                if equal {
                    Ok(())
                } else {
                    Err(Violation::Immutable {
                        unit: record.id,
                        field,
                    })
                }
            };
            same("turn_id", existing.turn_id == record.turn_id)?;
            same("parent_id", existing.parent_id == record.parent_id)?;
            same("kind", existing.kind == record.kind)?;
            if !existing.state.can_become(record.state) {
                return Err(Violation::IllegalTransition {
                    unit: record.id,
                    from: existing.state,
                    to: record.state,
                });
            }
            existing.record = record.clone();
            return Ok(None);
        }
        let Some(parent_id) = record.parent_id else {
            return Err(Violation::SecondRoot(record.id));
        };
        if !self.turns.iter().any(|t| t.id == record.turn_id) {
            return Err(Violation::TurnMissing(record.turn_id));
        }
        let parent = self
            .work_units
            .get_mut(&parent_id)
            .ok_or(Violation::ParentMissing {
                unit: record.id,
                parent: parent_id,
            })?;
        parent.children.push(record.id);
        self.work_units.insert(
            record.id,
            WorkUnit {
                record: record.clone(),
                usage: TokenUsage::default(),
                cost: Cost::default(),
                children: Vec::new(),
            },
        );
        Ok(Some(parent_id))
    }

    fn revert(&mut self, to_turn: Option<TurnId>) -> Result<Changes, Violation> {
        let keep = match to_turn {
            Some(turn) => {
                self.turns
                    .iter()
                    .position(|t| t.id == turn)
                    .ok_or(Violation::TurnMissing(turn))?
                    + 1
            }
            None => 0,
        };
        let removed_turns: Vec<TurnId> = self.turns.drain(keep..).map(|t| t.id).collect();
        let turn_set: HashSet<TurnId> = removed_turns.iter().copied().collect();
        // Every unit of a removed turn, and every descendant of a removed unit, transitively,
        // whatever turn the descendant names.
        let mut removed: HashSet<WorkUnitId> = HashSet::new();
        let mut stack: Vec<WorkUnitId> = self
            .work_units
            .values()
            .filter(|u| turn_set.contains(&u.turn_id))
            .map(|u| u.id)
            .collect();
        while let Some(id) = stack.pop() {
            if removed.insert(id)
                && let Some(unit) = self.work_units.get(&id)
            {
                stack.extend(unit.children.iter().copied());
            }
        }
        let mut removed_work_units: Vec<WorkUnitId> = removed.iter().copied().collect();
        removed_work_units.sort();
        for id in &removed_work_units {
            self.work_units.remove(id);
        }
        // Kept parents of removed units lose those children.
        let mut touched = Vec::new();
        for unit in self.work_units.values_mut() {
            let before = unit.children.len();
            unit.children.retain(|c| !removed.contains(c));
            if unit.children.len() != before {
                touched.push(unit.id);
            }
        }
        let mut removed_activities = Vec::new();
        self.activities.retain(|a| {
            let gone = a.turn_id.is_some_and(|t| turn_set.contains(&t))
                || a.work_unit_id.is_some_and(|u| removed.contains(&u));
            if gone {
                removed_activities.push(a.id);
            }
            !gone
        });
        for id in &removed_activities {
            self.activity_ids.0.remove(id);
        }
        self.budget_alerts
            .retain(|a| !a.work_unit_id.is_some_and(|u| removed.contains(&u)));
        Ok(Changes {
            work_units: touched,
            removed_turns,
            removed_work_units,
            removed_activities,
            ..Changes::default()
        })
    }

    /// The turn `id`.
    #[must_use]
    pub fn turn(&self, id: TurnId) -> Option<&Turn> {
        self.turns.iter().find(|t| t.id == id)
    }

    /// Charges the bill cannot confirm: each unit whose process ended in the middle of a
    /// priced model turn (admitted, then never recorded usage, and the unit never finished),
    /// with the turn's reservation. The provider may have billed those turns, so a bill shows
    /// them beside what it knows; a unit that finished (completed, failed, cancelled) settled
    /// every turn it began.
    #[must_use]
    pub fn unconfirmed(&self) -> Vec<(WorkUnitId, crate::money::Usd)> {
        let mut open: BTreeMap<WorkUnitId, (crate::money::Usd, u64)> = BTreeMap::new();
        for activity in &self.activities {
            if let (
                Some(unit),
                crate::activity::ActivityKind::TurnAdmitted {
                    reserved,
                    tokens_before,
                    ..
                },
            ) = (activity.work_unit_id, &activity.kind)
            {
                open.insert(unit, (*reserved, *tokens_before));
            }
        }
        let mut out: Vec<(WorkUnitId, crate::money::Usd)> = open
            .into_iter()
            .filter_map(|(id, (reserved, before))| {
                let unit = self.work_units.get(&id)?;
                unit.owes_admitted_turn(before).then_some((id, reserved))
            })
            .collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    /// The work unit `id`.
    #[must_use]
    pub fn work_unit(&self, id: WorkUnitId) -> Option<&WorkUnit> {
        self.work_units.get(&id)
    }

    /// The children of `id`, in the order they appeared.
    pub fn children(&self, id: WorkUnitId) -> impl Iterator<Item = &WorkUnit> {
        self.work_units
            .get(&id)
            .into_iter()
            .flat_map(|u| u.children.iter())
            .filter_map(|c| self.work_units.get(c))
    }

    /// `id` and all its descendants, depth first, each with its depth below `id`.
    #[must_use]
    pub fn subtree(&self, id: WorkUnitId) -> Vec<(usize, &WorkUnit)> {
        let mut out = Vec::new();
        let mut stack = vec![(0, id)];
        while let Some((depth, id)) = stack.pop() {
            if let Some(unit) = self.work_units.get(&id) {
                out.push((depth, unit));
                stack.extend(unit.children.iter().rev().map(|c| (depth + 1, *c)));
            }
        }
        out
    }

    /// Tokens used by `id` and all its descendants.
    #[must_use]
    pub fn subtree_usage(&self, id: WorkUnitId) -> TokenUsage {
        self.subtree(id).into_iter().map(|(_, u)| u.usage).sum()
    }

    /// What `id` and all its descendants cost.
    #[must_use]
    pub fn subtree_cost(&self, id: WorkUnitId) -> Cost {
        let mut total = Cost::default();
        for (_, unit) in self.subtree(id) {
            total += unit.cost;
        }
        total
    }

    /// The activities of work unit `id`.
    pub fn activities_of(&self, id: WorkUnitId) -> impl Iterator<Item = &Activity> {
        self.activities
            .iter()
            .filter(move |a| a.work_unit_id == Some(id))
    }
}

#[cfg(test)]
mod tests;
