//! One `agent()` call once it leaves the script's thread: admission, the attempt, retries,
//! and settling what it spent.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::agent::{AgentCall, AgentError, CallContext, DynAgentRunner};
use fleet_core::budget::{BudgetError, BudgetId};
use fleet_core::command::WorkUnitDraft;
use fleet_core::id::WorkUnitId;
use fleet_core::money::Cost;
use fleet_core::money::Usd;
use fleet_core::provider::{ErrorKind, ProviderError};
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::WorkUnitState;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::engine::{HostResult, Rejection};
use crate::events::{CallNote, CallState, RunEvent};
use crate::worktree::Worktree;

use super::{Ending, RunHost, lock};

/// How an admitted attempt of a call ended.
pub(super) enum Attempt {
    /// The call ended so, with what it spent: settle it once that is durable. The attempt's
    /// future is gone by then, so a call waiting for the commit holds only what settling needs.
    Settle(Ending, Option<(TokenUsage, Cost)>),
    /// The provider was overloaded: try again after this pause.
    Retry(Duration),
}

/// Everything a call needs once it leaves the script's thread.
pub(super) struct CallSite {
    pub(super) host: Weak<RunHost>,
    pub(super) parent: WorkUnitId,
    pub(super) key: String,
    pub(super) seq: u64,
    pub(super) label: String,
    pub(super) phase: Option<String>,
    pub(super) agent_type: Option<String>,
    pub(super) draft: WorkUnitDraft,
    pub(super) charge_to: Vec<BudgetId>,
    pub(super) type_limit: Option<Arc<Semaphore>>,
    /// `isolation: 'worktree'`.
    pub(super) worktree: bool,
    /// Keeps the run's tracker open until the call is over.
    pub(super) _token: TaskTrackerToken,
}

impl CallSite {
    pub(super) async fn serve_cached(self: Box<Self>, value: Value) -> HostResult {
        let host = self.host.upgrade().ok_or("the run is gone")?;
        let mut draft = self.draft;
        draft.state = WorkUnitState::Completed;
        let unit = host
            .journal
            .start_work_unit(self.parent, draft)
            .await
            .map_err(|e| format!("cannot record the call: {e}"))?;
        host.journal
            .activity(
                unit,
                ActivityKind::AgentResult {
                    key: self.key,
                    seq: self.seq,
                    result: value.clone(),
                    cached: true,
                },
            )
            .await
            .map_err(|e| format!("cannot record the call: {e}"))?;
        host.journal
            .flush()
            .await
            .map_err(|e| format!("cannot record the call: {e}"))?;
        lock(&host.tally).counts.cached += 1;
        host.shared.emit(RunEvent::AgentStarted {
            work_unit_id: unit,
            label: self.label.clone(),
            phase: self.phase,
            agent_type: self.agent_type,
        });
        host.shared.emit(RunEvent::AgentFinished {
            work_unit_id: unit,
            label: self.label,
            state: CallState::Cached,
            reason: None,
            result_bytes: json_len(&value),
            usage: TokenUsage::default(),
            cost_usd: Usd::ZERO,
        });
        Ok(value)
    }

    pub(super) async fn run_live(self: Box<Self>, call: Box<AgentCall>) -> HostResult {
        let host = self.host.upgrade().ok_or("the run is gone")?;
        let mut attempt = 0;
        loop {
            let mut draft = self.draft.clone();
            draft.state = WorkUnitState::Pending;
            let unit = host
                .journal
                .start_work_unit(self.parent, draft)
                .await
                .map_err(|e| format!("cannot record the call: {e}"))?;
            host.shared.emit(RunEvent::AgentStarted {
                work_unit_id: unit,
                label: self.label.clone(),
                phase: self.phase.clone(),
                agent_type: self.agent_type.clone(),
            });
            let type_permit = match &self.type_limit {
                Some(limit) => tokio::select! {
                    permit = limit.clone().acquire_owned() => permit.ok(),
                    () = host.cancel.cancelled() => None,
                },
                None => None,
            };
            let admitted = (self.type_limit.is_none() || type_permit.is_some())
                && tokio::select! {
                    ok = host.limiter.acquire() => ok,
                    () = host.cancel.cancelled() => false,
                };
            if !admitted {
                let _ = host
                    .journal
                    .set_state(
                        unit,
                        WorkUnitState::Cancelled,
                        Some("the run was stopped".into()),
                    )
                    .await;
                return self
                    .settle(
                        &host,
                        unit,
                        Ending::Failed("the run was stopped".into()),
                        None,
                    )
                    .await;
            }
            // Everything from here on is boxed: the calls still waiting for a slot (most of a
            // fan-out's, all at once) then hold a small future each.
            match Box::pin(self.attempt(&host, unit, &call, type_permit, &mut attempt)).await {
                Attempt::Settle(ending, spent) => {
                    return self.settle(&host, unit, ending, spent).await;
                }
                Attempt::Retry(pause) => tokio::time::sleep(pause).await,
            }
        }
    }

