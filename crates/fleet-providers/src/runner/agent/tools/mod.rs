//! Tools an agent can call. Built-in tools are granted by the agent's capabilities; embedders
//! add their own by implementing [`Tool`].
//!
//! Errors a tool meets (a missing file, a patch that does not apply, a command that cannot
//! start) go back to the model as tool errors, never out of the agent call.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use fleet_core::agent::CallContext;
use fleet_core::exec::DynCommandSandbox;
use fleet_core::id::WorkUnitId;
use fleet_core::provider::ToolSpec;
use fleet_core::spec::Capability;
use fleet_core::sync::BoxFuture;
use serde_json::Value;

mod edit_file;
mod list_dir;
mod read_file;
mod run_command;
mod search_text;
mod subagents;
mod write_file;

use self::edit_file::EditFile;
use self::list_dir::ListDir;
use self::read_file::ReadFile;
use self::run_command::RunCommand;
use self::search_text::SearchText;
pub(crate) use self::subagents::Subagents;
use self::subagents::{CancelSubagent, SpawnSubagent, SubagentResult, SubagentStatus};
use self::write_file::WriteFile;

/// What a tool call returns to the model: text, and whether it is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The text the model reads.
    pub content: String,
    /// Whether the tool failed.
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    #[must_use]
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failure the model should read and react to.
    #[must_use]
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// What a tool call can reach.
#[derive(Clone)]
pub struct ToolContext {
    /// The directory paths are relative to; tools cannot leave it.
    pub workdir: PathBuf,
    /// Runs commands (`None`: `run_command` is not offered).
    pub commands: Option<Arc<dyn DynCommandSandbox>>,
    /// The calling agent's context (its unit, journal, budgets, cancellation).
    pub call: CallContext,
    /// The calling agent's unit.
    pub unit: WorkUnitId,
    pub(crate) subagents: Subagents,
}

impl std::fmt::Debug for ToolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolContext")
            .field("workdir", &self.workdir)
            .field("unit", &self.unit)
            .finish_non_exhaustive()
    }
}

/// A tool the model may call.
pub trait Tool: Send + Sync {
    /// Its name, description and input schema.
    fn spec(&self) -> ToolSpec;

    /// Runs it.
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput>;
}

fn spec(name: &str, description: &str, schema: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        input_schema: schema,
    }
}

fn str_arg<'a>(input: &'a Value, key: &str) -> Result<&'a str, ToolOutput> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolOutput::error(format!("missing string argument \"{key}\"")))
}

/// `path` inside `workdir`, refusing anything that leads outside it.
fn resolve(workdir: &Path, path: &str) -> Result<PathBuf, ToolOutput> {
    let relative = Path::new(path);
    let mut out = workdir.to_path_buf();
    for part in relative.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) if relative.starts_with(workdir) => {
                let rest = relative.strip_prefix(workdir).unwrap_or(relative);
                return resolve(workdir, &rest.to_string_lossy());
            }
            _ => {
                return Err(ToolOutput::error(format!(
                    "{path}: paths must stay inside the working directory {}",
                    workdir.display()
                )));
            }
        }
    }
    // A symlink could still lead out; check where the existing part really is.
    let mut existing = out.as_path();
    while !existing.exists() {
        match existing.parent() {
            Some(p) => existing = p,
            None => break,
        }
    }
    if let (Ok(real), Ok(root)) = (existing.canonicalize(), workdir.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(ToolOutput::error(format!(
            "{path}: leads outside the working directory through a symbolic link"
        )));
    }
    Ok(out)
}

/// The built-in tools `capabilities` grant (`run_command` only when commands can run).
pub(crate) fn builtin(capabilities: &[Capability], can_run: bool) -> Vec<Arc<dyn Tool>> {
    let mut tools: Vec<Arc<dyn Tool>> = Vec::new();
    if capabilities.contains(&Capability::ReadFiles) {
        tools.extend([
            Arc::new(ReadFile) as Arc<dyn Tool>,
            Arc::new(ListDir),
            Arc::new(SearchText),
        ]);
    }
    if capabilities.contains(&Capability::WriteFiles) {
        tools.extend([Arc::new(WriteFile) as Arc<dyn Tool>, Arc::new(EditFile)]);
    }
    if capabilities.contains(&Capability::RunCommands) && can_run {
        tools.push(Arc::new(RunCommand));
    }
    if capabilities.contains(&Capability::SpawnSubagents) {
        tools.extend([
            Arc::new(SpawnSubagent) as Arc<dyn Tool>,
            Arc::new(SubagentStatus),
            Arc::new(SubagentResult),
            Arc::new(CancelSubagent),
        ]);
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(resolve(root, "a/b.txt").ok(), Some(root.join("a/b.txt")));
        assert!(resolve(root, "../etc/passwd").is_err());
        assert!(resolve(root, "/etc/passwd").is_err());
        let inside = root.join("x.txt").display().to_string();
        assert_eq!(resolve(root, &inside).ok(), Some(root.join("x.txt")));
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        assert!(resolve(root, "link/passwd").is_err());
    }
}
