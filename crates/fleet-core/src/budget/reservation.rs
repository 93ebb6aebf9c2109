//! A reservation: the worst case a call holds on its budgets until it settles to what it
//! really used, raised when the provider reports more than was estimated.

use crate::money::Usd;
use crate::pricing::ModelPrice;
use crate::usage::TokenUsage;

use super::{Amount, Budgets};

/// A call's admission: its worst case, held against budgets until it is settled or dropped
/// (dropping releases it, as for a call that was cancelled before using anything).
#[derive(Debug)]
#[must_use = "a reservation holds budget until it is settled or dropped"]
pub struct Reservation {
    pub(super) budgets: Budgets,
    pub(super) chain: Vec<usize>,
    pub(super) amount: Amount,
    pub(super) open: bool,
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
