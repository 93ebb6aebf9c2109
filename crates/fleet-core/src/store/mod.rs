//! The event store seam: append-only streams of events, one per thread.
//!
//! Appends are checked against the thread's read model before they are taken (an event that
//! would break it is refused with [`StoreError::Rejected`]), use optimistic concurrency
//! ([`ExpectedVersion`]), are atomic per call, and are durable before the future resolves.

pub mod memory;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::event::{Event, RecordedEvent};
use crate::id::ThreadId;
use crate::sync::BoxFuture;
use crate::thread::{Thread, Violation, project};

/// What version a stream must be at for an append to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Whatever it is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must hold exactly this many events.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` (0 = missing) matches.
    #[must_use]
    pub fn matches(self, actual: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual == 0,
            Self::Exact(v) => v == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The store position of the first event.
    pub first_position: u64,
    /// The store position of the last event.
    pub last_position: u64,
    /// The stream's version after the append.
    pub version: u64,
    /// When the store took the events.
    pub recorded_at: Timestamp,
}

/// An event store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer appended first.
    #[error("thread {thread}: expected {expected} but the stream is at version {actual}")]
    Conflict {
        /// The stream.
        thread: ThreadId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// Where the stream is.
        actual: u64,
    },
    /// An event would break the read model; nothing of the append was taken.
    #[error("thread {thread}: event {index} of the append was refused: {violation}")]
    Rejected {
        /// The stream.
        thread: ThreadId,
        /// The refused event's index in the append.
        index: usize,
        /// Why.
        violation: Violation,
    },
    /// An append of no events.
    #[error("thread {0}: an append needs at least one event")]
    Empty(ThreadId),
    /// A stored record cannot be decoded.
    #[error("stored {what} cannot be decoded: {reason}")]
    Corrupt {
        /// Which record (e.g. `event at position 12`).
        what: String,
        /// Why.
        reason: String,
    },
    /// The transaction could not be committed; nothing of the append was stored.
    #[error("the append could not be committed, nothing was stored: {reason}")]
    CommitFailed {
        /// Why.
        reason: String,
    },
    /// The database was written by a newer fleet.
    #[error(
        "the database is at schema version {found}, newer than this fleet supports ({supported}): upgrade fleet"
    )]
    TooNew {
        /// The database's version.
        found: u32,
        /// The newest this build knows.
        supported: u32,
    },
    /// SQLite failed.
    #[cfg(feature = "sqlite")]
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The store was closed.
    #[error("the event store is closed")]
    Closed,
}

impl StoreError {
    /// Whether trying the same thing again may succeed (after re-reading, for a conflict).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict { .. } => true,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            Self::Rejected { .. }
            | Self::Empty(_)
            | Self::Corrupt { .. }
            | Self::CommitFailed { .. }
            | Self::TooNew { .. }
            | Self::Io { .. }
            | Self::Closed => false,
        }
    }
}

/// Events already checked against a thread's read model at version [`CheckedEvents::base`],
/// as [`Recorder`](crate::command::Recorder) and [`Journal`](crate::journal::Journal) check
/// every event before appending it. A stream still at `base` has the model they were checked
/// against, so a store may take them with a version check alone (see
/// [`EventStore::append_checked`]). Only fleet-core makes them.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedEvents {
    base: u64,
    events: Vec<Event>,
}

impl CheckedEvents {
    /// Events that applied, in order, to the thread at version `base`.
    pub(crate) fn new(base: u64, events: Vec<Event>) -> Self {
        Self { base, events }
    }

