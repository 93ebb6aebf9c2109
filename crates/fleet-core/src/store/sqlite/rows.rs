//! Projection rows: writing a thread's changed parts, and reading a thread back.

use std::collections::{BTreeMap, HashSet};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::activity::Activity;
use crate::event::{BudgetAlert, Event, RecordedEvent};
use crate::id::ThreadId;
use crate::store::StoreError;
use crate::thread::{Changes, Thread, Turn};
use crate::work_unit::WorkUnit;

/// The thread row's data: the thread without its collections.
#[derive(Serialize, Deserialize)]
struct Header {
    id: ThreadId,
    #[serde(default)]
    title: Option<String>,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(default)]
    budget_alerts: Vec<BudgetAlert>,
}

fn corrupt(what: impl Into<String>, e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: e.to_string(),
    }
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt(what, &e))
}

fn write_header(conn: &Connection, thread: &Thread) -> Result<(), StoreError> {
    let header = Header {
        id: thread.id,
        title: thread.title.clone(),
        created_at: thread.created_at,
        updated_at: thread.updated_at,
        budget_alerts: thread.budget_alerts.clone(),
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO threads (id, version, updated_at, data) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        thread.id.to_string(),
        i64::try_from(thread.version).unwrap_or(i64::MAX),
        thread.updated_at.to_string(),
        to_json("thread", &header)?
    ])?;
    Ok(())
}

fn write_turn(
    conn: &Connection,
    thread: &Thread,
    seq: usize,
    turn: &Turn,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO turns (id, thread_id, seq, state, data) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![
        turn.id.to_string(),
        thread.id.to_string(),
        seq as i64,
        to_json("turn state", &turn.state)?.trim_matches('"'),
        to_json("turn", turn)?
    ])?;
    Ok(())
}

fn write_work_unit(conn: &Connection, unit: &WorkUnit) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO work_units (id, thread_id, turn_id, parent_id, kind, state, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, state = excluded.state, data = excluded.data")?
        .execute(params![
            unit.id.to_string(),
            unit.thread_id.to_string(),
            unit.turn_id.to_string(),
            unit.parent_id.map(|p| p.to_string()),
            to_json("work unit kind", &unit.kind)?.trim_matches('"'),
            unit.state.as_str(),
            to_json("work unit", unit)?
        ])?;
    Ok(())
}

fn write_activity(
    conn: &Connection,
    thread: &Thread,
    activity: &Activity,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO activities (id, thread_id, turn_id, work_unit_id, data) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![
        activity.id.to_string(),
        thread.id.to_string(),
        activity.turn_id.map(|t| t.to_string()),
        activity.work_unit_id.map(|u| u.to_string()),
        to_json("activity", activity)?
    ])?;
    Ok(())
}

/// Writes what `changes` says changed in `thread` (each row once).
pub(crate) fn write_changes(
    conn: &Connection,
    thread: &Thread,
    changes: &Changes,
) -> Result<(), StoreError> {
    write_header(conn, thread)?;
    for id in &changes.removed_turns {
        conn.prepare_cached("DELETE FROM turns WHERE id = ?1")?
            .execute([id.to_string()])?;
    }
    for id in &changes.removed_work_units {
        conn.prepare_cached("DELETE FROM work_units WHERE id = ?1")?
            .execute([id.to_string()])?;
    }
    for id in &changes.removed_activities {
        conn.prepare_cached("DELETE FROM activities WHERE id = ?1")?
            .execute([id.to_string()])?;
    }
    let mut seen = HashSet::new();
    for id in &changes.turns {
        if seen.insert(id.as_uuid())
            && let Some((seq, turn)) = thread.turns.iter().enumerate().find(|(_, t)| t.id == *id)
        {
            write_turn(conn, thread, seq, turn)?;
        }
    }
    for id in &changes.work_units {
        if seen.insert(id.as_uuid())
            && let Some(unit) = thread.work_units.get(id)
        {
            write_work_unit(conn, unit)?;
        }
    }
    if !changes.activities.is_empty() {
        // New activities are the last ones of the thread, unless a revert since removed some.
        let new: HashSet<_> = changes.activities.iter().collect();
        let start = if changes.removed_activities.is_empty() {
            thread.activities.len().saturating_sub(new.len())
        } else {
            0
        };
        for activity in &thread.activities[start..] {
            if new.contains(&activity.id) {
                write_activity(conn, thread, activity)?;
            }
        }
    }
    Ok(())
}

/// Writes every row of `thread` (after the projection tables were emptied).
pub(crate) fn write_all(conn: &Connection, thread: &Thread) -> Result<(), StoreError> {
    write_header(conn, thread)?;
    for (seq, turn) in thread.turns.iter().enumerate() {
        write_turn(conn, thread, seq, turn)?;
    }
    for unit in thread.work_units.values() {
        write_work_unit(conn, unit)?;
    }
    for activity in &thread.activities {
        write_activity(conn, thread, activity)?;
    }
    Ok(())
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, id: &str, data: &str) -> Result<T, StoreError> {
    serde_json::from_str(data).map_err(|e| corrupt(format!("{what} {id}"), &e))
}

