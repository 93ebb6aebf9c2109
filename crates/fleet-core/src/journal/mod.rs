//! A shared handle on one thread's read model, for the many tasks of a run that record into
//! the same thread concurrently (agent calls, subagents, the workflow itself).
//!
//! Each command is validated against the thread and applied to the in-memory read model at
//! once, when the write is called (not when its future is first polled), in the order the
//! commands arrive, and queued for the store; the future a write returns only waits for
//! durability and holds nothing of the command. One background appender
//! per journal hands everything queued so far to the store as one append (one transaction, one
//! fsync) while the previous append is being synced, so concurrent writers share commits and
//! the store never waits for a caller.
//!
//! A journal has two faces over the same thread. The default one resolves each write once its
//! event is durable. [`Journal::write_behind`] returns one whose writes resolve as soon as they
//! are validated and queued; whoever acknowledges work to the outside world calls
//! [`Journal::flush`] first, which resolves once everything recorded so far is durable. That
//! is how a workflow records the several events of an agent call without waiting for the disk
//! between them, yet never reports the call finished before they are on disk.
//!
//! A journal is its thread's only writer. When the store refuses or fails an append, the
//! journal stops: every later write and flush reports that failure (the read model may hold
//! events the store does not).

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard, PoisonError};

use jiff::Timestamp;
use tokio::sync::oneshot;

use crate::activity::ActivityKind;
use crate::command::{Command, CommandError, Recorder, WorkUnitDraft, decide};
use crate::event::Event;
use crate::id::{ThreadId, TurnId, WorkUnitId};
use crate::money::Usd;
use crate::pricing::PriceTable;
use crate::store::{CheckedEvents, DynEventStore, StoreError};
use crate::thread::{Changes, Thread};
use crate::usage::TokenUsage;
use crate::work_unit::WorkUnitState;

/// The store type a [`Journal`] records into.
pub type SharedStore = Arc<dyn DynEventStore>;

/// A cloneable, concurrent recorder of one thread. All clones record into the same thread.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
    write_behind: bool,
}

struct Inner {
    store: SharedStore,
    prices: Arc<PriceTable>,
    thread_id: ThreadId,
    state: std::sync::Mutex<State>,
}

struct State {
    /// The read model, with every accepted event applied (durable or not).
    thread: Thread,
    /// Scratch for what an event changed (the journal needs none of it).
    changes: Changes,
    /// Accepted events not yet handed to the store, in order.
    queued: Vec<Event>,
    /// Whether the appender task is running.
    appending: bool,
    /// The thread's version the store has made durable.
    durable: u64,
    /// Why the store stopped taking this thread's events.
    failed: Option<String>,
    /// Who waits for which version to be durable, in the order they asked (versions only
    /// grow, so this is by version too): each append wakes just the ones it satisfies.
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("thread_id", &self.inner.thread_id)
            .field("write_behind", &self.write_behind)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Shares `recorder`'s thread, store and price table.
    #[must_use]
    pub fn new(recorder: Recorder<SharedStore>) -> Self {
        let (store, thread, prices) = recorder.into_parts();
        Self::with_thread(store, prices, thread, Vec::new())
    }

    /// A journal over `thread`, whose last `queued` events are not yet in the store.
    fn with_thread(
        store: SharedStore,
        prices: Arc<PriceTable>,
        thread: Thread,
        queued: Vec<Event>,
    ) -> Self {
        let thread_id = thread.id;
        let durable = thread.version - queued.len() as u64;
        Self {
            inner: Arc::new(Inner {
                store,
                prices,
                thread_id,
                state: std::sync::Mutex::new(State {
                    thread,
                    changes: Changes::default(),
                    queued,
                    appending: false,
                    durable,
                    failed: None,
                    waiters: VecDeque::new(),
                }),
            }),
            write_behind: false,
        }
    }

