//! The worker's way to a model: [`GatewayModel`], a [`Provider`] whose turns go to the
//! supervisor's model gateway as `model/stream` requests over the worker's own connection. The
//! worker holds no credentials and no socket; the supervisor forwards the turn, streams the
//! events back as `model/event` notifications and meters what it cost.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fleet_core::ipc::{
    Call, CancelParams, GatewayInfo, Message, ModelErrorData, ModelEventParams, ModelStreamParams,
    Note, RequestId, Response, RpcError, codes,
};
use fleet_core::provider::{
    CancelToken, Capabilities, ErrorKind, EventStream, ModelRequest, Provider, ProviderError,
    StreamEvent,
};
use fleet_core::sync::lock;
use futures_core::Stream;
use serde_json::Value;
use tokio::sync::mpsc;

/// What the connection hands one turn in flight.
enum Inbound {
    Event(StreamEvent),
    End(Result<Value, RpcError>),
}

type Streams = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Inbound>>>>;

/// The worker's end of the connection for its own requests: ids, and where their answers go.
#[derive(Clone)]
pub(crate) struct Link {
    out: mpsc::UnboundedSender<Message>,
    streams: Streams,
    next_id: Arc<AtomicU64>,
}

impl Link {
    pub(crate) fn new(out: mpsc::UnboundedSender<Message>) -> Self {
        Self {
            out,
            streams: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Hands a `model/event` to its turn; false when no turn of ours has that id.
    pub(crate) fn route_event(&self, params: ModelEventParams) -> bool {
        let RequestId::Number(id) = params.request_id else {
            return false;
        };
        lock(&self.streams)
            .get(&id)
            .is_some_and(|turn| turn.send(Inbound::Event(params.event)).is_ok())
    }

    /// Hands an answer to the request it answers; false when no request of ours has its id.
    pub(crate) fn route_response(&self, response: Response) -> bool {
        let Some(RequestId::Number(id)) = response.id else {
            return false;
        };
        let Some(turn) = lock(&self.streams).remove(&id) else {
            return false;
        };
        let answer = match (response.result, response.error) {
            (_, Some(error)) => Err(error),
            (result, None) => Ok(result.unwrap_or(Value::Null)),
        };
        turn.send(Inbound::End(answer)).is_ok()
    }

    /// The supervisor went away: every turn in flight ends with a transport error.
    pub(crate) fn close(&self) {
        lock(&self.streams).clear();
    }
}

/// A [`Provider`] for one task whose turns go through the supervisor's gateway.
#[derive(Clone)]
pub struct GatewayModel {
    link: Link,
    task_id: String,
    name: String,
    capabilities: Capabilities,
}

impl std::fmt::Debug for GatewayModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayModel")
            .field("task_id", &self.task_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GatewayModel {
    pub(crate) fn new(link: Link, task_id: String, info: Option<&GatewayInfo>) -> Self {
        let capabilities = info.map_or_else(Capabilities::hosted, |i| {
            let mut c = Capabilities::hosted()
                .with_thinking(i.thinking)
                .with_prompt_cache(i.prompt_cache)
                .with_free(i.free);
            c.tools = i.tools;
            c.images = i.images;
            c
        });
        Self {
            link,
            task_id,
            name: info.map_or_else(|| "gateway".to_owned(), |i| i.provider.clone()),
            capabilities,
        }
    }
}

impl Provider for GatewayModel {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let id = self.link.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.link.streams).insert(id, tx);
        let call = Call::ModelStream(ModelStreamParams {
            task_id: self.task_id.clone(),
            request,
        });
        if self
            .link
            .out
            .send(Message::request(RequestId::Number(id), call))
            .is_err()
        {
            lock(&self.link.streams).remove(&id);
            return Err(gone(&self.name));
        }
        Ok(Box::pin(Turn {
            id,
            rx,
            link: self.link.clone(),
            provider: self.name.clone(),
            cancelled: Box::pin(cancel.cancelled_owned()),
            done: false,
        }))
    }
}

fn gone(provider: &str) -> ProviderError {
    ProviderError::Transport {
        provider: provider.to_owned(),
        message: "the supervisor's gateway is gone".into(),
    }
}

/// One turn's events as they arrive.
struct Turn {
    id: u64,
    rx: mpsc::UnboundedReceiver<Inbound>,
    link: Link,
    provider: String,
    cancelled: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    done: bool,
}

impl Turn {
    /// Tells the supervisor to stop the turn (its answer is no longer awaited).
    fn stop(&mut self) {
        self.done = true;
        if lock(&self.link.streams).remove(&self.id).is_some() {
            let note = Note::CancelRequest(CancelParams {
                id: RequestId::Number(self.id),
            });
            let _ = self.link.out.send(Message::notification(note));
        }
    }
}

impl Stream for Turn {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Inbound::Event(event))) => return Poll::Ready(Some(Ok(event))),
            Poll::Ready(Some(Inbound::End(Ok(_)))) => {
                self.done = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Inbound::End(Err(error)))) => {
                self.done = true;
                return Poll::Ready(Some(Err(provider_error(&self.provider, error))));
            }
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(Some(Err(gone(&self.provider))));
            }
            Poll::Pending => {}
        }
        if self.cancelled.as_mut().poll(cx).is_ready() {
            self.stop();
            return Poll::Ready(Some(Err(ProviderError::Cancelled)));
        }
        Poll::Pending
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.done {
            self.stop();
        }
    }
}

/// The gateway's error as the provider error the agent loop knows.
fn provider_error(provider: &str, error: RpcError) -> ProviderError {
    match error.code {
        codes::REQUEST_CANCELLED => ProviderError::Cancelled,
        codes::BUDGET_EXCEEDED => ProviderError::Api {
            provider: provider.to_owned(),
            status: None,
            kind: ErrorKind::SpendCap,
            message: error.message,
            retry_after: None,
        },
        codes::MODEL_FAILED => {
            let data = error
                .data
                .and_then(|d| serde_json::from_value::<ModelErrorData>(d).ok());
            match data {
                Some(data) => ProviderError::Api {
                    provider: provider.to_owned(),
                    status: data.status,
                    kind: data.kind,
                    message: error.message,
                    retry_after: data.retry_after_ms.map(Duration::from_millis),
                },
                None => ProviderError::Config {
                    provider: provider.to_owned(),
                    message: error.message,
                },
            }
        }
        _ => ProviderError::Config {
            provider: provider.to_owned(),
            message: error.to_string(),
        },
    }
}
