//! Background subagents: `spawn_subagent`, `subagent_status`, `subagent_result` and
//! `cancel_subagent`, and the tasks an agent call keeps for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_core::agent::{AgentCall, AgentOutcome, CallContext, DynAgentRunner};
use fleet_core::command::WorkUnitDraft;
use fleet_core::id::WorkUnitId;
use fleet_core::provider::{CancelToken, ToolSpec};
use fleet_core::spec::SpecSet;
use fleet_core::sync::BoxFuture;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Tool, ToolContext, ToolOutput, spec, str_arg};

/// A task's id, unit, cancellation and result channel.
type TaskHandle = (String, WorkUnitId, CancelToken, ResultRx);
type ResultRx = watch::Receiver<Option<Result<String, String>>>;

/// A background subagent of one agent call.
#[derive(Debug)]
struct Task {
    unit: WorkUnitId,
    cancel: CancelToken,
    result: watch::Receiver<Option<Result<String, String>>>,
}

/// The background subagents of one agent call.
#[derive(Clone)]
pub(crate) struct Subagents {
    inner: Arc<Mutex<HashMap<String, Task>>>,
    pub(crate) runner: Option<Arc<dyn DynAgentRunner>>,
    /// Where calls naming a specialist go, when not to `runner`.
    pub(crate) delegate: Option<Arc<dyn DynAgentRunner>>,
    pub(crate) specs: Option<Arc<SpecSet>>,
}

