//! An event store in memory: for tests, benchmarks and short-lived embedders.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use tokio::sync::watch;

use super::{Appended, EventStore, ExpectedVersion, StoreError, StreamState};
use crate::event::{Event, RecordedEvent};
use crate::id::ThreadId;
use crate::thread::Thread;

#[derive(Default)]
struct Inner {
    events: Vec<RecordedEvent>,
    streams: HashMap<ThreadId, (StreamState, Vec<usize>)>,
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
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> Result<Appended, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let (state, positions) = inner.streams.entry(thread).or_default();
        if let Err(e) = state.append(thread, expected, &events) {
            if matches!(e, StoreError::Rejected { index, .. } if index > 0) {
                // Undo the batch's first events: fold the stream again from what is stored.
                state.thread = crate::thread::project(
                    thread,
                    positions.iter().map(|&i| &inner.events[i].event),
                );
            }
            if state.thread.is_none() {
                inner.streams.remove(&thread);
            }
            return Err(e);
        }
        let first_version = state.version() + 1 - events.len() as u64;
        let recorded_at = Timestamp::now();
        let first_position = inner.events.len() as u64 + 1;
        for (i, event) in events.into_iter().enumerate() {
            positions.push(inner.events.len());
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
            version: state.version(),
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
        let result = self.append_now(thread, expected, events);
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
            .map(|(_, positions)| {
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
        let snapshot = self
            .lock()
            .streams
            .get(&thread)
            .and_then(|(state, _)| state.thread.clone());
        async move { Ok(snapshot) }
    }
}
