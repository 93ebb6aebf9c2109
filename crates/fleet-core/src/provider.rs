//! The model seam: a [`Provider`] takes a [`ModelRequest`] and streams normalized
//! [`StreamEvent`]s, whatever wire format it speaks.
//!
//! Adapters (Anthropic Messages, OpenAI Chat Completions and Responses, the offline and scripted
//! providers, the Claude Code and Codex CLIs) live in `fleet-providers`; this module holds only
//! the vocabulary they share, so that embedders can write their own.
//!
//! Cancellation: dropping the stream stops the request (the connection is closed), and so does
//! cancelling the [`CancelToken`] given to [`Provider::stream`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::Effort;
use crate::usage::TokenUsage;
use crate::work_unit::WorkUnitState;

pub use tokio_util::sync::CancellationToken as CancelToken;

/// One request to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelRequest {
    /// The model id (`claude-haiku-4-5`, `gpt-5-mini`, `llama3.2`, …).
    pub model: String,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Whether and which tool the model must call.
    #[serde(default, skip_serializing_if = "ToolChoice::is_auto")]
    pub tool_choice: ToolChoice,
    /// Most output tokens.
    pub max_tokens: u32,
    /// Reasoning effort, where the model has a knob for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    /// Extended-thinking budget in tokens (Anthropic); `None` leaves thinking off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<u32>,
    /// Where to put prompt-cache breakpoints.
    #[serde(default)]
    pub cache: CacheHints,
}

impl ModelRequest {
    /// A request for `model` with one user message and room for `max_tokens` of output.
    #[must_use]
    pub fn new(model: impl Into<String>, prompt: impl Into<String>, max_tokens: u32) -> Self {
        Self {
            model: model.into(),
            system: None,
            messages: vec![Message::user_text(prompt)],
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            max_tokens,
            effort: None,
            thinking_budget: None,
            cache: CacheHints::default(),
        }
    }

    /// All text of the request (system, messages, tool schemas), for estimating its size.
    #[must_use]
    pub fn approx_chars(&self) -> usize {
        let system = self.system.as_deref().map_or(0, str::len);
        let messages: usize = self.messages.iter().map(Message::approx_chars).sum();
        let tools: usize = self
            .tools
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.input_schema.to_string().len())
            .sum();
        system + messages + tools
    }

    /// The input tokens the request is worth, by the usual four characters a token: what
    /// admission reserves for its prompt before the model says how many it really read.
    #[must_use]
    pub fn estimated_input_tokens(&self) -> u64 {
        (self.approx_chars() as u64).div_ceil(4)
    }
}

/// Prompt-cache breakpoints (Anthropic `cache_control`; OpenAI caches by itself).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct CacheHints {
    /// Cache the system prompt and the tools.
    #[serde(default)]
    pub system: bool,
    /// Cache the conversation up to and including the last message.
    #[serde(default)]
    pub last_message: bool,
    /// Use the 1-hour lifetime instead of 5 minutes.
    #[serde(default)]
    pub long_ttl: bool,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    /// The user, or tool results sent back.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    /// Who wrote it.
    pub role: MessageRole,
    /// What it holds, in order.
    pub content: Vec<Content>,
}

impl Message {
    /// A user message of plain text.
    #[must_use]
    pub fn user_text(text: impl Into<String>) -> Self {
        Self {
            role: MessageRole::User,
            content: vec![Content::Text { text: text.into() }],
        }
    }

    /// The message's text blocks, joined.
    #[must_use]
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let Content::Text { text } = block {
                out.push_str(text);
            }
        }
        out
    }

    fn approx_chars(&self) -> usize {
        self.content
            .iter()
            .map(|c| match c {
                Content::Text { text } => text.len(),
                Content::Thinking { text, .. } => text.len(),
                // An image is billed by its pixels, not its bytes; count a typical tile.
                Content::Image { .. } => 4 * 1_600,
                Content::ToolUse { name, input, .. } => name.len() + input.to_string().len(),
                Content::ToolResult { content, .. } => content.len(),
            })
            .sum()
    }
}

/// One block of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Content {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    Image {
        /// Where its bytes are.
        source: ImageSource,
    },
    /// The model called a tool.
    ToolUse {
        /// The call's id (tool results name it).
        id: String,
        /// The tool.
        name: String,
        /// Its arguments.
        input: Value,
    },
    /// A tool's answer, sent back to the model.
    ToolResult {
        /// The call it answers.
        tool_use_id: String,
        /// What the tool returned, as text.
        content: String,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// The model's reasoning, sent back verbatim on the next request when the provider asks.
    Thinking {
        /// The reasoning text.
        text: String,
        /// The provider's signature over it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline, base64-encoded.
    Base64 {
        /// `image/png`, `image/jpeg`, …
        media_type: String,
        /// The base64 text.
        data: String,
    },
    /// At a URL the provider fetches.
    Url {
        /// The URL.
        url: String,
    },
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its input (an object schema).
    pub input_schema: Value,
}

/// Whether the model must call a tool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "name", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must call some tool.
    Any,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Tool(String),
}