/// A thread as the rows and the log give it.
pub(crate) struct Loaded {
    /// The thread (`None` when it has neither rows nor events).
    pub(crate) thread: Option<Thread>,
    /// What the log's events after the rows' version changed: the rows still to write.
    pub(crate) behind: Changes,
    /// How many events that is.
    pub(crate) behind_events: usize,
}

/// Reads a thread back: its projection rows, then the events recorded after the version they
/// hold (the writer projects in batches, so the rows may lag the log; see the writer).
///
/// The caller reads inside one transaction, so that rows and log are of the same moment.
pub(crate) fn load_thread(conn: &Connection, id: ThreadId) -> Result<Loaded, StoreError> {
    let key = id.to_string();
    let mut thread = load_rows(conn, &key)?;
    let after = thread.as_ref().map_or(0, |t| t.version);
    let mut behind = Changes::default();
    let mut behind_events = 0;
    for_each_event_after(conn, &key, after, |event| {
        behind_events += 1;
        // An event that cannot apply was never accepted by a store; skipping it is what the
        // projector does (`thread::project`).
        let _ = crate::thread::apply_into(&mut thread, id, event, &mut behind);
    })?;
    Ok(Loaded {
        thread,
        behind,
        behind_events,
    })
}

/// Calls `f` with each event of thread `key` after version `after`, in order.
fn for_each_event_after(
    conn: &Connection,
    key: &str,
    after: u64,
    mut f: impl FnMut(&Event),
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT first_position, first_version, events FROM event_batches WHERE thread_id = ?1 AND last_version > ?2 ORDER BY last_version",
    )?;
    let mut rows = stmt.query(params![key, i64::try_from(after).unwrap_or(i64::MAX)])?;
    while let Some(row) = rows.next()? {
        let first_version = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
        let events = decode_batch(row.get(0)?, row.get_ref(2)?)?;
        for (i, event) in events.iter().enumerate() {
            if first_version + i as u64 > after {
                f(event);
            }
        }
    }
    Ok(())
}

/// Decodes a batch's `events` column.
fn decode_batch(
    first_position: i64,
    data: rusqlite::types::ValueRef<'_>,
) -> Result<Vec<Event>, StoreError> {
    let what = || format!("event batch at position {first_position}");
    let text = data.as_str().map_err(|e| StoreError::Corrupt {
        what: what(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(text).map_err(|e| corrupt(what(), &e))
}

/// Reads a thread's projection rows.
fn load_rows(conn: &Connection, key: &str) -> Result<Option<Thread>, StoreError> {
    let Some((version, data)) = conn
        .prepare_cached("SELECT version, data FROM threads WHERE id = ?1")?
        .query_row([key], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()?
    else {
        return Ok(None);
    };
    let header: Header = decode("thread", key, &data)?;
    let mut turns = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT data FROM turns WHERE thread_id = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([key])?;
    while let Some(row) = rows.next()? {
        turns.push(decode::<Turn>(
            "turn of thread",
            key,
            &row.get::<_, String>(0)?,
        )?);
    }
    let mut work_units = BTreeMap::new();
    let mut stmt = conn.prepare_cached("SELECT data FROM work_units WHERE thread_id = ?1")?;
    let mut rows = stmt.query([key])?;
    while let Some(row) = rows.next()? {
        let unit: WorkUnit = decode("work unit of thread", key, &row.get::<_, String>(0)?)?;
        work_units.insert(unit.id, unit);
    }
    let mut activities = Vec::new();
    let mut stmt =
        conn.prepare_cached("SELECT data FROM activities WHERE thread_id = ?1 ORDER BY seq")?;
    let mut rows = stmt.query([key])?;
    while let Some(row) = rows.next()? {
        activities.push(decode::<Activity>(
            "activity of thread",
            key,
            &row.get::<_, String>(0)?,
        )?);
    }
    Ok(Some(Thread::from_parts(
        header.id,
        header.title,
        header.created_at,
        header.updated_at,
        u64::try_from(version).unwrap_or(0),
        turns,
        work_units,
        activities,
        header.budget_alerts,
    )))
}

/// Decodes a batch row selected as `first_position, thread_id, first_version, recorded_at,
/// events` into its events, each with its position and version.
pub(crate) fn batch_rows(row: &rusqlite::Row<'_>) -> Result<Vec<RecordedEvent>, StoreError> {
    let first_position: i64 = row.get(0)?;
    let what = || format!("event batch at position {first_position}");
    let thread: String = row.get(1)?;
    let thread_id = ThreadId::parse(&thread).map_err(|e| StoreError::Corrupt {
        what: what(),
        reason: e.to_string(),
    })?;
    let first_version = u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0);
    let recorded: String = row.get(3)?;
    let recorded_at = recorded
        .parse()
        .map_err(|e: jiff::Error| StoreError::Corrupt {
            what: what(),
            reason: e.to_string(),
        })?;
    let events = decode_batch(first_position, row.get_ref(4)?)?;
    let first_position = u64::try_from(first_position).unwrap_or(0);
    Ok(events
        .into_iter()
        .enumerate()
        .map(|(i, event)| RecordedEvent {
            position: first_position + i as u64,
            thread_id,
            version: first_version + i as u64,
            recorded_at,
            event,
        })
        .collect())
}
