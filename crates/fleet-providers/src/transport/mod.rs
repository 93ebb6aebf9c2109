//! Getting bytes to and from a provider: the pooled HTTP client with its retries, the
//! incremental Server-Sent Events decoder, and the stream that turns a response body into
//! events through a provider's frame decoder.

pub mod http;
pub mod sse;
pub(crate) mod stream;
