//! The OS sandbox for fleet's specialist workers.
//!
//! A [`SandboxPolicy`] (data, from an agent spec's `sandbox` block) becomes Landlock rules, a
//! seccomp-BPF allowlist and a privilege drop, applied by a small single-threaded helper process
//! that then `exec`s the worker ([`helper_main`]; the `fleet-sandbox-helper` binary, or the
//! `fleet` binary's hidden subcommand). [`Sandbox`] starts programs through the helper, and
//! [`SandboxedCommands`] is the [`CommandSandbox`] that confines agents' `run_command` the
//! same way. The [`Supervisor`] keeps pools of sandboxed workers and is their model gateway:
//! it holds the provider and its credentials, and meters and charges every model turn.
//!
//! ```no_run
//! use fleet_core::sandbox::SandboxPolicy;
//! use fleet_sandbox::Sandbox;
//!
//! let sandbox = Sandbox::beside_current_exe()?;
//! let mut policy = SandboxPolicy::default();
//! policy.writable.push("/srv/project/workspace".into());
//! let status = sandbox.command(&policy, "/usr/bin/python3", ["-c", "print('hi')"])?.status()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod client;
mod helper;
mod landlock;
mod plan;
mod prepare;
mod profile;
mod runner;
mod seccomp;
mod supervisor;
pub mod worker;
mod workspace;

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use fleet_core::exec::{CommandOutput, CommandRequest, CommandSandbox, ExecError, run_captured};
pub use fleet_core::sandbox::SandboxPolicy;
use fleet_core::spec::LandlockMode;

pub use self::client::{WorkerError, WorkerProcess, WorkerRequest};
pub use self::helper::{SETUP_FAILED, UNPRIVILEGED_ID, helper_main};
pub use self::landlock::{Enforcement, landlock_available, unix_sockets_confinable};
pub use self::plan::{DEFAULT_COST_BUDGET, OverBudget, PlanError, WorkerPlan};
pub use self::prepare::{Prepared, UnrunnableProgram, prepare_writable, runnable_by_workers};
pub use self::profile::baseline;
pub use self::runner::SpecialistRunner;
pub use self::supervisor::{
    Charge, MeteredTurn, Recorded, Supervisor, SupervisorError, SupervisorEvent, TaskOptions,
    TaskReport, TaskUpdate,
};
pub use self::workspace::{CommitError, CommitQueue, CommitRequest, WorkspaceLock};

/// Why a sandboxed program cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The kernel lacks what the policy requires (Landlock); says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// The policy cannot be applied as written.
    #[error("{0}")]
    Policy(String),
    /// Setting up the confinement failed.
    #[error("{0}")]
    Setup(String),
}

/// Starts programs confined by a policy, through the helper.
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper: PathBuf,
    helper_args: Vec<OsString>,
}

/// The helper binary's name.
pub const HELPER_NAME: &str = "fleet-sandbox-helper";

impl Sandbox {
    /// Uses `helper` (a `fleet-sandbox-helper` binary), started with `args` before the
    /// policy (e.g. the `fleet` binary's hidden subcommand).
    #[must_use]
    pub fn new(helper: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self {
            helper: helper.into(),
            helper_args: args,
        }
    }

    /// Uses the `fleet-sandbox-helper` binary next to the running executable (or in its
    /// parent directory, as for test binaries under `target/*/deps`).
    ///
    /// # Errors
    /// [`SandboxError::Setup`] when there is none.
    pub fn beside_current_exe() -> Result<Self, SandboxError> {
        let exe = std::env::current_exe()
            .map_err(|e| SandboxError::Setup(format!("cannot find the running program: {e}")))?;
        let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
        [dir.join(HELPER_NAME), dir.join("..").join(HELPER_NAME)]
            .into_iter()
            .find(|p| p.is_file())
            .map(|p| Self::new(p, Vec::new()))
            .ok_or_else(|| {
                SandboxError::Setup(format!(
                    "no {HELPER_NAME} next to {}: build it (cargo build -p fleet-sandbox) or use the fleet binary",
                    exe.display()
                ))
            })
    }

