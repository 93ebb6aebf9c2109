//! Whole-process benchmark: `fleet run` of a trivial workflow, from exec to exit, on the
//! offline provider with the SQLite store (target: ≤ 50 ms, excluding the build).
//!
//! ```text
//! cargo bench -p fleet-cli --bench cold_start
//! ```

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

const TRIVIAL: &str = "export const meta = { name: 'trivial', description: 'one agent call' };\n\
return await agent('say hi', { label: 'hi' });\n";

/// A project with a trivial workflow, an empty store already created (as after the first run).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleet.toml"), "").unwrap();
    std::fs::create_dir_all(dir.path().join(".fleet/workflows")).unwrap();
    std::fs::write(dir.path().join(".fleet/workflows/trivial.js"), TRIVIAL).unwrap();
    assert!(run(dir.path()).is_ok());
    dir
}

fn run(dir: &Path) -> Result<Duration, String> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["run", "trivial"])
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .output()
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(took)
}

fn cold_start(c: &mut Criterion) {
    let dir = project();
    let mut group = c.benchmark_group("cli");
    group.sample_size(30);
    group.bench_function("fleet run trivial (exec to exit)", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run(dir.path()).unwrap()).sum());
    });
    group.finish();
}

criterion_group!(benches, cold_start);
criterion_main!(benches);
