//! `isolation: 'worktree'`: an agent call that works in a git worktree of its own, so that
//! parallel agents editing files do not collide. As in Claude Code, a worktree the agent left
//! unchanged is removed; one with changes is kept, on its own branch, and the run's log says
//! where.

use std::path::{Path, PathBuf};

use tokio::process::Command;
use tokio::sync::Mutex;

/// Git takes locks (`config.lock`, `index.lock`, ref locks) while it adds or removes a
/// worktree and its branch; two at once in one repository make one of them fail. Calls that run
/// in parallel take turns here for those few milliseconds.
static GIT_CHANGES: Mutex<()> = Mutex::const_new(());

/// A worktree made for one call.
#[derive(Debug)]
pub(crate) struct Worktree {
    repo: PathBuf,
    /// Where the agent works.
    pub path: PathBuf,
    branch: String,
    /// The commit it started from.
    base: String,
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e} (is git installed and on PATH?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "`git {}` in {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Worktree {
    /// A new worktree of `repo`'s `HEAD` on branch `fleet/<name>`, kept under the repository's
    /// git directory (out of the way of `git status`).
    pub(crate) async fn create(repo: &Path, name: &str) -> Result<Self, String> {
        let common = git(repo, &["rev-parse", "--git-common-dir"])
            .await
            .map_err(|e| {
                format!(
                    "isolation 'worktree' needs a git repository, and {} is not in one: {e}",
                    repo.display()
                )
            })?;
        let common = repo.join(common);
        let base = git(repo, &["rev-parse", "HEAD"])
            .await
            .map_err(|e| format!("isolation 'worktree' needs a commit to start from: {e}"))?;
        let path = common.join("fleet-worktrees").join(name);
        let branch = format!("fleet/{name}");
        let target = path.to_string_lossy().into_owned();
        let _turn = GIT_CHANGES.lock().await;
        git(
            repo,
            &["worktree", "add", "--quiet", "-b", &branch, &target, "HEAD"],
        )
        .await
        .map_err(|e| format!("isolation 'worktree': cannot create a worktree: {e}"))?;
        Ok(Self {
            repo: repo.to_path_buf(),
            path,
            branch,
            base,
        })
    }

    /// Removes the worktree (and its branch) when the agent changed nothing. Returns where
    /// the changes are when it did.
    pub(crate) async fn finish(self) -> Result<Option<String>, String> {
        let status = git(&self.path, &["status", "--porcelain"]).await?;
        let head = git(&self.path, &["rev-parse", "HEAD"]).await?;
        if status.is_empty() && head == self.base {
            let target = self.path.to_string_lossy().into_owned();
            let _turn = GIT_CHANGES.lock().await;
            git(&self.repo, &["worktree", "remove", "--force", &target]).await?;
            git(&self.repo, &["branch", "-D", &self.branch]).await?;
            return Ok(None);
        }
        Ok(Some(format!(
            "changes kept in worktree {} on branch {}",
            self.path.display(),
            self.branch
        )))
    }
}
