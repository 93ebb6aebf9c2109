//! [`SpecialistRunner`]: the [`AgentRunner`] that sends agent calls to the named specialist's
//! sandboxed workers, so that a workflow's `agent(…, {agentType: 'patch-bot'})` runs there.
//! The call's work unit follows the task: running, each model turn as the gateway metered and
//! priced it, log lines as they are reported, then completed or failed with the reason (a dead
//! worker's exit status).

use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::budget::{BudgetError, Measure};
use fleet_core::command::WorkUnitDraft;
use fleet_core::id::WorkUnitId;
use fleet_core::ipc::{Note, TaskRunParams};
use fleet_core::money::Cost;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use tokio::sync::mpsc;

use crate::{Charge, Supervisor, SupervisorError, TaskOptions, TaskUpdate, WorkerError};

/// Runs agent calls on the supervisor's specialists (the call's `agent` names which).
#[derive(Debug, Clone)]
pub struct SpecialistRunner {
    supervisor: Supervisor,
}

impl SpecialistRunner {
    /// Calls go to `supervisor`'s agents.
    #[must_use]
    pub fn new(supervisor: Supervisor) -> Self {
        Self { supervisor }
    }
}

impl AgentRunner for SpecialistRunner {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        self.run_with_input(call, None, ctx).await
    }
}

impl SpecialistRunner {
    /// As [`AgentRunner::run`], with the task's structured `input` (merged with the call's
    /// schema, as `input.schema`): what `fleet send --input` gives a specialist.
    ///
    /// # Errors
    /// As [`AgentRunner::run`].
    pub async fn run_with_input(
        &self,
        call: AgentCall,
        input: Option<serde_json::Value>,
        ctx: CallContext,
    ) -> Result<AgentOutcome, AgentError> {
        let Some(spec) = call.agent.clone() else {
            return Err(AgentError::Config(
                "a specialist call names its agent (agentType)".into(),
            ));
        };
        let unit = match ctx.work_unit {
            Some(unit) => unit,
            None => {
                let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
                draft.label = Some(call.display_label());
                draft.agent = Some(spec.name.clone());
                draft.model = Some(spec.model.clone());
                ctx.journal.start_work_unit(ctx.parent, draft).await?
            }
        };
        ctx.journal
            .set_running(unit, Some(spec.model.clone()))
            .await?;
        let (tx, mut notes) = mpsc::unbounded_channel();
        let task = TaskRunParams {
            task_id: unit.to_string(),
            prompt: call.prompt.clone(),
            input: task_input(input, call.schema.clone()),
        };
        let supervisor = self.supervisor.clone();
        let agent = spec.name.clone();
        // The caller's budgets (a workflow run's) are charged for every turn too.
        let charge = (!ctx.charge_to.is_empty()).then(|| Charge {
            budgets: ctx.budgets.clone(),
            to: ctx.charge_to.clone(),
        });
        // Cancelling the call cancels the task on its worker (which then answers).
        let cancel = ctx.cancel.clone();
        let mut running = tokio::spawn(async move {
            let with = TaskOptions {
                updates: Some(tx),
                charge,
                cancel: Some(cancel),
            };
            supervisor.stream_with(&agent, task, with).await
        });
        let mut usage = TokenUsage::default();
        let mut cost = Cost::default();
        let outcome = loop {
            let note = tokio::select! {
                // Notes first: those sent before the answer are recorded before it.
                biased;
                Some(note) = notes.recv() => note,
                done = &mut running => {
                    let done = done.unwrap_or_else(|e| {
                        Err(SupervisorError::Task(WorkerError::Io(e.to_string())))
                    });
                    while let Ok(note) = notes.try_recv() {
                        record(&ctx, unit, note, &mut usage, &mut cost).await?;
                    }
                    break done;
                }

            };
            record(&ctx, unit, note, &mut usage, &mut cost).await?;
        };
        let journal = ctx.journal.clone();
        let failed = |reason: String| async move {
            journal
                .set_state(unit, WorkUnitState::Failed, Some(reason))
                .await
        };
        match outcome {
            Ok(report) => {
                ctx.journal
                    .set_state(unit, WorkUnitState::Completed, None)
                    .await?;
                Ok(AgentOutcome {
                    work_unit_id: unit,
                    text: report.result.text,
                    // A call without a schema answers with text, as the workflow API says.
                    output: report.result.output.filter(|_| call.schema.is_some()),
                    model: spec.model.clone(),
                    usage,
                    cost,
                    model_requests: report.turns,
                    tool_calls: 0,
                })
            }
            Err(SupervisorError::Paused { agent, reason }) => {
                failed(format!("agent {agent} is paused: {reason}")).await?;
                // An agent is paused for its dollar spend (its budget has no token limit).
                Err(AgentError::Budget(BudgetError::Exceeded {
                    budget: format!("agent {agent}"),
                    what: reason,
                    measure: Measure::Usd,
                }))
            }
            Err(SupervisorError::Cancelled { .. }) => {
                ctx.journal
                    .set_state(unit, WorkUnitState::Cancelled, None)
                    .await?;
                Err(AgentError::Cancelled)
            }
            Err(SupervisorError::Refused {
                agent,
                budget,
                what,
                measure,
                ..
            }) => {
                let what = format!("{agent}'s model turn was refused at the gateway: {what}");
                failed(format!("budget \"{budget}\" exhausted: {what}")).await?;
                Err(AgentError::Budget(BudgetError::Exceeded {
                    budget,
                    what,
                    measure,
                }))
            }
            Err(e) => {
                let reason = e.to_string();
                failed(reason.clone()).await?;
                Err(AgentError::Worker(reason))
            }
        }
    }
}

