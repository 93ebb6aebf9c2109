//! The Landlock ruleset: read-only system paths and readable paths, read-write `writable`
//! paths, execute only the listed files.

use std::path::{Path, PathBuf};

use fleet_core::sandbox::{SYSTEM_READABLE, SYSTEM_WRITABLE, SandboxPolicy};
use fleet_core::spec::LandlockMode;
use landlock::{
    ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};

use crate::SandboxError;

/// The newest ABI used; where the kernel offers less, the newer rights are left out (from
/// ABI 9, connecting to pathname UNIX sockets is a right of its own, given only under the
/// writable paths; before that, DAC permissions on the socket decide).
const ABI_WANTED: ABI = ABI::V9;

/// What Landlock did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Every rule is enforced.
    Full,
    /// The kernel enforces an older subset.
    Partial,
    /// Not enforced (the kernel lacks Landlock, or the policy turned it off).
    None,
}

fn read_only() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn read_write() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI_WANTED) & !AccessFs::Execute
}

fn existing(paths: &[PathBuf]) -> Vec<&Path> {
    paths
        .iter()
        .map(PathBuf::as_path)
        .filter(|p| p.exists())
        .collect()
}

fn fix_hint() -> &'static str {
    "Landlock needs Linux 5.13 or later with `landlock` in the kernel's LSM list (see /sys/kernel/security/lsm, \
     or boot with lsm=landlock,…); or set `sandbox.landlock: best_effort` in the agent's spec to run \
     without filesystem confinement"
}

/// Restricts the calling thread (and what it executes) per `policy`; `executable` are the
/// files it may execute.
pub(crate) fn apply(
    policy: &SandboxPolicy,
    executable: &[PathBuf],
) -> Result<Enforcement, SandboxError> {
    if policy.landlock == LandlockMode::Off {
        return Ok(Enforcement::None);
    }
    let error =
        |e: landlock::RulesetError| SandboxError::Setup(format!("cannot set up Landlock: {e}"));
    let system: Vec<PathBuf> = SYSTEM_READABLE.iter().map(PathBuf::from).collect();
    let devices: Vec<PathBuf> = SYSTEM_WRITABLE.iter().map(PathBuf::from).collect();
    let level = match policy.landlock {
        LandlockMode::Required => CompatLevel::HardRequirement,
        _ => CompatLevel::BestEffort,
    };
    let ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(|e| {
            SandboxError::Unavailable(format!(
                "Landlock is required by this agent but the kernel does not provide it ({e}). {}",
                fix_hint()
            ))
        })?
        // Newer rights only where the kernel has them.
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(ABI_WANTED))
        .map_err(error)?
        // No signals to, and no abstract UNIX sockets of, processes outside the sandbox.
        .scope(Scope::from_all(ABI_WANTED))
        .map_err(error)?;
    let status = ruleset
        .create()
        .map_err(error)?
        .add_rules(path_beneath_rules(existing(&system), read_only()))
        .map_err(error)?
        .add_rules(path_beneath_rules(existing(&policy.readable), read_only()))
        .map_err(error)?
        .add_rules(path_beneath_rules(existing(&devices), read_write()))
        .map_err(error)?
        .add_rules(path_beneath_rules(existing(&policy.writable), read_write()))
        .map_err(error)?
        .add_rules(path_beneath_rules(
            existing(executable),
            AccessFs::Execute | AccessFs::ReadFile,
        ))
        .map_err(error)?
        .restrict_self()
        .map_err(error)?;
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => Enforcement::None,
    };
    if enforcement == Enforcement::None && policy.landlock == LandlockMode::Required {
        return Err(SandboxError::Unavailable(format!(
            "Landlock is required by this agent but the kernel does not enforce it. {}",
            fix_hint()
        )));
    }
    Ok(enforcement)
}

/// Whether this kernel's Landlock confines which pathname UNIX sockets a process may reach
/// (ABI 9). Where it does, a worker may make UNIX sockets, and reach only those under its
/// writable paths; where it does not, the seccomp filter refuses `socket(AF_UNIX)` altogether.
#[must_use]
pub fn unix_sockets_confinable() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::ResolveUnix)
        .and_then(|r| r.create())
        .is_ok()
}

/// Whether the kernel offers Landlock; the error says why not and how to fix it.
///
/// # Errors
/// [`SandboxError::Unavailable`] when the kernel lacks it or has it disabled.
pub fn landlock_available() -> Result<(), SandboxError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create())
        .map(drop)
        .map_err(|e| {
            SandboxError::Unavailable(format!(
                "Landlock is not available on this kernel ({e}). {}",
                fix_hint()
            ))
        })
}
