//! Hierarchical budgets in output tokens and dollars, with admission by reservation.
//!
//! A call is admitted only if its worst case fits: [`Budgets::reserve`] holds the worst-case
//! amount against every budget the call is charged to and all their ancestors, in one atomic
//! step, and [`Reservation::settle`] replaces it with what the call really used. Concurrent
//! calls therefore cannot overshoot a hard cap together.
//!
//! ```
//! use fleet_core::budget::{Amount, BudgetLimits, Budgets};
//! use fleet_core::money::Usd;
//!
//! let budgets = Budgets::new();
//! let run = budgets.add("run", None, BudgetLimits { usd: Usd::from_dollars(1.0), ..BudgetLimits::default() });
//! let phase = budgets.add("phase:scan", Some(run), BudgetLimits::default());
//! let worst = Amount { output_tokens: 4_000, usd: Usd::from_dollars(0.6).unwrap() };
//! let first = budgets.reserve(&[phase], worst)?;
//! assert!(budgets.reserve(&[phase], worst).is_err()); // 0.6 + 0.6 > 1.0
//! first.settle(Amount { output_tokens: 900, usd: Usd::from_dollars(0.1).unwrap() });
//! assert!(budgets.reserve(&[phase], worst).is_ok()); // 0.1 + 0.6 <= 1.0
//! # Ok::<(), fleet_core::budget::BudgetError>(())
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::money::Usd;

mod admission;
mod reservation;

pub use self::admission::{Demand, MIN_USEFUL_OUTPUT};
pub use self::reservation::Reservation;

/// An amount charged to budgets: output tokens and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amount {
    /// Output tokens.
    pub output_tokens: u64,
    /// Dollars.
    pub usd: Usd,
}

impl std::ops::AddAssign for Amount {
    fn add_assign(&mut self, rhs: Self) {
        self.output_tokens = self.output_tokens.saturating_add(rhs.output_tokens);
        self.usd += rhs.usd;
    }
}

impl std::ops::SubAssign for Amount {
    fn sub_assign(&mut self, rhs: Self) {
        self.output_tokens = self.output_tokens.saturating_sub(rhs.output_tokens);
        self.usd = self.usd.saturating_sub(rhs.usd);
    }
}

/// A budget's hard caps; `None` is no cap on that measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Most output tokens.
    pub output_tokens: Option<u64>,
    /// Most dollars.
    pub usd: Option<Usd>,
}

/// A budget in a [`Budgets`] ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetId(usize);

/// A budget's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// Its name.
    pub name: String,
    /// Its caps.
    pub limits: BudgetLimits,
    /// What settled calls used.
    pub spent: Amount,
    /// What admitted, unfinished calls may still use.
    pub reserved: Amount,
}

impl BudgetStatus {
    /// Whether nothing more may be admitted.
    #[must_use]
    pub fn is_exhausted(&self) -> bool {
        let used = |spent: u64, reserved: u64| spent.saturating_add(reserved);
        self.limits
            .output_tokens
            .is_some_and(|l| used(self.spent.output_tokens, self.reserved.output_tokens) >= l)
            || self
                .limits
                .usd
                .is_some_and(|l| self.spent.usd + self.reserved.usd >= l)
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Output tokens.
    OutputTokens,
    /// Dollars.
    Usd,
}

impl Measure {
    /// The measure in a sentence: "token", "dollar".
    #[must_use]
    pub fn noun(self) -> &'static str {
        match self {
            Self::OutputTokens => "token",
            Self::Usd => "dollar",
        }
    }
}

/// A call did not fit a budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// The call's worst case does not fit in what is left.
    #[error("budget \"{budget}\" exhausted: {what}")]
    Exceeded {
        /// Which budget.
        budget: String,
        /// Spent, reserved, limit and what the call needed, in words.
        what: String,
        /// What ran out.
        measure: Measure,
    },
    /// A budget id from another ledger.
    #[error("unknown budget")]
    Unknown,
}

#[derive(Debug)]
struct Node {
    name: String,
    parent: Option<usize>,
    limits: BudgetLimits,
    spent: Amount,
    reserved: Amount,
}

/// A ledger of budgets forming a tree (run → phase → agent, for example). Cheap to clone; all
/// clones share the ledger.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    inner: Arc<Ledger>,
}

#[derive(Debug, Default)]
struct Ledger {
    nodes: Mutex<Vec<Node>>,
    /// Woken whenever held reservations shrink or caps change, for calls waiting to be admitted.
    released: Notify,
}

fn fits(spent: u64, reserved: u64, worst: u64, limit: Option<u64>) -> bool {
    let Some(limit) = limit else { return true };
    let used = spent.saturating_add(reserved);
    // A call that needs nothing still needs the budget not to be used up (Claude Code's rule
    // for token budgets: the next call fails once spent >= total).
    used.saturating_add(worst) <= limit && (worst > 0 || used < limit)
}

impl Budgets {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        // A panic while holding the lock cannot leave a half-updated node (every update is a
        // few additions), so a poisoned ledger is still consistent.
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a budget under `parent` (or at the top).
    pub fn add(
        &self,
        name: impl Into<String>,
        parent: Option<BudgetId>,
        limits: BudgetLimits,
    ) -> BudgetId {
        let mut nodes = self.lock();
        nodes.push(Node {
            name: name.into(),
            parent: parent.map(|p| p.0),
            limits,
            spent: Amount::default(),
            reserved: Amount::default(),
        });
        BudgetId(nodes.len() - 1)
    }