impl Subagents {
    pub(crate) fn new(
        runner: Arc<dyn DynAgentRunner>,
        delegate: Option<Arc<dyn DynAgentRunner>>,
        specs: Option<Arc<SpecSet>>,
    ) -> Self {
        Self {
            inner: Arc::default(),
            runner: Some(runner),
            delegate,
            specs,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cancels every subagent still running (their units become `cancelled`).
    pub(crate) fn cancel_all(&self) {
        for task in self.lock().values() {
            task.cancel.cancel();
        }
    }

    /// Waits until every subagent has ended.
    pub(crate) async fn join_all(&self) {
        let receivers: Vec<_> = self.lock().values().map(|t| t.result.clone()).collect();
        for mut rx in receivers {
            let _ = rx.wait_for(Option::is_some).await;
        }
    }
}

/// The error text of a cancelled subagent.
const CANCELLED: &str = "agent call cancelled";

fn state_text(result: Option<&Result<String, String>>) -> &'static str {
    match result {
        None => "running",
        Some(Ok(_)) => "completed",
        Some(Err(e)) if e == CANCELLED => "cancelled",
        Some(Err(_)) => "failed",
    }
}

pub(super) struct SpawnSubagent;

impl Tool for SpawnSubagent {
    fn spec(&self) -> ToolSpec {
        spec(
            "spawn_subagent",
            "Start a background subagent on a task; returns its task id at once. Use subagent_status / subagent_result to follow it.",
            json!({"type": "object", "properties": {
                "prompt": {"type": "string", "minLength": 1},
                "agent_type": {"type": "string", "description": "A specialist from agents/*.yaml (default: a plain agent)"},
                "label": {"type": "string"}
            }, "required": ["prompt"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let Some(runner) = ctx.subagents.runner.clone() else {
                return ToolOutput::error("subagents are not available here");
            };
            let prompt = match str_arg(&input, "prompt") {
                Ok(p) => p.to_owned(),
                Err(e) => return e,
            };
            let agent = match input.get("agent_type").and_then(Value::as_str) {
                None => None,
                Some(name) => match ctx.subagents.specs.as_ref().and_then(|s| s.get(name)) {
                    Some(spec) => Some(Arc::new(spec.clone())),
                    None => {
                        let known: Vec<&str> = ctx
                            .subagents
                            .specs
                            .as_ref()
                            .map(|s| s.specs.iter().map(|a| a.name.as_str()).collect())
                            .unwrap_or_default();
                        return ToolOutput::error(format!(
                            "no agent type {name:?}; known: {}",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                },
            };
            // A specialist runs where the delegate puts it (its sandboxed worker).
            let runner = match (&agent, &ctx.subagents.delegate) {
                (Some(_), Some(delegate)) => delegate.clone(),
                _ => runner,
            };
            let call = AgentCall {
                label: input
                    .get("label")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                agent,
                // A subagent works where its parent does (the parent's worktree, say).
                workdir: Some(ctx.workdir.clone()),
                ..AgentCall::new(prompt)
            };
            let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
            draft.state = WorkUnitState::Pending;
            draft.label = Some(call.display_label());
            draft.agent = call.agent.as_ref().map(|a| a.name.clone());
            let unit = match ctx.call.journal.start_work_unit(ctx.unit, draft).await {
                Ok(u) => u,
                Err(e) => return ToolOutput::error(format!("cannot record the subagent: {e}")),
            };
            let cancel = ctx.call.cancel.child_token();
            let child = CallContext {
                journal: ctx.call.journal.clone(),
                parent: ctx.unit,
                work_unit: Some(unit),
                budgets: ctx.call.budgets.clone(),
                charge_to: ctx.call.charge_to.clone(),
                cancel: cancel.clone(),
            };
            let (tx, rx) = watch::channel(None);
            let task_id = {
                let mut tasks = ctx.subagents.lock();
                // Numbered per spawning call: short, and the same in every replay.
                let id = format!("task_{}", tasks.len() + 1);
                tasks.insert(
                    id.clone(),
                    Task {
                        unit,
                        cancel,
                        result: rx,
                    },
                );
                id
            };
            tokio::spawn(async move {
                let result = runner
                    .run_dyn(call, child)
                    .await
                    .map(|o: AgentOutcome| o.output.map_or(o.text, |v| v.to_string()))
                    .map_err(|e| e.to_string());
                let _ = tx.send(Some(result));
            });
            ToolOutput::ok(json!({"task_id": task_id, "work_unit_id": unit}).to_string())
        })
    }
}

fn task_arg(input: &Value, ctx: &ToolContext) -> Result<TaskHandle, ToolOutput> {
    let id = str_arg(input, "task_id")?;
    let tasks = ctx.subagents.lock();
    let task = tasks.get(id).ok_or_else(|| {
        let mut known: Vec<&String> = tasks.keys().collect();
        known.sort();
        ToolOutput::error(format!("no task {id:?}; this agent's tasks: {known:?}"))
    })?;
    Ok((
        id.to_owned(),
        task.unit,
        task.cancel.clone(),
        task.result.clone(),
    ))
}

fn task_schema() -> Value {
    json!({"type": "object", "properties": {"task_id": {"type": "string"}}, "required": ["task_id"]})
}

pub(super) struct SubagentStatus;

impl Tool for SubagentStatus {
    fn spec(&self) -> ToolSpec {
        spec(
            "subagent_status",
            "The state of a background subagent: running, completed, failed or cancelled.",
            task_schema(),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            match task_arg(&input, ctx) {
                Ok((id, unit, cancel, rx)) => {
                    let state = if cancel.is_cancelled() && rx.borrow().is_none() {
                        "cancelling"
                    } else {
                        state_text(rx.borrow().as_ref())
                    };
                    ToolOutput::ok(
                        json!({"task_id": id, "work_unit_id": unit, "state": state}).to_string(),
                    )
                }
                Err(e) => e,
            }
        })
    }
}

pub(super) struct SubagentResult;

impl Tool for SubagentResult {
    fn spec(&self) -> ToolSpec {
        spec(
            "subagent_result",
            "The answer of a background subagent. With wait=true (default) waits for it to end, up to timeout_ms; with wait=false answers at once.",
            json!({"type": "object", "properties": {
                "task_id": {"type": "string"},
                "wait": {"type": "boolean"},
                "timeout_ms": {"type": "integer", "minimum": 1}
            }, "required": ["task_id"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let (id, _, _, mut rx) = match task_arg(&input, ctx) {
                Ok(t) => t,
                Err(e) => return e,
            };
            let wait = input.get("wait").and_then(Value::as_bool).unwrap_or(true);
            if wait {
                let limit = Duration::from_millis(
                    input
                        .get("timeout_ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(600_000),
                );
                tokio::select! {
                    () = ctx.call.cancel.cancelled() => return ToolOutput::error("cancelled"),
                    _ = tokio::time::timeout(limit, rx.wait_for(Option::is_some)) => {}
                }
            }
            let result = rx.borrow().clone();
            match result {
                None => ToolOutput::ok(json!({"task_id": id, "state": "running"}).to_string()),
                Some(Ok(text)) => ToolOutput::ok(text),
                Some(Err(e)) if e == CANCELLED => {
                    ToolOutput::error(format!("subagent {id} was cancelled"))
                }
                Some(Err(e)) => ToolOutput::error(format!("subagent {id} failed: {e}")),
            }
        })
    }
}

pub(super) struct CancelSubagent;

impl Tool for CancelSubagent {
    fn spec(&self) -> ToolSpec {
        spec(
            "cancel_subagent",
            "Stop a background subagent; its work unit becomes cancelled.",
            task_schema(),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            match task_arg(&input, ctx) {
                Ok((id, _, cancel, mut rx)) => {
                    cancel.cancel();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
                            .await;
                    ToolOutput::ok(json!({"task_id": id, "state": "cancelled"}).to_string())
                }
                Err(e) => e,
            }
        })
    }
}
