//! The run's wake-up queue: which host futures are woken, for the run's thread to poll, and
//! the waker that puts them there.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Which host futures are woken, for the run's thread to poll.
pub(super) struct RunQueue {
    pub(super) woken: Mutex<Woken>,
    /// The run's thread, unparked by every wake-up from another thread.
    pub(super) thread: std::thread::Thread,
    /// Set when the run is stopped.
    pub(super) stop: AtomicBool,
    /// The task being polled ([`NOT_POLLING`] between polls), to tell a task that wakes itself
    /// (a yield) from one woken by another.
    pub(super) polling: AtomicUsize,
}

pub(super) const NOT_POLLING: usize = usize::MAX;

#[derive(Default)]
pub(super) struct Woken {
    /// Woken from other threads (a reply, a commit), in the order they were woken.
    pub(super) remote: Vec<usize>,
    /// Woken on the run's thread while it polled another task: a call that ends admits the
    /// next one, and that one is polled next, before the other woken tasks (as tokio's LIFO
    /// slot does), so that it starts at once instead of after every other call that ended.
    pub(super) local: Vec<usize>,
    /// Woke themselves while polled (`yield_now`): polled again once the script has run, in
    /// the next round or after the script's next call that starts host work, never at once.
    pub(super) yielded: Vec<usize>,
}

thread_local! {
    /// The queue of the run whose thread this is (its address), to tell a wake-up on the
    /// run's own thread from one on another.
    pub(super) static DRIVING: Cell<usize> = const { Cell::new(0) };
}

impl RunQueue {
    pub(super) fn push(self: &Arc<Self>, task: usize) {
        let here = DRIVING.with(Cell::get) == Arc::as_ptr(self) as usize;
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        if here && self.polling.load(Ordering::Relaxed) == task {
            woken.yielded.push(task);
        } else if here {
            woken.local.push(task);
        } else {
            woken.remote.push(task);
            drop(woken);
            self.thread.unpark();
        }
    }

    /// Moves every woken task into `into` (those woken on the run's thread first).
    pub(super) fn take(&self, into: &mut Vec<usize>) {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        into.append(&mut woken.local);
        into.append(&mut woken.yielded);
        into.append(&mut woken.remote);
    }

    /// Moves the tasks of one list (`local` or `yielded`) into `into`.
    pub(super) fn take_list(&self, into: &mut Vec<usize>, list: fn(&mut Woken) -> &mut Vec<usize>) {
        into.append(list(
            &mut self.woken.lock().unwrap_or_else(PoisonError::into_inner),
        ));
    }

    /// Puts back local tasks taken with [`RunQueue::take_list`] but not polled.
    pub(super) fn requeue(&self, tasks: &mut Vec<usize>) {
        if !tasks.is_empty() {
            let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
            woken.local.append(tasks);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        let woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        woken.remote.is_empty() && woken.local.is_empty() && woken.yielded.is_empty()
    }
}

/// Wakes one host future: queues it and unparks the run's thread.
pub(super) struct TaskWaker {
    pub(super) task: usize,
    pub(super) queue: Arc<RunQueue>,
}

impl std::task::Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.task);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.task);
    }
}
