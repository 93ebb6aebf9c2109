//! `fleet-sandbox-probe`: tries what a sandbox should refuse and prints one JSON line per try:
//! `{"probe": NAME, "allowed": BOOL, "detail": TEXT}`. Run it under a policy to see what that
//! policy allows (fleet's tests assert each outcome).
//!
//! Arguments: `--writable DIR --outside DIR --hidden FILE --unix SOCKET --unix-dgram SOCKET
//! --other-pid PID --exec PROGRAM [--exec-from-memory]`. `exec` comes last: when allowed, the
//! program (an `echo`) prints the line itself. `--exec-from-memory` is a run of its own with
//! one try: copy that program into a memory file (`memfd_create`) and execute the copy.

// fork, posix_spawn and ptrace have no safe wrapper; each call below is the plain libc call
// with valid arguments, and the child of fork only calls `_exit`.
#![allow(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::ffi::CString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

fn report(probe: &str, outcome: Result<String, String>) {
    let (allowed, detail) = match outcome {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    let line = serde_json::json!({"probe": probe, "allowed": allowed, "detail": detail});
    println!("{line}");
    let _ = std::io::stdout().flush();
}

fn io<T>(r: std::io::Result<T>) -> Result<String, String> {
    r.map(|_| "ok".to_owned()).map_err(|e| e.to_string())
}

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn arg(args: &[String], name: &str) -> PathBuf {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--exec-from-memory") {
        // A run of its own: a traced probe (`ptrace` gets through in learn mode) would stop
        // at the exec.
        let line =
            r#"{"probe":"exec_from_memory","allowed":true,"detail":"the copy in memory ran"}"#;
        report(
            "exec_from_memory",
            Err(exec_from_memory(&arg(&args, "--exec"), line)),
        );
        return;
    }
    let writable = arg(&args, "--writable");
    let outside = arg(&args, "--outside");

    // SAFETY: getuid has no arguments and cannot fail.
    let uid = unsafe { libc::getuid() };
    report(
        "privileged",
        if uid == 0 {
            Ok("uid 0".into())
        } else {
            Err(format!("uid {uid}"))
        },
    );
    report(
        "write_inside",
        io(std::fs::write(writable.join("probe.txt"), b"x")),
    );
    report(
        "write_outside",
        io(std::fs::write(outside.join("probe.txt"), b"x")),
    );
    report("read_hidden", io(std::fs::read(arg(&args, "--hidden"))));
    report("tcp_socket", io(std::net::TcpListener::bind("127.0.0.1:0")));
    report("udp_socket", io(std::net::UdpSocket::bind("127.0.0.1:0")));
    let inside = writable.join("probe.sock");
    let _ = std::fs::remove_file(&inside);
    report(
        "unix_socket_inside",
        io(std::os::unix::net::UnixListener::bind(&inside)
            .and_then(|_l| std::os::unix::net::UnixStream::connect(&inside))),
    );
    report(
        "unix_socket_outside",
        io(std::os::unix::net::UnixStream::connect(arg(
            &args, "--unix",
        ))),
    );
    report(
        "unix_dgram_outside",
        unix_dgram_outside(&arg(&args, "--unix-dgram")),
    );
    report(
        "proc_self",
        io(std::fs::read_to_string("/proc/self/status")),
    );
    let other = arg(&args, "--other-pid");
    report(
        "proc_other",
        io(std::fs::read(
            PathBuf::from("/proc").join(&other).join("cmdline"),
        )),
    );
    report(
        "proc_list",
        io(std::fs::read_dir("/proc").map(|d| d.count())),
    );
    report("proc_1_environ", io(std::fs::read("/proc/1/environ")));
    report("read_etc_shadow", io(std::fs::read("/etc/shadow")));
    report("mount", mount(&writable));
    // SAFETY: each call below takes only integers.
    report(
        "unshare",
        call(|| unsafe { libc::unshare(libc::CLONE_NEWUSER) }),
    );
    report(
        "keyctl",
        call(|| unsafe {
            // KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, without creating it.
            libc::syscall(libc::SYS_keyctl, 0, -3, 0) as libc::c_int
        }),
    );
    report("setuid_root", call(|| unsafe { libc::setuid(0) }));
    let supervisor: libc::pid_t = other.to_string_lossy().parse().unwrap_or(1);
    report(
        "signal_outside",
        call(|| unsafe { libc::kill(supervisor, 0) }),
    );
    report(
        "thread",
        std::thread::Builder::new()
            .spawn(|| 7)
            .map_err(|e| e.to_string())
            .and_then(|h| h.join().map_err(|_| "panicked".to_owned()))
            .map(|n| format!("joined {n}")),
    );
    report("fork", fork());
    report("vfork", vfork());
    report("clone_vfork", clone_vfork());
    report("posix_spawn", posix_spawn());
    report("ptrace", ptrace());
    let exec = arg(&args, "--exec");
    let line = r#"{"probe":"exec","allowed":true,"detail":"the other program ran"}"#;
    let error = std::process::Command::new(&exec).arg(line).exec();
    report("exec", Err(error.to_string()));
}

