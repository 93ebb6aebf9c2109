//! What the workflow script's primitives do for a run: `agent()`, phases, logs, the budget and
//! nested workflows (the engine's [`Host`] trait).

use std::sync::atomic::Ordering;
use std::time::Duration;

use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::agent::AgentCall;
use fleet_core::command::WorkUnitDraft;
use fleet_core::money::Usd;
use fleet_core::sync::BoxFuture;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use serde_json::Value;

use crate::call::{CallOptions, call_key};
use crate::engine::{BudgetView, ChildWorkflow, FrameId, Host, HostResult, Rejection};
use crate::events::RunEvent;

use super::call_site::CallSite;
use super::{Frame, RunHost, lock};

impl Host for RunHost {
    fn agent(
        &self,
        frame: FrameId,
        prompt: String,
        opts: Option<Value>,
    ) -> Result<BoxFuture<'static, HostResult>, Rejection> {
        let mut opts = CallOptions::parse(opts.as_ref())?;
        if let Some(model) = &mut opts.model
            && let Some(real) = self.config.model_aliases.get(model.as_str())
        {
            model.clone_from(real);
        }
        for key in &opts.unknown {
            self.log(
                frame,
                LogLevel::Warn,
                format!("agent(): unknown option `{key}` ignored"),
            );
        }
        if self.cancel.is_cancelled() {
            return Err("the run is stopping; no new agent() call starts".into());
        }
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.config.max_agent_calls {
            return Err(format!(
                "Workflow agent() call cap reached ({}). Split the work across runs, or raise the run's agent-call limit.",
                self.config.max_agent_calls
            )
            .into());
        }
        self.check_budget().inspect_err(|_| {
            self.budget_exhausted.store(true, Ordering::Relaxed);
        })?;
        let spec = opts
            .agent_type
            .as_deref()
            .map(|name| self.resolve_spec(name))
            .transpose()?;
        let parent = self
            .frame_unit(frame)
            .ok_or("agent(): the calling workflow is gone")?;
        let phase = opts.phase.clone().or_else(|| {
            lock(&self.frames)
                .get(frame as usize)
                .and_then(|f| f.phase.clone())
        });
        let base = opts.base_key(&prompt);
        let key = {
            let mut occurrences = lock(&self.occurrences);
            let occurrence = occurrences.get(&base).copied().unwrap_or(0);
            let key = call_key(&base, occurrence);
            occurrences.insert(base, occurrence + 1);
            key
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let cached = self.resume.lookup(&key, seq, &self.strict_ok);
        let mut call = AgentCall::new(prompt);
        call.label = opts.label.clone();
        let label = call.display_label();
        call.phase = phase.clone();
        call.agent = spec;
        call.model = opts.model.clone();
        call.effort = opts.effort;
        call.schema = opts.schema.clone();
        call.capabilities = opts.capabilities.clone();
        call.max_tool_calls = opts.max_tool_calls;
        call.timeout = opts.timeout_ms.map(Duration::from_millis);
        if let Some(tokens) = opts.budget_tokens {
            call.max_tokens = Some(u32::try_from(tokens).unwrap_or(u32::MAX));
        }
        let charge_to = self.charge_targets(phase.as_deref(), call.agent.as_deref(), &opts)?;
        let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
        draft.label = Some(label.clone());
        draft.phase = phase.clone();
        draft.agent = opts.agent_type.clone();
        draft.model = call
            .model
            .clone()
            .or_else(|| call.agent.as_ref().map(|s| s.model.clone()));
        let ctx = CallSite {
            host: self.weak(),
            parent,
            key,
            seq,
            label,
            phase,
            agent_type: opts.agent_type.clone(),
            draft,
            charge_to,
            type_limit: self.type_limit(opts.agent_type.as_deref()),
            worktree: opts.isolation.is_some(),
            _token: self.tracker.token(),
        };
        // Boxed, so that the call's future holds pointers to them: a fan-out keeps a
        // thousand of these futures at once.
        let ctx = Box::new(ctx);
        Ok(match cached {
            Some(value) => Box::pin(ctx.serve_cached(value)),
            None => Box::pin(ctx.run_live(Box::new(call))),
        })
    }

