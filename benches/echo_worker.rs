//! A worker that answers every task with its prompt: the benchmarks' protocol peer.

use fleet_core::ipc::{InitializeResult, TaskResult};
use fleet_sandbox::worker::{Role, RoleError, Task, WorkerContext, serve_stdio};

struct Echo;

impl Role for Echo {
    async fn init(&mut self, _ctx: &WorkerContext) -> Result<InitializeResult, RoleError> {
        Ok(InitializeResult {
            role: "echo".into(),
            version: None,
        })
    }

    async fn on_task(&self, task: Task) -> Result<TaskResult, RoleError> {
        Ok(TaskResult {
            text: task.prompt,
            output: None,
        })
    }
}

fn main() -> std::io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(serve_stdio(Echo))
}
