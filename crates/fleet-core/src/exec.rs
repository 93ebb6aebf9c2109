//! The command seam: a [`CommandSandbox`] runs a program for an agent's `run_command` tool.
//!
//! `fleet-sandbox` implements it with the kernel sandbox (Landlock, seccomp, no privileges);
//! `fleet-providers` has an unconfined implementation for trusted setups and tests.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::provider::BoxFuture;

/// A program to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// The program (looked up on `PATH` when it has no `/`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its working directory.
    pub cwd: PathBuf,
    /// Variables added to its environment.
    pub env: Vec<(String, String)>,
    /// What it reads on stdin (empty: stdin is closed).
    pub stdin: Vec<u8>,
    /// How long it may run before it is killed.
    pub timeout: Duration,
    /// Most bytes kept of stdout and of stderr each; the rest is dropped and counted.
    pub output_limit: usize,
}

impl CommandRequest {
    /// `program args…` in `cwd`, with a 2-minute timeout and 64 KiB of output kept.
    #[must_use]
    pub fn new(program: impl Into<String>, args: Vec<String>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args,
            cwd: cwd.into(),
            env: Vec::new(),
            stdin: Vec::new(),
            timeout: Duration::from_secs(120),
            output_limit: 64 * 1024,
        }
    }
}

/// How a program ended and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether it was killed for running past its timeout.
    pub timed_out: bool,
    /// The first `output_limit` bytes of stdout.
    pub stdout: Vec<u8>,
    /// The first `output_limit` bytes of stderr.
    pub stderr: Vec<u8>,
    /// Bytes of output dropped past the limit.
    pub dropped: u64,
    /// Wall time.
    pub duration: Duration,
}

impl CommandOutput {
    /// Whether it exited with status 0.
    #[must_use]
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A program could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// It could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox refuses to run it (policy) or cannot be set up.
    #[error("sandbox refused {program}: {reason}")]
    Refused {
        /// The program.
        program: String,
        /// Why, and what to change.
        reason: String,
    },
    /// Waiting for it or reading its output failed.
    #[error("running {program} failed: {source}")]
    Io {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Runs programs for agents, confined however the implementation confines them.
pub trait CommandSandbox: Send + Sync {
    /// Whether programs run confined (a sandbox) or with the caller's full rights.
    fn is_confined(&self) -> bool;

    /// Runs `request` to its end (or its timeout).
    ///
    /// # Errors
    /// [`ExecError`] when it cannot be started or waited for; a non-zero exit is not an error.
    fn run(
        &self,
        request: CommandRequest,
    ) -> impl Future<Output = Result<CommandOutput, ExecError>> + Send;
}

/// [`CommandSandbox`] for dynamic dispatch.
pub trait DynCommandSandbox: Send + Sync {
    /// As [`CommandSandbox::is_confined`].
    fn is_confined_dyn(&self) -> bool;
    /// As [`CommandSandbox::run`].
    fn run_dyn(&self, request: CommandRequest) -> BoxFuture<'_, Result<CommandOutput, ExecError>>;
}

impl<T: CommandSandbox> DynCommandSandbox for T {
    fn is_confined_dyn(&self) -> bool {
        self.is_confined()
    }
    fn run_dyn(&self, request: CommandRequest) -> BoxFuture<'_, Result<CommandOutput, ExecError>> {
        Box::pin(self.run(request))
    }
}

impl CommandSandbox for dyn DynCommandSandbox + '_ {
    fn is_confined(&self) -> bool {
        self.is_confined_dyn()
    }
    fn run(
        &self,
        request: CommandRequest,
    ) -> impl Future<Output = Result<CommandOutput, ExecError>> + Send {
        self.run_dyn(request)
    }
}

impl<T: CommandSandbox + ?Sized> CommandSandbox for Arc<T> {
    fn is_confined(&self) -> bool {
        (**self).is_confined()
    }
    fn run(
        &self,
        request: CommandRequest,
    ) -> impl Future<Output = Result<CommandOutput, ExecError>> + Send {
        (**self).run(request)
    }
}
