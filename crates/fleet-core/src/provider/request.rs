//! What a provider is asked: a [`ModelRequest`] of messages, tools and settings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::Effort;

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
