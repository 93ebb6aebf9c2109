//! The supervisor: per specialist agent, a pool of sandboxed worker processes (at least `min`,
//! at most `max`, idle ones beyond `min` stopped after `idle_timeout`); tasks go to an idle
//! worker or a new one; a worker that dies mid-task is reported, replaced after a backoff, and
//! the task retried per the plan. With a provider ([`Supervisor::with_gateway`]) it is also
//! every worker's model gateway and only meter (see `supervisor/gateway.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_core::budget::{BudgetId, BudgetLimits, BudgetStatus, Budgets};
use fleet_core::ipc::{
    Call, GatewayInfo, InitializeParams, Note, PROTOCOL_VERSION, TaskRef, TaskRunParams,
};
use fleet_core::money::Usd;
use fleet_core::pricing::PriceTable;
use fleet_core::provider::DynProvider;
use tokio::sync::{Semaphore, broadcast, mpsc};

mod assignment;
mod events;
pub(crate) mod gateway;
mod pool;
mod task;

use self::assignment::Assignment;
pub use self::events::{SupervisorError, SupervisorEvent};
pub(crate) use self::pool::{Pool, Pooled, lock};
pub use self::task::{Charge, MeteredTurn, Recorded, TaskOptions, TaskReport, TaskUpdate};
use crate::{OverBudget, Sandbox, SandboxError, WorkerError, WorkerPlan, WorkerProcess};

/// How long a cancelled task has to answer before its worker is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Tells the worker to stop a task whose caller went away (and stops its in-flight turns).
struct CancelOnDrop<'a> {
    worker: &'a Pooled,
    task_id: &'a str,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = self.worker.process.send(Call::TaskCancel(TaskRef {
            task_id: self.task_id.to_owned(),
        }));
        if let Some(assignment) = lock(&self.worker.task).take() {
            assignment.finish();
        }
    }
}

