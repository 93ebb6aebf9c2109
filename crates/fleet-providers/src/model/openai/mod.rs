//! OpenAI's APIs: Chat Completions (also any OpenAI-compatible server: Ollama, vLLM,
//! llama.cpp) and Responses.

pub(crate) mod chat;
pub(crate) mod responses;

use fleet_core::provider::{
    CancelToken, Capabilities, EventStream, ImageSource, ModelRequest, Provider, ProviderError,
};
use fleet_core::spec::Effort;
use reqwest::header::{HeaderMap, HeaderValue};

use crate::transport::http::{ApiKey, HttpClient, HttpConfig};
use crate::transport::stream::sse_events;

/// OpenAI's own base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Which OpenAI API to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenAiApi {
    /// `POST /chat/completions`: every OpenAI-compatible server has it.
    ChatCompletions,
    /// `POST /responses`: OpenAI's newer API.
    Responses,
}

/// An OpenAI or OpenAI-compatible provider.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    http: HttpClient,
    name: String,
    base_url: String,
    key: Option<ApiKey>,
    api: OpenAiApi,
    local: bool,
}

impl OpenAiProvider {
    /// A provider named `name` for `base_url` (ending in `/v1`), speaking `api`. A key is
    /// optional: local servers take none. A base URL other than OpenAI's is treated as a
    /// compatible server: its models cost $0, it gets `max_tokens` rather than
    /// `max_completion_tokens`, and no `reasoning_effort`.
    #[must_use]
    pub fn new(
        http: HttpClient,
        name: impl Into<String>,
        base_url: impl Into<String>,
        key: Option<ApiKey>,
        api: OpenAiApi,
    ) -> Self {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        let local = !base_url.starts_with("https://api.openai.com");
        Self {
            http,
            name: name.into(),
            base_url,
            key,
            api,
            local,
        }
    }

    /// Marks the server as costing money (a hosted OpenAI-compatible service) or not.
    #[must_use]
    pub fn with_free(mut self, free: bool) -> Self {
        self.local = free;
        self
    }

    /// From `OPENAI_API_KEY` and `OPENAI_BASE_URL`; `None` when neither is set.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn from_env(api: OpenAiApi) -> Result<Option<Self>, ProviderError> {
        let key = ApiKey::from_env("OPENAI_API_KEY");
        let base = std::env::var("OPENAI_BASE_URL").ok();
        if key.is_none() && base.is_none() {
            return Ok(None);
        }
        let base = base.unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let http = HttpClient::new(HttpConfig::default())?;
        Ok(Some(Self::new(http, "openai", base, key, api)))
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.key {
            let value = key
                .header("Bearer ")
                .map_err(|message| ProviderError::Config {
                    provider: self.name.clone(),
                    message,
                })?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        Ok(headers)
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
            .with_prompt_cache(!self.local)
            .with_thinking(self.api == OpenAiApi::Responses)
            .with_free(self.local)
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let idle = self.http.config().idle_timeout;
        let headers = self.headers()?;
        match self.api {
            OpenAiApi::ChatCompletions => {
                let body = chat::build_request(&request, self.local);
                let url = format!("{}/chat/completions", self.base_url);
                let response = self
                    .http
                    .post_json(&self.name, &url, headers, &body, &cancel)
                    .await?;
                let decoder = chat::Decoder::new(&self.name);
                Ok(sse_events(&self.name, response, decoder, cancel, idle))
            }
            OpenAiApi::Responses => {
                let body = responses::build_request(&request, self.local);
                let url = format!("{}/responses", self.base_url);
                let response = self
                    .http
                    .post_json(&self.name, &url, headers, &body, &cancel)
                    .await?;
                let decoder = responses::Decoder::new(&self.name);
                Ok(sse_events(&self.name, response, decoder, cancel, idle))
            }
        }
    }
}

/// An image as the URL OpenAI takes (a `data:` URL for inline bytes).
fn image_url(source: &ImageSource) -> String {
    match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url.clone(),
    }
}

/// OpenAI's reasoning effort names.
fn effort_name(effort: Effort) -> &'static str {
    match effort {
        Effort::Low => "low",
        Effort::Medium => "medium",
        _ => "high",
    }
}