    fn phase(&self, frame: FrameId, title: String) {
        let (previous, unit) = {
            let mut frames = lock(&self.frames);
            let Some(f) = frames.get_mut(frame as usize) else {
                return;
            };
            (f.phase.replace(title.clone()), f.unit)
        };
        if let Some(previous) = previous {
            self.shared.emit(RunEvent::PhaseEnded { title: previous });
        }
        self.shared.emit(RunEvent::PhaseStarted {
            title: title.clone(),
        });
        // Recorded now, in the script's order with its calls; only the outcome is awaited.
        let recorded = self.journal.activity(unit, ActivityKind::Phase { title });
        self.record(async move { recorded.await.map_err(|e| e.to_string()) });
    }

    fn log(&self, frame: FrameId, level: LogLevel, message: String) {
        self.shared.emit(RunEvent::Log {
            level,
            message: message.clone(),
        });
        let Some(unit) = self.frame_unit(frame) else {
            return;
        };
        let recorded = self
            .journal
            .activity(unit, ActivityKind::Log { level, message });
        self.record(async move { recorded.await.map_err(|e| e.to_string()) });
    }

    fn budget(&self) -> BudgetView {
        let status = self.budgets.status(self.run_budget);
        let (tokens_spent, usd_spent) = status
            .as_ref()
            .map_or((0, Usd::ZERO), |s| (s.spent.output_tokens, s.spent.usd));
        BudgetView {
            tokens_total: self.config.tokens_total,
            tokens_spent,
            usd_total: self.config.usd_total,
            usd_spent,
        }
    }

    fn open_workflow(
        &self,
        frame: FrameId,
        reference: Value,
        args: Option<Value>,
    ) -> Result<BoxFuture<'static, Result<ChildWorkflow, Rejection>>, Rejection> {
        if frame != 0 {
            return Err(
                "workflow() cannot be called from a nested workflow: only one level of nesting is allowed"
                    .into(),
            );
        }
        let base_dir = lock(&self.frames)
            .first()
            .and_then(|f| f.script.path())
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf));
        let script = self.catalog.resolve(&reference, base_dir.as_deref())?;
        let parent = self
            .frame_unit(frame)
            .ok_or("workflow(): the caller is gone")?;
        let child_frame = {
            let mut frames = lock(&self.frames);
            frames.push(Frame {
                unit: parent,
                phase: None,
                script: script.clone(),
            });
            u32::try_from(frames.len() - 1).unwrap_or(u32::MAX)
        };
        let journal = self.journal.clone();
        let host = self.weak();
        let token = self.tracker.token();
        Ok(Box::pin(async move {
            let _token = token;
            let mut draft = WorkUnitDraft::new(WorkUnitKind::Workflow);
            draft.label = Some(script.meta.name.clone());
            let unit = journal
                .start_work_unit(parent, draft)
                .await
                .map_err(|e| format!("workflow(): cannot record the nested run: {e}"))?;
            if let Some(host) = host.upgrade()
                && let Some(f) = lock(&host.frames).get_mut(child_frame as usize)
            {
                f.unit = unit;
            }
            Ok(ChildWorkflow {
                frame: child_frame,
                script,
                args,
            })
        }))
    }

    fn close_workflow(
        &self,
        frame: FrameId,
        outcome: Result<&Value, &str>,
    ) -> BoxFuture<'static, ()> {
        let unit = self.frame_unit(frame);
        let journal = self.journal.clone();
        let (state, error) = match outcome {
            Ok(_) => (WorkUnitState::Completed, None),
            Err(message) => (WorkUnitState::Failed, Some(message.to_owned())),
        };
        let shared = self.shared.clone();
        Box::pin(async move {
            if let Some(unit) = unit
                && let Err(e) = journal.set_state(unit, state, error).await
            {
                shared.record_failed(e.to_string());
            }
        })
    }
}
