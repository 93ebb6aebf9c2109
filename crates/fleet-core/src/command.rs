//! Commands: what a caller wants done, validated into events and appended.
//!
//! A [`Recorder`] keeps one thread's read model in memory, turns each [`Command`] into an
//! [`Event`] (filling in ids, timestamps and prices), checks it with the projector, and appends
//! it with optimistic concurrency. When another writer got there first, it reloads the thread
//! and decides again.

use std::sync::Arc;

use jiff::Timestamp;

use crate::activity::{Activity, ActivityKind};
use crate::event::{BudgetAlert, Event, RecordedEvent, TurnState};
use crate::id::{ActivityId, ThreadId, TurnId, WorkUnitId};
use crate::money::Usd;
use crate::pricing::PriceTable;
use crate::store::{CheckedEvents, EventStore, StoreError};
use crate::thread::{Thread, Violation, apply};
use crate::usage::TokenUsage;
use crate::work_unit::{ProviderRefs, WorkUnitKind, WorkUnitRecord, WorkUnitState};

/// What to record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// Start a turn whose root unit is described by `root` (its parent is ignored).
    StartTurn {
        /// The request.
        input: Option<String>,
        /// The root unit.
        root: WorkUnitDraft,
    },
    /// End a turn.
    CompleteTurn {
        /// The turn.
        turn_id: TurnId,
        /// How it ended.
        state: TurnState,
    },
    /// Record a new unit under `parent_id`, in the parent's turn.
    StartWorkUnit {
        /// Who delegated it.
        parent_id: WorkUnitId,
        /// What it is.
        draft: WorkUnitDraft,
    },
    /// Move a unit to `state` (with the error, for failures).
    SetWorkUnitState {
        /// The unit.
        work_unit_id: WorkUnitId,
        /// Its new state.
        state: WorkUnitState,
        /// Why it failed or stopped.
        error: Option<String>,
    },
    /// Record a unit exactly as given (for adapters that track units themselves).
    UpsertWorkUnit(WorkUnitRecord),
    /// Record tokens a unit used, priced from the recorder's price table.
    RecordUsage {
        /// The unit.
        work_unit_id: WorkUnitId,
        /// The model (for the price).
        model: Option<String>,
        /// The tokens.
        usage: TokenUsage,
    },
    /// Record tokens a unit used at a cost the caller knows (a free local model, a provider
    /// that reports its own cost).
    RecordPricedUsage {
        /// The unit.
        work_unit_id: WorkUnitId,
        /// The model.
        model: Option<String>,
        /// The tokens.
        usage: TokenUsage,
        /// What they cost.
        cost: Usd,
    },
    /// Record an activity.
    AppendActivity {
        /// The turn, if any.
        turn_id: Option<TurnId>,
        /// The unit it belongs to, if any.
        work_unit_id: Option<WorkUnitId>,
        /// What happened.
        kind: ActivityKind,
    },
    /// Record that a budget ran out.
    RecordBudgetExceeded(BudgetAlert),
    /// Go back to `to_turn` (or before the first turn).
    RevertThread {
        /// The last turn kept.
        to_turn: Option<TurnId>,
    },
}

/// A unit to be recorded: what it is, without ids or timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkUnitDraft {
    /// What kind of work.
    pub kind: WorkUnitKind,
    /// Its first state.
    pub state: WorkUnitState,
    /// A short label.
    pub label: Option<String>,
    /// Its workflow phase.
    pub phase: Option<String>,
    /// Its agent name or type.
    pub agent: Option<String>,
    /// Its model.
    pub model: Option<String>,
    /// The provider's ids for it.
    pub provider_refs: Option<ProviderRefs>,
}

impl WorkUnitDraft {
    /// A running unit of `kind` with nothing else said.
    #[must_use]
    pub fn new(kind: WorkUnitKind) -> Self {
        Self {
            kind,
            state: WorkUnitState::Running,
            label: None,
            phase: None,
            agent: None,
            model: None,
            provider_refs: None,
        }
    }

    fn into_record(
        self,
        thread_id: ThreadId,
        turn_id: TurnId,
        parent_id: Option<WorkUnitId>,
        at: Timestamp,
    ) -> WorkUnitRecord {
        let mut record =
            WorkUnitRecord::new(thread_id, turn_id, parent_id, self.kind, self.state, at);
        record.label = self.label;
        record.phase = self.phase;
        record.agent = self.agent;
        record.model = self.model;
        record.provider_refs = self.provider_refs;
        record
    }
}

