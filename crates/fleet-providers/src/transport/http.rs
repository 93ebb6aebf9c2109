//! The HTTP client every hosted adapter shares: one connection pool, timeouts, retries with
//! exponential backoff and jitter that honour the provider's `retry-after-ms`/`retry-after`,
//! and errors that name the provider, the status and the provider's own message.

use std::fmt;
use std::time::Duration;

use fleet_core::provider::{CancelToken, ErrorKind, ProviderError};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

/// An API key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key in the environment variable `var`, if it is set and not blank.
    #[must_use]
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var)
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .map(Self)
    }

    /// The key itself, for the request header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// A header value holding `prefix` + the key, marked sensitive so that it is never logged.
    pub(crate) fn header(&self, prefix: &str) -> Result<HeaderValue, String> {
        let mut value = HeaderValue::from_str(&format!("{prefix}{}", self.expose()))
            .map_err(|_| "the API key holds characters a header cannot carry".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// When and how often to retry a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The longest wait honoured when the provider asks for one; a longer ask fails at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The wait before retry number `attempt` (from 0): exponential, with full jitter in its
    /// upper half so that many clients refused together do not come back together.
    #[must_use]
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Timeouts and retries of an [`HttpClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Most time to open a connection.
    pub connect_timeout: Duration,
    /// Most time without a byte from the server, once the answer has started.
    pub idle_timeout: Duration,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// A pooled HTTP client (rustls) shared by the adapters; cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    config: HttpConfig,
}

impl HttpClient {
    /// A client with `config`.
    ///
    /// # Errors
    /// When the TLS backend cannot be set up.
    pub fn new(config: HttpConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.idle_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("fleet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config {
                provider: "http".into(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { client, config })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// POSTs `body` as JSON to `url` and returns the response once it is a success, retrying
    /// refusals that are worth retrying.
    pub(crate) async fn post_json(
        &self,
        provider: &str,
        url: &str,
        headers: HeaderMap,
        body: &Value,
        cancel: &CancelToken,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = serde_json::to_vec(body).map_err(|e| ProviderError::Config {
            provider: provider.into(),
            message: format!("cannot encode the request: {e}"),
        })?;
        let mut attempt = 0;
        loop {
            let send = self
                .client
                .post(url)
                .headers(headers.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send();
            let result = tokio::select! {
                () = cancel.cancelled() => return Err(ProviderError::Cancelled),
                r = send => r,
            };
            let error = match result {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => refused(provider, response).await,
                // Retrying cannot help when the system forbids the connection.
                Err(e) if forbidden(&e) => {
                    return Err(ProviderError::Config {
                        provider: provider.into(),
                        message: format!(
                            "the system refused the connection ({}): in a fleet sandbox a worker has no network unless its spec sets `sandbox.network: true`; a worker reaches its model through the supervisor's gateway instead",
                            describe_reqwest(e)
                        ),
                    });
                }
                Err(e) => ProviderError::Transport {
                    provider: provider.into(),
                    message: describe_reqwest(e),
                },
            };
            if attempt >= self.config.retry.max_retries || !error.is_retryable() {
                return Err(error);
            }
            let wait = match &error {
                ProviderError::Api {
                    retry_after: Some(asked),
                    ..
                } => {
                    if *asked > self.config.retry.max_retry_after {
                        return Err(error);
                    }
                    *asked
                }
                _ => self.config.retry.backoff(attempt),
            };
            attempt += 1;
            tokio::select! {
                () = cancel.cancelled() => return Err(ProviderError::Cancelled),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Whether the operating system refused to let the request connect at all (EPERM or EACCES,
/// as a sandbox's system-call filter answers `socket` or `connect`).
fn forbidden(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::PermissionDenied
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// A reqwest error in words, without the URL's query (which could hold a key).
pub(crate) fn describe_reqwest(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn refused(provider: &str, response: reqwest::Response) -> ProviderError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    // The body of an error is small; read at most 64 KiB of it.
    let body = match response.bytes().await {
        Ok(b) => b.slice(..b.len().min(64 * 1024)),
        Err(e) => {
            return ProviderError::Transport {
                provider: provider.into(),
                message: format!(
                    "HTTP {status}, then the body failed: {}",
                    describe_reqwest(e)
                ),
            };
        }
    };
    http_error(provider, status, retry_after, &body)
}

/// Classifies a refused request from its status, `retry-after` and body.
pub(crate) fn http_error(
    provider: &str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> ProviderError {
    let (error_type, message) = error_body(body);
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(no message)".to_owned()
        } else {
            text.chars().take(500).collect()
        }
    });
    let kind = match status {
        400 | 413 | 422 => ErrorKind::InvalidRequest,
        401 | 403 => ErrorKind::Authentication,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Conflict,
        429 => {
            let rate_limit = matches!(
                error_type.as_deref(),
                Some("rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens")
            );
            // A 429 that gives no time to wait and does not call itself a rate limit is a
            // spending cap or an exhausted quota (`insufficient_quota`): retrying only burns
            // time.
            if retry_after.is_some() || rate_limit {
                ErrorKind::RateLimited
            } else {
                ErrorKind::SpendCap
            }
        }
        529 => ErrorKind::Overloaded,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::Other,
    };
    ProviderError::Api {
        provider: provider.into(),
        status: Some(status),
        kind,
        message,
        retry_after,
    }
}

/// The error type and message of an Anthropic (`{"type":"error","error":{…}}`) or OpenAI
/// (`{"error":{"message","type","code"}}`) error body.
pub(crate) fn error_body(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let error = value.get("error").unwrap_or(&value);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let code = text(error.get("code")).or_else(|| text(error.get("type")));
    (code, text(error.get("message")))
}

/// The error kind an Anthropic error type names.
pub(crate) fn kind_of_error_type(error_type: &str) -> ErrorKind {
    match error_type {
        "invalid_request_error" => ErrorKind::InvalidRequest,
        "authentication_error" | "permission_error" => ErrorKind::Authentication,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" | "rate_limit_exceeded" => ErrorKind::RateLimited,
        "insufficient_quota" | "billing_error" => ErrorKind::SpendCap,
        "overloaded_error" => ErrorKind::Overloaded,
        "timeout_error" => ErrorKind::Timeout,
        "api_error" | "server_error" => ErrorKind::Server,
        _ => ErrorKind::Other,
    }
}

/// The wait the server asked for: `retry-after-ms` (milliseconds) first, then `retry-after`
/// (seconds; an HTTP date is not worth a clock-skew gamble and is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let secs = header("retry-after")?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show() {
        let key = ApiKey::new("sk-ant-secret");
        assert_eq!(format!("{key:?} {key}"), "ApiKey(<redacted>) <redacted>");
        assert!(key.header("Bearer ").is_ok_and(|h| h.is_sensitive()));
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let mut date = HeaderMap::new();
        date.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&date), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = p.backoff(0);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let third = p.backoff(2);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third));
            assert!(p.backoff(30) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn errors_name_provider_status_and_message() {
        let body =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        let e = http_error("anthropic", 529, None, body);
        assert_eq!(e.to_string(), "anthropic: HTTP 529 Overloaded: Overloaded");
        assert!(e.is_retryable());

        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let e = http_error("openai", 429, None, quota);
        assert!(matches!(
            e,
            ProviderError::Api {
                kind: ErrorKind::SpendCap,
                ..
            }
        ));
        assert!(!e.is_retryable());

        let limited = http_error("openai", 429, Some(Duration::from_secs(1)), b"not json");
        assert!(limited.is_retryable());
        assert!(limited.to_string().contains("not json"));
    }
}
