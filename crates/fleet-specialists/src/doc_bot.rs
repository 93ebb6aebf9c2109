//! doc-bot: adds documentation to the changed items and commits it.

use serde_json::json;

use crate::{Desk, RoleError, Specialist, Task, TaskResult};

/// The doc-bot role.
#[derive(Debug, Default, Clone, Copy)]
pub struct DocBot;

impl Specialist for DocBot {
    async fn on_task(&self, desk: &Desk, task: &Task) -> Result<TaskResult, RoleError> {
        let before = desk.dirty().await?;
        let said = desk.ask(task, &task.prompt).await?;
        let changed = desk.changes_since(&before).await?;
        let commit = desk.commit(task, &changed).await?;
        Ok(TaskResult {
            text: said,
            output: Some(json!({"commit": commit})),
        })
    }
}
