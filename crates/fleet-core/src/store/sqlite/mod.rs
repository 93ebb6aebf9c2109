//! The durable embedded event store: SQLite (bundled) in WAL mode.
//!
//! One writer thread commits concurrent appends together. `synchronous = FULL`: an append is on
//! disk before its future resolves. The usage ledger is written in the same transaction as its
//! events; the other projection tables (threads, turns, work units, activities) are a snapshot of
//! the log at the thread row's version, written in batches, and reads apply the events after it
//! (see the writer).
//!
//! ```
//! use fleet_core::command::Recorder;
//! use fleet_core::store::EventStore;
//! use fleet_core::store::sqlite::SqliteStore;
//! use fleet_core::work_unit::WorkUnitKind;
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("fleet.db");
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let store = SqliteStore::open(&path)?;
//! let mut thread = Recorder::create(&store, None).await?;
//! let (_turn, root) = thread.start_turn(WorkUnitKind::Workflow, None).await?;
//! let id = thread.thread().id;
//! drop(thread);
//! drop(store);
//!
//! let reopened = SqliteStore::open(&path)?;
//! let snapshot = reopened.snapshot(id).await?.expect("stored");
//! assert!(snapshot.work_unit(root).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod busy;
mod rows;
mod schema;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{oneshot, watch};

pub use self::schema::SCHEMA_VERSION;
pub use self::writer::RebuildStats;
use self::writer::{Expect, PendingAppend, Request, Writer};
use super::{Appended, CheckedEvents, EventStore, ExpectedVersion, StoreError};
use crate::event::{Event, RecordedEvent};
use crate::id::ThreadId;
use crate::money::{Cost, Usd};
use crate::thread::Thread;
use crate::usage::TokenUsage;

/// Usage and cost of one model, from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUsage {
    /// The model (`None` for usage recorded without one).
    pub model: Option<String>,
    /// Tokens.
    pub usage: TokenUsage,
    /// What they cost.
    pub cost: Cost,
    /// How many usage records.
    pub records: u64,
}

/// How long the store's writer has waited for other processes' write locks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contention {
    /// How many times it found the store locked.
    pub waits: u64,
    /// How long it waited in all.
    pub waited: std::time::Duration,
}