    /// Runs one admitted attempt of the call recorded as `unit`.
    async fn attempt(
        &self,
        host: &RunHost,
        unit: WorkUnitId,
        call: &AgentCall,
        type_permit: Option<tokio::sync::OwnedSemaphorePermit>,
        attempt: &mut u32,
    ) -> Attempt {
        lock(&host.in_flight).insert(unit, Instant::now());
        let ctx = CallContext {
            journal: host.journal.clone(),
            parent: self.parent,
            work_unit: Some(unit),
            budgets: host.budgets.clone(),
            charge_to: self.charge_to.clone(),
            cancel: host.cancel.child_token(),
        };
        let mut attempt_call = call.clone();
        let worktree = if self.worktree {
            // Boxed, like the worktree's clean-up below: creating one runs git, and a
            // future that holds that inline makes every call's future kilobytes larger.
            match Box::pin(Worktree::create(
                &host.config.workdir,
                &format!("{}-{}", self.seq, unit),
            ))
            .await
            {
                Ok(worktree) => {
                    attempt_call.workdir = Some(worktree.path.clone());
                    Some(worktree)
                }
                Err(e) => {
                    lock(&host.in_flight).remove(&unit);
                    host.limiter.release();
                    let reason = e;
                    let _ = host
                        .journal
                        .set_state(unit, WorkUnitState::Failed, Some(reason.clone()))
                        .await;
                    return Attempt::Settle(Ending::Failed(reason), None);
                }
            }
        } else {
            None
        };
        let outcome = host.runner.run_dyn(attempt_call, ctx).await;
        if let Some(worktree) = worktree {
            Box::pin(self.close_worktree(host, unit, worktree)).await;
        }
        lock(&host.in_flight).remove(&unit);
        host.limiter.finished(outcome.is_ok());
        drop(type_permit);
        let ending = match outcome {
            Ok(outcome) => {
                let value = outcome.output.unwrap_or(Value::String(outcome.text));
                let journaled = host
                    .journal
                    .activity(
                        unit,
                        ActivityKind::AgentResult {
                            key: self.key.clone(),
                            seq: self.seq,
                            result: value.clone(),
                            cached: false,
                        },
                    )
                    .await;
                if let Err(e) = journaled {
                    host.shared.record_failed(e.to_string());
                }
                {
                    let mut tally = lock(&host.tally);
                    tally.usage += outcome.usage;
                    tally.cost += outcome.cost;
                }
                return Attempt::Settle(Ending::Answer(value), Some((outcome.usage, outcome.cost)));
            }
            Err(AgentError::Provider(ProviderError::Api {
                kind: ErrorKind::RateLimited | ErrorKind::Overloaded,
                message,
                ..
            })) if *attempt < host.config.rate_limit_retries && !host.cancel.is_cancelled() => {
                host.limiter.overloaded();
                *attempt += 1;
                host.shared.emit(RunEvent::Log {
                    level: LogLevel::Warn,
                    message: format!(
                        "{}: provider overloaded ({message}); concurrency lowered to {}, retrying",
                        self.label,
                        host.limiter.current()
                    ),
                });
                return Attempt::Retry(Duration::from_millis(
                    250 * u64::from(*attempt) + u64::from(self.seq as u32 % 97) * 3,
                ));
            }
            // Like a terminal provider error: the agent died after its retries.
            Err(e @ (AgentError::Provider(_) | AgentError::Worker(_))) => {
                Ending::Null(e.to_string())
            }
            Err(AgentError::Cancelled) if !host.cancel.is_cancelled() => {
                Ending::Null("skipped".into())
            }
            // Refused for a budget (the run's, or a sandboxed specialist's at the gateway):
            // the run ends as a budget that ran out, as when it is refused at admission.
            Err(AgentError::Budget(e)) => {
                host.budget_exhausted.store(true, Ordering::Relaxed);
                Ending::Failed(refused_by_budget(&e))
            }
            Err(e) => Ending::Failed(e.to_string()),
        };
        Attempt::Settle(ending, None)
    }

