//! The single writer: one thread owns the write connection and commits appends in groups.
//!
//! Appends from many tasks queue up while a commit is being synced; the next commit takes all of
//! them in one transaction. Every append is checked before anything of it is written, so one
//! refused append leaves the others of its group alone. Every append is durable before its
//! caller hears back, and the fsync is shared.
//!
//! An append is one row of `event_batches`: its events as one JSON array. A fan-out appends
//! thousands of events in a few hundred appends, and a row per event made the inserts most of
//! the writer's work.
//!
//! The log is the truth; the projection rows (threads, turns, work units, activities) are a
//! snapshot of it at the version the thread row holds. Appends of [`CheckedEvents`] (what a
//! journal or recorder sends) are taken with a version check alone: the writer keeps them and
//! folds them into the thread's model only when it projects, which it does when it is idle,
//! when a thread is [`PROJECT_EVERY`] events behind, or when it closes. Other appends are
//! checked against the model at once. A reader takes the rows and applies the events after
//! their version, in one read transaction, so it always sees the log.
//!
//! [`CheckedEvents`]: crate::store::CheckedEvents

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{oneshot, watch};

use super::rows;
use super::schema::insert_ledger_rows;
use crate::event::Event;
use crate::id::ThreadId;
use crate::store::{Appended, ExpectedVersion, StoreError, StreamState};
use crate::thread::{Changes, apply, apply_into};

/// How many threads the writer keeps (others are loaded again when they are appended to).
const CACHED_THREADS: usize = 256;
/// A thread's rows are written once it is this many events ahead of them, so that a reader
/// never has more than this many events to apply on top of the rows.
const PROJECT_EVERY: usize = 8192;
/// Most appends committed together.
const GROUP: usize = 512;
/// The writer projects and checkpoints after this long without appends...
const IDLE: Duration = Duration::from_millis(25);
/// ...or checkpoints at once after a commit that leaves the log larger than this.
const LARGE_LOG: u64 = 32 << 20;

/// How an append expects the stream.
pub(super) enum Expect {
    /// At a version (or none), with events the store must check.
    Unchecked(ExpectedVersion),
    /// At exactly this version, with events checked against the model there.
    Checked(u64),
}

/// One queued append and where to send its outcome.
pub(super) struct PendingAppend {
    pub(super) thread: ThreadId,
    pub(super) expect: Expect,
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

/// A thread's read model as the writer holds it.
struct Model {
    state: StreamState,
    /// What changed since the thread's rows were written.
    behind: Changes,
    /// How many events that is.
    behind_events: usize,
}

/// A thread the writer has appended to.
struct Stream {
    /// How many events the log holds.
    version: u64,
    /// The model as of `version - unapplied.len()`; `None` until something needs it.
    model: Option<Model>,
    /// Stored checked events not yet folded into the model (empty without a model: the
    /// model is then loaded from the rows and the log).
    unapplied: Vec<Event>,
}

impl Stream {
    /// Events whose rows are not written yet.
    fn lag(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.behind_events) + self.unapplied.len()
    }
}

