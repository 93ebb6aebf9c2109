//! Making a policy's writable paths writable by the workers, when the supervisor is root.
//!
//! A worker started by root runs as uid/gid [`UNPRIVILEGED_ID`] (`nobody`/`nogroup`), so the
//! directories its policy lets it write must be writable by that user. Rather than give the
//! files away, fleet keeps their owner and hands them to the workers' group: group
//! [`UNPRIVILEGED_ID`], group-writable, directories setgid so that what is created in them
//! stays in the group. Ordinary users need none of this: their workers run as themselves.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{SandboxPolicy, UNPRIVILEGED_ID};

/// What [`prepare_writable`] changed under one writable path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The writable path.
    pub path: std::path::PathBuf,
    /// How many files and directories under it were handed to the workers' group.
    pub changed: usize,
}

impl std::fmt::Display for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} files and directories made writable by the workers' group {UNPRIVILEGED_ID} \
             (owners kept; directories setgid)",
            self.path.display(),
            self.changed
        )
    }
}

/// When this process is root, makes every writable path of `policy` (which must exist)
/// writable by the workers' group, recursively, without following symbolic links; returns
/// what it changed (nothing when not root, or when everything already was).
///
/// # Errors
/// A path cannot be read or changed.
pub fn prepare_writable(policy: &SandboxPolicy) -> std::io::Result<Vec<Prepared>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(Vec::new());
    }
    let mut done = Vec::new();
    for path in &policy.writable {
        let mut changed = 0;
        hand_over(path, &mut changed)?;
        if changed > 0 {
            done.push(Prepared {
                path: path.clone(),
                changed,
            });
        }
    }
    Ok(done)
}

/// Why the workers cannot run their program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnrunnableProgram {
    /// There is no such file.
    #[error("the worker program {} does not exist", .0.display())]
    Missing(PathBuf),
    /// A directory above it, or the program itself, is closed to the workers' uid.
    #[error(
        "the worker program {} cannot be run by uid {UNPRIVILEGED_ID}, which workers run as \
         when fleet runs as root ({} is closed to other users): install it where every \
         user can run it (e.g. /usr/local/bin), or run fleet as an ordinary user",
        .program.display(),
        .closed.display()
    )]
    Closed {
        /// The program.
        program: PathBuf,
        /// The first path on the way to it that other users cannot enter or run.
        closed: PathBuf,
    },
}

/// When this process is root, whether the workers (uid [`UNPRIVILEGED_ID`]) can run
/// `program`: it and every directory above it must be open to other users.
///
/// # Errors
/// What stops them, with the fix.
pub fn runnable_by_workers(program: &Path) -> Result<(), UnrunnableProgram> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let mut closed = None;
    for (i, path) in program.ancestors().enumerate() {
        let Ok(meta) = std::fs::metadata(path) else {
            return Err(UnrunnableProgram::Missing(program.to_path_buf()));
        };
        let others = if i == 0 { 0o005 } else { 0o001 };
        if meta.uid() != UNPRIVILEGED_ID && meta.mode() & others != others {
            closed = Some(path.to_path_buf());
        }
    }
    match closed {
        None => Ok(()),
        Some(closed) => Err(UnrunnableProgram::Closed {
            program: program.to_path_buf(),
            closed,
        }),
    }
}

fn hand_over(path: &Path, changed: &mut usize) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let wanted = if meta.is_dir() {
        meta.mode() | 0o2070
    } else {
        meta.mode() | 0o060
    } & 0o7777;
    if meta.gid() != UNPRIVILEGED_ID {
        std::os::unix::fs::lchown(path, None, Some(UNPRIVILEGED_ID))?;
    }
    // chown clears setgid on some systems: set the mode after it.
    if meta.gid() != UNPRIVILEGED_ID || meta.mode() & 0o7777 != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        *changed += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            hand_over(&entry?.path(), changed)?;
        }
    }
    Ok(())
}
