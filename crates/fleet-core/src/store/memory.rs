//! An event store in memory: for tests, benchmarks and short-lived embedders.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use tokio::sync::watch;

use super::{Appended, CheckedEvents, EventStore, ExpectedVersion, StoreError, StreamState};
use crate::event::{Event, RecordedEvent};
use crate::id::ThreadId;
use crate::thread::Thread;

#[derive(Default)]
struct Inner {
    events: Vec<RecordedEvent>,
    streams: HashMap<ThreadId, Stream>,
}

/// One thread's events and read model.
#[derive(Default)]
struct Stream {
    /// The model, with the first `applied` events of `positions` folded in.
    state: StreamState,
    /// Where its events are in `Inner::events`, in order.
    positions: Vec<usize>,
    /// How many of them the model holds: checked appends are folded in when the model is
    /// next needed.
    applied: usize,
}

impl Stream {
    /// Folds the events the model does not hold yet into it.
    fn catch_up(&mut self, id: ThreadId, events: &[RecordedEvent]) {
        for &i in &self.positions[self.applied..] {
            // Checked against this model at their version, so they apply; one that did not
            // would be skipped, as the projector skips it.
            let _ = crate::thread::apply(&mut self.state.thread, id, &events[i].event);
        }
        self.applied = self.positions.len();
    }
}

/// An [`EventStore`] that keeps everything in memory. Cheap to clone; clones share the events.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    head: Arc<watch::Sender<u64>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            head: Arc::new(watch::Sender::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Appends check everything before changing anything, so a poisoned lock guards
        // consistent data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(
        &self,
        thread: ThreadId,
        expect: Result<ExpectedVersion, u64>,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let stream = inner.streams.entry(thread).or_default();
        match expect {
            Ok(expected) => {
                stream.catch_up(thread, &inner.events);
                if let Err(e) = stream.state.append(thread, expected, &events) {
                    if matches!(e, StoreError::Rejected { index, .. } if index > 0) {
                        // Undo the batch's first events: fold the stream again from what is
                        // stored.
                        stream.state.thread = crate::thread::project(
                            thread,
                            stream.positions.iter().map(|&i| &inner.events[i].event),
                        );
                    }
                    if stream.positions.is_empty() {
                        inner.streams.remove(&thread);
                    }
                    return Err(e);
                }
                stream.applied += events.len();
            }
            // Checked events: the version is all there is to check.
            Err(base) => {
                let actual = stream.positions.len() as u64;
                if events.is_empty() || base != actual {
                    if stream.positions.is_empty() {
                        inner.streams.remove(&thread);
                    }
                    return Err(if events.is_empty() {
                        StoreError::Empty(thread)
                    } else {
                        StoreError::Conflict {
                            thread,
                            expected: ExpectedVersion::Exact(base),
                            actual,
                        }
                    });
                }
            }
        }
        let first_version = stream.positions.len() as u64 + 1;
        let recorded_at = Timestamp::now();
        let first_position = inner.events.len() as u64 + 1;
        for (i, event) in events.into_iter().enumerate() {
            stream.positions.push(inner.events.len());
            inner.events.push(RecordedEvent {
                position: inner.events.len() as u64 + 1,
                thread_id: thread,
                version: first_version + i as u64,
                recorded_at,
                event,
            });
        }
        let appended = Appended {
            first_position,
            last_position: inner.events.len() as u64,
            version: stream.positions.len() as u64,
            recorded_at,
        };
        super::publish_head(&self.head, appended.last_position);
        Ok(appended)
    }
}

impl EventStore for MemoryStore {
    fn append(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        // Ordered at call time, like a durable store's queue.
        let result = self.append_now(thread, Ok(expected), events);
        async move { result }
    }

    fn append_checked(
        &self,
        thread: ThreadId,
        events: CheckedEvents,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        let base = events.base();
        let result = self.append_now(thread, Err(base), events.into_events());
        async move { result }
    }

    fn read_stream(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        let inner = self.lock();
        let events = inner
            .streams
            .get(&thread)
            .map(|Stream { positions, .. }| {
                let start = usize::try_from(after_version)
                    .unwrap_or(usize::MAX)
                    .min(positions.len());
                positions[start..]
                    .iter()
                    .take(limit)
                    .map(|&i| inner.events[i].clone())
                    .collect()
            })
            .unwrap_or_default();
        async move { Ok(events) }
    }

    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send {
        let inner = self.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(inner.events.len());
        let events: Vec<RecordedEvent> =
            inner.events[start..].iter().take(limit).cloned().collect();
        async move { Ok(events) }
    }

    fn head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn snapshot(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Thread>, StoreError>> + Send {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let snapshot = inner.streams.get_mut(&thread).and_then(|stream| {
            stream.catch_up(thread, &inner.events);
            stream.state.thread.clone()
        });
        async move { Ok(snapshot) }
    }
}
