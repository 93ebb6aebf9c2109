//! The single writer: one thread owns the write connection and commits appends in groups.
//!
//! Appends from many tasks queue up while a commit is being synced; the next commit takes all of
//! them in one transaction (each in its own savepoint, so one refused append does not affect the
//! others). Every append is durable before its caller hears back, and the fsync is shared.
//!
//! The log is the truth; the projection rows (threads, turns, work units, activities) are a
//! snapshot of it at the version the thread row holds. The writer keeps each busy thread's
//! model in memory and writes the rows that changed when it is idle, when a thread is
//! `PROJECT_EVERY` events behind, or when it closes: a burst of appends writes each event
//! once, not every work unit it touches at every step. A reader takes the rows and applies
//! the events after their version, in one read transaction, so it always sees the log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, params};
use tokio::sync::{oneshot, watch};

use super::rows;
use super::schema::insert_ledger_row;
use crate::event::Event;
use crate::id::ThreadId;
use crate::store::{Appended, ExpectedVersion, StoreError, StreamState};
use crate::thread::{Changes, apply};

/// How many threads' read models the writer keeps (others are loaded from their rows).
const CACHED_THREADS: usize = 256;
/// A thread's rows are written once it is this many events ahead of them, so that a reader
/// never has more than this many events to apply on top of the rows.
const PROJECT_EVERY: usize = 8192;
/// Most appends committed together.
const GROUP: usize = 512;
/// The writer checkpoints the log into the database after this long without appends...
const IDLE: Duration = Duration::from_millis(25);
/// ...or at once after a commit that leaves the log larger than this.
const LARGE_LOG: u64 = 32 << 20;

/// One queued append and where to send its outcome.
pub(super) struct PendingAppend {
    pub(super) thread: ThreadId,
    pub(super) expected: ExpectedVersion,
    pub(super) events: Vec<Event>,
    pub(super) reply: oneshot::Sender<Result<Appended, StoreError>>,
}

pub(super) enum Request {
    Append(PendingAppend),
    Rebuild {
        reply: oneshot::Sender<Result<RebuildStats, StoreError>>,
    },
}

/// What [`super::SqliteStore::rebuild_projections`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildStats {
    /// Events read.
    pub events: u64,
    /// Threads written.
    pub threads: u64,
    /// Events skipped because they could not apply (a store never accepts such events).
    pub skipped: u64,
    /// How long it took, in microseconds.
    pub micros: u64,
}

/// A thread the writer holds in memory.
struct Cached {
    /// The model, for checking appends.
    state: StreamState,
    /// What changed since the thread's rows were written.
    behind: Changes,
    /// How many events that is.
    behind_events: usize,
}