/// Keeps the workers of many agents.
#[derive(Clone)]
pub struct Supervisor {
    sandbox: Sandbox,
    pools: Arc<Mutex<HashMap<String, Arc<Pool>>>>,
    events: broadcast::Sender<SupervisorEvent>,
    pub(crate) budgets: Budgets,
    run_budget: Option<BudgetId>,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) gateway: Option<Arc<dyn DynProvider>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("agents", &lock(&self.pools).keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor starting workers through `sandbox`, pricing usage with `prices`. Each
    /// agent's budget is its own until [`Supervisor::charging`] puts it under a run's.
    #[must_use]
    pub fn new(sandbox: Sandbox, prices: Arc<PriceTable>) -> Self {
        Self {
            sandbox,
            pools: Arc::default(),
            events: broadcast::channel(1024).0,
            budgets: Budgets::new(),
            run_budget: None,
            prices,
            gateway: None,
        }
    }

    /// Workers' model turns go to `provider` (one provider, or a router of providers by
    /// model): the supervisor holds its credentials, forwards each turn after reserving its
    /// worst case against the agent's and the fleet's budgets, and charges what the
    /// provider's own stream says it used. Without a gateway, a worker's `model/stream` is
    /// refused.
    #[must_use]
    pub fn with_gateway(mut self, provider: Arc<dyn DynProvider>) -> Self {
        self.gateway = Some(provider);
        self
    }

    pub(crate) fn emit(&self, event: SupervisorEvent) {
        let _ = self.events.send(event);
    }

    /// Pauses `pool`'s agent with `reason` (once) and tells the listeners.
    /// Pauses `pool`'s agent for `cause` (a refusal, a used-up budget): it takes no task and
    /// sends no turn until resumed.
    pub(crate) fn pause(&self, pool: &Pool, cause: String) {
        let mut paused = lock(&pool.paused);
        if paused.is_some() {
            return;
        }
        *paused = Some(cause);
        drop(paused);
        if let Some(reason) = self.paused_reason(pool) {
            self.emit(SupervisorEvent::AgentPaused {
                agent: pool.plan.agent.clone(),
                reason,
            });
        }
    }

    /// Why `pool`'s agent is paused, with what it has spent now (turns in flight when it was
    /// paused may have settled since).
    pub(crate) fn paused_reason(&self, pool: &Pool) -> Option<String> {
        let cause = lock(&pool.paused).clone()?;
        Some(format!("{cause}; {}", self.spend_line(pool)))
    }

    /// `<agent> has spent $X of its $Y budget`, as of now.
    pub(crate) fn spend_line(&self, pool: &Pool) -> String {
        let status = self.budgets.status(pool.budget);
        let spent = status.as_ref().map_or(Usd::ZERO, |s| s.spent.usd);
        let limit = status
            .and_then(|s| s.limits.usd)
            .unwrap_or(pool.plan.cost_budget);
        format!(
            "{} has spent {spent} of its {limit} budget",
            pool.plan.agent
        )
    }

    /// Agents added from now on are charged in `budgets`, under `run` (whose caps then pause
    /// every agent).
    #[must_use]
    pub fn charging(mut self, budgets: Budgets, run: Option<BudgetId>) -> Self {
        self.budgets = budgets;
        self.run_budget = run;
        self
    }

    /// What `agent` has spent, against its budget.
    #[must_use]
    pub fn spent(&self, agent: &str) -> Option<BudgetStatus> {
        let budget = lock(&self.pools).get(agent)?.budget;
        self.budgets.status(budget)
    }

    /// Why `agent` is paused, when it is (a refused reservation or a used-up budget).
    #[must_use]
    pub fn paused(&self, agent: &str) -> Option<String> {
        let pool = lock(&self.pools).get(agent).cloned()?;
        self.paused_reason(&pool)
    }

    /// Lets a paused agent take tasks again, with a new budget if given.
    pub fn resume(&self, agent: &str, cost_budget: Option<Usd>) {
        let Some(pool) = lock(&self.pools).get(agent).cloned() else {
            return;
        };
        if let Some(usd) = cost_budget {
            let _ = self.budgets.set_limits(
                pool.budget,
                BudgetLimits {
                    output_tokens: None,
                    usd: Some(usd),
                },
            );
        }
        *lock(&pool.paused) = None;
    }

    /// What happens to workers, as it happens.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// Supervises `plan`'s agent: checks its sandbox, starts its `min` workers and the idle
    /// reaper.
    ///
    /// # Errors
    /// What stops its workers from starting.
    pub async fn add(&self, plan: WorkerPlan) -> Result<(), SupervisorError> {
        self.sandbox
            .preflight(&plan.policy)
            .map_err(|e: SandboxError| SupervisorError::Start {
                agent: plan.agent.clone(),
                reason: e.to_string(),
            })?;
        crate::runnable_by_workers(&plan.program).map_err(|e| SupervisorError::Start {
            agent: plan.agent.clone(),
            reason: e.to_string(),
        })?;
        if let (Some(provider), Some(model)) = (&self.gateway, &plan.model)
            && !provider.capabilities_dyn().free
            && self.prices.price(model).is_none()
        {
            return Err(SupervisorError::Start {
                agent: plan.agent.clone(),
                reason: format!(
                    "model {model} has no price, so its spend cannot be metered against the agent's budget: \
                     add it to the price table (a `prices.file` in fleet.toml, in the built-in table's format) or pick a priced model"
                ),
            });
        }
        let budget = self.budgets.add(
            format!("agent {}", plan.agent),
            self.run_budget,
            BudgetLimits {
                output_tokens: None,
                usd: Some(plan.cost_budget),
            },
        );
        let pool = Arc::new(Pool {
            slots: Arc::new(Semaphore::new(plan.max.max(1))),
            idle: Mutex::new(Vec::new()),
            busy: Mutex::new(Vec::new()),
            deaths_in_a_row: AtomicU32::new(0),
            budget,
            paused: Mutex::new(None),
            plan,
        });
        for _ in 0..pool.plan.min {
            let worker = self.start(&pool).await?;
            lock(&pool.idle).push((worker, Instant::now()));
        }
        lock(&self.pools).insert(pool.plan.agent.clone(), pool.clone());
        let weak = Arc::downgrade(&pool);
        let events = self.events.clone();
        tokio::spawn(async move {
            let every = (pool_timeout(&weak) / 2).max(Duration::from_millis(10));
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = weak.upgrade() else { return };
                reap(&pool, &events);
            }
        });
        Ok(())
    }

    /// Workers of `agent` alive now (idle and busy).
    #[must_use]
    pub fn workers(&self, agent: &str) -> usize {
        lock(&self.pools)
            .get(agent)
            .map_or(0, |p| lock(&p.idle).len() + lock(&p.busy).len())
    }

    async fn start(&self, pool: &Arc<Pool>) -> Result<Arc<Pooled>, SupervisorError> {
        let plan = &pool.plan;
        let failed = |reason: String| SupervisorError::Start {
            agent: plan.agent.clone(),
            reason,
        };
        let command = self
            .sandbox
            .tokio_command(&plan.policy, &plan.program, &plan.args)
            .map_err(|e| failed(e.to_string()))?;
        let process = WorkerProcess::spawn(command).map_err(|e| failed(e.to_string()))?;
        let notes = process
            .notifications()
            .ok_or_else(|| failed("its notifications are taken".into()))?;
        let requests = process
            .requests()
            .ok_or_else(|| failed("its requests are taken".into()))?;
        let gateway = self.gateway.as_ref().map(|provider| {
            let c = provider.capabilities_dyn();
            GatewayInfo {
                provider: provider.name_dyn().to_owned(),
                model: plan.model.clone().unwrap_or_default(),
                tools: c.tools,
                images: c.images,
                thinking: c.thinking,
                prompt_cache: c.prompt_cache,
                free: c.free,
            }
        });
        let worker = Arc::new(Pooled {
            process,
            notes: tokio::sync::Mutex::new(notes),
            task: Mutex::new(None),
        });
        tokio::spawn(gateway::serve(
            self.clone(),
            pool.clone(),
            Arc::downgrade(&worker),
            requests,
        ));
        worker
            .process
            .initialize(InitializeParams {
                protocol: PROTOCOL_VERSION,
                spec: plan.spec.clone(),
                workspace: plan.workspace.clone(),
                limits: plan.limits,
                gateway,
            })
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.emit(SupervisorEvent::WorkerStarted {
            agent: plan.agent.clone(),
        });
        Ok(worker)
    }

    /// Runs a task on one of `agent`'s workers and waits for its result.
    ///
    /// # Errors
    /// See [`SupervisorError`].
    pub async fn call(
        &self,
        agent: &str,
        task: TaskRunParams,
    ) -> Result<TaskReport, SupervisorError> {
        self.stream(agent, task, None).await
    }

    /// As [`Supervisor::call`], handing the task's notifications and metered model turns to
    /// `updates` as they come.
    ///
    /// # Errors
    /// See [`SupervisorError`].
    pub async fn stream(
        &self,
        agent: &str,
        task: TaskRunParams,
        updates: Option<mpsc::UnboundedSender<TaskUpdate>>,
    ) -> Result<TaskReport, SupervisorError> {
        let with = TaskOptions {
            updates,
            ..TaskOptions::default()
        };
        self.stream_with(agent, task, with).await
    }

    /// As [`Supervisor::stream`], with the [`TaskOptions`]: the caller's budgets charged too,
    /// and a cancellation.
    ///
    /// # Errors
    /// See [`SupervisorError`]; [`SupervisorError::Cancelled`] once `with.cancel` is cancelled.
    pub async fn stream_with(
        &self,
        agent: &str,
        task: TaskRunParams,
        with: TaskOptions,
    ) -> Result<TaskReport, SupervisorError> {
        let pool = lock(&self.pools)
            .get(agent)
            .cloned()
            .ok_or_else(|| SupervisorError::UnknownAgent(agent.to_owned()))?;
        let paused = |pool: &Pool| {
            self.paused_reason(pool)
                .map(|reason| SupervisorError::Paused {
                    agent: agent.to_owned(),
                    reason,
                })
        };
        if let Some(paused) = paused(&pool) {
            return Err(paused);
        }
        let _slot = pool
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SupervisorError::UnknownAgent(agent.to_owned()))?;
        // A task that queued for a worker while the agent was paused is refused with the
        // figures as they are now: it sends nothing to the model.
        if let Some(paused) = paused(&pool) {
            return Err(paused);
        }
        let mut attempt = 1;
        loop {
            let reused = lock(&pool.idle).pop();
            let worker = match reused {
                Some((worker, _)) => worker,
                None => {
                    let deaths = pool.deaths_in_a_row.load(Ordering::Relaxed);
                    if deaths > 0 {
                        let pause = pool.plan.restart_backoff * 2u32.saturating_pow(deaths - 1);
                        tokio::time::sleep(pause.min(Duration::from_secs(5))).await;
                    }
                    self.start(&pool).await?
                }
            };
            lock(&pool.busy).push(worker.clone());
            let outcome = self.run_on(&pool, &worker, task.clone(), &with).await;
            for message in worker.process.take_protocol_errors() {
                let _ = self.events.send(SupervisorEvent::ProtocolError {
                    agent: agent.to_owned(),
                    message,
                });
            }
            lock(&pool.busy).retain(|w| !Arc::ptr_eq(w, &worker));
            match outcome {
                Err(SupervisorError::Task(WorkerError::Exited {
                    status,
                    stderr_tail,
                })) => {
                    pool.deaths_in_a_row.fetch_add(1, Ordering::Relaxed);
                    let _ = self.events.send(SupervisorEvent::WorkerDied {
                        agent: agent.to_owned(),
                        task_id: Some(task.task_id.clone()),
                        status: status.clone(),
                        stderr_tail: stderr_tail.clone(),
                    });
                    if attempt > pool.plan.task_retries {
                        return Err(WorkerError::Exited {
                            status,
                            stderr_tail,
                        }
                        .into());
                    }
                    attempt += 1;
                    let _ = self.events.send(SupervisorEvent::TaskRetried {
                        agent: agent.to_owned(),
                        task_id: task.task_id.clone(),
                        attempt,
                    });
                }
                other => {
                    pool.deaths_in_a_row.store(0, Ordering::Relaxed);
                    if worker.process.ended().is_none() {
                        lock(&pool.idle).push((worker, Instant::now()));
                    }
                    return other;
                }
            }
        }
    }

    /// Runs one task on `worker`, forwarding its notifications; its model turns are served
    /// (and metered) by the gateway while it runs.
    async fn run_on(
        &self,
        pool: &Pool,
        worker: &Pooled,
        task: TaskRunParams,
        with: &TaskOptions,
    ) -> Result<TaskReport, SupervisorError> {
        let task_id = task.task_id.clone();
        let updates = with.updates.as_ref();
        *lock(&worker.task) = Some(Assignment::new(
            task_id.clone(),
            with.updates.clone(),
            with.charge.clone(),
        ));
        // Dropped before the task answers (its caller went away): the worker is told to stop.
        let mut guard = CancelOnDrop {
            worker,
            task_id: &task_id,
            armed: true,
        };
        let cancel = with.cancel.clone().unwrap_or_default();
        let mut cancelled_at: Option<tokio::time::Instant> = None;
        let mut inbox = worker.notes.lock().await;
        let run = worker.process.run_task(task);
        tokio::pin!(run);
        let handle = |note: Note| {
            if let Note::Usage(report) = &note {
                // What a worker says it spent is shown, never charged.
                self.emit(SupervisorEvent::ReportedUsage {
                    agent: pool.plan.agent.clone(),
                    task_id: report.task_id.clone(),
                    model: report.model.clone(),
                    usage: report.usage,
                });
            }
            if let Some(updates) = updates {
                let _ = updates.send(TaskUpdate::Note(note));
            }
        };
        let result = loop {
            tokio::select! {
                result = &mut run => {
                    // Notifications sent before the answer are already queued.
                    while let Ok(note) = inbox.try_recv() {
                        handle(note);
                    }
                    break result;
                }
                Some(note) = inbox.recv() => handle(note),
                () = cancel.cancelled(), if cancelled_at.is_none() => {
                    // Asked to stop: the task's own answer says how it ended.
                    let _ = worker.process.send(Call::TaskCancel(TaskRef { task_id: task_id.clone() }));
                    cancelled_at = Some(tokio::time::Instant::now());
                }
                () = tokio::time::sleep_until(cancelled_at.map_or_else(tokio::time::Instant::now, |at| at + CANCEL_GRACE)), if cancelled_at.is_some() => {
                    // It did not stop: it goes, and its in-flight turns with it.
                    worker.process.kill();
                    break Err(WorkerError::Io("the worker did not stop its cancelled task".into()));
                }
            }
        };
        guard.armed = false;
        // Turns still in flight when the task ended are stopped (and charged what they used).
        let assignment = lock(&worker.task).take();
        let meter = assignment.map(Assignment::finish).unwrap_or_default();
        if cancel.is_cancelled() && result.is_err() {
            return Err(SupervisorError::Cancelled {
                agent: pool.plan.agent.clone(),
            });
        }
        match (result, meter.refused) {
            // A task that failed after the gateway refused one of its turns failed for that.
            (Err(WorkerError::Rpc(_)), Some(refusal)) => Err(SupervisorError::Refused {
                agent: pool.plan.agent.clone(),
                budget: refusal.budget,
                what: refusal.what,
                measure: refusal.measure,
                reason: refusal.message,
            }),
            (result, _) => result
                .map_err(SupervisorError::from)
                .map(|result| TaskReport {
                    result,
                    usage: meter.usage,
                    cost: meter.cost,
                    turns: meter.turns,
                }),
        }
    }

    /// Stops the task running on `worker` when the agent's plan says so (it went over its
    /// budget).
    pub(crate) fn over_budget(&self, pool: &Pool, worker: &Pooled, task_id: &str) {
        if pool.plan.over_budget == OverBudget::CancelTask {
            let cancel = Call::TaskCancel(TaskRef {
                task_id: task_id.to_owned(),
            });
            // The answer does not matter: the task's own answer says how it ended.
            let _ = worker.process.send(cancel);
        }
    }

    /// Kills every worker of `agent`; tasks running on them fail (and are retried per the
    /// plan on fresh workers).
    pub fn kill(&self, agent: &str) {
        let Some(pool) = lock(&self.pools).get(agent).cloned() else {
            return;
        };
        for (worker, _) in lock(&pool.idle).drain(..) {
            worker.process.kill();
        }
        for worker in lock(&pool.busy).iter() {
            worker.process.kill();
        }
    }
}

fn pool_timeout(pool: &std::sync::Weak<Pool>) -> Duration {
    pool.upgrade()
        .map_or(Duration::from_secs(60), |p| p.plan.idle_timeout)
}

/// Stops idle workers beyond `min` that have been idle for `idle_timeout`.
fn reap(pool: &Pool, events: &broadcast::Sender<SupervisorEvent>) {
    let mut idle = lock(&pool.idle);
    let busy = lock(&pool.busy).len();
    let now = Instant::now();
    let mut keep = Vec::new();
    for (worker, since) in idle.drain(..) {
        let alive = worker.process.ended().is_none();
        let needed = keep.len() + busy < pool.plan.min;
        if alive && (needed || now.duration_since(since) < pool.plan.idle_timeout) {
            keep.push((worker, since));
        } else {
            worker.process.kill();
            let _ = events.send(SupervisorEvent::WorkerStopped {
                agent: pool.plan.agent.clone(),
            });
        }
    }
    *idle = keep;
}
