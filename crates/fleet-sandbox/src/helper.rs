//! The helper: a small single-threaded process that confines itself and then `exec`s the
//! worker. Confining in the supervisor's `pre_exec` would run in a forked copy of a
//! multi-threaded process, where allocating can deadlock and errors collapse to EINVAL.
//!
//! Order: new session → (root) drop the capability bounding set and switch to an
//! unprivileged uid/gid → clear remaining capabilities → Landlock (which sets no_new_privs) →
//! seccomp → exec with exactly the policy's environment.
//!
//! Usage: `<helper> --policy <json> -- <program> [args…]`. Setup failures print one line
//! starting with `fleet-sandbox:` on stderr and exit with [`SETUP_FAILED`].

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use fleet_core::sandbox::SandboxPolicy;

use crate::SandboxError;

/// The exit status of a helper that could not confine itself or start the worker.
pub const SETUP_FAILED: i32 = 125;

/// The uid and gid workers run as when fleet runs as root (`nobody`).
pub const UNPRIVILEGED_ID: u32 = 65534;

/// Runs the helper with its command-line arguments (without the program name); never
/// returns: it execs the worker or exits.
pub fn helper_main(args: Vec<OsString>) -> ! {
    let error = match run(args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // The one place this crate prints: the helper's stderr is the worker's log.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("fleet-sandbox: {error}");
    }
    std::process::exit(SETUP_FAILED)
}

enum Never {}

fn run(args: Vec<OsString>) -> Result<Never, SandboxError> {
    let usage = || SandboxError::Setup("usage: --policy <json> -- <program> [args…]".into());
    let mut args = args.into_iter();
    if args.next().as_deref() != Some("--policy".as_ref()) {
        return Err(usage());
    }
    let json = args.next().ok_or_else(usage)?;
    let policy: SandboxPolicy = serde_json::from_str(&json.to_string_lossy())
        .map_err(|e| SandboxError::Setup(format!("the policy is not valid: {e}")))?;
    if args.next().as_deref() != Some("--".as_ref()) {
        return Err(usage());
    }
    let program = PathBuf::from(args.next().ok_or_else(usage)?);
    let rest: Vec<OsString> = args.collect();
    let program = locate(&program, &policy)?;
    let mut executable = executables(&program);
    executable.extend(policy.executable.iter().cloned());
    if policy.subprocesses {
        // Programs it starts need the same: allow executing the system's programs and
        // libraries, and what the policy lets it read.
        executable.extend(
            fleet_core::sandbox::SYSTEM_READABLE
                .iter()
                .filter(|p| {
                    ["/usr", "/bin", "/sbin", "/lib"]
                        .iter()
                        .any(|d| p.starts_with(d))
                })
                .map(PathBuf::from),
        );
        executable.extend(policy.readable.iter().cloned());
    }

    rustix::process::setsid()
        .map_err(|e| SandboxError::Setup(format!("cannot start a new session: {e}")))?;
    drop_privileges()?;
    let enforcement = crate::landlock::apply(&policy, &executable)?;
    // Only a fully enforced ruleset (ABI 9 and later) confines pathname UNIX sockets; short
    // of that the worker gets no `socket(AF_UNIX)` at all.
    crate::seccomp::apply(&policy, enforcement == crate::Enforcement::Full)?;
    let error = std::process::Command::new(&program)
        .args(rest)
        .env_clear()
        .envs(policy.env.iter().map(|(k, v)| (k, v)))
        .exec();
    Err(SandboxError::Setup(format!(
        "cannot execute {}: {error}",
        program.display()
    )))
}

/// The program's path: as given when it has a `/`, else found on the policy's `PATH`.
fn locate(program: &Path, policy: &SandboxPolicy) -> Result<PathBuf, SandboxError> {
    if program.components().count() > 1 {
        return Ok(program.to_path_buf());
    }
    let path = policy
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
    path.split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            SandboxError::Setup(format!(
                "{} is not on the worker's PATH ({path})",
                program.display()
            ))
        })
}

/// The program, and what the kernel also executes to run it: the interpreter of a `#!`
/// script and the dynamic loader of an ELF file (following both).
fn executables(program: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut next = Some(program.to_path_buf());
    while let Some(path) = next.take() {
        if out.contains(&path) || out.len() > 4 {
            break;
        }
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        next = interpreter(&real);
        out.push(path);
        if !out.contains(&real) {
            out.push(real);
        }
    }
    out
}

fn interpreter(path: &Path) -> Option<PathBuf> {
    let head = read_head(path)?;
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|b| *b == b'\n').next()?;
        let text = String::from_utf8_lossy(line);
        return text.split_whitespace().next().map(PathBuf::from);
    }
    elf_interpreter(path, &head)
}

fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    head.truncate(n);
    Some(head)
}

/// PT_INTERP of a 64-bit little-endian ELF file.
fn elf_interpreter(path: &Path, head: &[u8]) -> Option<PathBuf> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(head, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(head, 0x36)?);
    let phnum = usize::from(u16_at(head, 0x38)?);
    for i in 0..phnum.min(64) {
        let at = phoff + i * phentsize;
        let kind = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        if kind == 3 {
            let offset = u64_at(head, at + 8)?;
            let size = u64_at(head, at + 32)?;
            let bytes = read_range(path, offset, size)?;
            let text = bytes.split(|b| *b == 0).next()?;
            return Some(PathBuf::from(String::from_utf8_lossy(text).into_owned()));
        }
    }
    None
}

fn read_range(path: &Path, offset: u64, size: u64) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut out = vec![0u8; usize::try_from(size.min(4096)).ok()?];
    file.read_exact(&mut out).ok()?;
    Some(out)
}

/// Drops every capability; as root, first becomes [`UNPRIVILEGED_ID`].
fn drop_privileges() -> Result<(), SandboxError> {
    use caps::CapSet;
    let fail =
        |what: &str, e: &dyn std::fmt::Display| SandboxError::Setup(format!("cannot {what}: {e}"));
    if rustix::process::geteuid().is_root() {
        for cap in caps::all() {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| fail("drop the capability bounding set", &e))?;
        }
        let id = UNPRIVILEGED_ID;
        let gid = rustix::process::Gid::from_raw(id);
        let uid = rustix::process::Uid::from_raw(id);
        rustix::thread::set_thread_groups(&[gid])
            .map_err(|e| fail("drop supplementary groups", &e))?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)
            .map_err(|e| fail("switch to the unprivileged group", &e))?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)
            .map_err(|e| fail("switch to the unprivileged user", &e))?;
    }
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
    ] {
        caps::clear(None, set).map_err(|e| fail("clear capabilities", &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_follow_scripts_and_the_dynamic_loader() {
        let sh = executables(Path::new("/bin/sh"));
        assert!(
            sh.iter().any(|p| p.to_string_lossy().contains("ld-linux")),
            "{sh:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let found = executables(&script);
        assert_eq!(found[0], script);
        assert!(found.contains(&PathBuf::from("/bin/sh")), "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.to_string_lossy().contains("ld-linux"))
        );
    }
}