impl ToolChoice {
    fn is_auto(&self) -> bool {
        matches!(self, Self::Auto)
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// It finished its answer.
    EndTurn,
    /// It wants tool results.
    ToolUse,
    /// It ran out of output tokens.
    MaxTokens,
    /// It produced a stop sequence.
    StopSequence,
    /// It refused.
    Refusal,
    /// The provider paused a long turn; send the conversation back to continue.
    PauseTurn,
    /// A reason fleet does not know, as the provider said it.
    Other(String),
}

/// One normalized event of a model's streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// More answer text.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// More reasoning text.
    ThinkingDelta {
        /// The new text.
        text: String,
    },
    /// The signature closing a thinking block.
    ThinkingSignature {
        /// The signature.
        signature: String,
    },
    /// A tool call began.
    ToolCallStart {
        /// Its position among this answer's tool calls.
        index: u32,
        /// Its id.
        id: String,
        /// The tool.
        name: String,
    },
    /// More of a tool call's JSON arguments.
    ToolCallDelta {
        /// Which call.
        index: u32,
        /// The fragment.
        json: String,
    },
    /// A tool call is complete.
    ToolCallEnd {
        /// Which call.
        index: u32,
        /// Its id.
        id: String,
        /// The tool.
        name: String,
        /// Its parsed arguments.
        input: Value,
    },
    /// Tokens used by this request so far: each report replaces the previous one (never sum).
    Usage {
        /// The tokens.
        usage: TokenUsage,
    },
    /// The provider started a subagent of its own (Claude Code `Agent`, a Codex spawn).
    SubtaskStarted {
        /// The provider's id for it.
        task_id: String,
        /// What it was asked to do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
        /// Its agent type.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// A subagent reported progress.
    SubtaskProgress {
        /// Which.
        task_id: String,
        /// What it said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// Its tokens so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<TokenUsage>,
    },
    /// A subagent ended.
    SubtaskFinished {
        /// Which.
        task_id: String,
        /// How it ended.
        state: WorkUnitState,
        /// Its answer or error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
    },
    /// The answer is complete.
    Done {
        /// Why the model stopped.
        stop_reason: StopReason,
    },
}

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

/// What kind of failure a provider reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request was malformed (400, `invalid_request_error`).
    InvalidRequest,
    /// The key was missing or refused (401, 403).
    Authentication,
    /// Not found (404: a wrong model or base URL).
    NotFound,
    /// Too many requests (429).
    RateLimited,
    /// The account's spending cap or quota is used up (a 429 nobody should retry).
    SpendCap,
    /// The provider is overloaded (529, `overloaded_error`).
    Overloaded,
    /// The request timed out (408).
    Timeout,
    /// A conflict (409).
    Conflict,
    /// The provider failed (5xx, `api_error`).
    Server,
    /// Anything else.
    Other,
}

/// A provider request failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider answered with an error, before or during the stream.
    #[error("{provider}: {} {kind:?}: {message}", status.map_or_else(|| "stream error".to_owned(), |s| format!("HTTP {s}")))]
    Api {
        /// Which provider.
        provider: String,
        /// The HTTP status, or `None` for an error event after HTTP 200.
        status: Option<u16>,
        /// What kind of failure.
        kind: ErrorKind,
        /// The provider's own message.
        message: String,
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The connection failed or dropped.
    #[error("{provider}: connection failed: {message}")]
    Transport {
        /// Which provider.
        provider: String,
        /// What happened.
        message: String,
    },
    /// The provider sent something that is not its format.
    #[error("{provider}: malformed stream: {message}")]
    Decode {
        /// Which provider.
        provider: String,
        /// What was wrong, and where.
        message: String,
    },
    /// The request could not be made as asked (a missing key, an unsupported option).
    #[error("{provider}: {message}")]
    Config {
        /// Which provider.
        provider: String,
        /// What to fix.
        message: String,
    },
    /// A scripted provider was asked something its cassette does not hold.
    #[error("{provider}: request diverged from the recording: {message}")]
    Diverged {
        /// Which provider.
        provider: String,
        /// Where the request differs.
        message: String,
    },
    /// The request was cancelled.
    #[error("request cancelled")]
    Cancelled,
    /// The request took longer than allowed.
    #[error("request timed out after {0:?}")]
    TimedOut(Duration),
}

impl ProviderError {
    /// Whether trying the same request again may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { kind, .. } => match kind {
                ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Timeout
                | ErrorKind::Conflict
                | ErrorKind::Server => true,
                ErrorKind::InvalidRequest
                | ErrorKind::Authentication
                | ErrorKind::NotFound
                | ErrorKind::SpendCap
                | ErrorKind::Other => false,
            },
            Self::Transport { .. } | Self::TimedOut(_) => true,
            Self::Decode { .. } | Self::Config { .. } | Self::Diverged { .. } | Self::Cancelled => {
                false
            }
        }
    }
}

