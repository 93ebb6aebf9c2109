//! Turns an SSE response body into a stream of normalized events, through a provider's pure
//! frame decoder. Cancellation, idle timeouts and dropped connections are handled here once.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use fleet_core::provider::{CancelToken, EventStream, ProviderError, StreamEvent};
use futures_util::{Stream, StreamExt};

use crate::transport::http::describe_reqwest;
use crate::transport::sse::{SseDecoder, SseFrame};

/// A provider's decoder of SSE frames into normalized events: pure, no I/O.
pub(crate) trait FrameDecoder: Send + 'static {
    /// Decodes one frame, pushing the events it completes.
    fn frame(&mut self, frame: &SseFrame, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError>;

    /// Whether the answer is complete (a later end of the body is normal).
    fn is_done(&self) -> bool;

    /// The body ended cleanly: pushes what that completes and says whether the answer is
    /// whole. Formats without an explicit end marker finish here.
    fn at_eof(&mut self, _out: &mut Vec<StreamEvent>) -> bool {
        self.is_done()
    }
}

/// Runs `bytes` through the SSE decoder and `decoder`, collecting events up to the first error
/// (for fixtures, fuzzing and benchmarks).
pub(crate) fn decode_bytes<D: FrameDecoder>(
    provider: &str,
    decoder: &mut D,
    bytes: &[u8],
) -> Result<Vec<StreamEvent>, ProviderError> {
    let mut sse = SseDecoder::default();
    sse.push(bytes);
    let mut out = Vec::new();
    while let Some(frame) = sse.next_frame().map_err(|e| decode_error(provider, &e))? {
        decoder.frame(&frame, &mut out)?;
        if decoder.is_done() {
            return Ok(out);
        }
    }
    if decoder.at_eof(&mut out) {
        Ok(out)
    } else {
        Err(ProviderError::Transport {
            provider: provider.into(),
            message: "the stream ended before the answer was complete".into(),
        })
    }
}

/// A tool call's accumulated JSON arguments, parsed (empty means `{}`, as every provider sends
/// for a tool without parameters).
pub(crate) fn parse_arguments(
    provider: &str,
    name: &str,
    id: &str,
    text: &str,
) -> Result<serde_json::Value, ProviderError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(text).map_err(|e| {
        decode_error(
            provider,
            &format!("arguments of tool call {name} ({id}) are not JSON: {e}"),
        )
    })
}

/// A successful answer whose body held no event-stream frame: a JSON document (an error
/// object, or a non-streaming answer), or something else entirely (an HTML page from a proxy).
fn not_an_event_stream(provider: &str, head: &[u8]) -> ProviderError {
    let text = String::from_utf8_lossy(head);
    let shown: String = text.trim().chars().take(200).collect();
    let message = if let (_, Some(error)) = crate::transport::http::error_body(head) {
        format!("the answer is a JSON error, not an event stream: {error}")
    } else if shown.starts_with('{') || shown.starts_with('[') {
        format!(
            "the answer is JSON, not an event stream (was the request sent without `stream: true`, or to another server?): {shown}"
        )
    } else {
        format!(
            "the answer is neither an event stream nor JSON (is the base URL a proxy or another server?); it began: {shown}"
        )
    };
    decode_error(provider, &message)
}

pub(crate) fn decode_error(provider: &str, e: &dyn std::fmt::Display) -> ProviderError {
    ProviderError::Decode {
        provider: provider.into(),
        message: e.to_string(),
    }
}

struct State<B, D> {
    provider: String,
    body: B,
    sse: SseDecoder,
    decoder: D,
    queue: VecDeque<Result<StreamEvent, ProviderError>>,
    scratch: Vec<StreamEvent>,
    cancel: CancelToken,
    idle: Duration,
    finished: bool,
    /// Whether any event-stream frame arrived.
    framed: bool,
    /// The body's first bytes, to say what came instead of an event stream.
    head: Vec<u8>,
}

/// How much of a body's start is kept to describe it.
const HEAD: usize = 300;

/// The event stream of a response body.
pub(crate) fn sse_events<D: FrameDecoder>(
    provider: &str,
    response: reqwest::Response,
    decoder: D,
    cancel: CancelToken,
    idle: Duration,
) -> EventStream {
    let body = response.bytes_stream().map(|r| r.map_err(describe_reqwest));
    events_of_body(provider, body, decoder, cancel, idle)
}

/// The event stream of any body of byte chunks.
pub(crate) fn events_of_body<B, D>(
    provider: &str,
    body: B,
    decoder: D,
    cancel: CancelToken,
    idle: Duration,
) -> EventStream
where
    B: Stream<Item = Result<Bytes, String>> + Send + Unpin + 'static,
    D: FrameDecoder,
{
    let state = State {
        provider: provider.to_owned(),
        body,
        sse: SseDecoder::default(),
        decoder,
        queue: VecDeque::new(),
        scratch: Vec::new(),
        cancel,
        idle,
        finished: false,
        framed: false,
        head: Vec::new(),
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(item) = s.queue.pop_front() {
                return Some((item, s));
            }
            if s.finished {
                return None;
            }
            let chunk = tokio::select! {
                biased;
                () = s.cancel.cancelled() => Err(ProviderError::Cancelled),
                next = tokio::time::timeout(s.idle, s.body.next()) => match next {
                    Err(_) => Err(ProviderError::TimedOut(s.idle)),
                    Ok(Some(Ok(bytes))) => Ok(Some(bytes)),
                    Ok(Some(Err(message))) => Err(ProviderError::Transport {
                        provider: s.provider.clone(),
                        message,
                    }),
                    Ok(None) => Ok(None),
                },
            };
            match chunk {
                Ok(Some(bytes)) => s.feed(&bytes),
                Ok(None) => {
                    s.finished = true;
                    let whole = s.decoder.at_eof(&mut s.scratch);
                    s.queue.extend(s.scratch.drain(..).map(Ok));
                    if !whole {
                        let error = if s.framed || s.head.iter().all(u8::is_ascii_whitespace) {
                            ProviderError::Transport {
                                provider: s.provider.clone(),
                                message: "the connection closed before the answer was complete"
                                    .into(),
                            }
                        } else {
                            not_an_event_stream(&s.provider, &s.head)
                        };
                        s.queue.push_back(Err(error));
                    }
                }
                Err(e) => {
                    s.finished = true;
                    s.queue.push_back(Err(e));
                }
            }
        }
    }))
}

impl<B, D: FrameDecoder> State<B, D> {
    fn feed(&mut self, bytes: &[u8]) {
        if self.head.len() < HEAD {
            let take = bytes.len().min(HEAD - self.head.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.sse.push(bytes);
        loop {
            let frame = match self.sse.next_frame() {
                Ok(Some(frame)) => {
                    self.framed = true;
                    frame
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail(decode_error(&self.provider, &e));
                    return;
                }
            };
            let result = self.decoder.frame(&frame, &mut self.scratch);
            self.queue.extend(self.scratch.drain(..).map(Ok));
            if let Err(e) = result {
                self.fail(e);
                return;
            }
            if self.decoder.is_done() {
                self.finished = true;
                return;
            }
        }
    }

    fn fail(&mut self, e: ProviderError) {
        self.queue.push_back(Err(e));
        self.finished = true;
    }
}