    /// Changes a budget's caps (for example when the user raises one).
    ///
    /// # Errors
    /// [`BudgetError::Unknown`] for an id from another ledger.
    pub fn set_limits(&self, id: BudgetId, limits: BudgetLimits) -> Result<(), BudgetError> {
        let set = self
            .lock()
            .get_mut(id.0)
            .map(|n| n.limits = limits)
            .ok_or(BudgetError::Unknown);
        self.inner.released.notify_waiters();
        set
    }

    /// The budget's state.
    #[must_use]
    pub fn status(&self, id: BudgetId) -> Option<BudgetStatus> {
        self.lock().get(id.0).map(|n| BudgetStatus {
            name: n.name.clone(),
            limits: n.limits,
            spent: n.spent,
            reserved: n.reserved,
        })
    }

    /// Whether any of `targets` or their ancestors caps dollars (a call on a model without a
    /// price cannot be admitted against such a cap).
    ///
    /// # Errors
    /// [`BudgetError::Unknown`] for an id from another ledger.
    pub fn caps_dollars(&self, targets: &[BudgetId]) -> Result<bool, BudgetError> {
        let nodes = self.lock();
        let chain = Self::chain(&nodes, targets)?;
        Ok(chain.iter().any(|&i| nodes[i].limits.usd.is_some()))
    }

    /// `targets` and all their ancestors, each once, or `Unknown`.
    fn chain(nodes: &[Node], targets: &[BudgetId]) -> Result<Vec<usize>, BudgetError> {
        let mut out: Vec<usize> = Vec::new();
        for target in targets {
            let mut at = Some(target.0);
            while let Some(i) = at {
                let node = nodes.get(i).ok_or(BudgetError::Unknown)?;
                if !out.contains(&i) {
                    out.push(i);
                }
                at = node.parent;
            }
        }
        Ok(out)
    }

    /// The first budget of `chain` that `worst` does not fit, as the error to give.
    fn refusal(nodes: &[Node], chain: &[usize], worst: Amount) -> Option<(usize, BudgetError)> {
        chain.iter().find_map(|&i| {
            let n = &nodes[i];
            let tokens_fit = fits(
                n.spent.output_tokens,
                n.reserved.output_tokens,
                worst.output_tokens,
                n.limits.output_tokens,
            );
            let usd_fit = fits(
                u64::try_from(n.spent.usd.nanos()).unwrap_or(0),
                u64::try_from(n.reserved.usd.nanos()).unwrap_or(0),
                u64::try_from(worst.usd.nanos()).unwrap_or(0),
                n.limits.usd.map(|l| u64::try_from(l.nanos()).unwrap_or(0)),
            );
            if tokens_fit && usd_fit {
                return None;
            }
            let measure = if tokens_fit {
                Measure::Usd
            } else {
                Measure::OutputTokens
            };
            let what = if tokens_fit {
                format!(
                    "{} spent and {} reserved of {}; this call may cost up to {}",
                    n.spent.usd,
                    n.reserved.usd,
                    n.limits.usd.unwrap_or_default(),
                    worst.usd
                )
            } else {
                format!(
                    "{} output tokens spent and {} reserved of {}; this call may use up to {}",
                    n.spent.output_tokens,
                    n.reserved.output_tokens,
                    n.limits.output_tokens.unwrap_or_default(),
                    worst.output_tokens
                )
            };
            let error = BudgetError::Exceeded {
                budget: n.name.clone(),
                what,
                measure,
            };
            Some((i, error))
        })
    }

    fn hold(&self, nodes: &mut [Node], chain: Vec<usize>, worst: Amount) -> Reservation {
        for &i in &chain {
            nodes[i].reserved += worst;
        }
        Reservation {
            budgets: self.clone(),
            chain,
            amount: worst,
            open: true,
        }
    }

    /// Admits a call whose worst case is `worst`, charged to `targets` and their ancestors, or
    /// refuses it without holding anything.
    ///
    /// # Errors
    /// [`BudgetError::Exceeded`] naming the first budget the call does not fit.
    pub fn reserve(&self, targets: &[BudgetId], worst: Amount) -> Result<Reservation, BudgetError> {
        let mut nodes = self.lock();
        let chain = Self::chain(&nodes, targets)?;
        if let Some((_, error)) = Self::refusal(&nodes, &chain, worst) {
            return Err(error);
        }
        Ok(self.hold(&mut nodes, chain, worst))
    }

    /// Charges usage that was not reserved (for example reported late by a worker). It is
    /// recorded even when it goes over a cap; the names of budgets now exhausted are returned.
    ///
    /// # Errors
    /// [`BudgetError::Unknown`] for an id from another ledger.
    pub fn charge(&self, targets: &[BudgetId], actual: Amount) -> Result<Vec<String>, BudgetError> {
        let mut nodes = self.lock();
        let chain = Self::chain(&nodes, targets)?;
        Ok(Self::spend(&mut nodes, &chain, actual))
    }

    fn spend(nodes: &mut [Node], chain: &[usize], actual: Amount) -> Vec<String> {
        let mut exhausted = Vec::new();
        for &i in chain {
            let n = &mut nodes[i];
            n.spent += actual;
            let status = BudgetStatus {
                name: String::new(),
                limits: n.limits,
                spent: n.spent,
                reserved: Amount::default(),
            };
            if status.is_exhausted() {
                exhausted.push(n.name.clone());
            }
        }
        exhausted
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} output tokens, {}", self.output_tokens, self.usd)
    }
}

#[cfg(test)]
mod tests;
