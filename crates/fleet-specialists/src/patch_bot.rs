//! patch-bot: patches the code, runs the tests, and patches again with the failure, until
//! they pass; then commits the fix.

use fleet_core::activity::LogLevel;
use serde_json::json;

use crate::{Desk, RoleError, Specialist, Task, TaskResult};

/// How many patches patch-bot tries before it gives up.
pub const ATTEMPTS: usize = 3;

/// The patch-bot role.
#[derive(Debug, Default, Clone, Copy)]
pub struct PatchBot;

impl Specialist for PatchBot {
    async fn on_task(&self, desk: &Desk, task: &Task) -> Result<TaskResult, RoleError> {
        let before = desk.dirty().await?;
        let mut changed = std::collections::BTreeSet::new();
        let mut prompt = task.prompt.clone();
        for attempt in 1..=ATTEMPTS {
            task.progress(format!("patch attempt {attempt}"), None);
            let said = desk.ask(task, &prompt).await?;
            changed.extend(desk.changes_since(&before).await?);
            let tests = desk.run_tests(task).await?;
            if tests.passed {
                let commit = desk.commit(task, &changed).await?;
                let text = match &commit {
                    Some(id) => format!("{said}\n\nThe tests pass; the fix is commit {id}."),
                    None => format!("{said}\n\nThe tests pass; nothing needed changing."),
                };
                return Ok(TaskResult {
                    text,
                    output: Some(json!({"commit": commit, "attempts": attempt})),
                });
            }
            task.log(
                LogLevel::Info,
                format!("attempt {attempt}: the tests still fail"),
            );
            prompt = format!(
                "{}\n\nThe tests still fail after your last change:\n{}\nFix the code so that they pass.",
                task.prompt, tests.tail
            );
        }
        Err(format!("the tests still fail after {ATTEMPTS} patches; nothing was committed").into())
    }
}
