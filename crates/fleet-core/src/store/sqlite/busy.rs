//! Waiting for another process's write lock: a bounded wait with backoff, counted so that the
//! store can say how long it waited.
//!
//! SQLite calls the handler (a plain function, so its state is per thread: each connection is
//! used by one thread at a time) each time it finds the database locked; returning `false`
//! gives up with `SQLITE_BUSY`.

use std::cell::Cell;
use std::time::Duration;

/// The longest one statement waits for the lock before it fails.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);

thread_local! {
    /// This statement's wait so far.
    static WAITING: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// Waits since the last [`take`]: how many, and how long in all.
    static WAITED: Cell<(u64, Duration)> = const { Cell::new((0, Duration::ZERO)) };
}

/// The busy handler: sleeps 1 ms, 2 ms, … up to 50 ms between tries, until [`MAX_WAIT`].
pub(crate) fn handler(tries: i32) -> bool {
    if tries == 0 {
        WAITING.set(Duration::ZERO);
        let (waits, total) = WAITED.get();
        WAITED.set((waits + 1, total));
    }
    let pause = Duration::from_millis(1u64 << tries.clamp(0, 6)).min(Duration::from_millis(50));
    let so_far = WAITING.get();
    if so_far + pause > MAX_WAIT {
        return false;
    }
    std::thread::sleep(pause);
    WAITING.set(so_far + pause);
    let (waits, total) = WAITED.get();
    WAITED.set((waits, total + pause));
    true
}

/// This thread's waits since the last call: how many, and how long in all.
pub(crate) fn take() -> (u64, Duration) {
    WAITED.replace((0, Duration::ZERO))
}

/// Whether `e` is SQLite giving up on a lock another connection holds.
pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code: rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked,
                ..
            },
            _
        )
    )
}
