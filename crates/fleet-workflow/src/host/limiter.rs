//! The run-wide concurrency limit, which backs off when the provider is overloaded.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Semaphore;

/// The run-wide concurrency limit. It halves when a provider answers 429/529 and grows back
/// one slot per success, so a fan-out backs off instead of failing and never bursts back.
pub(crate) struct Limiter {
    semaphore: Semaphore,
    max: usize,
    /// Current target and permits still to retire.
    state: Mutex<(usize, usize)>,
}

impl Limiter {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            semaphore: Semaphore::new(max),
            max,
            state: Mutex::new((max, 0)),
        }
    }

    pub(crate) async fn acquire(&self) -> bool {
        match self.semaphore.acquire().await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    pub(crate) fn release(&self) {
        self.finished(false);
    }

    /// A call gave its slot back; one that `succeeded` also grows the limit back by one
    /// slot, up to the maximum (one lock for both).
    pub(crate) fn finished(&self, succeeded: bool) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut permits = 0;
        let mut give = |state: &mut (usize, usize)| {
            if state.1 > 0 {
                state.1 -= 1;
            } else {
                permits += 1;
            }
        };
        give(&mut state);
        if succeeded && state.0 < self.max {
            state.0 += 1;
            give(&mut state);
        }
        if permits > 0 {
            self.semaphore.add_permits(permits);
        }
    }

    pub(crate) fn overloaded(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let lower = (state.0 / 2).max(1);
        state.1 += state.0 - lower;
        state.0 = lower;
    }

    /// The current limit.
    pub(crate) fn current(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[tokio::test]
    async fn the_limit_halves_when_overloaded_and_grows_back_one_success_at_a_time() {
        let limiter = Limiter::new(4);
        for _ in 0..4 {
            assert!(limiter.acquire().await);
        }
        assert_eq!(limiter.semaphore.available_permits(), 0);
        limiter.overloaded();
        assert_eq!(limiter.current(), 2);
        // The first two slots given back retire instead of admitting anyone.
        limiter.release();
        limiter.finished(false);
        assert_eq!(limiter.semaphore.available_permits(), 0);
        // A success gives its slot back and grows the limit by one.
        limiter.finished(true);
        assert_eq!(
            (limiter.current(), limiter.semaphore.available_permits()),
            (3, 2)
        );
        limiter.finished(true);
        assert_eq!(
            (limiter.current(), limiter.semaphore.available_permits()),
            (4, 4)
        );
        // At the maximum, a success only gives its slot back.
        assert!(limiter.acquire().await);
        limiter.finished(true);
        assert_eq!(
            (limiter.current(), limiter.semaphore.available_permits()),
            (4, 4)
        );
    }
}