pub(super) struct Writer {
    conn: Connection,
    cache: HashMap<ThreadId, Cached>,
    next_position: i64,
    head: watch::Sender<u64>,
    /// The log file, whose size says when to checkpoint.
    wal: PathBuf,
    /// Whether the log holds commits not yet checkpointed.
    dirty: bool,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        head: watch::Sender<u64>,
        wal: PathBuf,
    ) -> Result<Self, StoreError> {
        let mut writer = Self {
            conn,
            cache: HashMap::new(),
            next_position: 0,
            head,
            wal,
            dirty: false,
        };
        writer.reset_position()?;
        Ok(writer)
    }

    fn reset_position(&mut self) -> Result<(), StoreError> {
        let last: i64 =
            self.conn
                .query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                    r.get(0)
                })?;
        self.next_position = last + 1;
        Ok(())
    }

    /// Copies the log into the database without waiting for readers (`PASSIVE`). A failed
    /// checkpoint loses nothing: the log still holds every commit, and the next one retries.
    fn checkpoint(&mut self) {
        if self.dirty {
            self.dirty = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .is_err();
        }
    }

    fn next(&mut self, requests: &mpsc::Receiver<Request>) -> Option<Request> {
        if self.dirty {
            match requests.recv_timeout(IDLE) {
                Ok(request) => return Some(request),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.project_all();
                    self.checkpoint();
                }
            }
        }
        requests.recv().ok()
    }

    /// Writes the rows of every thread whose rows lag its events, in one transaction. On
    /// failure nothing is lost: the events are committed, and the rows are written later
    /// from them (the cache is dropped, and reloading gives what is behind).
    fn project_all(&mut self) {
        if self.cache.values().all(|c| c.behind_events == 0) {
            return;
        }
        let result = (|| -> Result<(), StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for cached in self.cache.values_mut() {
                project(&tx, cached)?;
            }
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            self.cache.clear();
        } else {
            self.dirty = true;
        }
    }

    pub(super) fn run(mut self, requests: &mpsc::Receiver<Request>) {
        while let Some(first) = self.next(requests) {
            let mut group = Vec::new();
            match first {
                Request::Rebuild { reply } => {
                    let _ = reply.send(self.rebuild());
                    continue;
                }
                Request::Append(append) => group.push(append),
            }
            let mut rebuild = None;
            while group.len() < GROUP {
                match requests.try_recv() {
                    Ok(Request::Append(append)) => group.push(append),
                    Ok(Request::Rebuild { reply }) => {
                        rebuild = Some(reply);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            self.dirty = true;
            if std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > LARGE_LOG) {
                self.checkpoint();
            }
            if let Some(reply) = rebuild {
                let _ = reply.send(self.rebuild());
            }
        }
        // Closing: leave the rows up to date (closing the connection then checkpoints).
        self.project_all();
    }

    fn commit_group(&mut self, group: Vec<PendingAppend>) {
        let recorded_at = Timestamp::now();
        let mut outcomes: Vec<Result<Appended, StoreError>> = Vec::with_capacity(group.len());
        let result = (|| -> Result<(), StoreError> {
            let mut tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for append in &group {
                let sp = tx.savepoint()?;
                match append_one(
                    &sp,
                    &mut self.cache,
                    &mut self.next_position,
                    append.thread,
                    append.expected,
                    &append.events,
                    recorded_at,
                ) {
                    Ok(appended) => {
                        sp.commit()?;
                        outcomes.push(Ok(appended));
                    }
                    Err(e) => {
                        drop(sp); // rolls back this append alone
                        self.cache.remove(&append.thread);
                        outcomes.push(Err(e));
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                if let Some(last) = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok())
                    .map(|a| a.last_position)
                    .max()
                {
                    crate::store::publish_head(&self.head, last);
                }
                for (append, outcome) in group.into_iter().zip(outcomes) {
                    let _ = append.reply.send(outcome);
                }
            }
            Err(e) => {
                // Nothing of the group is stored: forget what the cache and counter assumed.
                self.cache.clear();
                let _ = self.reset_position();
                let reason = e.to_string();
                for append in group {
                    let _ = append.reply.send(Err(StoreError::CommitFailed {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    fn rebuild(&mut self) -> Result<RebuildStats, StoreError> {
        let started = Instant::now();
        self.cache.clear();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch("DELETE FROM threads; DELETE FROM turns; DELETE FROM work_units; DELETE FROM activities; DELETE FROM usage_ledger;")?;
        let mut stats = RebuildStats {
            events: 0,
            threads: 0,
            skipped: 0,
            micros: 0,
        };
        {
            let mut select = tx.prepare("SELECT position, thread_id, version, data, recorded_at FROM events ORDER BY thread_id, version")?;
            let mut rows = select.query([])?;
            let mut current: Option<(ThreadId, Option<crate::thread::Thread>)> = None;
            while let Some(row) = rows.next()? {
                let recorded = rows::event_row(row)?;
                stats.events += 1;
                if current
                    .as_ref()
                    .is_none_or(|(id, _)| *id != recorded.thread_id)
                {
                    if let Some((_, Some(thread))) = current.take() {
                        rows::write_all(&tx, &thread)?;
                        stats.threads += 1;
                    }
                    current = Some((recorded.thread_id, None));
                }
                if let Some((id, thread)) = current.as_mut()
                    && apply(thread, *id, &recorded.event).is_err()
                {
                    stats.skipped += 1;
                    continue;
                }
                insert_ledger_row(
                    &tx,
                    i64::try_from(recorded.position).unwrap_or(i64::MAX),
                    &recorded.thread_id.to_string(),
                    &recorded.event,
                )?;
            }
            if let Some((_, Some(thread))) = current {
                rows::write_all(&tx, &thread)?;
                stats.threads += 1;
            }
        }
        tx.commit()?;
        stats.micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(stats)
    }
}

/// Writes the rows `cached` is behind on.
fn project(conn: &Connection, cached: &mut Cached) -> Result<(), StoreError> {
    if cached.behind_events == 0 {
        return Ok(());
    }
    if let Some(thread) = cached.state.thread.as_ref() {
        rows::write_changes(conn, thread, &cached.behind)?;
    }
    cached.behind = Changes::default();
    cached.behind_events = 0;
    Ok(())
}

fn append_one(
    conn: &Connection,
    cache: &mut HashMap<ThreadId, Cached>,
    next_position: &mut i64,
    thread: ThreadId,
    expected: ExpectedVersion,
    events: &[Event],
    recorded_at: Timestamp,
) -> Result<Appended, StoreError> {
    if !cache.contains_key(&thread) {
        if cache.len() >= CACHED_THREADS {
            // Evict one, with its rows brought up to date (were this append to roll back,
            // they roll back too, and reloading gives what is behind again).
            if let Some(victim) = cache.keys().next().copied()
                && let Some(mut evicted) = cache.remove(&victim)
            {
                project(conn, &mut evicted)?;
            }
        }
        let loaded = rows::load_thread(conn, thread)?;
        cache.insert(
            thread,
            Cached {
                state: StreamState {
                    thread: loaded.thread,
                },
                behind: loaded.behind,
                behind_events: loaded.behind_events,
            },
        );
    }
    let Some(cached) = cache.get_mut(&thread) else {
        return Err(StoreError::Closed);
    };
    let new_thread = cached.state.thread.is_none();
    let changes = cached.state.append(thread, expected, events)?;
    cached.behind.merge(changes);
    cached.behind_events += events.len();
    let Some(projected) = cached.state.thread.as_ref() else {
        return Err(StoreError::Closed);
    };
    let first_version = projected.version + 1 - events.len() as u64;
    let first_position = *next_position;
    let key = thread.to_string();
    let recorded = recorded_at.to_string();
    for (i, event) in events.iter().enumerate() {
        let position = first_position + i as i64;
        let data = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
            what: "new event".into(),
            reason: e.to_string(),
        })?;
        conn.prepare_cached("INSERT INTO events (position, thread_id, version, type, data, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![position, key, (first_version + i as u64) as i64, event.type_name(), data, recorded])?;
        insert_ledger_row(conn, position, &key, event)?;
    }
    let version = projected.version;
    // A new thread gets its rows at once, so that lists show it; others in batches.
    if new_thread || cached.behind_events >= PROJECT_EVERY {
        project(conn, cached)?;
    }
    *next_position += events.len() as i64;
    let last_position = *next_position - 1;
    Ok(Appended {
        first_position: first_position as u64,
        last_position: last_position as u64,
        version,
        recorded_at,
    })
}
