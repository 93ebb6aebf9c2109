//! The SQLite schema and its versioned migrations (`PRAGMA user_version`).

use rusqlite::{Connection, params};

use crate::event::Event;
use crate::store::StoreError;

/// Each migration takes the database from the version before it to its own (index + 1).
type Migration = fn(&Connection) -> Result<(), StoreError>;

const MIGRATIONS: &[Migration] = &[
    v1_initial,
    v2_usage_ledger,
    v3_state_change_events,
    v4_event_batches,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database to [`SCHEMA_VERSION`], one transaction per migration.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        // The version is read under the write lock: two processes opening a new store at once
        // must not both run the same migration.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(migration) = MIGRATIONS.get(found as usize) else {
            return Ok(());
        };
        migration(&tx)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}

/// Version 1: the event log and the projection tables.
pub(crate) const V1_SQL: &str = "
CREATE TABLE events (
    position INTEGER PRIMARY KEY,
    thread_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    UNIQUE (thread_id, version)
);
CREATE TABLE threads (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE turns (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX turns_by_thread ON turns (thread_id, seq);
CREATE TABLE work_units (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    turn_id TEXT NOT NULL,
    parent_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX work_units_by_thread ON work_units (thread_id);
CREATE TABLE activities (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL,
    turn_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX activities_by_thread ON activities (thread_id, seq);
";

fn v1_initial(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(V1_SQL)?;
    Ok(())
}

/// Version 3: the log may hold `work_unit_state_changed` events, which an older fleet cannot
/// read; the version tells it so ("upgrade fleet") instead of a decoding error. No table
/// changes.
fn v3_state_change_events(_conn: &Connection) -> Result<(), StoreError> {
    Ok(())
}

/// Version 2: activities are queryable by work unit, and a usage ledger (one row per
/// `usage_recorded` event, by time) answers "what did we spend since …" without replaying.
fn v2_usage_ledger(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "
        ALTER TABLE activities ADD COLUMN work_unit_id TEXT;
        UPDATE activities SET work_unit_id = json_extract(data, '$.work_unit_id');
        CREATE INDEX activities_by_work_unit ON activities (work_unit_id);
        CREATE TABLE usage_ledger (
            position INTEGER PRIMARY KEY,
            thread_id TEXT NOT NULL,
            work_unit_id TEXT NOT NULL,
            model TEXT,
            at_us INTEGER NOT NULL,
            input INTEGER NOT NULL,
            output INTEGER NOT NULL,
            cache_write INTEGER NOT NULL,
            cache_write_1h INTEGER NOT NULL,
            cache_read INTEGER NOT NULL,
            cost_nanos INTEGER
        );
        CREATE INDEX usage_ledger_by_time ON usage_ledger (at_us);
        ",
    )?;
    let mut select = conn.prepare("SELECT position, thread_id, data FROM events WHERE type = 'usage_recorded' ORDER BY position")?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let thread_id: String = row.get(1)?;
        let data: String = row.get(2)?;
        let event: Event = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            what: format!("event at position {position}"),
            reason: e.to_string(),
        })?;
        insert_v2_ledger_row(conn, position, &thread_id, &event)?;
    }
    Ok(())
}

/// Writes the ledger row of a `usage_recorded` event in the version-2 layout (other events
/// write nothing); only the version-2 migration writes this layout.
fn insert_v2_ledger_row(
    conn: &Connection,
    position: i64,
    thread_id: &str,
    event: &Event,
) -> Result<(), StoreError> {
    let Event::UsageRecorded {
        work_unit_id,
        model,
        usage,
        cost,
        at,
    } = event
    else {
        return Ok(());
    };
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    conn.prepare_cached(
        "INSERT OR REPLACE INTO usage_ledger (position, thread_id, work_unit_id, model, at_us, input, output, cache_write, cache_write_1h, cache_read, cost_nanos)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        position,
        thread_id,
        work_unit_id.to_string(),
        model,
        at.as_microsecond(),
        n(usage.input),
        n(usage.output),
        n(usage.cache_write),
        n(usage.cache_write_1h),
        n(usage.cache_read),
        cost.map(|c| c.nanos()),
    ])?;
    Ok(())
}

