//! Work units: every piece of primary or delegated agent work, as a node of a turn's tree.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::id::{ThreadId, TurnId, WorkUnitId};
use crate::money::Cost;
use crate::usage::TokenUsage;

/// What kind of work a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkUnitKind {
    /// The agent that answers a turn: the root of its tree.
    PrimaryAgent,
    /// A subagent some other unit delegated work to.
    DelegatedAgent,
    /// A workflow run (the root of a `fleet run`, or a nested `workflow()` call).
    Workflow,
}

/// Where a work unit is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkUnitState {
    /// Known but not started (e.g. waiting for a concurrency slot).
    Pending,
    /// Working.
    Running,
    /// Stopped for now and may go on (e.g. over budget).
    Paused,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped on purpose before finishing.
    Cancelled,
    /// Ended because its process or run went away.
    Interrupted,
}

impl WorkUnitState {
    /// The states a unit can never leave.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Completed | Self::Failed | Self::Cancelled | Self::Interrupted => true,
            Self::Pending | Self::Running | Self::Paused => false,
        }
    }

    /// Whether a unit in this state may be recorded in `next`. Restating the same state is always
    /// allowed; a finished unit never changes state again, and nothing goes back to `pending`.
    #[must_use]
    pub fn can_become(self, next: Self) -> bool {
        if self == next {
            return true;
        }
        match self {
            Self::Completed | Self::Failed | Self::Cancelled | Self::Interrupted => false,
            Self::Pending => true,
            Self::Running | Self::Paused => next != Self::Pending,
        }
    }

    /// The name used in events and output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for WorkUnitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider's own ids for a work unit, so it can be matched with the provider's records.
///
/// Claude Code: `thread` = session id, `item` = the `Agent`/`Task` tool_use id, `task` = task id.
/// Codex: `thread` = (child) thread id, `item` = collab item id, `turn` = child turn id.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct ProviderRefs {
    /// The provider's name (`anthropic`, `claude-code`, `codex`, …).
    pub provider: String,
    /// The provider's thread or session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// The provider's turn id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<String>,
    /// The provider's item or tool-use id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// The provider's task id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
}

/// What a `work_unit_upserted` event states about a unit: everything but its running totals,
/// which only `usage_recorded` events change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkUnitRecord {
    /// The unit.
    pub id: WorkUnitId,
    /// Its thread.
    pub thread_id: ThreadId,
    /// Its turn.
    pub turn_id: TurnId,
    /// The unit that delegated it; `None` only for a turn's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<WorkUnitId>,
    /// What kind of work it is.
    pub kind: WorkUnitKind,
    /// Where it is in its life.
    pub state: WorkUnitState,
    /// A short human label (`agent()`'s `label`, a subagent's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The workflow phase it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The agent spec or subagent type it runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The model it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The provider's ids for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refs: Option<ProviderRefs>,
    /// When it started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// When this record was made.
    pub updated_at: Timestamp,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// Why it failed, was cancelled or interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl WorkUnitRecord {
    /// Moves the record to `state` at `at`: it starts when it first leaves `pending`, ends when
    /// it first reaches a terminal state, and keeps an earlier error unless given a new one.
    pub(crate) fn change_state(
        &mut self,
        state: WorkUnitState,
        error: Option<String>,
        at: Timestamp,
    ) {
        if self.started_at.is_none() && state != WorkUnitState::Pending {
            self.started_at = Some(at);
        }
        if state.is_terminal() && self.ended_at.is_none() {
            self.ended_at = Some(at);
        }
        self.state = state;
        self.updated_at = at;
        if error.is_some() {
            self.error = error;
        }
    }

    /// A new unit in `state`, with nothing else said about it yet.
    #[must_use]
    pub fn new(
        thread_id: ThreadId,
        turn_id: TurnId,
        parent_id: Option<WorkUnitId>,
        kind: WorkUnitKind,
        state: WorkUnitState,
        at: Timestamp,
    ) -> Self {
        Self {
            id: WorkUnitId::new(),
            thread_id,
            turn_id,
            parent_id,
            kind,
            state,
            label: None,
            phase: None,
            agent: None,
            model: None,
            provider_refs: None,
            started_at: (state != WorkUnitState::Pending).then_some(at),
            updated_at: at,
            ended_at: state.is_terminal().then_some(at),
            error: None,
        }
    }
}

/// A work unit as the read model holds it: what was last recorded about it, its own usage and
/// cost, and its children in the order they appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkUnit {
    /// What was last recorded.
    #[serde(flatten)]
    pub record: WorkUnitRecord,
    /// Tokens used by this unit itself (not its children).
    #[serde(default)]
    pub usage: TokenUsage,
    /// What this unit itself cost.
    #[serde(default)]
    pub cost: Cost,
    /// Units it delegated to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<WorkUnitId>,
}

impl WorkUnit {
    /// Whether a priced model turn admitted when the unit had used `tokens_before` tokens is
    /// still unsettled: the unit recorded no usage since and never finished (a unit that
    /// completed, failed or was cancelled settled every turn it began).
    #[must_use]
    pub fn owes_admitted_turn(&self, tokens_before: u64) -> bool {
        let finished = matches!(
            self.state,
            WorkUnitState::Completed | WorkUnitState::Failed | WorkUnitState::Cancelled
        );
        !finished && self.usage.total() <= tokens_before
    }
}

impl std::ops::Deref for WorkUnit {
    type Target = WorkUnitRecord;
    fn deref(&self) -> &WorkUnitRecord {
        &self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkUnitState::*;

    #[test]
    fn finished_units_never_run_again() {
        let all = [
            Pending,
            Running,
            Paused,
            Completed,
            Failed,
            Cancelled,
            Interrupted,
        ];
        for from in all {
            for to in all {
                let allowed = from.can_become(to);
                if from.is_terminal() {
                    assert_eq!(allowed, from == to, "{from} -> {to}");
                }
                if to == Pending {
                    assert_eq!(allowed, from == Pending, "{from} -> {to}");
                }
            }
        }
        assert!(
            Pending.can_become(Running)
                && Running.can_become(Paused)
                && Paused.can_become(Running)
                && Running.can_become(Completed)
        );
    }
}