    /// The version they were checked at: the append expects the stream there.
    #[must_use]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The events.
    #[must_use]
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The events, owned.
    #[must_use]
    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

/// Append-only event streams, one per thread.
///
/// Implementations: [`memory::MemoryStore`], and `sqlite::SqliteStore` with the default `sqlite`
/// feature. Every implementation passes `fleet_core::testkit::event_store_conformance`.
pub trait EventStore: Send + Sync {
    /// Appends `events` to `thread`'s stream if it is at `expected`. All or nothing; durable
    /// when the future resolves.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the stream is elsewhere, [`StoreError::Rejected`] when an
    /// event would break the thread's model, and storage failures.
    fn append(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Appends events checked against the thread at version `events.base()`: the same as
    /// `append(thread, ExpectedVersion::Exact(base), events)`, except that the store may skip
    /// checking the events against its own model, or check them later. The default does the
    /// plain append.
    ///
    /// # Errors
    /// As [`EventStore::append`].
    fn append_checked(
        &self,
        thread: ThreadId,
        events: CheckedEvents,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        let base = events.base();
        self.append(thread, ExpectedVersion::Exact(base), events.into_events())
    }

    /// Up to `limit` events of `thread` with version greater than `after_version`, in order.
    ///
    /// # Errors
    /// Storage failures.
    fn read_stream(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Up to `limit` events of all streams with position greater than `after`, in order.
    ///
    /// # Errors
    /// Storage failures.
    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The position of the last event, watched: it changes after every append.
    fn head(&self) -> watch::Receiver<u64>;

    /// The thread's read model, or `None` when there is no such stream.
    ///
    /// # Errors
    /// Storage failures.
    fn snapshot(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Thread>, StoreError>> + Send {
        async move {
            let mut events = Vec::new();
            loop {
                let page = self.read_stream(thread, events.len() as u64, 4096).await?;
                if page.is_empty() {
                    break;
                }
                events.extend(page);
            }
            Ok(project(thread, events.iter().map(|e| &e.event)))
        }
    }

    /// Every event after position `after`, then each new one as it is appended.
    fn subscribe(&self, after: u64) -> Subscription<'_, Self>
    where
        Self: Sized,
    {
        Subscription {
            store: self,
            position: after,
            buffer: VecDeque::new(),
            head: self.head(),
        }
    }
}

/// Moves a store's head to `last`. Waking receivers costs a round of locks, so with none
/// the value changes silently: a receiver made later starts from it, and one that reads the
/// store after subscribing sees these events there.
pub(crate) fn publish_head(head: &watch::Sender<u64>, last: u64) {
    if head.receiver_count() == 0 {
        head.send_if_modified(|value| {
            *value = last;
            false
        });
    } else {
        head.send_replace(last);
    }
}

/// A live, lossless feed of events (see [`EventStore::subscribe`]).
pub struct Subscription<'s, S: ?Sized> {
    store: &'s S,
    position: u64,
    buffer: VecDeque<RecordedEvent>,
    head: watch::Receiver<u64>,
}

impl<S: EventStore + ?Sized> Subscription<'_, S> {
    /// The next event, waiting for one to be appended if need be.
    ///
    /// # Errors
    /// Storage failures, and [`StoreError::Closed`] when the store goes away.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.position = event.position;
                return Ok(event);
            }
            // Mark the current head as seen before reading, so an append after the read wakes us.
            self.head.borrow_and_update();
            let page = self.store.read_all(self.position, 1024).await?;
            if page.is_empty() {
                self.head.changed().await.map_err(|_| StoreError::Closed)?;
            } else {
                self.buffer.extend(page);
            }
        }
    }

    /// The position of the last event returned.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }
}