    /// Checks what can be checked before starting anything: Landlock when the policy requires
    /// it, and (as root) that the writable paths are writable by the unprivileged user.
    ///
    /// # Errors
    /// What is wrong and how to fix it.
    pub fn preflight(&self, policy: &SandboxPolicy) -> Result<(), SandboxError> {
        if policy.landlock == LandlockMode::Required {
            landlock_available()?;
        }
        if rustix::process::geteuid().is_root() {
            for path in &policy.writable {
                let Ok(meta) = std::fs::metadata(path) else {
                    return Err(SandboxError::Policy(format!(
                        "writable path {} does not exist: create it first",
                        path.display()
                    )));
                };
                let ok = meta.uid() == UNPRIVILEGED_ID
                    || meta.mode() & 0o002 != 0
                    || (meta.gid() == UNPRIVILEGED_ID && meta.mode() & 0o020 != 0);
                if !ok {
                    return Err(SandboxError::Policy(format!(
                        "writable path {} is not writable by uid {UNPRIVILEGED_ID}, which workers run as when fleet runs as root: \
                         `chown -R {UNPRIVILEGED_ID}:{UNPRIVILEGED_ID} {}`, or run fleet as an ordinary user",
                        path.display(),
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn helper_argv(
        &self,
        policy: &SandboxPolicy,
        program: &OsStr,
    ) -> Result<Vec<OsString>, SandboxError> {
        self.preflight(policy)?;
        let json = serde_json::to_string(policy)
            .map_err(|e| SandboxError::Setup(format!("cannot encode the policy: {e}")))?;
        let mut argv = self.helper_args.clone();
        argv.extend([
            "--policy".into(),
            json.into(),
            "--".into(),
            program.to_os_string(),
        ]);
        Ok(argv)
    }

    /// `program args…` under `policy`, ready to spawn (its environment is the policy's).
    ///
    /// # Errors
    /// As [`Sandbox::preflight`].
    pub fn command<I, S>(
        &self,
        policy: &SandboxPolicy,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> Result<std::process::Command, SandboxError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = std::process::Command::new(&self.helper);
        command
            .args(self.helper_argv(policy, program.as_ref())?)
            .args(args)
            .env_clear();
        Ok(command)
    }

    /// As [`Sandbox::command`], for tokio.
    ///
    /// # Errors
    /// As [`Sandbox::preflight`].
    pub fn tokio_command<I, S>(
        &self,
        policy: &SandboxPolicy,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> Result<tokio::process::Command, SandboxError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(policy, program, args).map(Into::into)
    }
}

/// A [`CommandSandbox`] that runs every command under one policy (an agent's), through the
/// helper: the same confinement as the agent's worker.
#[derive(Debug, Clone)]
pub struct SandboxedCommands {
    sandbox: Sandbox,
    policy: SandboxPolicy,
}

impl SandboxedCommands {
    /// Commands under `policy`. The command's working directory is added to what it may read.
    #[must_use]
    pub fn new(sandbox: Sandbox, policy: SandboxPolicy) -> Self {
        Self { sandbox, policy }
    }
}

impl CommandSandbox for SandboxedCommands {
    fn is_confined(&self) -> bool {
        true
    }

    async fn run(&self, request: CommandRequest) -> Result<CommandOutput, ExecError> {
        let mut policy = self.policy.clone();
        policy.readable.push(request.cwd.clone());
        policy.env.extend(request.env.iter().cloned());
        let command = self
            .sandbox
            .tokio_command(&policy, &request.program, &request.args)
            .map_err(|e| ExecError::Refused {
                program: request.program.clone(),
                reason: e.to_string(),
            })?;
        // The helper starts a new session, which is also the group a timeout kills.
        run_captured(command, &request, false).await
    }
}