    /// Removes an unchanged worktree, or logs where the changes were kept.
    async fn close_worktree(&self, host: &RunHost, unit: WorkUnitId, worktree: Worktree) {
        let (level, message) = match worktree.finish().await {
            Ok(None) => return,
            Ok(Some(kept)) => (LogLevel::Info, format!("{}: {kept}", self.label)),
            Err(e) => (
                LogLevel::Warn,
                format!("{}: cannot clean up its worktree: {e}", self.label),
            ),
        };
        host.shared.emit(RunEvent::Log {
            level,
            message: message.clone(),
        });
        if let Err(e) = host
            .journal
            .activity(unit, ActivityKind::Log { level, message })
            .await
        {
            host.shared.record_failed(e.to_string());
        }
    }

    /// Waits until everything the call recorded is durable, then reports how it ended: no
    /// call is acknowledged (its promise settled, its end reported) before its events are on
    /// disk.
    async fn settle(
        &self,
        host: &RunHost,
        unit: WorkUnitId,
        ending: Ending,
        spent: Option<(TokenUsage, Cost)>,
    ) -> HostResult {
        if let Err(e) = host.journal.flush().await {
            let reason = format!("cannot record the call: {e}");
            host.shared.record_failed(e.to_string());
            return self.finish(host, unit, Ending::Failed(reason), spent);
        }
        self.finish(host, unit, ending, spent)
    }

    fn finish(
        &self,
        host: &RunHost,
        unit: WorkUnitId,
        ending: Ending,
        spent: Option<(TokenUsage, Cost)>,
    ) -> HostResult {
        let (usage, cost) = spent.unwrap_or_default();
        let note = |reason: &str| CallNote {
            label: self.label.clone(),
            work_unit_id: Some(unit),
            reason: reason.to_owned(),
        };
        let (state, reason, result) = {
            let mut tally = lock(&host.tally);
            match ending {
                Ending::Answer(value) => {
                    tally.counts.completed += 1;
                    (CallState::Completed, None, Ok(value))
                }
                Ending::Null(reason) => {
                    tally.counts.null += 1;
                    tally.nulls.push(note(&reason));
                    (CallState::Null, Some(reason), Ok(Value::Null))
                }
                Ending::Failed(reason) => {
                    tally.counts.failed += 1;
                    tally.failures.push(note(&reason));
                    (
                        CallState::Failed,
                        Some(reason.clone()),
                        Err(Rejection::new(reason)),
                    )
                }
            }
        };
        host.shared.emit(RunEvent::AgentFinished {
            work_unit_id: unit,
            label: self.label.clone(),
            state,
            reason,
            result_bytes: result.as_ref().map_or(0, json_len),
            usage,
            cost_usd: cost.usd,
        });
        host.warn_budget();
        result
    }
}

/// How many bytes `value` is as JSON, without writing it out.
pub(super) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and a `Value` always serializes.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Why a call was refused, in the workflow's words when the run's or a phase's budget refused
/// it (as Claude Code words a spent budget), else the ledger's.
pub(super) fn refused_by_budget(e: &BudgetError) -> String {
    let BudgetError::Exceeded {
        budget,
        what,
        measure,
    } = e
    else {
        return e.to_string();
    };
    let measure = measure.noun();
    if budget == "run" {
        format!(
            "Workflow {measure} budget exceeded ({what}). No new agent() call starts. Raise the run's {measure} budget to go on."
        )
    } else if let Some(phase) = budget.strip_prefix("phase:") {
        format!(
            "Phase '{phase}' {measure} budget exceeded ({what}). Raise the phase's budget to go on."
        )
    } else {
        e.to_string()
    }
}
