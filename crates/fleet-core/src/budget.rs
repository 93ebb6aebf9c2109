//! Hierarchical budgets in output tokens and dollars, with admission by reservation.
//!
//! A call is admitted only if its worst case fits: [`Budgets::reserve`] holds the worst-case
//! amount against every budget the call is charged to and all their ancestors, in one atomic
//! step, and [`Reservation::settle`] replaces it with what the call really used. Concurrent
//! calls therefore cannot overshoot a hard cap together.
//!
//! ```
//! use fleet_core::{Amount, BudgetLimits, Budgets, Usd};
//!
//! let budgets = Budgets::new();
//! let run = budgets.add("run", None, BudgetLimits { usd: Usd::from_dollars(1.0), ..BudgetLimits::default() });
//! let phase = budgets.add("phase:scan", Some(run), BudgetLimits::default());
//! let worst = Amount { output_tokens: 4_000, usd: Usd::from_dollars(0.6).unwrap() };
//! let first = budgets.reserve(&[phase], worst)?;
//! assert!(budgets.reserve(&[phase], worst).is_err()); // 0.6 + 0.6 > 1.0
//! first.settle(Amount { output_tokens: 900, usd: Usd::from_dollars(0.1).unwrap() });
//! assert!(budgets.reserve(&[phase], worst).is_ok()); // 0.1 + 0.6 <= 1.0
//! # Ok::<(), fleet_core::BudgetError>(())
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::money::Usd;
use crate::pricing::ModelPrice;
use crate::usage::TokenUsage;

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

/// The least output a model turn is made for when a budget is nearly spent: below it the turn
/// is refused rather than paid for a prompt whose answer would be cut off at once.
pub const MIN_USEFUL_OUTPUT: u32 = 256;

/// What a model turn asks of its budgets, for [`Budgets::admit`]: up to `max_output_tokens` of
/// output and at least `min_output_tokens`, and, when dollars are metered, the most that many
/// output tokens can cost on top of the prompt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// The output the turn would like (its `max_tokens`).
    pub max_output_tokens: u64,
    /// The least output worth making the turn for; below it the turn is refused.
    pub min_output_tokens: u64,
    /// The model's price and the prompt's estimated tokens; `None` when the model is free.
    pub priced: Option<(ModelPrice, u64)>,
}

impl Demand {
    /// The worst case of the turn if it may write `output_tokens`.
    #[must_use]
    pub fn amount(&self, output_tokens: u64) -> Amount {
        Amount {
            output_tokens,
            usd: self.priced.map_or(Usd::ZERO, |(price, prompt)| {
                price.worst_case(prompt, output_tokens)
            }),
        }
    }
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

