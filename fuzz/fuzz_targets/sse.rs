//! No byte string panics the SSE decoder, and however the bytes are split into chunks the
//! frames that come out are the same.
#![no_main]

use fleet_providers::transport::sse::{decode_all, SseDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = decode_all(data);
    // The first byte picks a chunk size for the second pass.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut decoder = SseDecoder::default();
    let mut frames = Vec::new();
    let mut error = None;
    for chunk in data.chunks(step) {
        decoder.push(chunk);
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    error.get_or_insert(e);
                    break;
                }
            }
        }
        if error.is_some() {
            break;
        }
    }
    if let (Ok(whole), None) = (&whole, &error) {
        assert_eq!(whole, &frames);
    }
});
