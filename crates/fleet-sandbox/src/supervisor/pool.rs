//! An agent's pool of workers, as the supervisor and its gateway see it.

use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fleet_core::budget::BudgetId;
use fleet_core::ipc::Note;
pub(crate) use fleet_core::sync::lock;
use tokio::sync::{Semaphore, mpsc};

use super::assignment::Assignment;
use crate::{WorkerPlan, WorkerProcess};

/// A worker of a pool: its process, the notifications it sends, and the task it runs.
pub(crate) struct Pooled {
    pub(crate) process: WorkerProcess,
    pub(super) notes: tokio::sync::Mutex<mpsc::UnboundedReceiver<Note>>,
    /// The task it runs now, with its model turns in flight.
    pub(crate) task: Mutex<Option<Assignment>>,
}

/// One agent's workers: its plan, how many may work at once, the idle and busy ones, its
/// budget and whether it is paused.
pub(crate) struct Pool {
    pub(crate) plan: WorkerPlan,
    pub(super) slots: Arc<Semaphore>,
    pub(super) idle: Mutex<Vec<(Arc<Pooled>, Instant)>>,
    pub(super) busy: Mutex<Vec<Arc<Pooled>>>,
    pub(super) deaths_in_a_row: AtomicU32,
    pub(crate) budget: BudgetId,
    pub(crate) paused: Mutex<Option<String>>,
}