    /// Admits a model turn, waiting while it does not fit but calls in flight hold part of the
    /// budget it needs (their worst cases are released as they settle). When nothing in flight
    /// can make room, the turn is admitted with the most output that fits, down to
    /// `min_output_tokens`, so a cap is reached and never passed; the granted output is the
    /// reservation's [`Reservation::amount`], which the caller sends as the turn's `max_tokens`.
    ///
    /// Cancel by dropping the future: a waiting turn holds nothing.
    ///
    /// # Errors
    /// [`BudgetError::Exceeded`] once the budget is truly spent: not even the least output fits
    /// and nothing is in flight to make room.
    pub async fn admit(
        &self,
        targets: &[BudgetId],
        demand: Demand,
    ) -> Result<Reservation, BudgetError> {
        let full = demand.amount(demand.max_output_tokens);
        let least = demand.min_output_tokens.min(demand.max_output_tokens);
        loop {
            let released = self.inner.released.notified();
            let mut released = std::pin::pin!(released);
            {
                let mut nodes = self.lock();
                let chain = Self::chain(&nodes, targets)?;
                if Self::refusal(&nodes, &chain, full).is_none() {
                    return Ok(self.hold(&mut nodes, chain, full));
                }
                let room_may_come = chain.iter().any(|&i| {
                    nodes[i].reserved != Amount::default()
                        && Self::refusal(&nodes, &[i], full).is_some()
                });
                if !room_may_come {
                    // Nothing will make room: the largest output that fits (fitting is
                    // monotone in the output, so a binary search finds it), or a refusal.
                    if let Some((_, refused)) = Self::refusal(&nodes, &chain, demand.amount(least))
                    {
                        return Err(refused);
                    }
                    let (mut lo, mut hi) = (least, demand.max_output_tokens);
                    while lo < hi {
                        let mid = lo + (hi - lo).div_ceil(2);
                        if Self::refusal(&nodes, &chain, demand.amount(mid)).is_none() {
                            lo = mid;
                        } else {
                            hi = mid - 1;
                        }
                    }
                    return Ok(self.hold(&mut nodes, chain, demand.amount(lo)));
                }
                // Registered before the lock is let go, so no release is missed.
                released.as_mut().enable();
            }
            released.await;
        }
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

/// A call's admission: its worst case, held against budgets until it is settled or dropped
/// (dropping releases it, as for a call that was cancelled before using anything).
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled or dropped"]
pub struct Reservation {
    budgets: Budgets,
    chain: Vec<usize>,
    amount: Amount,
    open: bool,
}

impl Reservation {
    /// The worst case held.
    #[must_use]
    pub fn amount(&self) -> Amount {
        self.amount
    }

    /// Takes in the usage the provider has reported so far for a turn admitted for
    /// `max_output` output tokens at `price`, and returns how many output tokens the turn may
    /// still reach (at most `max_output`).
    ///
    /// The prompt was an estimate; the report is the truth. When the worst case it implies
    /// (the reported input, cache and output, plus the rest of `max_output`) is more than is
    /// held, the reservation is raised to it at once, so turns admitted from now on see it.
    /// When the budgets cannot pay for that much, the answer is the most output they can still
    /// pay for, and the caller cuts the turn there: only the input the estimate missed can
    /// carry a cap past its limit, and only on the turn that revealed it.
    pub fn observe(&mut self, price: &ModelPrice, usage: &TokenUsage, max_output: u64) -> u64 {
        let cost_at = |output: u64| {
            price.cost(&TokenUsage {
                output: output.max(usage.output),
                ..*usage
            })
        };
        let worst = Amount {
            output_tokens: max_output.max(usage.output),
            usd: cost_at(max_output),
        };
        if worst.output_tokens <= self.amount.output_tokens && worst.usd <= self.amount.usd {
            return max_output;
        }
        let mut nodes = self.budgets.lock();
        // What each budget on the chain leaves this turn, over what it holds already.
        let mut room_usd: Option<Usd> = None;
        let mut room_tokens: Option<u64> = None;
        for &i in &self.chain {
            let n = &nodes[i];
            let others_usd = n.spent.usd + n.reserved.usd.saturating_sub(self.amount.usd);
            let others_tokens = n.spent.output_tokens
                + n.reserved
                    .output_tokens
                    .saturating_sub(self.amount.output_tokens);
            if let Some(limit) = n.limits.usd {
                let room = limit.saturating_sub(others_usd);
                room_usd = Some(room_usd.map_or(room, |r| r.min(room)));
            }
            if let Some(limit) = n.limits.output_tokens {
                let room = limit.saturating_sub(others_tokens);
                room_tokens = Some(room_tokens.map_or(room, |r| r.min(room)));
            }
        }
        let mut allowed = max_output.min(room_tokens.unwrap_or(u64::MAX));
        if let Some(room) = room_usd
            && cost_at(allowed) > room
        {
            // The most output whose cost fits, by bisection (cost grows with output).
            let (mut lo, mut hi) = (usage.output, allowed);
            while lo < hi {
                let mid = lo + (hi - lo).div_ceil(2);
                if cost_at(mid) <= room {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            allowed = lo;
        }
        let allowed = allowed.max(usage.output);
        let held = Amount {
            output_tokens: allowed,
            usd: cost_at(allowed),
        };
        let grow = Amount {
            output_tokens: held.output_tokens.saturating_sub(self.amount.output_tokens),
            usd: held.usd.saturating_sub(self.amount.usd),
        };
        for &i in &self.chain {
            nodes[i].reserved += grow;
        }
        self.amount += grow;
        allowed
    }

    /// Replaces the held worst case with what the call really used, and returns the names of
    /// the budgets now exhausted (spent alone reaches a cap).
    pub fn settle(mut self, actual: Amount) -> Vec<String> {
        self.open = false;
        let exhausted = {
            let mut nodes = self.budgets.lock();
            for &i in &self.chain {
                nodes[i].reserved -= self.amount;
            }
            Budgets::spend(&mut nodes, &self.chain, actual)
        };
        self.budgets.inner.released.notify_waiters();
        exhausted
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.open {
            {
                let mut nodes = self.budgets.lock();
                for &i in &self.chain {
                    nodes[i].reserved -= self.amount;
                }
            }
            self.budgets.inner.released.notify_waiters();
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} output tokens, {}", self.output_tokens, self.usd)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;
    use std::time::Duration;

    use super::*;

    fn usd(d: f64) -> Usd {
        Usd::from_dollars(d).unwrap()
    }

    #[test]
    fn a_hundred_concurrent_reservations_never_overshoot() {
        let budgets = Budgets::new();
        let run = budgets.add(
            "run",
            None,
            BudgetLimits {
                output_tokens: Some(1_000_000),
                usd: Some(usd(5.0)),
            },
        );
        let agent = budgets.add("agent:scanner", Some(run), BudgetLimits::default());
        let barrier = Arc::new(Barrier::new(100));
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                let (budgets, barrier) = (budgets.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let worst = Amount {
                        output_tokens: 1_000,
                        usd: usd(0.10),
                    };
                    let admitted = budgets.reserve(&[agent], worst).ok()?;
                    // Every admitted call ends with at most its worst case; some use all of it.
                    let actual = Amount {
                        output_tokens: 500 + (i % 2) * 500,
                        usd: if i % 2 == 0 { usd(0.05) } else { usd(0.10) },
                    };
                    let status = budgets.status(run).unwrap();
                    assert!(
                        status.spent.usd + status.reserved.usd <= usd(5.0),
                        "overshoot while in flight"
                    );
                    admitted.settle(actual);
                    Some(())
                })
            })
            .collect();
        let admitted = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .count();
        let status = budgets.status(run).unwrap();
        assert!(
            status.spent.usd <= usd(5.0),
            "spent {} over the cap",
            status.spent.usd
        );
        assert_eq!(status.reserved, Amount::default());
        // At most 50 fit at once, and releases let later ones in: at least 50 were admitted.
        assert!((50..=100).contains(&admitted), "{admitted}");
        assert_eq!(budgets.status(agent).unwrap().spent, status.spent);
    }

    #[test]
    fn exactly_the_calls_that_fit_are_admitted_when_none_finish() {
        let budgets = Budgets::new();
        let run = budgets.add(
            "run",
            None,
            BudgetLimits {
                usd: Some(usd(5.0)),
                ..BudgetLimits::default()
            },
        );
        let barrier = Arc::new(Barrier::new(100));
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let (budgets, barrier) = (budgets.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    budgets
                        .reserve(
                            &[run],
                            Amount {
                                output_tokens: 0,
                                usd: usd(0.10),
                            },
                        )
                        .ok()
                })
            })
            .collect();
        let held: Vec<Reservation> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(held.len(), 50);
        assert_eq!(budgets.status(run).unwrap().reserved.usd, usd(5.0));
        drop(held);
        assert_eq!(budgets.status(run).unwrap().reserved.usd, Usd::ZERO);
    }

    #[test]
    fn token_budgets_follow_claude_codes_rule() {
        let budgets = Budgets::new();
        let run = budgets.add(
            "run",
            None,
            BudgetLimits {
                output_tokens: Some(100),
                ..BudgetLimits::default()
            },
        );
        // A call reserving nothing is admitted while spent < total…
        budgets
            .reserve(&[run], Amount::default())
            .unwrap()
            .settle(Amount {
                output_tokens: 100,
                usd: Usd::ZERO,
            });
        // …and refused once spent >= total.
        let err = budgets.reserve(&[run], Amount::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "budget \"run\" exhausted: 100 output tokens spent and 0 reserved of 100; this call may use up to 0"
        );
    }

    #[test]
    fn a_report_of_more_input_raises_the_reservation_and_limits_the_output() {
        let budgets = Budgets::new();
        let run = budgets.add(
            "run",
            None,
            BudgetLimits {
                usd: Some(usd(0.02)),
                ..BudgetLimits::default()
            },
        );
        // $1 per million input tokens, $5 per million output tokens.
        let price = ModelPrice {
            input: usd(1.0),
            cache_write: usd(1.0),
            cache_write_1h: usd(1.0),
            cache_read: usd(0.1),
            output: usd(5.0),
        };
        let seen = |input: u64, output: u64| TokenUsage {
            input,
            output,
            ..TokenUsage::default()
        };
        let reserved = || budgets.status(run).unwrap().reserved.usd;
        // Admitted on an estimate of 100 prompt tokens: $0.0051 at most.
        let mut turn = budgets
            .reserve(
                &[run],
                Amount {
                    output_tokens: 1000,
                    usd: price.worst_case(100, 1000),
                },
            )
            .unwrap();
        assert_eq!(turn.observe(&price, &seen(100, 1), 1000), 1000);
        assert_eq!(
            reserved(),
            usd(0.0051),
            "a report within the estimate changes nothing"
        );
        // The provider says the prompt was 12 000 tokens: the whole turn still fits, and the
        // reservation rises to it at once, so a turn admitted now sees $0.003 left.
        assert_eq!(turn.observe(&price, &seen(12_000, 1), 1000), 1000);
        assert_eq!(reserved(), usd(0.017));
        let next = budgets.reserve(
            &[run],
            Amount {
                output_tokens: 1000,
                usd: usd(0.0051),
            },
        );
        assert!(
            next.is_err(),
            "the raised reservation crowds out a turn that would not fit"
        );
        // 18 000: $0.018 of input leaves $0.002, which pays for 400 output tokens.
        assert_eq!(turn.observe(&price, &seen(18_000, 1), 1000), 400);
        assert_eq!(reserved(), usd(0.02));
        // 25 000: the input alone passes the cap; no more output is paid for.
        assert_eq!(turn.observe(&price, &seen(25_000, 1), 400), 1);
        assert_eq!(reserved(), price.cost(&seen(25_000, 1)));
        turn.settle(Amount {
            output_tokens: 1,
            usd: price.cost(&seen(25_000, 1)),
        });
        let status = budgets.status(run).unwrap();
        assert_eq!(
            (status.spent.usd, status.reserved.usd),
            (usd(0.025005), Usd::ZERO)
        );
    }

    #[test]
    fn the_tightest_ancestor_decides_and_is_named() {
        let budgets = Budgets::new();
        let run = budgets.add(
            "run",
            None,
            BudgetLimits {
                usd: Some(usd(1.0)),
                ..BudgetLimits::default()
            },
        );
        let phase = budgets.add(
            "phase:verify",
            Some(run),
            BudgetLimits {
                usd: Some(usd(0.25)),
                ..BudgetLimits::default()
            },
        );
        let agent = budgets.add(
            "agent:doc-bot",
            None,
            BudgetLimits {
                usd: Some(usd(10.0)),
                ..BudgetLimits::default()
            },
        );
        let r = budgets
            .reserve(
                &[phase, agent],
                Amount {
                    output_tokens: 0,
                    usd: usd(0.2),
                },
            )
            .unwrap();
        assert_eq!(budgets.status(run).unwrap().reserved.usd, usd(0.2));
        assert_eq!(budgets.status(agent).unwrap().reserved.usd, usd(0.2));
        let err = budgets
            .reserve(
                &[phase, agent],
                Amount {
                    output_tokens: 0,
                    usd: usd(0.2),
                },
            )
            .unwrap_err();
        assert!(
            matches!(&err, BudgetError::Exceeded { budget, .. } if budget == "phase:verify"),
            "{err}"
        );
        // Nothing was held by the refused call.
        assert_eq!(budgets.status(agent).unwrap().reserved.usd, usd(0.2));
        let exhausted = r.settle(Amount {
            output_tokens: 10,
            usd: usd(0.3),
        });
        assert_eq!(exhausted, vec!["phase:verify".to_owned()]);
        assert_eq!(
            budgets
                .charge(
                    &[agent],
                    Amount {
                        output_tokens: 1,
                        usd: usd(10.0)
                    }
                )
                .unwrap(),
            vec!["agent:doc-bot".to_owned()]
        );
    }

    /// 100 concurrent turns under a token cap and a dollar cap, each using a random share of
    /// what it was granted, after a random delay: the caps are never passed, nothing stays
    /// reserved, and a turn is refused only when what is left is less than its least output.
    mod admission {
        use proptest::prelude::*;

        use super::*;
        use crate::pricing::PriceTable;

        fn run_turns(
            limits: BudgetLimits,
            uses: Vec<(u8, u8)>,
            priced: bool,
        ) -> (BudgetStatus, usize, Vec<BudgetError>) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .unwrap();
            let price = *PriceTable::builtin()
                .unwrap()
                .price("claude-haiku-4-5")
                .unwrap();
            let budgets = Budgets::new();
            let run = budgets.add("run", None, limits);
            let agent = budgets.add("agent:any", Some(run), BudgetLimits::default());
            let outcomes = runtime.block_on(async {
                let turns: Vec<_> = uses
                    .into_iter()
                    .map(|(share, delay)| {
                        let budgets = budgets.clone();
                        tokio::spawn(async move {
                            let demand = Demand {
                                max_output_tokens: 1_000,
                                min_output_tokens: 50,
                                priced: priced.then_some((price, 2_000)),
                            };
                            let reservation = budgets.admit(&[agent], demand).await?;
                            let granted = reservation.amount();
                            tokio::time::sleep(Duration::from_micros(u64::from(delay) * 10)).await;
                            // The provider writes at most what it was allowed; the prompt
                            // costs what it was estimated to, or less.
                            let output = granted.output_tokens * u64::from(share) / 255;
                            let actual = Amount {
                                output_tokens: output,
                                usd: demand.priced.map_or(Usd::ZERO, |(p, prompt)| {
                                    p.cost(&crate::TokenUsage {
                                        input: prompt,
                                        output,
                                        ..Default::default()
                                    })
                                }),
                            };
                            assert!(actual.usd <= granted.usd);
                            reservation.settle(actual);
                            Ok::<_, BudgetError>(())
                        })
                    })
                    .collect();
                let mut outcomes = Vec::new();
                for turn in turns {
                    outcomes.push(turn.await.unwrap());
                }
                outcomes
            });
            let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
            let refused = outcomes.into_iter().filter_map(Result::err).collect();
            (budgets.status(run).unwrap(), admitted, refused)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]

            #[test]
            fn a_token_cap_is_reached_and_never_passed(
                uses in proptest::collection::vec((any::<u8>(), any::<u8>()), 100),
                cap in 2_000u64..40_000,
            ) {
                let limits = BudgetLimits { output_tokens: Some(cap), usd: None };
                let (status, admitted, refused) = run_turns(limits, uses, false);
                prop_assert!(status.spent.output_tokens <= cap, "{} > {cap}", status.spent.output_tokens);
                prop_assert_eq!(status.reserved, Amount::default());
                if !refused.is_empty() {
                    // Refused only when less than the least output (50) was left.
                    prop_assert!(cap - status.spent.output_tokens < 50, "{admitted} admitted, {} left", cap - status.spent.output_tokens);
                }
            }

            #[test]
            fn a_dollar_cap_is_reached_and_never_passed(
                uses in proptest::collection::vec((any::<u8>(), any::<u8>()), 100),
                cents in 2u32..60,
            ) {
                let cap = Usd::from_nanos(i64::from(cents) * 10_000_000);
                let limits = BudgetLimits { output_tokens: None, usd: Some(cap) };
                let (status, _, refused) = run_turns(limits, uses, true);
                prop_assert!(status.spent.usd <= cap, "{} > {cap}", status.spent.usd);
                prop_assert_eq!(status.reserved, Amount::default());
                if !refused.is_empty() {
                    // Refused only when the prompt plus the least output no longer fitted:
                    // 2 000 prompt tokens at $2/M and 50 output at $5/M is $0.00425.
                    let left = cap.saturating_sub(status.spent.usd);
                    prop_assert!(left < Usd::from_dollars(0.00425).unwrap(), "{left} left");
                }
            }
        }
    }
}
