//! The resume journal: results of finished agent calls, read back from a run's thread.
//!
//! Every finished call is journaled as an `agent_result` activity carrying its content key and
//! its start position. Resuming reads them back. By default a call is served whenever its key
//! was journaled, in any earlier attempt, whatever order the calls finished in. Strict mode
//! reproduces Claude Code's rule: only the unchanged prefix of the previous attempt's calls, in
//! start order, is served; the first changed or unfinished call and all after it run live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use fleet_core::activity::ActivityKind;
use fleet_core::thread::Thread;
use serde_json::Value;

#[derive(Debug, Default)]
enum Mode {
    #[default]
    Off,
    Keyed(HashMap<String, Value>),
    Strict(Vec<(String, Value)>),
}

/// Journaled results an attempt may be served from.
#[derive(Debug, Default)]
pub(crate) struct ResumeJournal {
    mode: Mode,
}

impl ResumeJournal {
    /// Nothing to serve (a fresh run).
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// The results journaled in `thread` (before the new attempt's turn starts).
    pub(crate) fn from_thread(thread: &Thread, strict: bool) -> Self {
        let results = thread.activities.iter().filter_map(|a| match &a.kind {
            ActivityKind::AgentResult {
                key, seq, result, ..
            } => Some((a.turn_id, key, *seq, result)),
            _ => None,
        });
        if !strict {
            let map = results
                .map(|(_, key, _, result)| (key.clone(), result.clone()))
                .collect();
            return Self {
                mode: Mode::Keyed(map),
            };
        }
        let last = thread.turns.last().map(|t| t.id);
        let mut by_seq: HashMap<u64, (String, Value)> = results
            .filter(|(turn, ..)| *turn == last)
            .map(|(_, key, seq, result)| (seq, (key.clone(), result.clone())))
            .collect();
        let mut prefix = Vec::new();
        while let Some(entry) = by_seq.remove(&(prefix.len() as u64)) {
            prefix.push(entry);
        }
        Self {
            mode: Mode::Strict(prefix),
        }
    }

    /// How many results can be served.
    pub(crate) fn len(&self) -> usize {
        match &self.mode {
            Mode::Off => 0,
            Mode::Keyed(map) => map.len(),
            Mode::Strict(prefix) => prefix.len(),
        }
    }

    /// The journaled result for the call with `key`, the `seq`-th started in this attempt.
    /// In strict mode the first miss turns `strict_ok` off for every later call.
    pub(crate) fn lookup(&self, key: &str, seq: u64, strict_ok: &AtomicBool) -> Option<Value> {
        match &self.mode {
            Mode::Off => None,
            Mode::Keyed(map) => map.get(key).cloned(),
            Mode::Strict(prefix) => {
                if !strict_ok.load(Ordering::Relaxed) {
                    return None;
                }
                match usize::try_from(seq).ok().and_then(|i| prefix.get(i)) {
                    Some((k, v)) if k == key => Some(v.clone()),
                    _ => {
                        strict_ok.store(false, Ordering::Relaxed);
                        None
                    }
                }
            }
        }
    }
}
