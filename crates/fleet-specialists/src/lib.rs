//! What a sandboxed specialist does with a task.
//!
//! A worker process, started by the supervisor under its agent's sandbox, serves one
//! [`Specialist`]: [`main`] (or [`serve`]) answers `initialize` by building the [`Desk`] the
//! agent works at, then hands every task to [`Specialist::on_task`]. The worker holds no
//! credentials: [`Desk::ask`] runs fleet's agent loop with every model turn sent to the
//! supervisor's gateway, which meters, prices and charges it.
//!
//! [`Samples`] are the three sample roles `fleet init` declares, one module each
//! ([`patch_bot`], [`test_writer_bot`], [`doc_bot`]); any other agent runs its agent loop once per
//! task. A fourth specialist is a type implementing [`Specialist`] in its own binary, named by
//! its spec's `worker:` (see the crate's README).

#![deny(missing_docs)]

mod desk;
pub mod doc_bot;
mod git;
pub mod patch_bot;
mod project;
pub mod test_writer_bot;

use std::sync::OnceLock;

use fleet_core::ipc::InitializeResult;
pub use fleet_core::ipc::TaskResult;
use fleet_sandbox::worker::{Role, WorkerContext};
pub use fleet_sandbox::worker::{RoleError, Task};

pub use self::desk::Desk;
pub use self::project::TestRun;

/// What a specialist does with one task, at its agent's desk.
pub trait Specialist: Send + Sync + 'static {
    /// Runs `task`; an `Err` fails it with that message.
    fn on_task(
        &self,
        desk: &Desk,
        task: &Task,
    ) -> impl Future<Output = Result<TaskResult, RoleError>> + Send;
}

/// A [`Specialist`] as a worker's [`Role`]: `initialize` sets up its desk.
pub struct Worker<S> {
    specialist: S,
    desk: OnceLock<Desk>,
}

impl<S: Specialist> Worker<S> {
    /// The worker of `specialist`.
    pub fn new(specialist: S) -> Self {
        Self {
            specialist,
            desk: OnceLock::new(),
        }
    }
}

impl<S: Specialist> Role for Worker<S> {
    async fn init(&mut self, ctx: &WorkerContext) -> Result<InitializeResult, RoleError> {
        let desk = Desk::new(ctx)?;
        let role = desk.spec.name.clone();
        log(&format!(
            "fleet worker {role}: model turns go to the supervisor's gateway ({})",
            ctx.gateway
                .as_ref()
                .map(|g| format!("{}, {}", g.provider, g.model))
                .unwrap_or_default()
        ));
        self.desk = OnceLock::from(desk);
        Ok(InitializeResult {
            role,
            version: Some(env!("CARGO_PKG_VERSION").into()),
        })
    }

    async fn on_task(&self, task: Task) -> Result<TaskResult, RoleError> {
        let desk = self.desk.get().ok_or("the worker is not initialized")?;
        self.specialist.on_task(desk, &task).await
    }
}

/// Serves `specialist` on stdin/stdout until `shutdown` or the end of input.
///
/// # Errors
/// Reading stdin or writing stdout failed.
pub async fn serve<S: Specialist>(specialist: S) -> std::io::Result<()> {
    fleet_sandbox::worker::serve_stdio(Worker::new(specialist)).await
}

/// A worker program's `main`: serves `specialist` on a small runtime of its own.
pub fn main<S: Specialist>(specialist: S) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(&format!("fleet worker: cannot start: {e}"));
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(specialist)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            log(&format!("fleet worker: {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr)]
fn log(message: &str) {
    // A worker's stderr is its log (the supervisor keeps its end).
    eprintln!("{message}");
}

/// The sample roles, chosen by the agent's name: `patch-bot`, `test-writer-bot`, `doc-bot`;
/// any other agent runs its agent loop once per task (its spec's system prompt and tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct Samples;

impl Specialist for Samples {
    async fn on_task(&self, desk: &Desk, task: &Task) -> Result<TaskResult, RoleError> {
        match desk.spec.name.as_str() {
            "patch-bot" => patch_bot::PatchBot.on_task(desk, task).await,
            "test-writer-bot" => test_writer_bot::TestWriterBot.on_task(desk, task).await,
            "doc-bot" => doc_bot::DocBot.on_task(desk, task).await,
            _ => AgentLoop.on_task(desk, task).await,
        }
    }
}

/// The plain specialist: one run of its agent loop per task.
#[derive(Debug, Default, Clone, Copy)]
pub struct AgentLoop;

impl Specialist for AgentLoop {
    async fn on_task(&self, desk: &Desk, task: &Task) -> Result<TaskResult, RoleError> {
        let text = desk.ask(task, &task.prompt).await?;
        Ok(TaskResult { text, output: None })
    }
}
