//! No line panics the JSON-RPC decoder; a line it accepts encodes back to a line that decodes
//! to the same message (what a worker sends is what the supervisor reads, and back).
#![no_main]

use fleet_core::ipc::decode_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_line(data) {
        let line = message.to_line();
        let again = decode_line(line.trim_end().as_bytes())
            .unwrap_or_else(|(_, e)| panic!("{line:?} does not decode again: {}", e.message));
        assert_eq!(message, again);
    }
});