/// Sends a datagram to a socket outside, from an unnamed socket pair (which needs no
/// `socket` call and no address of its own).
fn unix_dgram_outside(target: &std::path::Path) -> Result<String, String> {
    let (a, _b) = std::os::unix::net::UnixDatagram::pair().map_err(|e| e.to_string())?;
    a.send_to(b"probe", target)
        .map(|n| format!("sent {n} bytes"))
        .map_err(|e| e.to_string())
}

/// Copies `program` into a memory file and executes it; returns only on failure.
fn exec_from_memory(program: &std::path::Path, line: &str) -> String {
    let name = CString::new("probe").unwrap_or_default();
    // SAFETY: a valid NUL-terminated name and no flags.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd == -1 {
        return format!("memfd_create: {}", errno());
    }
    let bytes = match std::fs::read(program) {
        Ok(b) => b,
        Err(e) => return format!("cannot read {}: {e}", program.display()),
    };
    // SAFETY: `fd` is the memory file just made; the slice is valid for its length.
    let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if written < 0 || written as usize != bytes.len() {
        return format!("write: {}", errno());
    }
    let arg0 = CString::new("echo").unwrap_or_default();
    let arg1 = CString::new(line).unwrap_or_default();
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let empty = CString::default();
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, NULL-terminated argv and envp.
    unsafe {
        libc::execveat(
            fd,
            empty.as_ptr(),
            argv.as_ptr().cast(),
            envp.as_ptr().cast(),
            libc::AT_EMPTY_PATH,
        )
    };
    format!("execveat: {}", errno())
}

fn vfork() -> Result<String, String> {
    // SAFETY: the child only calls `_exit`, which is what vfork allows (the raw call: libc's
    // wrapper is deprecated for what a child that returns into Rust code may corrupt).
    let pid = unsafe { libc::syscall(libc::SYS_vfork) };
    match pid {
        -1 => Err(errno()),
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child with a valid out-pointer.
            unsafe { libc::waitpid(pid as libc::pid_t, &raw mut status, 0) };
            Ok(format!("child {pid}"))
        }
    }
}

/// `clone(CLONE_VM | CLONE_VFORK)`, as posix_spawn and Python's and Node's libraries start
/// children.
fn clone_vfork() -> Result<String, String> {
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: with CLONE_VFORK the parent waits while the child, on the same stack, only
    // calls `_exit`.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
    match pid {
        -1 => Err(errno()),
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child with a valid out-pointer.
            unsafe { libc::waitpid(pid as libc::pid_t, &raw mut status, 0) };
            Ok(format!("child {pid}"))
        }
    }
}

/// A libc call that returns -1 and sets errno on failure.
fn call(f: impl FnOnce() -> libc::c_int) -> Result<String, String> {
    if f() == -1 {
        Err(errno())
    } else {
        Ok("ok".into())
    }
}

fn mount(at: &std::path::Path) -> Result<String, String> {
    let target = CString::new(at.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let kind = CString::new("tmpfs").map_err(|e| e.to_string())?;
    // SAFETY: valid NUL-terminated strings and no data.
    call(|| unsafe {
        libc::mount(
            kind.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            0,
            std::ptr::null(),
        )
    })
}

fn fork() -> Result<String, String> {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(errno()),
        0 => unsafe { libc::_exit(0) },
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child with a valid out-pointer.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            Ok(format!("child {pid}"))
        }
    }
}

fn posix_spawn() -> Result<String, String> {
    let program = CString::new("/bin/true").map_err(|e| e.to_string())?;
    let argv = [program.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut pid = 0;
    // SAFETY: valid NUL-terminated program, NULL-terminated argv and envp, no attributes.
    let rc = unsafe {
        libc::posix_spawn(
            &raw mut pid,
            program.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            argv.as_ptr().cast(),
            envp.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc).to_string());
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid out-pointer.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    Ok(format!("child {pid}"))
}

fn ptrace() -> Result<String, String> {
    // SAFETY: PTRACE_TRACEME takes no pointers.
    let rc = unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) };
    if rc == -1 {
        Err(errno())
    } else {
        Ok("traced".into())
    }
}