/// [`EventStore`] for dynamic dispatch: `Arc<dyn DynEventStore>` is itself an [`EventStore`].
pub trait DynEventStore: Send + Sync {
    /// See [`EventStore::append`].
    fn append_dyn(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> BoxFuture<'_, Result<Appended, StoreError>>;
    /// See [`EventStore::append_checked`].
    fn append_checked_dyn(
        &self,
        thread: ThreadId,
        events: CheckedEvents,
    ) -> BoxFuture<'_, Result<Appended, StoreError>>;
    /// See [`EventStore::read_stream`].
    fn read_stream_dyn(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>>;
    /// See [`EventStore::read_all`].
    fn read_all_dyn(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>>;
    /// See [`EventStore::head`].
    fn head_dyn(&self) -> watch::Receiver<u64>;
    /// See [`EventStore::snapshot`].
    fn snapshot_dyn(&self, thread: ThreadId) -> BoxFuture<'_, Result<Option<Thread>, StoreError>>;
}

impl<T: EventStore> DynEventStore for T {
    fn append_dyn(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> BoxFuture<'_, Result<Appended, StoreError>> {
        Box::pin(self.append(thread, expected, events))
    }
    fn append_checked_dyn(
        &self,
        thread: ThreadId,
        events: CheckedEvents,
    ) -> BoxFuture<'_, Result<Appended, StoreError>> {
        Box::pin(self.append_checked(thread, events))
    }
    fn read_stream_dyn(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(self.read_stream(thread, after_version, limit))
    }
    fn read_all_dyn(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(self.read_all(after, limit))
    }
    fn head_dyn(&self) -> watch::Receiver<u64> {
        self.head()
    }
    fn snapshot_dyn(&self, thread: ThreadId) -> BoxFuture<'_, Result<Option<Thread>, StoreError>> {
        Box::pin(self.snapshot(thread))
    }
}

impl EventStore for dyn DynEventStore + '_ {
    fn append(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        self.append_dyn(thread, expected, events)
    }
    fn append_checked(
        &self,
        thread: ThreadId,
        events: CheckedEvents,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        self.append_checked_dyn(thread, events)
    }
    fn read_stream(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.read_stream_dyn(thread, after_version, limit)
    }
    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        self.read_all_dyn(after, limit)
    }
    fn head(&self) -> watch::Receiver<u64> {
        self.head_dyn()
    }
    fn snapshot(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Thread>, StoreError>> + Send {
        self.snapshot_dyn(thread)
    }
}

macro_rules! forward_event_store {
    ($($ty:ty),*) => {$(
        impl<T: EventStore + ?Sized> EventStore for $ty {
            fn append(&self, thread: ThreadId, expected: ExpectedVersion, events: Vec<Event>) -> impl Future<Output = Result<Appended, StoreError>> + Send {
                (**self).append(thread, expected, events)
            }
            fn append_checked(&self, thread: ThreadId, events: CheckedEvents) -> impl Future<Output = Result<Appended, StoreError>> + Send {
                (**self).append_checked(thread, events)
            }
            fn read_stream(&self, thread: ThreadId, after_version: u64, limit: usize) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
                (**self).read_stream(thread, after_version, limit)
            }
            fn read_all(&self, after: u64, limit: usize) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
                (**self).read_all(after, limit)
            }
            fn head(&self) -> watch::Receiver<u64> {
                (**self).head()
            }
            fn snapshot(&self, thread: ThreadId) -> impl Future<Output = Result<Option<Thread>, StoreError>> + Send {
                (**self).snapshot(thread)
            }
        }
    )*};
}

forward_event_store!(&T, Arc<T>);

/// One stream's state as a store keeps it: its version and read model.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamState {
    pub(crate) thread: Option<Thread>,
}

impl StreamState {
    pub(crate) fn version(&self) -> u64 {
        self.thread.as_ref().map_or(0, |t| t.version)
    }

    /// Checks `events` against the expected version and the model and applies them. Returns
    /// what changed. On `Err(Rejected { index > 0 })` the earlier events of the batch were applied
    /// and the caller restores the state from its stored events.
    pub(crate) fn append(
        &mut self,
        id: ThreadId,
        expected: ExpectedVersion,
        events: &[Event],
    ) -> Result<crate::thread::Changes, StoreError> {
        if events.is_empty() {
            return Err(StoreError::Empty(id));
        }
        let actual = self.version();
        if !expected.matches(actual) {
            return Err(StoreError::Conflict {
                thread: id,
                expected,
                actual,
            });
        }
        // Applied in place: a refused event changes nothing, but a refusal part-way through a
        // batch leaves the earlier events applied, so the caller must then restore the stream
        // from what it stored (see `StreamState::restore_needed`).
        let mut changes = crate::thread::Changes::default();
        for (index, event) in events.iter().enumerate() {
            crate::thread::apply_into(&mut self.thread, id, event, &mut changes).map_err(
                |violation| StoreError::Rejected {
                    thread: id,
                    index,
                    violation,
                },
            )?;
        }
        Ok(changes)
    }
}