/// Version 4: the log is stored as batches, one row per append holding its events as a JSON
/// array (a fan-out appends thousands of events in a few hundred appends, and a row per event
/// made the inserts most of the writer's work), and the usage ledger has one row per batch
/// and model, summed, instead of one per `usage_recorded` event. Each old event becomes a
/// batch of one; each old ledger row a sum of one.
fn v4_event_batches(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "
        CREATE TABLE event_batches (
            first_position INTEGER PRIMARY KEY,
            last_position INTEGER NOT NULL,
            thread_id TEXT NOT NULL,
            first_version INTEGER NOT NULL,
            last_version INTEGER NOT NULL,
            recorded_at TEXT NOT NULL,
            events TEXT NOT NULL,
            UNIQUE (thread_id, last_version)
        );
        INSERT INTO event_batches
            SELECT position, position, thread_id, version, version, recorded_at, '[' || data || ']'
            FROM events;
        DROP TABLE events;
        CREATE TABLE usage_by_batch (
            position INTEGER NOT NULL,
            thread_id TEXT NOT NULL,
            model TEXT,
            at_us INTEGER NOT NULL,
            input INTEGER NOT NULL,
            output INTEGER NOT NULL,
            cache_write INTEGER NOT NULL,
            cache_write_1h INTEGER NOT NULL,
            cache_read INTEGER NOT NULL,
            cost_nanos INTEGER NOT NULL,
            unpriced INTEGER NOT NULL,
            records INTEGER NOT NULL
        );
        INSERT INTO usage_by_batch
            SELECT position, thread_id, model, at_us, input, output, cache_write, cache_write_1h,
                   cache_read, COALESCE(cost_nanos, 0), cost_nanos IS NULL, 1
            FROM usage_ledger;
        DROP TABLE usage_ledger;
        ALTER TABLE usage_by_batch RENAME TO usage_ledger;
        CREATE INDEX usage_ledger_by_time ON usage_ledger (at_us);
        ",
    )?;
    Ok(())
}

/// The usage of one batch and model, as the ledger sums it.
#[derive(Debug, Default)]
struct LedgerSum {
    usage: crate::usage::TokenUsage,
    cost_nanos: i64,
    unpriced: i64,
    records: i64,
    /// The latest `at` of the batch's usage events.
    at_us: i64,
}

/// Writes the ledger rows of a batch that starts at `position`: one per model, summing its
/// `usage_recorded` events (a batch without any writes none).
pub(crate) fn insert_ledger_rows(
    conn: &Connection,
    position: i64,
    thread_id: &str,
    events: &[Event],
) -> Result<(), StoreError> {
    // Batches hold one model or a few: a list beats a map.
    let mut sums: Vec<(Option<&str>, LedgerSum)> = Vec::new();
    for event in events {
        let Event::UsageRecorded {
            model,
            usage,
            cost,
            at,
            ..
        } = event
        else {
            continue;
        };
        let model = model.as_deref();
        let index = match sums.iter().position(|(m, _)| *m == model) {
            Some(index) => index,
            None => {
                sums.push((model, LedgerSum::default()));
                sums.len() - 1
            }
        };
        let sum = &mut sums[index].1;
        sum.usage += *usage;
        match cost {
            Some(cost) => sum.cost_nanos = sum.cost_nanos.saturating_add(cost.nanos()),
            None => sum.unpriced += 1,
        }
        sum.records += 1;
        sum.at_us = sum.at_us.max(at.as_microsecond());
    }
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for (model, sum) in sums {
        conn.prepare_cached(
            "INSERT INTO usage_ledger (position, thread_id, model, at_us, input, output, cache_write, cache_write_1h, cache_read, cost_nanos, unpriced, records)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            position,
            thread_id,
            model,
            sum.at_us,
            n(sum.usage.input),
            n(sum.usage.output),
            n(sum.usage.cache_write),
            n(sum.usage.cache_write_1h),
            n(sum.usage.cache_read),
            sum.cost_nanos,
            sum.unpriced,
            sum.records,
        ])?;
    }
    Ok(())
}