    /// Creates a thread in `store` and shares its recorder.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn create(store: SharedStore, title: Option<String>) -> Result<Self, CommandError> {
        Ok(Self::new(Recorder::create(store, title).await?))
    }

    /// Starts a new thread in `store` without waiting for the disk: its creation is queued like
    /// a [`write_behind`](Journal::write_behind) write and is durable by the next
    /// [`Journal::flush`] (or the next write of a journal that waits). A run starts its script
    /// at once; nothing it acknowledges can get ahead of the thread's creation.
    ///
    /// # Errors
    /// When called outside a tokio runtime (the appender runs on it).
    pub fn begin(store: SharedStore, title: Option<String>) -> Result<Self, CommandError> {
        let (thread, created) = crate::command::new_thread(title)?;
        let journal = Self::with_thread(store, PriceTable::shipped(), thread, vec![created]);
        journal.start_appending(&mut journal.state())?;
        Ok(journal)
    }

    /// The thread recorded into.
    #[must_use]
    pub fn thread_id(&self) -> ThreadId {
        self.inner.thread_id
    }

    /// Opens an existing thread of `store` and shares its recorder.
    ///
    /// # Errors
    /// As [`Recorder::open`].
    pub async fn open(store: SharedStore, id: ThreadId) -> Result<Self, CommandError> {
        Ok(Self::new(Recorder::open(store, id).await?))
    }

    /// The same journal, whose writes resolve once validated and queued instead of once
    /// durable. Call [`Journal::flush`] before telling anyone the work is done.
    #[must_use]
    pub fn write_behind(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            write_behind: true,
        }
    }

    /// Whether this face's writes resolve before they are durable.
    #[must_use]
    pub fn is_write_behind(&self) -> bool {
        self.write_behind
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Validates `command` into an event, applies it to the read model and queues it for the
    /// store; returns what `pick` takes from the event, and the thread's version with it.
    fn record<R>(
        &self,
        command: Command,
        pick: impl FnOnce(&Event) -> R,
    ) -> Result<(R, u64), CommandError> {
        let mut state = self.state();
        if let Some(reason) = &state.failed {
            return Err(stopped(reason));
        }
        let event = decide(&state.thread, command, Timestamp::now(), &self.inner.prices)?;
        let State {
            thread, changes, ..
        } = &mut *state;
        thread.apply_event_into(&event, changes)?;
        changes.clear();
        let version = state.thread.version;
        let picked = pick(&event);
        state.queued.push(event);
        self.start_appending(&mut state)?;
        Ok((picked, version))
    }

    /// Starts the appender unless it is running (it stops when the queue is empty).
    fn start_appending(&self, state: &mut State) -> Result<(), CommandError> {
        if !state.appending {
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|_| StoreError::CommitFailed {
                    reason: "a journal records from within a tokio runtime".into(),
                })?;
            state.appending = true;
            runtime.spawn(append_queued(self.inner.clone()));
        }
        Ok(())
    }

    /// Waits until the thread is durable up to `version` (`None`: as far as it is recorded).
    async fn durable(&self, version: Option<u64>) -> Result<(), CommandError> {
        let (version, waiting) = {
            let mut state = self.state();
            let version = version.unwrap_or(state.thread.version);
            if state.durable >= version {
                return Ok(());
            }
            if let Some(reason) = &state.failed {
                return Err(stopped(reason));
            }
            let (tx, rx) = oneshot::channel();
            state.waiters.push_back((version, tx));
            (version, rx)
        };
        // Woken when the version is durable or the journal stopped; the state says which.
        let _ = waiting.await;
        let state = self.state();
        match &state.failed {
            Some(reason) => Err(stopped(reason)),
            None if state.durable >= version => Ok(()),
            // The appender went away with the runtime.
            None => Err(CommandError::Interrupted),
        }
    }

    /// Validates `command` and records it, together with whatever other clones record
    /// meanwhile. Resolves once the event is durable (at once for a
    /// [`write_behind`](Journal::write_behind) journal).
    ///
    /// The command is validated and recorded when this is called, not when the future is first
    /// polled: commands are recorded in the order they are issued, and the future holds only
    /// what it returns, not the command. The future borrows nothing and may be spawned.
    ///
    /// # Errors
    /// [`CommandError::Violation`] when the command cannot happen to the thread as it is
    /// (nothing is recorded); the store's failure, for this event or an earlier one.
    pub fn execute(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Event, CommandError>> + Send + 'static {
        self.execute_with(command, Event::clone)
    }

    /// As [`Journal::execute`], returning only what `pick` takes from the event (the event
    /// itself is moved to the store's queue, not copied).
    fn execute_with<R: Send + 'static>(
        &self,
        command: Command,
        pick: impl FnOnce(&Event) -> R,
    ) -> impl Future<Output = Result<R, CommandError>> + Send + 'static {
        let recorded = self.record(command, pick);
        // The future owns its handle, so that it can be spawned: the write itself is done.
        let wait = (!self.write_behind).then(|| self.clone());
        async move {
            let (picked, version) = recorded?;
            if let Some(journal) = wait {
                journal.durable(Some(version)).await?;
            }
            Ok(picked)
        }
    }

    /// Resolves once everything recorded so far, by any clone, is durable.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn flush(&self) -> Result<(), CommandError> {
        self.durable(None).await
    }

    /// Reads the thread as recorded so far (including events not yet durable).
    pub async fn read<R>(&self, f: impl FnOnce(&Thread) -> R) -> R {
        f(&self.state().thread)
    }

    /// Starts a turn whose running root is `root`; returns the turn and the root.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub fn start_turn(
        &self,
        input: Option<String>,
        root: WorkUnitDraft,
    ) -> impl Future<Output = Result<(TurnId, WorkUnitId), CommandError>> + Send + 'static {
        let started = self.execute_with(Command::StartTurn { input, root }, |event| match event {
            Event::TurnStarted { turn_id, root, .. } => Some((*turn_id, root.id)),
            _ => None,
        });
        let thread = self.inner.thread_id;
        async move { started.await?.ok_or(CommandError::NoThread(thread)) }
    }

    /// Records `draft` under `parent`; returns the new unit.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub fn start_work_unit(
        &self,
        parent: WorkUnitId,
        draft: WorkUnitDraft,
    ) -> impl Future<Output = Result<WorkUnitId, CommandError>> + Send + 'static {
        let command = Command::StartWorkUnit {
            parent_id: parent,
            draft,
        };
        let started = self.execute_with(command, |event| match event {
            Event::WorkUnitUpserted { work_unit } => Some(work_unit.id),
            _ => None,
        });
        let thread = self.inner.thread_id;
        async move { started.await?.ok_or(CommandError::NoThread(thread)) }
    }

    /// Moves a unit to `state`.
    ///
    /// # Errors
    /// As [`Recorder::execute`]; a finished unit cannot change state.
    pub fn set_state(
        &self,
        unit: WorkUnitId,
        state: WorkUnitState,
        error: Option<String>,
    ) -> impl Future<Output = Result<(), CommandError>> + Send + 'static {
        let command = Command::SetWorkUnitState {
            work_unit_id: unit,
            state,
            error,
        };
        self.execute_with(command, |_| ())
    }

    /// Moves a pre-recorded unit to `running`, naming the model it runs on when the unit was
    /// recorded without one (a workflow records its calls before a runner picks the model).
    ///
    /// # Errors
    /// As [`Journal::set_state`].
    pub async fn set_running(
        &self,
        unit: WorkUnitId,
        model: Option<String>,
    ) -> Result<(), CommandError> {
        let record = match model {
            Some(_) => {
                self.read(|t| t.work_unit(unit).map(|u| u.record.clone()))
                    .await
            }
            None => None,
        };
        match (record, model) {
            (Some(mut record), Some(model))
                if record.model.is_none() && !record.state.is_terminal() =>
            {
                let now = jiff::Timestamp::now();
                record.model = Some(model);
                record.state = WorkUnitState::Running;
                record.started_at.get_or_insert(now);
                record.updated_at = now;
                self.execute_with(Command::UpsertWorkUnit(record), |_| ())
                    .await
            }
            _ => self.set_state(unit, WorkUnitState::Running, None).await,
        }
    }

    /// Records an activity of `unit`.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub fn activity(
        &self,
        unit: WorkUnitId,
        kind: ActivityKind,
    ) -> impl Future<Output = Result<(), CommandError>> + Send + 'static {
        let command = Command::AppendActivity {
            turn_id: None,
            work_unit_id: Some(unit),
            kind,
        };
        self.execute_with(command, |_| ())
    }

    /// Records tokens `unit` used with `model`, at `cost` when the caller knows it, else priced
    /// from the price table; returns their price (`None`: unpriced model).
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub fn usage(
        &self,
        unit: WorkUnitId,
        model: &str,
        usage: TokenUsage,
        cost: Option<Usd>,
    ) -> impl Future<Output = Result<Option<Usd>, CommandError>> + Send + 'static {
        let model = Some(model.to_owned());
        let command = match cost {
            Some(cost) => Command::RecordPricedUsage {
                work_unit_id: unit,
                model,
                usage,
                cost,
            },
            None => Command::RecordUsage {
                work_unit_id: unit,
                model,
                usage,
            },
        };
        self.execute_with(command, |event| match event {
            Event::UsageRecorded { cost, .. } => *cost,
            _ => None,
        })
    }
}

