//! Sandbox benchmarks: how long a worker takes from spawn to ready, sandboxed and plain.
//!
//! "Ready" is the worker's first line on stdout; the worker is `/bin/echo` (a dynamically
//! linked C program), so the figure is the cost of process start-up plus, when sandboxed, the
//! helper (new session, privilege drop, Landlock ruleset, two seccomp filters, a second exec).
//! Expect ≈ 2 ms sandboxed vs ≈ 1 ms plain on the 2-core reference machine.
//! Run: `cargo bench -p fleet-benches --bench sandbox`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use fleet_core::sandbox::SandboxPolicy;
use fleet_sandbox::Sandbox;

fn until_ready(mut command: Command) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child.wait().unwrap();
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("sandbox/spawn_to_ready");
    group.bench_function("plain", |b| {
        b.iter(|| {
            let mut command = Command::new("/bin/echo");
            command.arg("ready");
            until_ready(command);
        });
    });
    match fleet_sandbox::landlock_available() {
        Ok(()) => {
            let sandbox =
                Sandbox::new(env!("CARGO_BIN_EXE_fleet-bench-sandbox-helper"), Vec::new());
            let policy = SandboxPolicy::default();
            group.bench_function("sandboxed", |b| {
                b.iter(|| until_ready(sandbox.command(&policy, "/bin/echo", ["ready"]).unwrap()));
            });
        }
        Err(e) => eprintln!("sandboxed spawn not measured: {e}"),
    }
    group.finish();
}

criterion_group!(sandbox, benches);
criterion_main!(sandbox);
