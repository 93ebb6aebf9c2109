//! A zero-latency model for the gateway tests: it answers `echo: <the last user text>` in two
//! text deltas, then reports the request's estimated input and all of its `max_tokens` as
//! output (so a turn costs what it was admitted for); for the prompt `long` it stops after the
//! first delta and waits to be cancelled; for `big:N` it reports, first and as Anthropic's
//! `message_start` does, a prompt of N tokens (more than the gateway estimated) and one output
//! token, then the text and the final usage.

use std::pin::Pin;
use std::task::{Context, Poll};

use fleet_core::provider::{
    CancelToken, Capabilities, EventStream, ModelRequest, Provider, ProviderError, StopReason,
    StreamEvent,
};
use fleet_core::usage::TokenUsage;
use futures_core::Stream;
use tokio::sync::mpsc;

/// See the module.
pub(crate) struct MockModel;

/// The usage the mock reports for `request`.
pub(crate) fn usage_of(request: &ModelRequest) -> TokenUsage {
    TokenUsage {
        input: request.estimated_input_tokens(),
        output: u64::from(request.max_tokens),
        ..TokenUsage::default()
    }
}

impl Provider for MockModel {
    fn name(&self) -> &str {
        "mock"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::hosted()
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let text = request
            .messages
            .last()
            .map(fleet_core::provider::Message::text)
            .unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(Ok(StreamEvent::TextDelta {
            text: "echo: ".into(),
        }));
        if text == "long" {
            tokio::spawn(async move {
                cancel.cancelled().await;
                let _ = tx.send(Err(ProviderError::Cancelled));
            });
        } else if let Some(input) = text.strip_prefix("big:").and_then(|n| n.parse().ok()) {
            let reported = |output| StreamEvent::Usage {
                usage: TokenUsage {
                    input,
                    output,
                    ..TokenUsage::default()
                },
            };
            for event in [
                reported(1),
                StreamEvent::TextDelta { text },
                reported(u64::from(request.max_tokens)),
                StreamEvent::Done {
                    stop_reason: StopReason::EndTurn,
                },
            ] {
                let _ = tx.send(Ok(event));
            }
        } else {
            for event in [
                StreamEvent::TextDelta { text },
                StreamEvent::Usage {
                    usage: usage_of(&request),
                },
                StreamEvent::Done {
                    stop_reason: StopReason::EndTurn,
                },
            ] {
                let _ = tx.send(Ok(event));
            }
        }
        Ok(Box::pin(Events(rx)))
    }
}

struct Events(mpsc::UnboundedReceiver<Result<StreamEvent, ProviderError>>);

impl Stream for Events {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
