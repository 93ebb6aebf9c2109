//! The command seam: a [`CommandSandbox`] runs a program for an agent's `run_command` tool.
//!
//! `fleet-sandbox` implements it with the kernel sandbox (Landlock, seccomp, no privileges);
//! `fleet-providers` has an unconfined implementation for trusted setups and tests.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::BoxFuture;

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

#[cfg(feature = "process")]
mod captured {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use std::time::Instant;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

    use super::{CommandOutput, CommandRequest, ExecError};

    type Captured = std::io::Result<(Vec<u8>, u64)>;

    async fn read_capped(mut from: impl AsyncRead + Unpin, limit: usize) -> Captured {
        let mut kept = Vec::new();
        let mut dropped = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok((kept, dropped));
            }
            let room = limit.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
            dropped += (n - room) as u64;
        }
    }

    /// Runs `command` (program, arguments and environment already set) for `request`: in
    /// `request.cwd`, fed `request.stdin`, its output captured up to `request.output_limit`,
    /// killed with its whole process group after `request.timeout`. With `own_group` it is
    /// started in a process group of its own; without, the program must make one itself (as
    /// fleet's sandbox helper does with a new session).
    ///
    /// # Errors
    /// [`ExecError::Spawn`] when it cannot start, [`ExecError::Io`] when waiting fails.
    pub async fn run_captured(
        mut command: tokio::process::Command,
        request: &CommandRequest,
        own_group: bool,
    ) -> Result<CommandOutput, ExecError> {
        if own_group {
            // So that a timeout kills whatever it started too (a grandchild would otherwise
            // keep the output pipes open).
            command.process_group(0);
        }
        let started = Instant::now();
        let program = request.program.clone();
        let io = |source| ExecError::Io {
            program: program.clone(),
            source,
        };
        let mut child = command
            .current_dir(&request.cwd)
            .stdin(if request.stdin.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecError::Spawn {
                program: program.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            let input = request.stdin.clone();
            tokio::spawn(async move {
                // A program that exits without reading its input is not an error.
                let _ = stdin.write_all(&input).await;
            });
        }
        let limit = request.output_limit;
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_capped(s, limit)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_capped(s, limit)));
        let (status, timed_out) = match tokio::time::timeout(request.timeout, child.wait()).await {
            Ok(status) => (status.map_err(io)?, false),
            Err(_) => {
                if let Some(pid) = child
                    .id()
                    .and_then(|id| rustix::process::Pid::from_raw(id as i32))
                {
                    // Best effort: the group may already be gone.
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                child.start_kill().map_err(io)?;
                (child.wait().await.map_err(io)?, true)
            }
        };
        let collect = |task: Option<tokio::task::JoinHandle<Captured>>| async move {
            match task {
                Some(t) => t.await.ok().and_then(Result::ok).unwrap_or_default(),
                None => (Vec::new(), 0),
            }
        };
        let (stdout, dropped_out) = collect(stdout).await;
        let (stderr, dropped_err) = collect(stderr).await;
        Ok(CommandOutput {
            code: status.code(),
            signal: status.signal(),
            timed_out,
            stdout,
            stderr,
            dropped: dropped_out + dropped_err,
            duration: started.elapsed(),
        })
    }
}

#[cfg(feature = "process")]
pub use captured::run_captured;
