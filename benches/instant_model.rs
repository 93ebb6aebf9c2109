//! A priced model with no latency of its own (or a fixed one): the gateway benchmark's
//! provider, called in process and through the supervisor alike.

use std::time::Duration;

use fleet_core::provider::{
    CancelToken, Capabilities, EventStream, ModelRequest, Provider, ProviderError, StopReason,
    StreamEvent,
};
use fleet_core::usage::TokenUsage;

/// Answers every request with two text deltas, its usage (12 in, 5 out) and `end_turn`,
/// after `latency`.
#[derive(Debug, Clone, Copy, Default)]
pub struct InstantModel {
    /// How long each turn takes before it answers.
    pub latency: Duration,
}

impl Provider for InstantModel {
    fn name(&self) -> &str {
        "instant"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
    }

    async fn stream(
        &self,
        _request: ModelRequest,
        _cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let events = [
            StreamEvent::TextDelta {
                text: "all ".into(),
            },
            StreamEvent::TextDelta {
                text: "done".into(),
            },
            StreamEvent::Usage {
                usage: TokenUsage {
                    input: 12,
                    output: 5,
                    ..TokenUsage::default()
                },
            },
            StreamEvent::Done {
                stop_reason: StopReason::EndTurn,
            },
        ];
        Ok(Box::pin(futures_util::stream::iter(events.map(Ok))))
    }
}

/// The request each benchmarked turn makes.
#[must_use]
pub fn request() -> ModelRequest {
    ModelRequest::new("claude-haiku-4-5", "say done", 16)
}