fn stopped(reason: &str) -> CommandError {
    CommandError::Store(StoreError::CommitFailed {
        reason: format!("the journal stopped recording: {reason}"),
    })
}

/// Hands whatever is queued to the store, one append at a time, until nothing is left.
async fn append_queued(inner: Arc<Inner>) {
    loop {
        let (base, events) = {
            let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.queued.is_empty() || state.failed.is_some() {
                state.appending = false;
                return;
            }
            // The next batch is likely as large as this one: one allocation, not a dozen
            // regrowths while the script's thread records.
            let room = state.queued.len();
            let events = std::mem::replace(&mut state.queued, Vec::with_capacity(room));
            (state.thread.version - events.len() as u64, events)
        };
        let count = events.len() as u64;
        let appended = inner
            .store
            .append_checked_dyn(inner.thread_id, CheckedEvents::new(base, events))
            .await;
        let woken: Vec<_> = {
            let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
            match appended {
                Ok(_) => {
                    state.durable = base + count;
                    let ready = state
                        .waiters
                        .iter()
                        .take_while(|(version, _)| *version <= base + count)
                        .count();
                    state.waiters.drain(..ready).collect()
                }
                Err(e) => {
                    state.failed = Some(e.to_string());
                    state.waiters.drain(..).collect()
                }
            }
        };
        for (_, waiter) in woken {
            let _ = waiter.send(());
        }
    }
}

#[cfg(test)]
mod tests;