/// A provider's streamed answer.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// A boxed future, for the dynamic twins of the seams.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A model's whole answer, collected from its stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelResponse {
    /// Text, thinking and tool calls, in order.
    pub content: Vec<Content>,
    /// The tokens used (the last report).
    pub usage: TokenUsage,
    /// Why it stopped (`None` if the stream ended without saying).
    pub stop_reason: Option<StopReason>,
}

impl ModelResponse {
    /// The answer's text.
    #[must_use]
    pub fn text(&self) -> String {
        Message {
            role: MessageRole::Assistant,
            content: self.content.clone(),
        }
        .text()
    }

    /// The tool calls, in order: `(id, name, input)`.
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|c| match c {
            Content::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }
}

/// Folds stream events into a [`ModelResponse`].
#[derive(Debug, Default)]
pub struct ResponseBuilder {
    response: ModelResponse,
}

impl ResponseBuilder {
    /// Takes one event.
    pub fn push(&mut self, event: StreamEvent) {
        let content = &mut self.response.content;
        match event {
            StreamEvent::TextDelta { text } => match content.last_mut() {
                Some(Content::Text { text: last }) => last.push_str(&text),
                _ => content.push(Content::Text { text }),
            },
            StreamEvent::ThinkingDelta { text } => match content.last_mut() {
                Some(Content::Thinking { text: last, .. }) => last.push_str(&text),
                _ => content.push(Content::Thinking {
                    text,
                    signature: None,
                }),
            },
            StreamEvent::ThinkingSignature { signature } => match content.last_mut() {
                Some(Content::Thinking { signature: s, .. }) => *s = Some(signature),
                _ => content.push(Content::Thinking {
                    text: String::new(),
                    signature: Some(signature),
                }),
            },
            StreamEvent::ToolCallEnd {
                id, name, input, ..
            } => content.push(Content::ToolUse { id, name, input }),
            StreamEvent::Usage { usage } => self.response.usage = usage,
            StreamEvent::Done { stop_reason } => self.response.stop_reason = Some(stop_reason),
            StreamEvent::ToolCallStart { .. }
            | StreamEvent::ToolCallDelta { .. }
            | StreamEvent::SubtaskStarted { .. }
            | StreamEvent::SubtaskProgress { .. }
            | StreamEvent::SubtaskFinished { .. } => {}
        }
    }

    /// The response so far.
    #[must_use]
    pub fn finish(self) -> ModelResponse {
        self.response
    }
}

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

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EndTurn => f.write_str("end_turn"),
            Self::ToolUse => f.write_str("tool_use"),
            Self::MaxTokens => f.write_str("max_tokens"),
            Self::StopSequence => f.write_str("stop_sequence"),
            Self::Refusal => f.write_str("refusal"),
            Self::PauseTurn => f.write_str("pause_turn"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_joins_deltas_and_keeps_the_last_usage() {
        let mut b = ResponseBuilder::default();
        for e in [
            StreamEvent::ThinkingDelta { text: "hm".into() },
            StreamEvent::ThinkingSignature {
                signature: "sig".into(),
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Usage {
                usage: TokenUsage {
                    input: 5,
                    output: 1,
                    ..TokenUsage::default()
                },
            },
            StreamEvent::ToolCallEnd {
                index: 0,
                id: "t1".into(),
                name: "read_file".into(),
                input: serde_json::json!({"path": "a"}),
            },
            StreamEvent::Usage {
                usage: TokenUsage {
                    input: 5,
                    output: 9,
                    ..TokenUsage::default()
                },
            },
            StreamEvent::Done {
                stop_reason: StopReason::ToolUse,
            },
        ] {
            b.push(e);
        }
        let r = b.finish();
        assert_eq!(r.text(), "Hello");
        assert_eq!(r.usage.output, 9);
        assert_eq!(r.stop_reason, Some(StopReason::ToolUse));
        assert_eq!(r.tool_calls().count(), 1);
        assert_eq!(
            r.content[0],
            Content::Thinking {
                text: "hm".into(),
                signature: Some("sig".into())
            }
        );
    }

    #[test]
    fn retryable_kinds() {
        let api = |kind| ProviderError::Api {
            provider: "p".into(),
            status: Some(429),
            kind,
            message: "m".into(),
            retry_after: None,
        };
        assert!(api(ErrorKind::RateLimited).is_retryable());
        assert!(api(ErrorKind::Overloaded).is_retryable());
        assert!(!api(ErrorKind::SpendCap).is_retryable());
        assert!(!api(ErrorKind::InvalidRequest).is_retryable());
        assert_eq!(
            api(ErrorKind::RateLimited).to_string(),
            "p: HTTP 429 RateLimited: m"
        );
    }
}
