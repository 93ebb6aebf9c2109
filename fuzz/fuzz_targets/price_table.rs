//! No input panics the price-table loader (the user's override file is untrusted text).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fleet_core::pricing::PriceTable::from_yaml(Path::new("prices.yaml"), text);
    }
});
