//! `isolation: 'worktree'`: each such call works in its own git worktree; an unchanged one is
//! removed, a changed one kept on its branch and logged.

use std::path::Path;
use std::process::Command;

use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::money::Cost;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::WorkUnitState;
use fleet_workflow::{RunState, WorkflowEngine};
use serde_json::Value;

use super::*;

/// Answers with the directory it was given; a prompt starting with `edit` writes a file there.
struct Editor;

impl AgentRunner for Editor {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let unit = ctx.work_unit.expect("the engine records the unit");
        let dir = call
            .workdir
            .clone()
            .expect("a worktree call gets a workdir");
        if call.prompt.starts_with("edit") {
            std::fs::write(dir.join("NOTES.md"), "edited\n").unwrap();
        }
        ctx.journal
            .set_state(unit, WorkUnitState::Completed, None)
            .await?;
        Ok(AgentOutcome {
            work_unit_id: unit,
            text: dir.display().to_string(),
            output: None,
            model: "editor".into(),
            usage: TokenUsage::default(),
            cost: Cost::default(),
            model_requests: 1,
            tool_calls: 0,
        })
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "--quiet", "-b", "main"]);
    git(dir.path(), &["config", "user.email", "t@example.com"]);
    git(dir.path(), &["config", "user.name", "t"]);
    std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "--quiet", "-m", "start"]);
    dir
}

async fn run_in(dir: &Path, body: &str) -> (Arc<fleet_workflow::RunSummary>, Vec<String>) {
    let engine = WorkflowEngine::new(memory(), Arc::new(Editor));
    let options = RunOptions {
        workdir: Some(dir.to_path_buf()),
        ..RunOptions::default()
    };
    let handle = engine.start(script(body), options, None).await.unwrap();
    let summary = handle.wait().await;
    let logs = handle
        .events_since(0)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::Log { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    (summary, logs)
}

#[tokio::test]
async fn changed_worktrees_are_kept_on_their_branch_and_unchanged_ones_removed() {
    let repo = repository();
    let (summary, logs) = run_in(
        repo.path(),
        "return await parallel([
           () => agent('edit the notes', { isolation: 'worktree', label: 'editor' }),
           () => agent('look only', { isolation: 'worktree', label: 'reader' }),
         ]);",
    )
    .await;
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    let Value::Array(dirs) = &summary.result else {
        panic!("{}", summary.result)
    };
    let (edited, looked) = (
        Path::new(dirs[0].as_str().unwrap()),
        Path::new(dirs[1].as_str().unwrap()),
    );
    assert_ne!(edited, repo.path());
    // The editor's worktree stays, with its change, on its own branch; the main tree is clean.
    assert_eq!(
        std::fs::read_to_string(edited.join("NOTES.md")).unwrap(),
        "edited\n"
    );
    let branch = git(edited, &["branch", "--show-current"]);
    assert!(branch.starts_with("fleet/"), "{branch}");
    assert!(!repo.path().join("NOTES.md").exists());
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
    let kept = format!(
        "editor: changes kept in worktree {} on branch {branch}",
        edited.display()
    );
    assert!(logs.contains(&kept), "{logs:?}");
    // The reader's worktree and branch are gone.
    assert!(!looked.exists(), "{}", looked.display());
    let branches = git(repo.path(), &["branch", "--list", "fleet/*"]);
    assert_eq!(branches.lines().count(), 1, "{branches}");
    assert_eq!(summary.calls.completed, 2);
}

#[tokio::test]
async fn worktree_isolation_outside_a_repository_fails_the_call_and_says_why() {
    let plain = tempfile::tempdir().unwrap();
    let (summary, _) = run_in(
        plain.path(),
        "try { await agent('x', { isolation: 'worktree' }); return 'ran'; }
         catch (e) { return e.message; }",
    )
    .await;
    assert_eq!(summary.state, RunState::Completed, "{:?}", summary.error);
    let message = summary.result.as_str().unwrap();
    assert!(
        message.starts_with("isolation 'worktree' needs a git repository, and "),
        "{message}"
    );
    assert_eq!(summary.calls.failed, 1);
}
