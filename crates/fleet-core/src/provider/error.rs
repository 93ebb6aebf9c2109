//! How a provider request fails: a [`ProviderError`] of some [`ErrorKind`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