/// The durable event store. Reads run on the caller's thread (they are short and see only
/// committed data); writes go to the writer thread.
pub struct SqliteStore {
    path: PathBuf,
    contention: std::sync::Arc<Mutex<Contention>>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<Connection>,
    head: watch::Receiver<u64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &mut Connection) -> Result<(), StoreError> {
    // Another fleet process writing: wait for it (bounded, and counted; see `busy`).
    conn.busy_handler(Some(busy::handler))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Statement journals (written for each row of an `INSERT OR REPLACE` inside a savepoint)
    // and other temporary files stay in memory: they are scratch, never needed after a crash.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the store at `path`, migrating its
    /// schema to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// When the file cannot be opened or created, when it was written by a newer fleet
    /// ([`StoreError::TooNew`]), or when a migration fails.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut conn = Connection::open(&path)?;
        configure(&mut conn)?;
        schema::migrate(&mut conn)?;
        let last: i64 = conn.query_row(
            "SELECT COALESCE(MAX(last_position), 0) FROM event_batches",
            [],
            |r| r.get(0),
        )?;
        let (head_tx, head) = watch::channel(u64::try_from(last).unwrap_or(0));
        // The writer checkpoints when it is idle or the log has grown large, not every 1000
        // pages in the middle of a burst of appends.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let contention = std::sync::Arc::new(Mutex::new(Contention::default()));
        let writer = Writer::new(conn, head_tx, PathBuf::from(wal), contention.clone())?;
        let mut reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&mut reader)?;
        reader.pragma_update(None, "query_only", true)?;
        let (requests, queue) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("fleet-sqlite-writer".into())
            .spawn(move || writer.run(&queue))
            .map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            path,
            contention,
            requests: Some(requests),
            writer: Some(handle),
            reader: Mutex::new(reader),
            head,
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How long writes have waited so far for other processes using the same file (each
    /// wait is bounded: a write that finds the store locked for 10 s fails, saying so).
    #[must_use]
    pub fn contention(&self) -> Contention {
        *self
            .contention
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // Reads hold no state between calls, so a poisoned lock guards a usable connection.
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        self.requests
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(request)
            .map_err(|_| StoreError::Closed)
    }

    /// Empties the projection tables and rebuilds them from the events, in one transaction.
    ///
    /// # Errors
    /// Storage failures; an event that cannot be decoded.
    pub async fn rebuild_projections(&self) -> Result<RebuildStats, StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Request::Rebuild { reply })?;
        done.await.map_err(|_| StoreError::Closed)?
    }

    /// Usage and cost by model, from the ledger, optionally only since `since`.
    ///
    /// # Errors
    /// Storage failures.
    pub fn usage_by_model(&self, since: Option<Timestamp>) -> Result<Vec<ModelUsage>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT model, SUM(input), SUM(output), SUM(cache_write), SUM(cache_write_1h), SUM(cache_read),
                    SUM(cost_nanos), SUM(unpriced), SUM(records)
             FROM usage_ledger WHERE at_us >= ?1 GROUP BY model ORDER BY model",
        )?;
        let since = since.map_or(i64::MIN, |t| t.as_microsecond());
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        let rows = stmt.query_map([since], |r| {
            Ok(ModelUsage {
                model: r.get(0)?,
                usage: TokenUsage {
                    input: n(r.get(1)?),
                    output: n(r.get(2)?),
                    cache_write: n(r.get(3)?),
                    cache_write_1h: n(r.get(4)?),
                    cache_read: n(r.get(5)?),
                },
                cost: Cost {
                    usd: Usd::from_nanos(r.get(6)?),
                    unpriced: n(r.get(7)?),
                },
                records: n(r.get(8)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The charges no bill can confirm across threads updated since `since` (all when
    /// `None`), as [`Thread::unconfirmed`] finds them in each thread: from the unfinished
    /// work units' rows, without building the threads whose rows are up to date (a killed
    /// process may leave rows behind the log; those few threads are read through).
    ///
    /// # Errors
    /// Storage failures; a row that cannot be decoded.
    pub fn unconfirmed(
        &self,
        since: Option<Timestamp>,
    ) -> Result<Vec<(ThreadId, crate::id::WorkUnitId, Usd)>, StoreError> {
        let conn = self.reader();
        // One read transaction: the rows and the log are of one moment.
        let tx = conn.unchecked_transaction()?;
        let corrupt = |what: &str, reason: String| StoreError::Corrupt {
            what: what.to_owned(),
            reason,
        };
        let mut out = Vec::new();
        let mut lagging = std::collections::HashSet::new();
        {
            let mut behind = tx.prepare_cached(
                "SELECT b.thread_id FROM event_batches b LEFT JOIN threads t ON t.id = b.thread_id
                 GROUP BY b.thread_id HAVING MAX(b.last_version) > COALESCE(MAX(t.version), 0)",
            )?;
            let ids = behind.query_map([], |r| r.get::<_, String>(0))?;
            for id in ids {
                let id = id?;
                let id = ThreadId::parse(&id)
                    .map_err(|e| corrupt(&format!("thread id {id}"), e.to_string()))?;
                lagging.insert(id);
                if let Some(thread) = rows::load_thread(&tx, id)?.thread
                    && since.is_none_or(|t| thread.updated_at >= t)
                {
                    out.extend(
                        thread
                            .unconfirmed()
                            .into_iter()
                            .map(|(u, usd)| (id, u, usd)),
                    );
                }
            }
        }
        let mut units = tx.prepare_cached(
            "SELECT w.data, t.updated_at FROM work_units w JOIN threads t ON t.id = w.thread_id
             WHERE w.state NOT IN ('completed', 'failed', 'cancelled') ORDER BY w.id",
        )?;
        let mut admitted = tx.prepare_cached(
            "SELECT data FROM activities WHERE work_unit_id = ?1
               AND json_extract(data, '$.kind.type') = 'turn_admitted'
             ORDER BY seq DESC LIMIT 1",
        )?;
        let mut rows = units.query([])?;
        while let Some(row) = rows.next()? {
            let data: String = row.get(0)?;
            let updated: String = row.get(1)?;
            let unit: crate::work_unit::WorkUnit =
                serde_json::from_str(&data).map_err(|e| corrupt("work unit row", e.to_string()))?;
            if lagging.contains(&unit.thread_id) {
                continue;
            }
            let updated: Timestamp = updated
                .parse()
                .map_err(|e: jiff::Error| corrupt("thread row's updated_at", e.to_string()))?;
            if since.is_some_and(|t| updated < t) {
                continue;
            }
            let Some(activity) = admitted
                .query_row([unit.id.to_string()], |r| r.get::<_, String>(0))
                .optional()?
            else {
                continue;
            };
            let activity: crate::activity::Activity = serde_json::from_str(&activity)
                .map_err(|e| corrupt("activity row", e.to_string()))?;
            if let crate::activity::ActivityKind::TurnAdmitted {
                reserved,
                tokens_before,
                ..
            } = activity.kind
                && unit.owes_admitted_turn(tokens_before)
            {
                out.push((unit.thread_id, unit.id, reserved));
            }
        }
        drop(rows);
        drop(units);
        drop(admitted);
        tx.finish()?;
        Ok(out)
    }

    /// The ids of all threads, most recently updated first.
    ///
    /// # Errors
    /// Storage failures.
    pub fn thread_ids(&self) -> Result<Vec<ThreadId>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT id FROM threads ORDER BY updated_at DESC, id")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for id in ids {
            let id = id?;
            out.push(ThreadId::parse(&id).map_err(|e| StoreError::Corrupt {
                what: format!("thread row {id}"),
                reason: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// The events of the batches `sql` selects (as `first_position, thread_id, first_version,
    /// recorded_at, events`, in order), after those `skip` refuses, up to `limit`.
    fn query_batches(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        skip: impl Fn(&RecordedEvent) -> bool,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = rows.next()?
        {
            let wanted = rows::batch_rows(row)?.into_iter().filter(|e| !skip(e));
            out.extend(wanted.take(limit - out.len()));
        }
        Ok(out)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it has answered every queued append.
        self.requests = None;
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        // Queued at call time, so appends are ordered as they were called.
        let (reply, done) = oneshot::channel();
        let sent = self.send(Request::Append(PendingAppend {
            thread,
            expect: Expect::Unchecked(expected),
            events,
            reply,
        }));
        async move {
            sent?;
            done.await.map_err(|_| StoreError::Closed)?
        }
    }

    fn append_checked(
        &self,
        thread: ThreadId,
        events: CheckedEvents,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        let (reply, done) = oneshot::channel();
        let sent = self.send(Request::Append(PendingAppend {
            thread,
            expect: Expect::Checked(events.base()),
            events: events.into_events(),
            reply,
        }));
        async move {
            sent?;
            done.await.map_err(|_| StoreError::Closed)?
        }
    }

    fn read_stream(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit_: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        let result = self.query_batches(
            "SELECT first_position, thread_id, first_version, recorded_at, events FROM event_batches WHERE thread_id = ?1 AND last_version > ?2 ORDER BY last_version",
            rusqlite::params![thread.to_string(), i64::try_from(after_version).unwrap_or(i64::MAX)],
            |e| e.version <= after_version,
            limit_,
        );
        async move { result }
    }

    fn read_all(
        &self,
        after: u64,
        limit_: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        // The batch holding position `after + 1` starts at or before it: from there on.
        let result = self.query_batches(
            "SELECT first_position, thread_id, first_version, recorded_at, events FROM event_batches
             WHERE first_position >= (SELECT COALESCE(MAX(first_position), 0) FROM event_batches WHERE first_position <= ?1)
             ORDER BY first_position",
            [i64::try_from(after).unwrap_or(i64::MAX)],
            |e| e.position <= after,
            limit_,
        );
        async move { result }
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    fn snapshot(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Thread>, StoreError>> + Send {
        let result = (|| {
            let conn = self.reader();
            // One read transaction: the rows and the events after them are of one moment.
            let tx = conn.unchecked_transaction()?;
            let loaded = rows::load_thread(&tx, thread)?;
            tx.finish()?;
            Ok(loaded.thread)
        })();
        async move { result }
    }
}

#[cfg(test)]
mod tests;
