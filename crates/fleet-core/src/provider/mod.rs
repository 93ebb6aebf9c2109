//! The model seam: a [`Provider`] takes a [`ModelRequest`] and streams normalized
//! [`StreamEvent`]s, whatever wire format it speaks.
//!
//! Adapters (Anthropic Messages, OpenAI Chat Completions and Responses, the offline and scripted
//! providers, the Claude Code and Codex CLIs) live in `fleet-providers`; this module holds only
//! the vocabulary they share, so that embedders can write their own.
//!
//! The vocabulary is in three files: `request` (what is asked), `response` (the stream's
//! events and the answer they make), `error` (how a request fails); the seam itself is here.
//!
//! Cancellation: dropping the stream stops the request (the connection is closed), and so does
//! cancelling the [`CancelToken`] given to [`Provider::stream`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;
pub use tokio_util::sync::CancellationToken as CancelToken;

pub use self::error::{ErrorKind, ProviderError};
pub use self::request::{
    CacheHints, Content, ImageSource, Message, MessageRole, ModelRequest, ToolChoice, ToolSpec,
};
pub use self::response::{ModelResponse, ResponseBuilder, StopReason, StreamEvent};
use crate::sync::BoxFuture;

mod error;
mod request;
mod response;

/// What a provider can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// It can call tools.
    pub tools: bool,
    /// It takes images.
    pub images: bool,
    /// It can think (and stream the thinking).
    pub thinking: bool,
    /// It honours cache hints or caches by itself.
    pub prompt_cache: bool,
    /// It runs subagents of its own and reports them as subtasks.
    pub subagents: bool,
    /// It costs nothing (a local server, the offline provider).
    pub free: bool,
    /// It never touches the network.
    pub offline: bool,
}

impl Capabilities {
    /// What a hosted chat API with tools offers.
    #[must_use]
    pub const fn hosted() -> Self {
        Self {
            tools: true,
            images: true,
            thinking: false,
            prompt_cache: false,
            subagents: false,
            free: false,
            offline: false,
        }
    }

    /// With `thinking` set.
    #[must_use]
    pub const fn with_thinking(mut self, yes: bool) -> Self {
        self.thinking = yes;
        self
    }

    /// With `prompt_cache` set.
    #[must_use]
    pub const fn with_prompt_cache(mut self, yes: bool) -> Self {
        self.prompt_cache = yes;
        self
    }

    /// With `free` set.
    #[must_use]
    pub const fn with_free(mut self, yes: bool) -> Self {
        self.free = yes;
        self
    }

    /// With `offline` set.
    #[must_use]
    pub const fn with_offline(mut self, yes: bool) -> Self {
        self.offline = yes;
        self
    }

    /// With `subagents` set.
    #[must_use]
    pub const fn with_subagents(mut self, yes: bool) -> Self {
        self.subagents = yes;
        self
    }
}

/// A provider's streamed answer.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// The next item of a stream.
pub async fn next_event(stream: &mut EventStream) -> Option<Result<StreamEvent, ProviderError>> {
    std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
}

/// A model provider: one streamed request at a time, any number concurrently.
///
/// Implement [`Provider::name`], [`Provider::capabilities`] and [`Provider::stream`];
/// [`Provider::complete`] collects a stream into a [`ModelResponse`].
pub trait Provider: Send + Sync {
    /// Its name in configs and errors (`anthropic`, `openai`, `offline`, …).
    fn name(&self) -> &str;

    /// What it can do.
    fn capabilities(&self) -> Capabilities;

    /// Starts `request`; the stream ends after [`StreamEvent::Done`] or an error. Dropping it or
    /// cancelling `cancel` stops the request.
    ///
    /// # Errors
    /// When the request is refused before the answer starts (HTTP errors after retries, missing
    /// configuration); errors later in the answer arrive as stream items.
    fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<EventStream, ProviderError>> + Send;

    /// Runs `request` to the end and collects the answer.
    ///
    /// # Errors
    /// As [`Provider::stream`], plus errors during the answer.
    fn complete(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<ModelResponse, ProviderError>> + Send {
        async move {
            let mut stream = self.stream(request, cancel).await?;
            let mut builder = ResponseBuilder::default();
            while let Some(event) = next_event(&mut stream).await {
                builder.push(event?);
            }
            Ok(builder.finish())
        }
    }
}

/// [`Provider`] for dynamic dispatch (`Arc<dyn DynProvider>` is itself a [`Provider`]).
pub trait DynProvider: Send + Sync {
    /// As [`Provider::name`].
    fn name_dyn(&self) -> &str;
    /// As [`Provider::capabilities`].
    fn capabilities_dyn(&self) -> Capabilities;
    /// As [`Provider::stream`].
    fn stream_dyn(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> BoxFuture<'_, Result<EventStream, ProviderError>>;
}

impl<T: Provider> DynProvider for T {
    fn name_dyn(&self) -> &str {
        self.name()
    }
    fn capabilities_dyn(&self) -> Capabilities {
        self.capabilities()
    }
    fn stream_dyn(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> BoxFuture<'_, Result<EventStream, ProviderError>> {
        Box::pin(self.stream(request, cancel))
    }
}

impl Provider for dyn DynProvider + '_ {
    fn name(&self) -> &str {
        self.name_dyn()
    }
    fn capabilities(&self) -> Capabilities {
        self.capabilities_dyn()
    }
    fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<EventStream, ProviderError>> + Send {
        self.stream_dyn(request, cancel)
    }
}

impl<T: Provider + ?Sized> Provider for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<EventStream, ProviderError>> + Send {
        (**self).stream(request, cancel)
    }
}

impl<T: Provider + ?Sized> Provider for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> impl Future<Output = Result<EventStream, ProviderError>> + Send {
        (**self).stream(request, cancel)
    }
}
