//! What the coding-agent CLI runners ([`claude_code`], [`codex`]) share: the [`Step`]s their
//! stream readers produce (here), the recorder that applies steps to the journal as a
//! work-unit tree (`recorder`), a CLI's process with its stderr tail (`process`), and the
//! answers to permission requests from an agent's capabilities (`grants`).

pub mod claude_code;
pub mod codex;

use fleet_core::activity::ActivityKind;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{ProviderRefs, WorkUnitState};

pub(crate) use self::grants::Grants;
pub(crate) use self::process::CliProcess;
pub(crate) use self::recorder::{TreeRecorder, close_tree, open_root, set_refs};

mod grants;
mod process;
mod recorder;

/// How long a CLI gets to exit after its input is closed, or to end an interrupted turn, before
/// it is killed.
pub(crate) const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a step applies: the turn's root, or one of its subagents.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The call's own unit.
    Root,
    /// The subagent with this key (Claude Code: its `tool_use_id`; Codex: its thread id).
    Child(String),
}

/// What a line of a CLI's stream asks to record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// A subagent appeared (pending until it starts).
    OpenChild {
        /// Its key.
        key: String,
        /// Who started it.
        parent: Target,
        /// Its description.
        label: Option<String>,
        /// Its agent type.
        agent: Option<String>,
        /// Its model, when the stream says.
        model: Option<String>,
    },
    /// A subagent is running; its provider references (said again when they grow).
    StartChild {
        /// Its key.
        key: String,
        /// Its provider references.
        refs: ProviderRefs,
    },
    /// A subagent ended.
    EndChild {
        /// Its key.
        key: String,
        /// How.
        state: WorkUnitState,
        /// Why, when it did not complete.
        error: Option<String>,
    },
    /// Something a unit said or did.
    Activity {
        /// Whose.
        target: Target,
        /// What.
        kind: ActivityKind,
    },
    /// Tokens a unit spent on `model`.
    Usage {
        /// Whose.
        target: Target,
        /// The model.
        model: String,
        /// The tokens.
        usage: TokenUsage,
    },
    /// The turn's final line.
    Finished {
        /// The answer.
        text: String,
        /// Why the turn failed, when it did.
        error: Option<String>,
        /// The CLI's own usage by model for the turn, when it reports one (Claude Code's
        /// `modelUsage`): what it says beyond what the steps recorded is put on the root.
        model_usage: Vec<(String, TokenUsage)>,
    },
}

/// One line of a CLI's JSON-lines output as its wire type `T`: `Ok(None)` for a blank line;
/// a line that is not a JSON object, or not of `T`'s shape, is the log step that says so (the
/// reader counts it and goes on).
pub(crate) fn read_line<T: serde::de::DeserializeOwned>(
    cli: &str,
    line: &str,
) -> Result<Option<T>, Box<Step>> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let parsed = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(value @ serde_json::Value::Object(_)) => {
            serde_json::from_value::<T>(value).map_err(|e| format!("a line it cannot read ({e})"))
        }
        _ => Err("a line that is not a JSON object".to_owned()),
    };
    parsed.map(Some).map_err(|what| {
        Box::new(Step::Activity {
            target: Target::Root,
            kind: ActivityKind::Log {
                level: fleet_core::activity::LogLevel::Warn,
                message: format!(
                    "{cli}: skipped {what}: {}",
                    line.chars().take(120).collect::<String>()
                ),
            },
        })
    })
}

/// For the CLIs' wire types: a field that may be missing or `null` reads as its default.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Every line of the recorded sessions in `tests/fixtures/<cli>/*.jsonl`, with its file's name:
/// what the wire types' tests read.
#[cfg(test)]
pub(crate) fn recorded_lines(cli: &str) -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(cli);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                out.push((name.clone(), line.to_owned()));
            }
        }
    }
    assert!(!out.is_empty(), "no recorded session in {}", dir.display());
    out
}
