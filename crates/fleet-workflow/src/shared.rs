//! What a run's handle and its host share: the run's identity, its event log and watchers,
//! its end, and its cancellation. Below both, so that neither depends on the other for it.

use std::sync::{Arc, Mutex, PoisonError};

use fleet_core::provider::CancelToken;
use tokio::sync::watch;

use crate::events::{RunEvent, RunId, RunSummary};

/// Everything about a run that its handle and its host share.
pub(crate) struct RunShared {
    /// The run.
    pub(crate) id: RunId,
    /// Its workflow's name.
    pub(crate) name: String,
    /// Every event so far, in order.
    pub(crate) events: Mutex<Vec<RunEvent>>,
    /// How many events there are, for watchers.
    pub(crate) count: watch::Sender<usize>,
    /// The summary, once the run has ended.
    pub(crate) state: watch::Sender<Option<Arc<RunSummary>>>,
    /// Stops the run.
    pub(crate) cancel: CancelToken,
    /// The first failure to record something in the store.
    pub(crate) record_error: Mutex<Option<String>>,
}

impl RunShared {
    pub(crate) fn emit(&self, event: RunEvent) {
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        events.push(event);
        let n = events.len();
        drop(events);
        // Waiters subscribe before they look at the events, so nobody listening means nobody
        // can miss this one.
        if self.count.receiver_count() > 0 {
            self.count.send_replace(n);
        }
    }

    pub(crate) fn record_failed(&self, error: String) {
        self.record_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
    }
}