/// The task's input: the caller's, with the call's schema as `schema`.
fn task_input(
    input: Option<serde_json::Value>,
    schema: Option<serde_json::Value>,
) -> Option<serde_json::Value> {
    match (input, schema) {
        (None, None) => None,
        (None, Some(schema)) => Some(serde_json::json!({ "schema": schema })),
        (Some(input), None) => Some(input),
        (Some(mut input), Some(schema)) => {
            if let Some(map) = input.as_object_mut() {
                map.insert("schema".into(), schema);
            }
            Some(input)
        }
    }
}

/// Records one of the task's updates on its unit: metered turns as usage, log lines and
/// progress as activities. What the worker says it spent is not recorded as usage.
async fn record(
    ctx: &CallContext,
    unit: WorkUnitId,
    update: TaskUpdate,
    usage: &mut TokenUsage,
    cost: &mut Cost,
) -> Result<(), AgentError> {
    let note = match update {
        TaskUpdate::Turn(turn) => {
            ctx.journal
                .usage(unit, &turn.model, turn.usage, Some(turn.cost))
                .await?;
            *usage += turn.usage;
            cost.usd += turn.cost;
            return Ok(());
        }
        TaskUpdate::Admitted {
            model,
            reserved,
            recorded,
        } => {
            let kind = ActivityKind::TurnAdmitted {
                model,
                reserved,
                tokens_before: usage.total(),
            };
            // Durable before the gateway forwards the turn (a write-behind journal would
            // only have queued it).
            let mut written = ctx.journal.activity(unit, kind).await;
            if written.is_ok() {
                written = ctx.journal.flush().await;
            }
            recorded.done();
            written?;
            return Ok(());
        }
        TaskUpdate::Note(note) => note,
    };
    match note {
        Note::Usage(report) => {
            let kind = ActivityKind::Log {
                level: LogLevel::Debug,
                message: format!(
                    "the worker says it used {} input and {} output tokens of {} (not charged: the gateway meters model turns)",
                    report.usage.input, report.usage.output, report.model
                ),
            };
            ctx.journal.activity(unit, kind).await?;
        }
        Note::Log(line) => {
            let kind = ActivityKind::Log {
                level: line.level,
                message: line.message,
            };
            ctx.journal.activity(unit, kind).await?;
        }
        Note::Progress(progress) => {
            let kind = ActivityKind::Log {
                level: LogLevel::Debug,
                message: progress.message,
            };
            ctx.journal.activity(unit, kind).await?;
        }
        Note::ModelEvent(_) | Note::CancelRequest(_) => {}
    }
    Ok(())
}