/// A command could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// It would break the model.
    #[error(transparent)]
    Violation(#[from] Violation),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The thread is not in the store.
    #[error("thread {0} does not exist")]
    NoThread(ThreadId),
    /// The task recording a batch this command was part of was dropped before it reported;
    /// the command may or may not have been recorded.
    #[error("recording was interrupted before it reported; the event may or may not be stored")]
    Interrupted,
    /// Other writers kept changing the thread.
    #[error("thread {0} kept changing under concurrent writers; try again")]
    Contended(ThreadId),
}

/// Turns a command into the event that records it, against the thread as it is.
pub(crate) fn decide(
    thread: &Thread,
    command: Command,
    now: Timestamp,
    prices: &PriceTable,
) -> Result<Event, Violation> {
    Ok(match command {
        Command::StartTurn { input, root } => {
            let turn_id = TurnId::new();
            Event::TurnStarted {
                turn_id,
                input,
                root: Box::new(root.into_record(thread.id, turn_id, None, now)),
                at: now,
            }
        }
        Command::CompleteTurn { turn_id, state } => Event::TurnCompleted {
            turn_id,
            state,
            at: now,
        },
        Command::StartWorkUnit { parent_id, draft } => {
            let parent = thread
                .work_unit(parent_id)
                .ok_or(Violation::WorkUnitMissing(parent_id))?;
            Event::WorkUnitUpserted {
                work_unit: Box::new(draft.into_record(
                    thread.id,
                    parent.turn_id,
                    Some(parent_id),
                    now,
                )),
            }
        }
        // Applying the event checks that the unit exists and may change so.
        Command::SetWorkUnitState {
            work_unit_id,
            state,
            error,
        } => Event::WorkUnitStateChanged {
            work_unit_id,
            state,
            error,
            at: now,
        },
        Command::UpsertWorkUnit(record) => Event::WorkUnitUpserted {
            work_unit: Box::new(record),
        },
        Command::RecordUsage {
            work_unit_id,
            model,
            usage,
        } => {
            let model =
                model.or_else(|| thread.work_unit(work_unit_id).and_then(|u| u.model.clone()));
            let cost = model.as_deref().and_then(|m| prices.cost(m, &usage));
            Event::UsageRecorded {
                work_unit_id,
                model,
                usage,
                cost,
                at: now,
            }
        }
        Command::RecordPricedUsage {
            work_unit_id,
            model,
            usage,
            cost,
        } => Event::UsageRecorded {
            work_unit_id,
            model,
            usage,
            cost: Some(cost),
            at: now,
        },
        Command::AppendActivity {
            turn_id,
            work_unit_id,
            kind,
        } => {
            let turn_id = turn_id.or_else(|| {
                work_unit_id
                    .and_then(|u| thread.work_unit(u))
                    .map(|u| u.turn_id)
            });
            Event::ActivityAppended {
                activity: Box::new(Activity {
                    id: ActivityId::new(),
                    turn_id,
                    work_unit_id,
                    at: now,
                    kind,
                }),
            }
        }
        Command::RecordBudgetExceeded(alert) => Event::BudgetExceeded { alert },
        Command::RevertThread { to_turn } => Event::ThreadReverted { to_turn, at: now },
    })
}

/// Records commands for one thread, keeping its read model in memory.
#[derive(Debug)]
pub struct Recorder<S> {
    store: S,
    thread: Thread,
    prices: Arc<PriceTable>,
}

/// A new thread, and the event that creates it (to be appended at version 0).
pub(crate) fn new_thread(title: Option<String>) -> Result<(Thread, Event), CommandError> {
    let id = ThreadId::new();
    let event = Event::ThreadCreated {
        thread_id: id,
        title,
        at: Timestamp::now(),
    };
    let mut thread = None;
    apply(&mut thread, id, &event)?;
    let thread = thread.ok_or(CommandError::NoThread(id))?;
    Ok((thread, event))
}

