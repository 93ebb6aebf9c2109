//! The seccomp filters: `clone3` answered ENOSYS (installed first), then a default-deny
//! allowlist with argument rules for `clone` (threads only, without `subprocesses`), `socket`
//! (AF_INET and AF_INET6 with the network; AF_UNIX only when Landlock confines which UNIX
//! socket paths the worker may reach, from Landlock ABI 9) and `socketpair` (stream pairs
//! only: a datagram pair could address any socket on the machine).

use std::collections::BTreeMap;

use fleet_core::sandbox::SandboxPolicy;
use fleet_core::spec::SYSCALLS_X86_64;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::SandboxError;
use crate::profile::{SUBPROCESS, baseline};

fn number(name: &str) -> Result<i64, SandboxError> {
    SYSCALLS_X86_64
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, nr)| i64::from(*nr))
        .ok_or_else(|| SandboxError::Policy(format!("unknown system call \"{name}\"")))
}

fn filter_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("cannot build the seccomp filter: {e}"))
}

fn arg_equals(index: u8, value: u64) -> Result<SeccompRule, SandboxError> {
    let condition = SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
        .map_err(filter_error)?;
    SeccompRule::new(vec![condition]).map_err(filter_error)
}

/// The two programs, in the order they must be installed; `unix_confined` says whether
/// Landlock confines pathname UNIX sockets (then the worker may make its own).
pub(crate) fn programs(
    policy: &SandboxPolicy,
    unix_confined: bool,
) -> Result<[BpfProgram; 2], SandboxError> {
    let arch = TargetArch::x86_64;
    // clone3 passes its flags in memory, where seccomp cannot look: refuse it as "not
    // implemented", and libc falls back to clone, whose flags the allowlist checks. The
    // allowlist allows clone3 so that this filter's ENOSYS is what the caller sees.
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(number("clone3")?, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(filter_error)?;

    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let names = baseline(policy.profile)
        .iter()
        .copied()
        .chain(policy.allowed_syscalls.iter().map(String::as_str))
        .chain(
            if policy.subprocesses { SUBPROCESS } else { &[] }
                .iter()
                .copied(),
        );
    for name in names {
        rules.insert(number(name)?, Vec::new());
    }
    if !policy.subprocesses {
        let thread = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
            libc::CLONE_THREAD as u64,
        )
        .map_err(filter_error)?;
        rules.insert(
            number("clone")?,
            vec![SeccompRule::new(vec![thread]).map_err(filter_error)?],
        );
    }
    let mut domains = Vec::new();
    if unix_confined {
        domains.push(arg_equals(0, libc::AF_UNIX as u64)?);
    }
    if policy.network {
        domains.push(arg_equals(0, libc::AF_INET as u64)?);
        domains.push(arg_equals(0, libc::AF_INET6 as u64)?);
    }
    if domains.is_empty() {
        rules.remove(&number("socket")?);
    } else {
        rules.insert(number("socket")?, domains);
    }
    // socketpair(AF_UNIX, SOCK_STREAM | flags, …): the type's low bits are the kind.
    let stream = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(0xf),
        libc::SOCK_STREAM as u64,
    )
    .map_err(filter_error)?;
    rules.insert(
        number("socketpair")?,
        vec![SeccompRule::new(vec![stream]).map_err(filter_error)?],
    );
    let refuse = if policy.learn {
        SeccompAction::Log
    } else {
        SeccompAction::Errno(libc::EPERM as u32)
    };
    let allowlist =
        SeccompFilter::new(rules, refuse, SeccompAction::Allow, arch).map_err(filter_error)?;
    Ok([
        clone3.try_into().map_err(filter_error)?,
        allowlist.try_into().map_err(filter_error)?,
    ])
}

/// Installs the filters on the calling thread (the helper is single-threaded).
pub(crate) fn apply(policy: &SandboxPolicy, unix_confined: bool) -> Result<(), SandboxError> {
    for program in programs(policy, unix_confined)? {
        seccompiler::apply_filter(&program)
            .map_err(|e| SandboxError::Setup(format!("cannot install the seccomp filter: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_for_every_switch_and_reject_unknown_names() {
        let mut policy = SandboxPolicy::default();
        for (network, subprocesses, learn) in [(false, false, false), (true, true, true)] {
            policy.network = network;
            policy.subprocesses = subprocesses;
            policy.learn = learn;
            let [clone3, allowlist] = programs(&policy, network).unwrap();
            assert!(!clone3.is_empty() && allowlist.len() > 150);
        }
        policy.allowed_syscalls = vec!["opn".into()];
        assert!(
            matches!(programs(&policy, false), Err(SandboxError::Policy(m)) if m.contains("\"opn\""))
        );
    }
}
