//! `fleet-sandbox-probe`: tries what a sandbox should refuse and prints one JSON line per try:
//! `{"probe": NAME, "allowed": BOOL, "detail": TEXT}`. Run it under a policy to see what that
//! policy allows (fleet's tests assert each outcome).
//!
//! Arguments: `--writable DIR --outside DIR --hidden FILE --unix SOCKET --exec PROGRAM`.
//! `exec` comes last: when allowed, the program (an `echo`) prints the line itself.

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
        "thread",
        std::thread::Builder::new()
            .spawn(|| 7)
            .map_err(|e| e.to_string())
            .and_then(|h| h.join().map_err(|_| "panicked".to_owned()))
            .map(|n| format!("joined {n}")),
    );
    report("fork", fork());
    report("posix_spawn", posix_spawn());
    report("ptrace", ptrace());
    let exec = arg(&args, "--exec");
    let line = r#"{"probe":"exec","allowed":true,"detail":"the other program ran"}"#;
    let error = std::process::Command::new(&exec).arg(line).exec();
    report("exec", Err(error.to_string()));
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
