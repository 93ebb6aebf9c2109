//! A mock model server of the tests' fixtures (a Python script speaking the Anthropic Messages
//! API on a free loopback port), started for one test and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running mock; it logs each request it got as one JSON line.
pub(crate) struct MockModel {
    child: Child,
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    log: PathBuf,
}

impl MockModel {
    /// Starts `tests/fixtures/<script>`, its port file and request log in `dir`.
    pub(crate) fn start(script: &str, dir: &Path) -> Self {
        let name = Path::new(script)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model");
        let port_file = dir.join(format!("{name}.port"));
        let log = dir.join(format!("{name}.log"));
        let child = Command::new("python3")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures")
                    .join(script),
            )
            .arg(&port_file)
            .arg(&log)
            .spawn()
            .expect("python3 runs the mock model");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "the mock model did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Self { child, port, log }
    }

    /// The requests it was sent, one JSON object each, in order.
    pub(crate) fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
