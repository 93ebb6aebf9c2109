//! No source text panics the workflow script parser (its `meta` header and the body's scan),
//! and every error it gives points at a place inside the text.
#![no_main]

use fleet_workflow::Script;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(source) = std::str::from_utf8(data) {
        match Script::parse("fuzz.js", source) {
            Ok(script) => {
                // What the engine runs is the source with the header blanked: same lines.
                assert_eq!(script.body().lines().count(), source.lines().count());
            }
            Err(e) => {
                assert_eq!(e.origin, "fuzz.js");
                let lines = source.split('\n').count();
                assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
                assert!(e.column >= 1);
                assert!(!e.message.is_empty());
            }
        }
    }
});
