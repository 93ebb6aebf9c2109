//! No byte string panics the openai_chat stream decoder: it gives events or a clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fleet_providers::model::decode::openai_chat(data);
});
