//! The task a worker runs now, as the gateway sees it: its caller's updates and budgets, its
//! turns in flight, and what they were metered.

use std::collections::HashMap;

use fleet_core::budget::{BudgetError, Measure};
use fleet_core::ipc::RequestId;
use fleet_core::money::Usd;
use fleet_core::provider::CancelToken;
use fleet_core::usage::TokenUsage;
use tokio::sync::mpsc;

use super::task::{Charge, TaskUpdate};

/// What the gateway metered for one task.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    pub(crate) usage: TokenUsage,
    pub(crate) cost: Usd,
    pub(crate) turns: u32,
    /// Why the gateway refused a turn of the task, when it did (a budget).
    pub(crate) refused: Option<Refusal>,
}

/// A turn the gateway refused for a budget.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The budget that refused it ("agent patch-bot", "the fleet", "run").
    pub(crate) budget: String,
    /// Its spend and limit, in words.
    pub(crate) what: String,
    /// What ran out.
    pub(crate) measure: Measure,
    /// What the worker was told.
    pub(crate) message: String,
}

impl Refusal {
    pub(super) fn new(error: &BudgetError, message: String) -> Self {
        let (budget, what, measure) = match error {
            BudgetError::Exceeded {
                budget,
                what,
                measure,
            } => (budget.clone(), what.clone(), *measure),
            other => (String::new(), other.to_string(), Measure::Usd),
        };
        Self {
            budget,
            what,
            measure,
            message,
        }
    }
}

/// The task a worker runs now, as the gateway sees it.
pub(crate) struct Assignment {
    /// The task.
    pub(super) task_id: String,
    /// Where its updates go.
    pub(super) updates: Option<mpsc::UnboundedSender<TaskUpdate>>,
    /// The caller's budgets, charged too.
    pub(super) charge: Option<Charge>,
    /// What its turns were metered so far.
    pub(super) meter: Meter,
    /// Its turns in flight, by the worker's request id.
    pub(super) turns: HashMap<RequestId, CancelToken>,
}

impl Assignment {
    pub(crate) fn new(
        task_id: String,
        updates: Option<mpsc::UnboundedSender<TaskUpdate>>,
        charge: Option<Charge>,
    ) -> Self {
        Self {
            task_id,
            updates,
            charge,
            meter: Meter::default(),
            turns: HashMap::new(),
        }
    }

    /// The task ended: its turns still in flight are stopped; what it was metered.
    pub(crate) fn finish(self) -> Meter {
        for cancel in self.turns.values() {
            cancel.cancel();
        }
        self.meter
    }
}
