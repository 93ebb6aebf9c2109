//! The named baseline system-call allowlists.

use fleet_core::spec::SyscallProfile;

/// `default`: memory, file I/O, the event loop, time, signals to oneself, threads and local
/// socket pairs; what ordinary workers and the Python and Node interpreters need. `clone`,
/// `socket` and `socketpair` are here but limited by argument in the filter (threads only;
/// see [`crate::seccomp`]); `clone3` is answered ENOSYS so that libc falls back to `clone`.
const DEFAULT: &[&str] = &[
    // Memory.
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "msync",
    "mincore",
    "membarrier",
    "mlock",
    "munlock",
    // Not `memfd_create`: a memory file is executable whatever Landlock says, so it would let
    // a worker run any program.
    // Files.
    "read",
    "write",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "open",
    "openat",
    "openat2",
    "close",
    "close_range",
    "creat",
    "lseek",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "unlink",
    "unlinkat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "chmod",
    "fchmod",
    "fchmodat",
    "truncate",
    "ftruncate",
    "fsync",
    "fdatasync",
    "fallocate",
    "sync_file_range",
    "utimensat",
    "utime",
    "utimes",
    "futimesat",
    "dup",
    "dup2",
    "dup3",
    "fcntl",
    "flock",
    "ioctl",
    "pipe",
    "pipe2",
    "sendfile",
    "splice",
    "tee",
    "copy_file_range",
    "umask",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "fadvise64",
    "readahead",
    // Event loop.
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd",
    "eventfd2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "signalfd",
    "signalfd4",
    "inotify_init",
    "inotify_init1",
    "inotify_add_watch",
    "inotify_rm_watch",
    // Time.
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "gettimeofday",
    "time",
    "nanosleep",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    // Signals (to itself: `kill` of other processes is not here).
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigpending",
    "rt_sigtimedwait",
    "sigaltstack",
    "tgkill",
    "tkill",
    "pause",
    // The process and its threads.
    "exit",
    "exit_group",
    "getpid",
    "getppid",
    "gettid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getpgrp",
    "getpgid",
    "getsid",
    "setpgid",
    "setsid",
    "set_tid_address",
    "set_robust_list",
    "get_robust_list",
    "futex",
    "futex_waitv",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "getpriority",
    "prlimit64",
    "getrlimit",
    "setrlimit",
    "getrusage",
    "times",
    "uname",
    "sysinfo",
    "getcpu",
    "arch_prctl",
    "prctl",
    "rseq",
    "wait4",
    "waitid",
    "execve",
    "execveat",
    "clone",
    "clone3",
    "getrandom",
    "capget",
    "seccomp",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    // Sockets: `socket` is limited by its domain in the filter (AF_INET and AF_INET6 only
    // with the network; AF_UNIX only where Landlock confines the paths a UNIX socket may
    // reach), `socketpair` to stream pairs.
    "socket",
    "socketpair",
    "bind",
    "listen",
    "accept",
    "accept4",
    "connect",
    "getsockname",
    "getpeername",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "sendmmsg",
    "recvmmsg",
    "shutdown",
    "setsockopt",
    "getsockopt",
];

/// Calls `subprocesses: true` adds.
pub(crate) const SUBPROCESS: &[&str] =
    &["fork", "vfork", "kill", "pidfd_open", "pidfd_send_signal"];

/// The names of `profile`.
#[must_use]
pub fn baseline(profile: SyscallProfile) -> &'static [&'static str] {
    match profile {
        SyscallProfile::Default => DEFAULT,
        // `SyscallProfile` is non-exhaustive; a profile this crate does not know gets the
        // default one.
        _ => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use fleet_core::spec::check_syscall_name;

    use super::*;

    #[test]
    fn every_name_is_a_real_call_and_the_baseline_is_the_documented_size() {
        let names = baseline(SyscallProfile::Default);
        for name in names.iter().chain(SUBPROCESS) {
            let known = fleet_core::spec::SYSCALLS_X86_64
                .iter()
                .any(|(n, _)| n == name);
            assert!(known, "{name} is not an x86_64 system call");
        }
        // Refused names are only ever added by the filter's own rules, never by a spec.
        for name in ["clone", "clone3", "socket"] {
            assert!(check_syscall_name(name).is_err());
        }
        assert!((150..=210).contains(&names.len()), "{}", names.len());
    }
}
