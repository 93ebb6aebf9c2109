//! The fleet's model gateway: the supervisor's side of `model/stream`.
//!
//! A sandboxed worker holds no credentials and no socket to the outside; it asks the
//! supervisor for each model turn. For every turn the gateway
//! 1. checks that the turn is for the task the worker is running, with the agent's own model
//!    (its `max_tokens` capped at the agent's limit), and that the agent is not paused;
//! 2. reserves the turn's worst case (input estimate plus `max_tokens`, at the model's price)
//!    against the agent's budget and every budget above it (the fleet's), or refuses it,
//!    pausing the agent, with an error that names the agent, its spend and its budget;
//! 3. forwards the turn to the provider and streams its events back as `model/event`
//!    notifications as they arrive, metering the tokens from the provider's own usage events
//!    (a turn that reports more output than its `max_tokens` is cut off there);
//! 4. settles the reservation to what was used (released on cancel or error, after charging
//!    what the provider reported), charges the task, and answers with a [`ModelStreamResult`].
//!
//! What a worker says it spent never moves money.

use std::sync::{Arc, Weak};

use fleet_core::budget::{Amount, Demand, MIN_USEFUL_OUTPUT, Measure};
use fleet_core::ipc::{
    ModelErrorData, ModelEventParams, ModelStreamParams, ModelStreamResult, Note, RequestId,
    RpcError, codes,
};
use fleet_core::money::Usd;
use fleet_core::provider::{CancelToken, ErrorKind, ProviderError, StreamEvent, next_event};
use fleet_core::usage::TokenUsage;
use serde_json::Value;
use tokio::sync::mpsc;

use super::assignment::Refusal;
use super::{Charge, MeteredTurn, Pool, Pooled, Supervisor, SupervisorEvent, TaskUpdate, lock};
use crate::client::WorkerRequest;

/// Serves one worker's requests until it is gone.
pub(crate) async fn serve(
    supervisor: Supervisor,
    pool: Arc<Pool>,
    worker: Weak<Pooled>,
    mut requests: mpsc::UnboundedReceiver<WorkerRequest>,
) {
    while let Some(request) = requests.recv().await {
        let Some(pooled) = worker.upgrade() else {
            return;
        };
        match request {
            WorkerRequest::ModelStream { id, params } => {
                let cancel = CancelToken::new();
                match admit(&pooled, &id, &params.task_id, &cancel) {
                    Err(error) => pooled.process.answer(id, Err(error)),
                    Ok((updates, charge)) => {
                        let turn = Turn {
                            supervisor: supervisor.clone(),
                            pool: pool.clone(),
                            worker: pooled,
                            id,
                            cancel,
                            updates,
                            charge,
                        };
                        tokio::spawn(turn.run(params));
                    }
                }
            }
            WorkerRequest::Cancel(id) => {
                if let Some(assignment) = &*lock(&pooled.task)
                    && let Some(cancel) = assignment.turns.get(&id)
                {
                    cancel.cancel();
                }
            }
        }
    }
}

/// Registers a turn with the task it is for, or says why it cannot be.
fn admit(
    worker: &Pooled,
    id: &RequestId,
    task_id: &str,
    cancel: &CancelToken,
) -> Result<(Option<mpsc::UnboundedSender<TaskUpdate>>, Option<Charge>), RpcError> {
    let mut task = lock(&worker.task);
    let Some(assignment) = task.as_mut().filter(|a| a.task_id == task_id) else {
        return Err(RpcError::new(
            codes::INVALID_PARAMS,
            format!(
                "no task \"{task_id}\" is running on this worker: model turns are for its task"
            ),
        ));
    };
    if assignment.turns.contains_key(id) {
        return Err(RpcError::new(
            codes::INVALID_REQUEST,
            format!("a model turn with id {id:?} is already in flight"),
        ));
    }
    assignment.turns.insert(id.clone(), cancel.clone());
    Ok((assignment.updates.clone(), assignment.charge.clone()))
}

/// One model turn being forwarded.
struct Turn {
    supervisor: Supervisor,
    pool: Arc<Pool>,
    worker: Arc<Pooled>,
    id: RequestId,
    cancel: CancelToken,
    updates: Option<mpsc::UnboundedSender<TaskUpdate>>,
    charge: Option<Charge>,
}

impl Turn {
    async fn run(self, params: ModelStreamParams) {
        let task_id = params.task_id.clone();
        let answer = self.forward(params).await;
        if let Some(assignment) = lock(&self.worker.task).as_mut()
            && assignment.task_id == task_id
        {
            assignment.turns.remove(&self.id);
        }
        self.worker.process.answer(self.id, answer);
    }

