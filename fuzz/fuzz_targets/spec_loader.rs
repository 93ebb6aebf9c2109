//! No input panics the agent spec loader: every byte string either loads or gives diagnostics
//! that name the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(problems) = fleet_core::spec::AgentSpec::from_yaml(Path::new("agents/fuzz.yaml"), text) {
            assert!(problems.iter().all(|d| d.file == Path::new("agents/fuzz.yaml")));
            assert!(problems.iter().next().is_some(), "an error has at least one diagnostic");
        }
    }
});
