//! An incremental Server-Sent Events decoder (the WHATWG event-stream format).
//!
//! Bytes arrive in chunks split anywhere (inside a UTF-8 character, between a CR and its LF);
//! frames come out whole. Lines end in LF, CRLF or CR; `:` lines are comments; `data` lines
//! join with `\n`; a blank line dispatches. A line longer than the limit is an error rather
//! than unbounded memory.

use std::fmt;

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseFrame {
    /// The `event:` field (empty when none was given, which means `message`).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The stream is not valid SSE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line was not UTF-8.
    #[error("line {line}: not UTF-8")]
    NotUtf8 {
        /// The line number (from 1).
        line: u64,
    },
    /// A line or frame grew past the limit.
    #[error("line {line}: event larger than {limit} bytes")]
    TooLarge {
        /// The line number (from 1).
        line: u64,
        /// The limit.
        limit: usize,
    },
}

/// Decodes SSE incrementally. Feed bytes with [`SseDecoder::push`], take frames with
/// [`SseDecoder::next_frame`].
pub struct SseDecoder {
    buf: Vec<u8>,
    start: usize,
    /// A CR ended the previous line; an LF right after it belongs to that line ending.
    after_cr: bool,
    bom_checked: bool,
    event: String,
    data: String,
    has_data: bool,
    line: u64,
    limit: usize,
}

impl fmt::Debug for SseDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseDecoder")
            .field("buffered", &(self.buf.len() - self.start))
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(16 * 1024 * 1024)
    }
}

impl SseDecoder {
    /// A decoder that refuses events larger than `limit` bytes.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::with_capacity(8 * 1024),
            start: 0,
            after_cr: false,
            bom_checked: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            line: 0,
            limit,
        }
    }

    /// Adds bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, if the bytes so far hold one.
    ///
    /// # Errors
    /// [`SseError`]; the decoder then skips the bad line and can go on.
    pub fn next_frame(&mut self) -> Result<Option<SseFrame>, SseError> {
        loop {
            if !self.bom_checked {
                let rest = &self.buf[self.start..];
                if rest.len() < 3 && b"\xEF\xBB\xBF".starts_with(rest) {
                    return Ok(None);
                }
                if rest.starts_with(b"\xEF\xBB\xBF") {
                    self.start += 3;
                }
                self.bom_checked = true;
            }
            if self.after_cr && self.start < self.buf.len() {
                if self.buf[self.start] == b'\n' {
                    self.start += 1;
                }
                self.after_cr = false;
            }
            let rest = &self.buf[self.start..];
            let Some(end) = memchr::memchr2(b'\n', b'\r', rest) else {
                if rest.len() > self.limit {
                    self.line += 1;
                    self.start = self.buf.len();
                    self.reset_frame();
                    return Err(SseError::TooLarge {
                        line: self.line,
                        limit: self.limit,
                    });
                }
                return Ok(None);
            };
            self.after_cr = rest[end] == b'\r';
            let line_start = self.start;
            self.start += end + 1;
            self.line += 1;
            if end == 0 {
                if let Some(frame) = self.dispatch() {
                    return Ok(Some(frame));
                }
                continue;
            }
            let line = &self.buf[line_start..line_start + end];
            if line[0] == b':' {
                continue;
            }
            let line = match std::str::from_utf8(line) {
                Ok(line) => line,
                Err(_) => {
                    self.reset_frame();
                    return Err(SseError::NotUtf8 { line: self.line });
                }
            };
            let (field, value) = match line.find(':') {
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(' ').unwrap_or(value))
                }
                None => (line, ""),
            };
            match field {
                "data" => {
                    if self.data.len() + value.len() > self.limit {
                        self.reset_frame();
                        return Err(SseError::TooLarge {
                            line: self.line,
                            limit: self.limit,
                        });
                    }
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                "event" => {
                    self.event.clear();
                    self.event.push_str(value);
                }
                // `id` and `retry` matter to browsers reconnecting; a model stream is never
                // resumed, and unknown fields are ignored by the format's rules.
                _ => {}
            }
        }
    }

    /// Ends the input: a frame without its closing blank line is dropped, as the format says.
    /// Returns whether bytes of an unfinished frame were pending.
    pub fn finish(&mut self) -> bool {
        let pending = self.has_data || self.start < self.buf.len();
        self.reset_frame();
        self.buf.clear();
        self.start = 0;
        pending
    }

    fn dispatch(&mut self) -> Option<SseFrame> {
        if !self.has_data {
            self.event.clear();
            return None;
        }
        self.has_data = false;
        Some(SseFrame {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data),
        })
    }

    fn reset_frame(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

/// Decodes a whole byte string (for tests, fuzzing and benchmarks).
///
/// # Errors
/// The first [`SseError`].
pub fn decode_all(bytes: &[u8]) -> Result<Vec<SseFrame>, SseError> {
    let mut decoder = SseDecoder::default();
    decoder.push(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.next_frame()? {
        frames.push(frame);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SAMPLE: &str = "event: message_start\ndata: {\"a\":1}\n\n: keepalive\n\nevent: ping\r\ndata: {}\r\n\r\ndata: line one\ndata:line two\nid: 7\nretry: 10\n\nevent: x\rdata: cr\r\r";

    fn frame(event: &str, data: &str) -> SseFrame {
        SseFrame {
            event: event.into(),
            data: data.into(),
        }
    }

    fn expected() -> Vec<SseFrame> {
        vec![
            frame("message_start", "{\"a\":1}"),
            frame("ping", "{}"),
            frame("", "line one\nline two"),
            frame("x", "cr"),
        ]
    }

    #[test]
    fn decodes_every_line_ending_comments_and_multiline_data() {
        assert_eq!(decode_all(SAMPLE.as_bytes()), Ok(expected()));
    }

    #[test]
    fn a_leading_bom_is_skipped_and_events_without_data_are_not_dispatched() {
        let text = "\u{feff}event: lonely\n\ndata: x\n\n";
        assert_eq!(decode_all(text.as_bytes()), Ok(vec![frame("", "x")]));
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_line_and_decoding_goes_on() {
        let mut d = SseDecoder::default();
        d.push(b"data: ok\n\ndata: \xff\xfe\n\ndata: after\n\n");
        assert_eq!(d.next_frame(), Ok(Some(frame("", "ok"))));
        assert_eq!(d.next_frame(), Err(SseError::NotUtf8 { line: 3 }));
        assert_eq!(d.next_frame(), Ok(Some(frame("", "after"))));
    }

    #[test]
    fn oversized_lines_are_refused() {
        let mut d = SseDecoder::new(16);
        d.push(&[b'a'; 40]);
        assert!(matches!(d.next_frame(), Err(SseError::TooLarge { .. })));
        d.push(b"\ndata: fine\n\n");
        // The rest of the long line is dropped with it.
        assert_eq!(d.next_frame(), Ok(Some(frame("", "fine"))));
    }

    #[test]
    fn an_unfinished_frame_is_reported_at_the_end() {
        let mut d = SseDecoder::default();
        d.push(b"data: half");
        assert_eq!(d.next_frame(), Ok(None));
        assert!(d.finish());
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames(cuts in proptest::collection::vec(0usize..SAMPLE.len(), 0..12)) {
            let bytes = SAMPLE.as_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut d = SseDecoder::default();
            let mut frames = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                d.push(&bytes[at..cut.max(at)]);
                at = cut.max(at);
                while let Some(f) = d.next_frame().map_err(|e| TestCaseError::fail(e.to_string()))? {
                    frames.push(f);
                }
            }
            prop_assert_eq!(frames, expected());
        }
    }
}