pub(super) struct Writer {
    conn: Connection,
    streams: HashMap<ThreadId, Stream>,
    next_position: i64,
    head: watch::Sender<u64>,
    /// The log file, whose size says when to checkpoint.
    wal: PathBuf,
    /// Whether the log holds commits not yet checkpointed.
    dirty: bool,
    /// The events of a batch, encoded (kept to reuse its allocation).
    buffer: Vec<u8>,
    /// The waits for other processes' locks, for [`super::SqliteStore::contention`].
    contention: Arc<Mutex<super::Contention>>,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        head: watch::Sender<u64>,
        wal: PathBuf,
        contention: Arc<Mutex<super::Contention>>,
    ) -> Result<Self, StoreError> {
        let mut writer = Self {
            conn,
            streams: HashMap::new(),
            next_position: 0,
            head,
            wal,
            dirty: false,
            buffer: Vec::new(),
            contention,
        };
        writer.reset_position()?;
        Ok(writer)
    }

    fn reset_position(&mut self) -> Result<(), StoreError> {
        self.next_position = next_position(&self.conn)?;
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
    /// from them (the streams are dropped, and reloading gives what is behind).
    fn project_all(&mut self) {
        if self.streams.values().all(|s| s.lag() == 0) {
            return;
        }
        let result = (|| -> Result<(), StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (id, stream) in &mut self.streams {
                project(&tx, *id, stream)?;
            }
            tx.commit()?;
            Ok(())
        })();
        if result.is_err() {
            self.streams.clear();
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
        let recorded = recorded_at.to_string();
        let mut outcomes: Vec<Result<Appended, StoreError>> = Vec::with_capacity(group.len());
        let (appends, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|a| ((a.thread, a.expect, a.events), a.reply))
            .unzip();
        let result = (|| -> Result<(), StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Other processes may write to the same store: positions are taken inside the
            // write transaction, which holds the store's one write lock.
            self.next_position = next_position(&tx)?;
            for (thread, expect, events) in appends {
                let outcome = append_one(
                    &tx,
                    &mut self.streams,
                    &mut self.buffer,
                    &mut self.next_position,
                    thread,
                    expect,
                    events,
                    (recorded_at, &recorded),
                );
                match outcome {
                    // A refused append wrote nothing; a failed write fails the whole group.
                    Err(e @ (StoreError::Sqlite(_) | StoreError::Io { .. })) => return Err(e),
                    outcome => outcomes.push(outcome),
                }
            }
            tx.commit()?;
            Ok(())
        })();
        self.count_waits();
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
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                // Nothing of the group is stored: forget what the streams and counter assumed.
                self.streams.clear();
                let _ = self.reset_position();
                let reason = match &e {
                    StoreError::Sqlite(sqlite) if super::busy::is_busy(sqlite) => format!(
                        "the store stayed locked by another process for {} s: another fleet process is writing to it; try again, or give this run a store of its own (store.path)",
                        super::busy::MAX_WAIT.as_secs()
                    ),
                    _ => e.to_string(),
                };
                for reply in replies {
                    let _ = reply.send(Err(StoreError::CommitFailed {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    /// Adds this thread's waits for the lock to the store's figures.
    fn count_waits(&self) {
        let (waits, waited) = super::busy::take();
        if waits > 0 {
            let mut c = self
                .contention
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.waits += waits;
            c.waited += waited;
        }
    }

    fn rebuild(&mut self) -> Result<RebuildStats, StoreError> {
        let started = Instant::now();
        self.streams.clear();
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
            let mut select = tx.prepare("SELECT first_position, thread_id, first_version, recorded_at, events FROM event_batches ORDER BY thread_id, last_version")?;
            let mut rows = select.query([])?;
            let mut current: Option<(ThreadId, Option<crate::thread::Thread>)> = None;
            while let Some(row) = rows.next()? {
                let batch = rows::batch_rows(row)?;
                let Some(first) = batch.first() else {
                    continue;
                };
                let (position, thread_id) = (first.position, first.thread_id);
                if current.as_ref().is_none_or(|(id, _)| *id != thread_id) {
                    if let Some((_, Some(thread))) = current.take() {
                        rows::write_all(&tx, &thread)?;
                        stats.threads += 1;
                    }
                    current = Some((thread_id, None));
                }
                let mut events = Vec::with_capacity(batch.len());
                for recorded in batch {
                    stats.events += 1;
                    if let Some((id, thread)) = current.as_mut()
                        && apply(thread, *id, &recorded.event).is_err()
                    {
                        stats.skipped += 1;
                        continue;
                    }
                    events.push(recorded.event);
                }
                insert_ledger_rows(
                    &tx,
                    i64::try_from(position).unwrap_or(i64::MAX),
                    &thread_id.to_string(),
                    &events,
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

/// The position after the last one written, by any process.
fn next_position(conn: &Connection) -> Result<i64, StoreError> {
    let last: Option<i64> = conn
        .prepare_cached(
            "SELECT last_position FROM event_batches ORDER BY first_position DESC LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(last.unwrap_or(0) + 1)
}

/// The version of `thread` in the log, as any process wrote it.
fn stored_version(conn: &Connection, thread: ThreadId) -> Result<u64, StoreError> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT MAX(last_version) FROM event_batches WHERE thread_id = ?1")?
        .query_row([thread.to_string()], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Brings `stream`'s model up to its version: loads it from the rows and the log when there
/// is none, else folds in the checked events it has not applied yet.
fn catch_up(conn: &Connection, id: ThreadId, stream: &mut Stream) -> Result<(), StoreError> {
    match &mut stream.model {
        None => {
            let loaded = rows::load_thread(conn, id)?;
            stream.model = Some(Model {
                state: StreamState {
                    thread: loaded.thread,
                },
                behind: loaded.behind,
                behind_events: loaded.behind_events,
            });
            stream.unapplied.clear();
        }
        Some(model) => {
            for event in stream.unapplied.drain(..) {
                model.behind_events += 1;
                // Checked against this same model at their version, so they apply; one that
                // did not would be skipped, as the projector skips it.
                let _ = apply_into(&mut model.state.thread, id, &event, &mut model.behind);
            }
        }
    }
    Ok(())
}

/// Writes the rows `stream` is behind on.
fn project(conn: &Connection, id: ThreadId, stream: &mut Stream) -> Result<(), StoreError> {
    if stream.lag() == 0 {
        return Ok(());
    }
    catch_up(conn, id, stream)?;
    if let Some(model) = &mut stream.model {
        if let Some(thread) = model.state.thread.as_ref() {
            rows::write_changes(conn, thread, &model.behind)?;
        }
        model.behind = Changes::default();
        model.behind_events = 0;
    }
    Ok(())
}

/// The stream of `thread`, from the cache or from the log (evicting another, its rows written,
/// when the cache is full).
fn stream<'s>(
    conn: &Connection,
    streams: &'s mut HashMap<ThreadId, Stream>,
    thread: ThreadId,
) -> Result<&'s mut Stream, StoreError> {
    // Another process may have appended to this thread since it was cached: then the cache
    // is stale, and the stream is read again from the log.
    if let Some(cached) = streams.get(&thread)
        && stored_version(conn, thread)? != cached.version
    {
        streams.remove(&thread);
    }
    if !streams.contains_key(&thread) {
        if streams.len() >= CACHED_THREADS
            && let Some(victim) = streams.keys().find(|id| **id != thread).copied()
            && let Some(mut evicted) = streams.remove(&victim)
        {
            // Were this group to roll back, these rows roll back too, and reloading the
            // stream gives what is behind again.
            project(conn, victim, &mut evicted)?;
        }
        let version = stored_version(conn, thread)?;
        streams.insert(
            thread,
            Stream {
                version,
                model: None,
                unapplied: Vec::new(),
            },
        );
    }
    streams.get_mut(&thread).ok_or(StoreError::Closed)
}

/// Checks one append and writes its batch. A refusal writes nothing and leaves the stream as
/// it was; a failed write fails the caller's whole transaction.
#[allow(clippy::too_many_arguments)]
fn append_one(
    conn: &Connection,
    streams: &mut HashMap<ThreadId, Stream>,
    buffer: &mut Vec<u8>,
    next_position: &mut i64,
    thread: ThreadId,
    expect: Expect,
    events: Vec<Event>,
    (recorded_at, recorded): (Timestamp, &str),
) -> Result<Appended, StoreError> {
    if events.is_empty() {
        return Err(StoreError::Empty(thread));
    }
    let s = stream(conn, streams, thread)?;
    let base = s.version;
    let expected = match expect {
        Expect::Unchecked(expected) => expected,
        Expect::Checked(at) => ExpectedVersion::Exact(at),
    };
    if !expected.matches(base) {
        return Err(StoreError::Conflict {
            thread,
            expected,
            actual: base,
        });
    }
    let checked = matches!(expect, Expect::Checked(_));
    let count = events.len();
    if !checked || base == 0 {
        // Checked here and now; a new thread's few events too, so that its rows are written
        // at once and lists show it.
        catch_up(conn, thread, s)?;
        if let Some(model) = &mut s.model {
            match model.state.append(thread, expected, &events) {
                Ok(changes) => {
                    model.behind.merge(changes);
                    model.behind_events += count;
                }
                Err(e) => {
                    if matches!(e, StoreError::Rejected { index, .. } if index > 0) {
                        // The batch's first events were applied: load the model again.
                        s.model = None;
                    }
                    return Err(e);
                }
            }
        }
    }
    buffer.clear();
    buffer.push(b'[');
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            buffer.push(b',');
        }
        serde_json::to_writer(&mut *buffer, event).map_err(|e| StoreError::Corrupt {
            what: "new event".into(),
            reason: e.to_string(),
        })?;
    }
    buffer.push(b']');
    let json = std::str::from_utf8(buffer).map_err(|e| StoreError::Corrupt {
        what: "new event".into(),
        reason: e.to_string(),
    })?;
    let first_position = *next_position;
    let last_position = first_position + count as i64 - 1;
    let key = thread.to_string();
    conn.prepare_cached("INSERT INTO event_batches (first_position, last_position, thread_id, first_version, last_version, recorded_at, events) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
        .execute(params![
            first_position,
            last_position,
            key,
            i64::try_from(base + 1).unwrap_or(i64::MAX),
            i64::try_from(base + count as u64).unwrap_or(i64::MAX),
            recorded,
            json,
        ])?;
    insert_ledger_rows(conn, first_position, &key, &events)?;
    s.version = base + count as u64;
    if checked && base > 0 && s.model.is_some() {
        s.unapplied.extend(events);
    }
    *next_position = last_position + 1;
    let version = s.version;
    if base == 0 || s.lag() >= PROJECT_EVERY {
        project(conn, thread, s)?;
    }
    Ok(Appended {
        first_position: first_position as u64,
        last_position: last_position as u64,
        version,
        recorded_at,
    })
}
