//! Applying a CLI's [`Step`]s to the journal: the call's unit, its subagents by key, usage
//! priced per model.

use std::collections::HashMap;

use fleet_core::activity::ActivityKind;
use fleet_core::agent::{AgentCall, AgentError, CallContext};
use fleet_core::command::WorkUnitDraft;
use fleet_core::id::WorkUnitId;
use fleet_core::money::Cost;
use fleet_core::pricing::PriceTable;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{ProviderRefs, WorkUnitKind, WorkUnitState};

use super::{Step, Target};

/// Applies steps to the journal: children by key, usage priced per model.
pub(crate) struct TreeRecorder<'a> {
    pub(crate) ctx: &'a CallContext,
    prices: &'a PriceTable,
    pub(crate) root: WorkUnitId,
    units: HashMap<String, WorkUnitId>,
    /// What was recorded per model, so only the rest of a CLI's totals goes on the root.
    recorded: HashMap<String, TokenUsage>,
    pub(crate) cost: Cost,
    pub(crate) usage: TokenUsage,
    /// Tool calls the root made.
    pub(crate) tool_calls: u32,
    /// Usage reports (one per model request).
    pub(crate) requests: u32,
    /// The plan the turn proposed, if any.
    pub(crate) plan: Option<String>,
    /// Units whose model is known.
    modeled: std::collections::HashSet<WorkUnitId>,
}

impl<'a> TreeRecorder<'a> {
    pub(crate) fn new(ctx: &'a CallContext, prices: &'a PriceTable, root: WorkUnitId) -> Self {
        Self {
            ctx,
            prices,
            root,
            units: HashMap::new(),
            recorded: HashMap::new(),
            cost: Cost::default(),
            usage: TokenUsage::default(),
            tool_calls: 0,
            requests: 0,
            plan: None,
            modeled: std::collections::HashSet::new(),
        }
    }

    /// The unit a target names (the root for a child not seen).
    pub(crate) fn unit(&self, target: &Target) -> WorkUnitId {
        match target {
            Target::Root => self.root,
            Target::Child(key) => self.units.get(key).copied().unwrap_or(self.root),
        }
    }

    async fn usage(
        &mut self,
        unit: WorkUnitId,
        model: &str,
        usage: TokenUsage,
    ) -> Result<(), AgentError> {
        let cost = self.prices.cost(model, &usage);
        self.ctx.journal.usage(unit, model, usage, cost).await?;
        *self.recorded.entry(model.to_owned()).or_default() += usage;
        self.usage += usage;
        match cost {
            Some(c) => self.cost.usd += c,
            None => self.cost.unpriced += 1,
        }
        Ok(())
    }

    /// A subagent whose model the stream did not name runs on the model of its first usage.
    async fn name_model(&self, unit: WorkUnitId, model: &str) -> Result<(), AgentError> {
        let record = self
            .ctx
            .journal
            .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
            .await;
        if let Some(mut record) = record.filter(|r| r.model.is_none() && !r.state.is_terminal()) {
            record.model = Some(model.to_owned());
            self.ctx
                .journal
                .execute(fleet_core::command::Command::UpsertWorkUnit(record))
                .await?;
        }
        Ok(())
    }

