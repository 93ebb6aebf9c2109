//! A run's verdict beyond its script's: when a run whose script returned still fails, because
//! its calls came to nothing.

/// Why a run whose script finished fails all the same, if it does: every call came to nothing,
/// or (with `fail_on_null`) any did. The first causes are named.
pub(crate) fn came_to_nothing(
    counts: &crate::events::CallCounts,
    nulls: &[crate::events::CallNote],
    failures: &[crate::events::CallNote],
    fail_on_null: bool,
) -> Option<String> {
    let answered = counts.completed + counts.cached;
    let failed = counts.null + counts.failed;
    let what = if answered == 0 && counts.null > 0 {
        "every agent() call came to nothing"
    } else if fail_on_null && failed > 0 {
        "agent() calls came back null and --fail-on-null is set"
    } else {
        return None;
    };
    let causes: Vec<String> = failures
        .iter()
        .chain(nulls)
        .take(3)
        .map(|note| format!("{}: {}", note.label, note.reason))
        .collect();
    Some(format!(
        "{what} ({} null, {} failed of {}); first causes: {}",
        counts.null,
        counts.failed,
        answered + failed,
        causes.join("; ")
    ))
}

#[cfg(test)]
mod came_to_nothing_tests {
    use super::came_to_nothing;
    use crate::events::{CallCounts, CallNote};

    fn note(label: &str, reason: &str) -> CallNote {
        CallNote {
            label: label.into(),
            work_unit_id: None,
            reason: reason.into(),
        }
    }

    fn counts(completed: u64, cached: u64, null: u64, failed: u64) -> CallCounts {
        CallCounts {
            completed,
            cached,
            null,
            failed,
        }
    }

    #[test]
    fn a_run_whose_calls_all_came_back_null_did_nothing() {
        let nulls = [
            note("a", "connection refused"),
            note("b", "connection refused"),
        ];
        let why = came_to_nothing(&counts(0, 0, 2, 0), &nulls, &[], false).unwrap();
        assert_eq!(
            why,
            "every agent() call came to nothing (2 null, 0 failed of 2); first causes: a: connection refused; b: connection refused"
        );
        assert_eq!(
            came_to_nothing(&counts(1, 0, 2, 0), &nulls, &[], false),
            None
        );
        assert_eq!(
            came_to_nothing(&counts(0, 1, 2, 0), &nulls, &[], false),
            None
        );
        assert_eq!(came_to_nothing(&counts(0, 0, 0, 0), &[], &[], false), None);
        // Rejections the script caught are its own business.
        assert_eq!(
            came_to_nothing(&counts(0, 0, 0, 1), &[], &[note("c", "x")], false),
            None
        );
    }

    #[test]
    fn with_fail_on_null_one_null_call_fails_the_run() {
        let nulls = [note("b", "timed out after 30s")];
        let why = came_to_nothing(&counts(4, 0, 1, 0), &nulls, &[], true).unwrap();
        assert_eq!(
            why,
            "agent() calls came back null and --fail-on-null is set (1 null, 0 failed of 5); first causes: b: timed out after 30s"
        );
        assert_eq!(came_to_nothing(&counts(5, 0, 0, 0), &[], &[], true), None);
    }
}