    async fn forward(&self, params: ModelStreamParams) -> Result<Value, RpcError> {
        let plan = &self.pool.plan;
        let agent = &plan.agent;
        if let Some(reason) = self.supervisor.paused_reason(&self.pool) {
            let message = format!("agent {agent} is paused: {reason}");
            self.refused(
                &params.task_id,
                Refusal {
                    budget: format!("agent {agent}"),
                    what: format!("the agent is paused: {reason}"),
                    // Agents are paused for their dollar spend.
                    measure: Measure::Usd,
                    message: message.clone(),
                },
            );
            return Err(RpcError::new(codes::BUDGET_EXCEEDED, message));
        }
        let Some(provider) = self.supervisor.gateway.clone() else {
            return Err(RpcError::new(
                codes::METHOD_NOT_FOUND,
                "this supervisor has no model gateway",
            ));
        };
        let mut request = params.request;
        if let Some(model) = &plan.model
            && request.model != *model
        {
            return Err(failed(
                ErrorKind::InvalidRequest,
                format!(
                    "agent {agent} uses the model of its spec, {model}; the turn asked for {}",
                    request.model
                ),
            ));
        }
        if let Some(max) = plan.limits.max_tokens {
            request.max_tokens = request.max_tokens.min(max);
        }
        let price = if provider.capabilities_dyn().free {
            None
        } else {
            let price = self.supervisor.prices.price(&request.model).copied();
            Some(price.ok_or_else(|| {
                failed(
                    ErrorKind::InvalidRequest,
                    format!(
                        "model {} has no price, so the turn cannot be metered: add it to the price table",
                        request.model
                    ),
                )
            })?)
        };
        let mut demand = Demand {
            max_output_tokens: u64::from(request.max_tokens),
            min_output_tokens: u64::from(request.max_tokens.min(MIN_USEFUL_OUTPUT)),
            priced: price.map(|p| (p, request.estimated_input_tokens())),
        };
        // The caller's budgets first: refusing there leaves the agent as it was. Each waits
        // while turns in flight hold what it needs, and near a cap grants only what is left.
        let mut caller = match &self.charge {
            None => None,
            Some(charge) => {
                let admitted = tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return Err(provider_failure(&ProviderError::Cancelled)),
                    admitted = charge.budgets.admit(&charge.to, demand) => admitted,
                };
                match admitted {
                    Ok(reservation) => {
                        demand.max_output_tokens = reservation.amount().output_tokens;
                        Some(reservation)
                    }
                    Err(e) => {
                        let reason = format!(
                            "agent {agent}: model turn refused by its caller's budget: {e}"
                        );
                        self.refused(&params.task_id, Refusal::new(&e, reason.clone()));
                        return Err(RpcError::new(codes::BUDGET_EXCEEDED, reason));
                    }
                }
            }
        };
        let budgets = &self.supervisor.budgets;
        let pool = [self.pool.budget];
        let admitted = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(provider_failure(&ProviderError::Cancelled)),
            admitted = budgets.admit(&pool, demand) => admitted,
        };
        let mut reservation = match admitted {
            Ok(reservation) => reservation,
            Err(e) => {
                self.supervisor.pause(&self.pool, e.to_string());
                let reason = format!("{e}; {}", self.spend());
                let message = format!("agent {agent}: model turn refused: {reason}");
                let mut refusal = Refusal::new(&e, message.clone());
                refusal.what = format!("{}; {}", refusal.what, self.spend());
                self.refused(&params.task_id, refusal);
                return Err(RpcError::new(codes::BUDGET_EXCEEDED, message));
            }
        };
        let admitted_output = reservation.amount().output_tokens;
        let mut max_output = admitted_output;
        request.max_tokens = u32::try_from(max_output).unwrap_or(request.max_tokens);
        // The caller records the admission before the turn goes, so that a crash while it
        // is in flight leaves it on the bill (bounded: a caller that never answers delays a
        // turn by 5 s, not forever).
        if let Some(updates) = &self.updates
            && reservation.amount().usd > Usd::ZERO
        {
            let recorded = crate::Recorded::default();
            let sent = updates.send(TaskUpdate::Admitted {
                model: request.model.clone(),
                reserved: reservation.amount().usd,
                recorded: recorded.clone(),
            });
            if sent.is_ok() {
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => return Err(provider_failure(&ProviderError::Cancelled)),
                    () = recorded.wait() => {}
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }

        let model = request.model.clone();
        let mut usage = TokenUsage::default();
        let mut stop_reason = None;
        let mut failure = None;
        let started = tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(ProviderError::Cancelled),
            started = provider.stream_dyn(request, self.cancel.child_token()) => started,
        };
        match started {
            Err(e) => failure = Some(provider_failure(&e)),
            Ok(mut stream) => loop {
                let item = tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => Some(Err(ProviderError::Cancelled)),
                    item = next_event(&mut stream) => item,
                };
                let event = match item {
                    None => break,
                    Some(Err(e)) => {
                        failure = Some(provider_failure(&e));
                        break;
                    }
                    Some(Ok(event)) => event,
                };
                let mut over = false;
                match &event {
                    StreamEvent::Usage { usage: reported } => {
                        usage = *reported;
                        // The input was an estimate until now: the reservations rise to what
                        // the report implies, and the turn may write only what they can pay.
                        if let Some(price) = &price {
                            max_output = reservation.observe(price, &usage, max_output);
                            if let Some(caller) = caller.as_mut() {
                                max_output = caller.observe(price, &usage, max_output);
                            }
                        }
                        // Output past that is what the gateway refuses to pay for.
                        over = usage.output > max_output;
                    }
                    StreamEvent::Done { stop_reason: why } => stop_reason = Some(why.clone()),
                    // More output when the budgets pay for none: cut before it is forwarded.
                    StreamEvent::TextDelta { .. }
                    | StreamEvent::ThinkingDelta { .. }
                    | StreamEvent::ToolCallStart { .. }
                    | StreamEvent::ToolCallDelta { .. } => {
                        over = max_output < admitted_output && usage.output >= max_output;
                    }
                    _ => {}
                }
                if !over || matches!(event, StreamEvent::Usage { .. }) {
                    self.worker
                        .process
                        .notify(Note::ModelEvent(ModelEventParams {
                            request_id: self.id.clone(),
                            event,
                        }));
                }
                if over {
                    let why = if max_output < admitted_output {
                        format!(
                            "its prompt was {} tokens, more than estimated, and the budget pays for only {max_output} of the {admitted_output} output tokens it was admitted for",
                            usage.input
                                + usage.cache_read
                                + usage.cache_write
                                + usage.cache_write_1h
                        )
                    } else {
                        format!(
                            "it produced more than the {max_output} output tokens it was admitted for"
                        )
                    };
                    failure = Some(RpcError::new(
                        codes::BUDGET_EXCEEDED,
                        format!("agent {agent}: the turn was cut off: {why}"),
                    ));
                    break;
                }
            },
        }

        let cost = price.map_or(Usd::ZERO, |p| p.cost(&usage));
        let actual = Amount {
            output_tokens: usage.output,
            usd: cost,
        };
        if let Some(caller) = caller {
            caller.settle(actual);
        }
        let exhausted = reservation.settle(actual);
        let turn = MeteredTurn {
            model: model.clone(),
            usage,
            cost,
            failed: failure.is_some(),
        };
        self.meter(&params.task_id, &turn);
        if !exhausted.is_empty() {
            self.supervisor
                .pause(&self.pool, format!("{} used up", exhausted.join(", ")));
            self.supervisor
                .over_budget(&self.pool, &self.worker, &params.task_id);
        }
        if let Some(error) = failure {
            return Err(error);
        }
        serde_json::to_value(ModelStreamResult {
            model,
            usage,
            stop_reason,
            cost,
        })
        .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
    }

    /// "patch-bot has spent $0.0400 of its $0.0500 budget".
    fn spend(&self) -> String {
        self.supervisor.spend_line(&self.pool)
    }

    /// Notes on the task (when it is still the worker's) that a turn of it was refused.
    fn refused(&self, task_id: &str, refusal: Refusal) {
        if let Some(assignment) = lock(&self.worker.task).as_mut()
            && assignment.task_id == task_id
        {
            assignment.meter.refused.get_or_insert(refusal);
        }
    }

    /// Charges the task (when it is still the worker's) and tells the listeners.
    fn meter(&self, task_id: &str, turn: &MeteredTurn) {
        if let Some(assignment) = lock(&self.worker.task).as_mut()
            && assignment.task_id == task_id
        {
            assignment.meter.usage += turn.usage;
            assignment.meter.cost += turn.cost;
            assignment.meter.turns += 1;
        }
        if let Some(updates) = &self.updates {
            let _ = updates.send(TaskUpdate::Turn(turn.clone()));
        }
        self.supervisor.emit(SupervisorEvent::ModelTurn {
            agent: self.pool.plan.agent.clone(),
            task_id: task_id.to_owned(),
            turn: turn.clone(),
        });
    }
}

/// A `model/stream` error the worker's side turns back into the provider's error.
fn failed(kind: ErrorKind, message: String) -> RpcError {
    let mut error = RpcError::new(codes::MODEL_FAILED, message);
    error.data = serde_json::to_value(ModelErrorData {
        kind,
        status: None,
        retryable: false,
        retry_after_ms: None,
    })
    .ok();
    error
}

fn provider_failure(e: &ProviderError) -> RpcError {
    match e {
        ProviderError::Cancelled => {
            RpcError::new(codes::REQUEST_CANCELLED, "the model turn was cancelled")
        }
        ProviderError::Api {
            status,
            kind,
            retry_after,
            ..
        } => {
            let mut error = RpcError::new(codes::MODEL_FAILED, e.to_string());
            error.data = serde_json::to_value(ModelErrorData {
                kind: *kind,
                status: *status,
                retryable: e.is_retryable(),
                retry_after_ms: retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
            .ok();
            error
        }
        other => {
            let mut error = failed(ErrorKind::Other, other.to_string());
            if let Some(data) = error.data.as_mut() {
                data["retryable"] = other.is_retryable().into();
            }
            error
        }
    }
}
