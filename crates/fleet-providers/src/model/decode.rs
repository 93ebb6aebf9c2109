//! Decoding whole recorded stream bodies into normalized events, without a connection: for
//! inspecting captured traffic, fixtures, fuzzing and benchmarks. Live requests decode the same
//! way, chunk by chunk.

use fleet_core::provider::{ProviderError, StreamEvent};

use crate::transport::stream::decode_bytes;

/// An Anthropic Messages SSE body.
///
/// # Errors
/// The first error the stream holds or causes (an `error` event, malformed JSON, a body that
/// ends before `message_stop`).
pub fn anthropic(body: &[u8]) -> Result<Vec<StreamEvent>, ProviderError> {
    decode_bytes(
        "anthropic",
        &mut crate::model::anthropic::Decoder::default(),
        body,
    )
}

/// An OpenAI Chat Completions SSE body.
///
/// # Errors
/// As [`anthropic`].
pub fn openai_chat(body: &[u8]) -> Result<Vec<StreamEvent>, ProviderError> {
    decode_bytes(
        "openai",
        &mut crate::model::openai::chat::Decoder::new("openai"),
        body,
    )
}

/// An OpenAI Responses SSE body.
///
/// # Errors
/// As [`anthropic`].
pub fn openai_responses(body: &[u8]) -> Result<Vec<StreamEvent>, ProviderError> {
    decode_bytes(
        "openai",
        &mut crate::model::openai::responses::Decoder::new("openai"),
        body,
    )
}
