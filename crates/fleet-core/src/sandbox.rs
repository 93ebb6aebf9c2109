//! [`SandboxPolicy`]: what a sandboxed worker may do, as data. It is derived from an agent
//! spec's `sandbox` block; `fleet-sandbox` turns it into Landlock rules, a seccomp filter and
//! a privilege drop.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{LandlockMode, SandboxSpec, SyscallProfile};

/// Read-only places every worker gets: the system's programs, libraries and configuration,
/// its own `/proc` entry and the system-wide ones interpreters read (never another process's),
/// and the device views. Everything else is hidden unless the policy adds it.
///
/// `/proc/self` and `/proc/thread-self` are resolved when the sandbox is set up, in the process
/// that then becomes the worker: they name the worker's own entry, and only it.
pub const SYSTEM_READABLE: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/proc/self",
    "/proc/thread-self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/loadavg",
    "/proc/uptime",
    "/proc/version",
    "/proc/filesystems",
    "/proc/sys",
    "/sys",
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// Device files every worker may also write.
pub const SYSTEM_WRITABLE: &[&str] = &["/dev/null", "/dev/full", "/dev/tty"];

/// What a sandboxed process may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// The baseline system-call allowlist.
    pub profile: SyscallProfile,
    /// System calls added to the baseline (names, checked when the spec was loaded).
    pub allowed_syscalls: Vec<String>,
    /// AF_INET/AF_INET6 sockets allowed.
    pub network: bool,
    /// Starting processes allowed (`clone` without `CLONE_THREAD`, `fork`, `vfork`, and
    /// executing programs found under the readable paths).
    pub subprocesses: bool,
    /// Absolute paths the process may write (and read).
    pub writable: Vec<PathBuf>,
    /// Absolute paths it may read, besides [`SYSTEM_READABLE`] and the writable ones.
    pub readable: Vec<PathBuf>,
    /// Files it may execute besides the program it is started with, that program's
    /// interpreter and the dynamic loader.
    pub executable: Vec<PathBuf>,
    /// How Landlock must confine the filesystem.
    pub landlock: LandlockMode,
    /// Log refused system calls instead of refusing them.
    pub learn: bool,
    /// The whole environment of the process (nothing is inherited).
    pub env: Vec<(String, String)>,
}

impl Default for SandboxPolicy {
    /// The strictest policy: the baseline calls, nothing writable, Landlock required.
    fn default() -> Self {
        Self {
            profile: SyscallProfile::Default,
            allowed_syscalls: Vec::new(),
            network: false,
            subprocesses: false,
            writable: Vec::new(),
            readable: Vec::new(),
            executable: Vec::new(),
            landlock: LandlockMode::Required,
            learn: false,
            env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        }
    }
}

impl SandboxPolicy {
    /// The policy of an agent spec's `sandbox` block; relative `writable` paths are under
    /// `project`, which is also readable. The environment tells git that the writable paths
    /// are safe repositories (`safe.directory`, as command-line configuration: a worker that
    /// runs as another user than the files' owner would otherwise be refused with "dubious
    /// ownership", and no setting of the user's reaches a worker).
    #[must_use]
    pub fn from_spec(spec: &SandboxSpec, project: &Path) -> Self {
        let writable: Vec<PathBuf> = spec.writable.iter().map(|p| project.join(p)).collect();
        let mut env = Self::default().env;
        env.push(("GIT_CONFIG_COUNT".into(), writable.len().to_string()));
        for (i, path) in writable.iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), "safe.directory".into()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), path.display().to_string()));
        }
        Self {
            profile: spec.profile,
            allowed_syscalls: spec.allowed_syscalls.clone(),
            network: spec.network,
            subprocesses: spec.subprocesses,
            writable,
            readable: vec![project.to_path_buf()],
            landlock: spec.landlock,
            learn: spec.learn,
            env,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_becomes_a_policy_under_its_project() {
        let spec = SandboxSpec {
            allowed_syscalls: vec!["mlock".into()],
            network: true,
            writable: vec![PathBuf::from("workspace"), PathBuf::from("/var/cache/x")],
            landlock: LandlockMode::BestEffort,
            ..SandboxSpec::default()
        };
        let policy = SandboxPolicy::from_spec(&spec, Path::new("/srv/p"));
        assert_eq!(
            policy.writable,
            [
                PathBuf::from("/srv/p/workspace"),
                PathBuf::from("/var/cache/x")
            ]
        );
        assert_eq!(policy.readable, [PathBuf::from("/srv/p")]);
        assert!(policy.network && !policy.subprocesses && !policy.learn);
        assert_eq!(policy.landlock, LandlockMode::BestEffort);
        assert_eq!(policy.allowed_syscalls, ["mlock"]);
        let env: std::collections::HashMap<_, _> = policy.env.iter().cloned().collect();
        assert_eq!(env["GIT_CONFIG_COUNT"], "2");
        assert_eq!(env["GIT_CONFIG_KEY_0"], "safe.directory");
        assert_eq!(env["GIT_CONFIG_VALUE_1"], "/var/cache/x");
        assert_eq!(env.len(), 6);
    }
}
