//! Small helpers every crate of fleet uses the same way: a lock that outlives a panic,
//! "did you mean …?" for a name that does not exist, and the one boxed future of the seams'
//! dynamic twins.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A boxed future, for the dynamic twins of the seams (`DynProvider`, `DynEventStore`, …).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Locks `m`. A lock poisoned by a panic elsewhere still guards usable data wherever fleet
/// uses this (each update is one assignment or one push), so it is taken anyway.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The closest of `candidates` to `given`, when it is close enough to be a likely typo
/// (Damerau–Levenshtein distance at most 2, or a quarter of the candidate's length).
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(given, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_are_not() {
        assert_eq!(
            did_you_mean("opn", ["open", "openat", "read"]),
            Some("open")
        );
        assert_eq!(did_you_mean("zzzzzz", ["open", "read"]), None);
        assert_eq!(
            did_you_mean("max_token", ["max_tokens", "model"]),
            Some("max_tokens")
        );
    }

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
