//! A shared handle on one thread's [`Recorder`], for the many tasks of a run that record into
//! the same thread concurrently (agent calls, subagents, the workflow itself).
//!
//! Concurrent commands are group-committed: each caller queues its command, and whoever holds
//! the recorder executes everything queued so far as one store append (one transaction, one
//! fsync). Every caller still gets its own outcome, and only once its event is durable.

use std::sync::{Arc, PoisonError};

use tokio::sync::{Mutex, oneshot};

use crate::activity::ActivityKind;
use crate::command::{Command, CommandError, Recorder, WorkUnitDraft};
use crate::event::{Event, RecordedEvent};
use crate::id::{ThreadId, TurnId, WorkUnitId};
use crate::money::Usd;
use crate::store::DynEventStore;
use crate::thread::Thread;
use crate::usage::TokenUsage;
use crate::work_unit::WorkUnitState;

/// The store type a [`Journal`] records into.
pub type SharedStore = Arc<dyn DynEventStore>;

type Queued = (
    Command,
    oneshot::Sender<Result<RecordedEvent, CommandError>>,
);

/// A cloneable, concurrent recorder of one thread. All clones record into the same thread.
#[derive(Clone)]
pub struct Journal {
    recorder: Arc<Mutex<Recorder<SharedStore>>>,
    queue: Arc<std::sync::Mutex<Vec<Queued>>>,
    thread_id: ThreadId,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("thread_id", &self.thread_id)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Shares `recorder`.
    #[must_use]
    pub fn new(recorder: Recorder<SharedStore>) -> Self {
        let thread_id = recorder.thread().id;
        Self {
            recorder: Arc::new(Mutex::new(recorder)),
            queue: Arc::default(),
            thread_id,
        }
    }

    /// Creates a thread in `store` and shares its recorder.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn create(store: SharedStore, title: Option<String>) -> Result<Self, CommandError> {
        Ok(Self::new(Recorder::create(store, title).await?))
    }

    /// The thread recorded into.
    #[must_use]
    pub fn thread_id(&self) -> ThreadId {
        self.thread_id
    }

    /// Opens an existing thread of `store` and shares its recorder.
    ///
    /// # Errors
    /// As [`Recorder::open`].
    pub async fn open(store: SharedStore, id: ThreadId) -> Result<Self, CommandError> {
        Ok(Self::new(Recorder::open(store, id).await?))
    }

    /// Validates `command` and appends it, together with whatever other clones queued
    /// meanwhile. Resolves once the event is durable.
    ///
    /// # Errors
    /// As [`Recorder::execute`]; [`CommandError::Interrupted`] when the task recording the
    /// batch was dropped before it could report.
    pub async fn execute(&self, command: Command) -> Result<RecordedEvent, CommandError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((command, tx));
        {
            let mut recorder = self.recorder.lock().await;
            let batch =
                std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
            if !batch.is_empty() {
                let (commands, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let results = recorder.execute_batch(commands).await;
                for (sender, result) in senders.into_iter().zip(results) {
                    // The caller may have given up waiting; its event is recorded regardless.
                    let _ = sender.send(result);
                }
            }
        }
        rx.await.unwrap_or(Err(CommandError::Interrupted))
    }

    /// Reads the thread as recorded so far.
    pub async fn read<R>(&self, f: impl FnOnce(&Thread) -> R) -> R {
        f(self.recorder.lock().await.thread())
    }

    /// Starts a turn whose running root is `root`; returns the turn and the root.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn start_turn(
        &self,
        input: Option<String>,
        root: WorkUnitDraft,
    ) -> Result<(TurnId, WorkUnitId), CommandError> {
        let recorded = self.execute(Command::StartTurn { input, root }).await?;
        match recorded.event {
            Event::TurnStarted { turn_id, root, .. } => Ok((turn_id, root.id)),
            _ => Err(CommandError::NoThread(self.thread_id)),
        }
    }

    /// Records `draft` under `parent`; returns the new unit.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn start_work_unit(
        &self,
        parent: WorkUnitId,
        draft: WorkUnitDraft,
    ) -> Result<WorkUnitId, CommandError> {
        let recorded = self
            .execute(Command::StartWorkUnit {
                parent_id: parent,
                draft,
            })
            .await?;
        match recorded.event {
            Event::WorkUnitUpserted { work_unit } => Ok(work_unit.id),
            _ => Err(CommandError::NoThread(self.thread_id)),
        }
    }

    /// Moves a unit to `state`.
    ///
    /// # Errors
    /// As [`Recorder::execute`]; a finished unit cannot change state.
    pub async fn set_state(
        &self,
        unit: WorkUnitId,
        state: WorkUnitState,
        error: Option<String>,
    ) -> Result<(), CommandError> {
        self.execute(Command::SetWorkUnitState {
            work_unit_id: unit,
            state,
            error,
        })
        .await
        .map(drop)
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
                self.execute(Command::UpsertWorkUnit(record))
                    .await
                    .map(drop)
            }
            _ => self.set_state(unit, WorkUnitState::Running, None).await,
        }
    }

    /// Records an activity of `unit`.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn activity(&self, unit: WorkUnitId, kind: ActivityKind) -> Result<(), CommandError> {
        self.execute(Command::AppendActivity {
            turn_id: None,
            work_unit_id: Some(unit),
            kind,
        })
        .await
        .map(drop)
    }

    /// Records tokens `unit` used with `model`, at `cost` when the caller knows it, else priced
    /// from the price table; returns their price (`None`: unpriced model).
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn usage(
        &self,
        unit: WorkUnitId,
        model: &str,
        usage: TokenUsage,
        cost: Option<Usd>,
    ) -> Result<Option<Usd>, CommandError> {
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
        let recorded = self.execute(command).await?;
        Ok(match recorded.event {
            Event::UsageRecorded { cost, .. } => cost,
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commands_are_batched_and_a_refused_one_stops_no_other() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let journal = Journal::create(store.clone(), None).await.unwrap();
        let (_, root) = journal
            .start_turn(
                None,
                WorkUnitDraft::new(crate::work_unit::WorkUnitKind::Workflow),
            )
            .await
            .unwrap();
        let missing = WorkUnitId::new();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let unit = if i == 13 { missing } else { root };
                    journal
                        .activity(
                            unit,
                            ActivityKind::Phase {
                                title: format!("p{i}"),
                            },
                        )
                        .await
                })
            })
            .collect();
        let mut refused = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            if task.await.unwrap().is_err() {
                refused.push(i);
            }
        }
        assert_eq!(refused, [13]);
        // The store holds exactly what the journal's read model holds.
        let stored = store
            .snapshot_dyn(journal.thread_id())
            .await
            .unwrap()
            .unwrap();
        let in_memory = journal.read(Clone::clone).await;
        assert_eq!(stored.activities.len(), 63);
        assert_eq!(stored.activities, in_memory.activities);
        assert_eq!(stored.version, in_memory.version);
    }
}
