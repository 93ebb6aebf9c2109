//! The workspace's git: what changed, and committing exactly that.

use std::collections::BTreeSet;
use std::path::PathBuf;

use fleet_sandbox::CommitRequest;
use fleet_sandbox::worker::{RoleError, Task};

use crate::Desk;

impl Desk {
    /// Files that differ from the last commit (modified, added, deleted or new), by
    /// `git status`.
    ///
    /// # Errors
    /// git cannot be run, or the workspace is not a git repository.
    pub async fn dirty(&self) -> Result<BTreeSet<PathBuf>, RoleError> {
        let out = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.workspace)
            .args([
                "-c",
                "core.quotePath=false",
                "status",
                "--porcelain",
                "-uall",
            ])
            .output()
            .await
            .map_err(|e| format!("cannot run git: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "git status failed in {}: {}",
                self.workspace.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.get(3..))
            .map(|path| PathBuf::from(path.rsplit(" -> ").next().unwrap_or(path)))
            .collect())
    }

    /// What changed since `before` (a [`Desk::dirty`] taken earlier): the files dirty now that
    /// were clean then, so files that were already dirty, or that the tests create after the
    /// agent's turn, are not the agent's.
    ///
    /// # Errors
    /// As [`Desk::dirty`].
    pub async fn changes_since(
        &self,
        before: &BTreeSet<PathBuf>,
    ) -> Result<BTreeSet<PathBuf>, RoleError> {
        Ok(self.dirty().await?.difference(before).cloned().collect())
    }

    /// Commits exactly `paths`, with a message naming the agent and the task's first line;
    /// returns the commit's id, or `None` when there was nothing to commit.
    ///
    /// # Errors
    /// git refused the commit.
    pub async fn commit(
        &self,
        task: &Task,
        paths: &BTreeSet<PathBuf>,
    ) -> Result<Option<String>, RoleError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let first = task.prompt.lines().next().unwrap_or_default();
        let summary: String = first.chars().take(60).collect();
        self.commits
            .commit(CommitRequest {
                message: format!("{}: {summary}", self.spec.name),
                paths: paths.iter().cloned().collect(),
            })
            .await
            .map_err(|e| RoleError::new(e.to_string()))
    }
}