impl<S: EventStore> Recorder<S> {
    /// Creates a thread in `store` and returns its recorder.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn create(store: S, title: Option<String>) -> Result<Self, CommandError> {
        let (thread, event) = new_thread(title)?;
        store
            .append_checked(thread.id, CheckedEvents::new(0, vec![event]))
            .await?;
        Ok(Self {
            store,
            thread,
            prices: PriceTable::shipped(),
        })
    }

    /// Opens an existing thread.
    ///
    /// # Errors
    /// [`CommandError::NoThread`] when it is not in the store; store failures.
    pub async fn open(store: S, id: ThreadId) -> Result<Self, CommandError> {
        let thread = store
            .snapshot(id)
            .await?
            .ok_or(CommandError::NoThread(id))?;
        Ok(Self {
            store,
            thread,
            prices: PriceTable::shipped(),
        })
    }

    /// Prices usage with `prices` instead of the shipped table.
    #[must_use]
    pub fn with_prices(mut self, prices: Arc<PriceTable>) -> Self {
        self.prices = prices;
        self
    }

    /// The thread as recorded so far.
    #[must_use]
    pub fn thread(&self) -> &Thread {
        &self.thread
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, the thread and the price table, for a recorder of another shape (the
    /// shared [`crate::journal::Journal`]).
    pub(crate) fn into_parts(self) -> (S, Thread, Arc<PriceTable>) {
        (self.store, self.thread, self.prices)
    }

    /// Validates `command` into an event and appends it.
    ///
    /// # Errors
    /// [`CommandError::Violation`] when the command cannot happen to the thread as it is (nothing
    /// is appended); store failures.
    pub async fn execute(&mut self, command: Command) -> Result<RecordedEvent, CommandError> {
        for _ in 0..4 {
            let event = decide(
                &self.thread,
                command.clone(),
                Timestamp::now(),
                &self.prices,
            )?;
            let base = self.thread.version;
            // Checked and applied in memory first (a refused event changes nothing); if the
            // store then does not take it, the thread is reloaded from the store, the truth.
            self.thread.apply_event(&event)?;
            match self
                .store
                .append_checked(
                    self.thread.id,
                    CheckedEvents::new(base, vec![event.clone()]),
                )
                .await
            {
                Ok(appended) => {
                    return Ok(RecordedEvent {
                        position: appended.last_position,
                        thread_id: self.thread.id,
                        version: appended.version,
                        recorded_at: appended.recorded_at,
                        event,
                    });
                }
                Err(StoreError::Conflict { .. }) => self.reload().await?,
                Err(e) => {
                    // Best effort: the append error is the one to report.
                    let _ = self.reload().await;
                    return Err(e.into());
                }
            }
        }
        Err(CommandError::Contended(self.thread.id))
    }

    /// Validates every command against the thread as the earlier ones leave it and appends
    /// all the accepted events in one store append (one commit, one fsync). Each command gets
    /// its own outcome: a refused command changes nothing and does not stop the others.
    ///
    /// When another writer changed the thread in between, the commands are executed one by one
    /// (each deciding again against the reloaded thread).
    pub async fn execute_batch(
        &mut self,
        mut commands: Vec<Command>,
    ) -> Vec<Result<RecordedEvent, CommandError>> {
        if commands.len() == 1
            && let Some(command) = commands.pop()
        {
            return vec![self.execute(command).await];
        }
        let now = Timestamp::now();
        let base = self.thread.version;
        let mut events = Vec::with_capacity(commands.len());
        let mut slots: Vec<Result<usize, Violation>> = Vec::with_capacity(commands.len());
        for command in &commands {
            let decided = decide(&self.thread, command.clone(), now, &self.prices)
                .and_then(|event| self.thread.apply_event(&event).map(|_| event));
            slots.push(decided.map(|event| {
                events.push(event);
                events.len() - 1
            }));
        }
        if events.is_empty() {
            return slots
                .into_iter()
                .map(|slot| match slot {
                    Err(violation) => Err(violation.into()),
                    Ok(_) => Err(CommandError::NoThread(self.thread.id)),
                })
                .collect();
        }
        let appended = self
            .store
            .append_checked(self.thread.id, CheckedEvents::new(base, events.clone()))
            .await;
        match appended {
            Ok(appended) => {
                let thread_id = self.thread.id;
                let mut events: Vec<Option<Event>> = events.into_iter().map(Some).collect();
                slots
                    .into_iter()
                    .map(|slot| {
                        let index = slot?;
                        let event = events[index]
                            .take()
                            .ok_or(CommandError::NoThread(thread_id))?;
                        Ok(RecordedEvent {
                            position: appended.first_position + index as u64,
                            thread_id,
                            version: base + index as u64 + 1,
                            recorded_at: appended.recorded_at,
                            event,
                        })
                    })
                    .collect()
            }
            Err(StoreError::Conflict { .. }) => {
                if let Err(e) = self.reload().await {
                    let reason = e.to_string();
                    return commands
                        .iter()
                        .map(|_| {
                            Err(CommandError::Store(StoreError::CommitFailed {
                                reason: reason.clone(),
                            }))
                        })
                        .collect();
                }
                let mut results = Vec::with_capacity(commands.len());
                for command in commands {
                    results.push(self.execute(command).await);
                }
                results
            }
            Err(e) => {
                // Best effort: the append error is the one to report.
                let _ = self.reload().await;
                let reason = e.to_string();
                let mut first = Some(e);
                slots
                    .into_iter()
                    .map(|slot| {
                        slot?;
                        Err(CommandError::Store(first.take().unwrap_or(
                            StoreError::CommitFailed {
                                reason: reason.clone(),
                            },
                        )))
                    })
                    .collect()
            }
        }
    }

    /// Reloads the thread from the store.
    ///
    /// # Errors
    /// Store failures.
    pub async fn reload(&mut self) -> Result<(), CommandError> {
        self.thread = self
            .store
            .snapshot(self.thread.id)
            .await?
            .ok_or(CommandError::NoThread(self.thread.id))?;
        Ok(())
    }

    /// Starts a turn with a running root of `kind`; returns the turn and its root.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn start_turn(
        &mut self,
        kind: WorkUnitKind,
        input: Option<String>,
    ) -> Result<(TurnId, WorkUnitId), CommandError> {
        self.start_turn_with(kind, input, |_| {}).await
    }

    /// Starts a turn whose running root of `kind` is described by `describe`; returns the turn
    /// and its root.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn start_turn_with(
        &mut self,
        kind: WorkUnitKind,
        input: Option<String>,
        describe: impl FnOnce(&mut WorkUnitDraft),
    ) -> Result<(TurnId, WorkUnitId), CommandError> {
        let mut root = WorkUnitDraft::new(kind);
        describe(&mut root);
        let recorded = self.execute(Command::StartTurn { input, root }).await?;
        match recorded.event {
            Event::TurnStarted { turn_id, root, .. } => Ok((turn_id, root.id)),
            _ => Err(CommandError::NoThread(self.thread.id)),
        }
    }

    /// Records a running unit under `parent`, described by `describe`; returns its id.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn start_work_unit(
        &mut self,
        parent: WorkUnitId,
        kind: WorkUnitKind,
        describe: impl FnOnce(&mut WorkUnitDraft),
    ) -> Result<WorkUnitId, CommandError> {
        let mut draft = WorkUnitDraft::new(kind);
        describe(&mut draft);
        let recorded = self
            .execute(Command::StartWorkUnit {
                parent_id: parent,
                draft,
            })
            .await?;
        match recorded.event {
            Event::WorkUnitUpserted { work_unit } => Ok(work_unit.id),
            _ => Err(CommandError::NoThread(self.thread.id)),
        }
    }

    /// Moves a unit to a terminal (or any) state.
    ///
    /// # Errors
    /// As [`Recorder::execute`]; a finished unit cannot change state.
    pub async fn finish_work_unit(
        &mut self,
        id: WorkUnitId,
        state: WorkUnitState,
        error: Option<String>,
    ) -> Result<(), CommandError> {
        self.execute(Command::SetWorkUnitState {
            work_unit_id: id,
            state,
            error,
        })
        .await
        .map(drop)
    }

    /// Ends a turn.
    ///
    /// # Errors
    /// As [`Recorder::execute`].
    pub async fn complete_turn(
        &mut self,
        turn: TurnId,
        state: TurnState,
    ) -> Result<(), CommandError> {
        self.execute(Command::CompleteTurn {
            turn_id: turn,
            state,
        })
        .await
        .map(drop)
    }
}
