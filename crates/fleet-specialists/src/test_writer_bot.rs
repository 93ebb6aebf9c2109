//! test-writer-bot: writes tests that pin new behaviour, checks that they fail before the
//! behaviour exists, and commits them.

use serde_json::json;

use crate::{Desk, RoleError, Specialist, Task, TaskResult};

/// The test-writer-bot role.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestWriterBot;

impl Specialist for TestWriterBot {
    async fn on_task(&self, desk: &Desk, task: &Task) -> Result<TaskResult, RoleError> {
        let before = desk.dirty().await?;
        let said = desk.ask(task, &task.prompt).await?;
        let changed = desk.changes_since(&before).await?;
        if changed.is_empty() {
            return Err(format!("{said}\n\nNo test was written; nothing was committed.").into());
        }
        let tests = desk.run_tests(task).await?;
        if tests.passed {
            return Err(format!(
                "the new tests already pass, so they do not pin new behaviour; nothing was \
                 committed. Test output:\n{}",
                tests.tail
            )
            .into());
        }
        let commit = desk.commit(task, &changed).await?;
        Ok(TaskResult {
            text: format!(
                "{said}\n\nThe new tests fail as they should until the behaviour exists; commit {}.",
                commit.as_deref().unwrap_or("(none)")
            ),
            output: Some(json!({"commit": commit})),
        })
    }
}
