//! A worker whose task is model turns through the supervisor's gateway: the prompt
//! `TURNS CONCURRENT` makes `CONCURRENT` loops of `TURNS` turns each, at once; the answer is the
//! number of turns made. The gateway benchmark's peer.

use fleet_core::ipc::{InitializeResult, TaskResult};
use fleet_core::provider::{CancelToken, Provider};
use fleet_sandbox::worker::{Role, RoleError, Task, WorkerContext, serve_stdio};
use futures_util::future::join_all;

struct Turns;

impl Role for Turns {
    async fn init(&mut self, _ctx: &WorkerContext) -> Result<InitializeResult, RoleError> {
        Ok(InitializeResult {
            role: "turns".into(),
            version: None,
        })
    }

    async fn on_task(&self, task: Task) -> Result<TaskResult, RoleError> {
        let mut words = task.prompt.split_whitespace().map(str::parse::<usize>);
        let (Some(Ok(turns)), Some(Ok(concurrent))) = (words.next(), words.next()) else {
            return Err("the prompt is `TURNS CONCURRENT`".into());
        };
        let model = task.model();
        let loops = (0..concurrent).map(|_| {
            let model = model.clone();
            async move {
                for _ in 0..turns {
                    model
                        .complete(fleet_benches::instant_model::request(), CancelToken::new())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(turns)
            }
        });
        let mut made = 0;
        for done in join_all(loops).await {
            made += done?;
        }
        Ok(TaskResult {
            text: made.to_string(),
            output: None,
        })
    }
}

fn main() -> std::io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve_stdio(Turns))
}
