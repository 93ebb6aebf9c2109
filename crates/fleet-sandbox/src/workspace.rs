//! One workspace, many writers: a [`WorkspaceLock`] (an `flock`, so it also holds between
//! processes, sandboxed workers included) and a [`CommitQueue`] that commits to the workspace's
//! git repository one request at a time, in the order they were queued, under the lock.

use std::path::{Path, PathBuf};

use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

/// Exclusive access to a workspace until dropped.
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: std::fs::File,
}

impl WorkspaceLock {
    /// The lock file: in the repository's git directory when there is one (out of the way of
    /// `git status`), else `.fleet.lock` in the workspace.
    #[must_use]
    pub fn path(workspace: &Path) -> PathBuf {
        let git = workspace.join(".git");
        if git.is_dir() {
            git.join("fleet.lock")
        } else {
            workspace.join(".fleet.lock")
        }
    }

    /// Waits for the lock.
    ///
    /// # Errors
    /// The lock file cannot be opened or locked.
    pub async fn acquire(workspace: &Path) -> std::io::Result<Self> {
        let path = Self::path(workspace);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
            Ok(Self { _file: file })
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A commit to make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitRequest {
    /// The commit message.
    pub message: String,
    /// The paths to commit (relative to the workspace); empty: every change.
    pub paths: Vec<PathBuf>,
}

type Queued = (
    CommitRequest,
    oneshot::Sender<Result<Option<String>, CommitError>>,
);

/// Why a commit did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// git could not be started.
    #[error("cannot run git: {0}")]
    NoGit(String),
    /// The workspace's lock could not be taken.
    #[error("cannot lock {}: {reason}", .workspace.display())]
    Lock {
        /// The workspace.
        workspace: PathBuf,
        /// Why.
        reason: String,
    },
    /// git refused a step (`add`, `commit`), saying why.
    #[error("git {step} failed: {said}")]
    Git {
        /// The git command.
        step: &'static str,
        /// What git said.
        said: String,
    },
    /// The queue's task has ended (its runtime is shutting down).
    #[error("the commit queue has stopped")]
    Stopped,
}

/// Commits to one workspace, one request at a time, in order.
#[derive(Debug, Clone)]
pub struct CommitQueue {
    tx: mpsc::UnboundedSender<Queued>,
}

impl CommitQueue {
    /// A queue for the git repository at `workspace`.
    #[must_use]
    pub fn new(workspace: impl Into<PathBuf>) -> Self {
        let workspace = workspace.into();
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(commit(&workspace, &request).await);
            }
        });
        Self { tx }
    }

    /// Queues `request` and waits for it: the new commit's id, or `None` when there was
    /// nothing to commit.
    ///
    /// # Errors
    /// What git said.
    pub async fn commit(&self, request: CommitRequest) -> Result<Option<String>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((request, reply))
            .map_err(|_| CommitError::Stopped)?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }
}

async fn git(workspace: &Path, args: &[&str]) -> Result<(bool, String), CommitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace)
        // Commits work in a repository with no identity configured.
        .args(["-c", "user.name=fleet", "-c", "user.email=fleet@localhost"])
        .args(args)
        .output()
        .await
        .map_err(|e| CommitError::NoGit(e.to_string()))?;
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        String::from_utf8_lossy(&out.stderr)
    };
    Ok((out.status.success(), text.trim().to_owned()))
}

async fn commit(workspace: &Path, request: &CommitRequest) -> Result<Option<String>, CommitError> {
    let _lock = WorkspaceLock::acquire(workspace)
        .await
        .map_err(|e| CommitError::Lock {
            workspace: workspace.to_path_buf(),
            reason: e.to_string(),
        })?;
    let paths: Vec<String> = request
        .paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut add = vec!["add", "-A", "--"];
    add.extend(paths.iter().map(String::as_str));
    let (ok, said) = git(workspace, &add).await?;
    if !ok {
        return Err(CommitError::Git { step: "add", said });
    }
    let mut staged = vec!["diff", "--cached", "--quiet", "--"];
    staged.extend(paths.iter().map(String::as_str));
    if git(workspace, &staged).await?.0 {
        return Ok(None);
    }
    let mut commit = vec!["commit", "-q", "-m", request.message.as_str(), "--"];
    commit.extend(paths.iter().map(String::as_str));
    let (ok, said) = git(workspace, &commit).await?;
    if !ok {
        return Err(CommitError::Git {
            step: "commit",
            said,
        });
    }
    let (_, head) = git(workspace, &["rev-parse", "HEAD"]).await?;
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[tokio::test]
    async fn the_lock_excludes_other_holders_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = WorkspaceLock::acquire(dir.path()).await.unwrap();
        let path = dir.path().to_path_buf();
        let waiter = tokio::spawn(async move { WorkspaceLock::acquire(&path).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiter.is_finished(), "a second holder got the lock");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_commit_one_at_a_time_each_with_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), &["init", "-q", "-b", "main"]);
        let queue = CommitQueue::new(dir.path());
        let writers = (0..16).map(|i| {
            let (queue, dir) = (queue.clone(), dir.path().to_path_buf());
            tokio::spawn(async move {
                let name = format!("file{i}.txt");
                std::fs::write(dir.join(&name), format!("{i}\n")).unwrap();
                queue
                    .commit(CommitRequest {
                        message: format!("writer {i}"),
                        paths: vec![name.into()],
                    })
                    .await
            })
        });
        for writer in join_all_in_order(writers).await {
            assert!(writer.unwrap().unwrap().is_some());
        }
        let log = run(dir.path(), &["log", "--format=@%s", "--name-only"]);
        let commits: Vec<&str> = log.split('@').filter(|c| !c.is_empty()).collect();
        assert_eq!(commits.len(), 16, "{log}");
        for commit in commits {
            let lines: Vec<&str> = commit.lines().filter(|l| !l.is_empty()).collect();
            let i = lines[0].strip_prefix("writer ").unwrap();
            assert_eq!(lines[1..], [format!("file{i}.txt")], "{commit}");
        }
        let nothing = queue
            .commit(CommitRequest {
                message: "empty".into(),
                paths: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(nothing, None);
    }

    async fn join_all_in_order<T>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<Result<T, tokio::task::JoinError>> {
        let mut out = Vec::new();
        for h in handles.collect::<Vec<_>>() {
            out.push(h.await);
        }
        out
    }
}
