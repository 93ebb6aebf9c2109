//! The Anthropic Messages API (`POST /v1/messages`, streaming).

mod convert;
mod wire;

use fleet_core::provider::{
    CancelToken, Capabilities, EventStream, ModelRequest, Provider, ProviderError,
};
use reqwest::header::{HeaderMap, HeaderValue};

pub(crate) use convert::Decoder;

use crate::transport::http::{ApiKey, HttpClient, HttpConfig};
use crate::transport::stream::sse_events;

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The API version fleet speaks.
pub const API_VERSION: &str = "2023-06-01";

/// The Anthropic Messages provider.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    http: HttpClient,
    base_url: String,
    key: ApiKey,
}

impl AnthropicProvider {
    /// A provider for `base_url` (no trailing `/v1`) with `key`.
    #[must_use]
    pub fn new(http: HttpClient, base_url: impl Into<String>, key: ApiKey) -> Self {
        Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            key,
        }
    }

    /// From `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL`; `None` when no key is set.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn from_env() -> Result<Option<Self>, ProviderError> {
        let Some(key) = ApiKey::from_env("ANTHROPIC_API_KEY") else {
            return Ok(None);
        };
        let base = std::env::var("ANTHROPIC_BASE_URL").unwrap_or_else(|_| DEFAULT_BASE_URL.into());
        Ok(Some(Self::new(
            HttpClient::new(HttpConfig::default())?,
            base,
            key,
        )))
    }

    fn headers(&self) -> Result<HeaderMap, ProviderError> {
        let mut headers = HeaderMap::new();
        let key = self
            .key
            .header("")
            .map_err(|message| ProviderError::Config {
                provider: convert::PROVIDER.into(),
                message,
            })?;
        headers.insert("x-api-key", key);
        headers.insert("anthropic-version", HeaderValue::from_static(API_VERSION));
        headers.insert("accept", HeaderValue::from_static("text/event-stream"));
        Ok(headers)
    }
}

impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        convert::PROVIDER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
            .with_thinking(true)
            .with_prompt_cache(true)
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let body = serde_json::to_value(convert::build_request(&request)).map_err(|e| {
            ProviderError::Config {
                provider: convert::PROVIDER.into(),
                message: format!("cannot encode the request: {e}"),
            }
        })?;
        let url = format!("{}/v1/messages", self.base_url);
        let response = self
            .http
            .post_json(convert::PROVIDER, &url, self.headers()?, &body, &cancel)
            .await?;
        Ok(sse_events(
            convert::PROVIDER,
            response,
            Decoder::default(),
            cancel,
            self.http.config().idle_timeout,
        ))
    }
}