    /// Records `step`; a `Finished` step returns the turn's answer or its error.
    pub(crate) async fn apply(
        &mut self,
        step: Step,
    ) -> Result<Option<Result<String, String>>, AgentError> {
        let journal = &self.ctx.journal;
        match step {
            Step::OpenChild {
                key,
                parent,
                label,
                agent,
                model,
            } => {
                if !self.units.contains_key(&key) {
                    let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
                    draft.state = WorkUnitState::Pending;
                    draft.label = label;
                    draft.agent = agent;
                    draft.model = model;
                    let parent = self.unit(&parent);
                    let unit = journal.start_work_unit(parent, draft).await?;
                    self.units.insert(key, unit);
                }
            }
            Step::StartChild { key, refs } => {
                if let Some(unit) = self.units.get(&key).copied() {
                    let record = journal
                        .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
                        .await;
                    // A unit that ended never runs again.
                    if let Some(mut record) = record.filter(|r| !r.state.is_terminal()) {
                        let now = fleet_core::Timestamp::now();
                        record.state = WorkUnitState::Running;
                        record.provider_refs = Some(refs);
                        record.started_at.get_or_insert(now);
                        record.updated_at = now;
                        journal
                            .execute(fleet_core::command::Command::UpsertWorkUnit(record))
                            .await?;
                    }
                }
            }
            Step::EndChild { key, state, error } => {
                if let Some(unit) = self.units.get(&key).copied() {
                    let open = journal
                        .read(|t| t.work_unit(unit).is_some_and(|u| !u.state.is_terminal()))
                        .await;
                    if open {
                        journal.set_state(unit, state, error).await?;
                    }
                }
            }
            Step::Activity { target, kind } => {
                if target == Target::Root && matches!(kind, ActivityKind::ToolCall { .. }) {
                    self.tool_calls += 1;
                }
                if let ActivityKind::ProposedPlan { plan } = &kind {
                    self.plan = Some(plan.clone());
                }
                journal.activity(self.unit(&target), kind).await?;
            }
            Step::Usage {
                target,
                model,
                usage,
            } => {
                let unit = self.unit(&target);
                self.requests += 1;
                if unit != self.root && !model.is_empty() && self.modeled.insert(unit) {
                    self.name_model(unit, &model).await?;
                }
                self.usage(unit, &model, usage).await?;
            }
            Step::Finished {
                text,
                error,
                model_usage,
            } => {
                for (model, total) in model_usage {
                    let seen = self.recorded.get(&model).copied().unwrap_or_default();
                    let rest = TokenUsage {
                        input: total.input.saturating_sub(seen.input),
                        output: total.output.saturating_sub(seen.output),
                        cache_write: total.cache_write.saturating_sub(seen.cache_write),
                        cache_write_1h: total.cache_write_1h.saturating_sub(seen.cache_write_1h),
                        cache_read: total.cache_read.saturating_sub(seen.cache_read),
                    };
                    if rest.total() > 0 {
                        self.usage(self.root, &model, rest).await?;
                    }
                }
                return Ok(Some(match error {
                    None => Ok(text),
                    Some(e) => Err(e),
                }));
            }
        }
        Ok(None)
    }
}

/// The call's unit: the pre-recorded one (now running on `model`) or a new child of the
/// context's parent.
pub(crate) async fn open_root(
    call: &AgentCall,
    ctx: &CallContext,
    model: &str,
) -> Result<WorkUnitId, AgentError> {
    let journal = &ctx.journal;
    Ok(match ctx.work_unit {
        Some(unit) => {
            journal.set_running(unit, Some(model.to_owned())).await?;
            unit
        }
        None => {
            let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
            draft.label = Some(call.display_label());
            draft.agent = call.agent.as_ref().map(|a| a.name.clone());
            draft.model = Some(model.to_owned());
            journal.start_work_unit(ctx.parent, draft).await?
        }
    })
}

/// Ends the turn's tree: children still open end with the root, which ends as `result` says.
pub(crate) async fn close_tree<T>(
    ctx: &CallContext,
    root: WorkUnitId,
    result: &Result<T, AgentError>,
) -> Result<(), AgentError> {
    let journal = &ctx.journal;
    let (state, error) = match result {
        Ok(_) => (WorkUnitState::Completed, None),
        Err(AgentError::Cancelled) => (WorkUnitState::Cancelled, Some("cancelled".to_owned())),
        Err(e) => (WorkUnitState::Failed, Some(e.to_string())),
    };
    let open: Vec<WorkUnitId> = journal
        .read(|t| {
            t.subtree(root)
                .into_iter()
                .filter(|(_, u)| u.id != root && !u.state.is_terminal())
                .map(|(_, u)| u.id)
                .collect()
        })
        .await;
    for unit in open {
        journal.set_state(unit, state, error.clone()).await?;
    }
    let open = journal
        .read(|t| t.work_unit(root).is_some_and(|u| !u.state.is_terminal()))
        .await;
    if open {
        journal.set_state(root, state, error).await?;
    }
    Ok(())
}

/// Records the provider references of a unit that is still open.
pub(crate) async fn set_refs(
    ctx: &CallContext,
    unit: WorkUnitId,
    refs: ProviderRefs,
) -> Result<(), AgentError> {
    let record = ctx
        .journal
        .read(|t| t.work_unit(unit).map(|u| u.record.clone()))
        .await;
    if let Some(mut record) = record.filter(|r| !r.state.is_terminal()) {
        record.provider_refs = Some(refs);
        record.updated_at = fleet_core::Timestamp::now();
        ctx.journal
            .execute(fleet_core::command::Command::UpsertWorkUnit(record))
            .await?;
    }
    Ok(())
}
