//! Admission: what a model turn asks of the budgets, and waiting for room or cutting the turn
//! to what is left.

use crate::money::Usd;
use crate::pricing::ModelPrice;

use super::{Amount, BudgetError, BudgetId, Budgets, Reservation};

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

impl Budgets {
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
}
