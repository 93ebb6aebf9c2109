//! The scripted provider: replays a recorded conversation (a cassette) and fails loudly, naming
//! the exchange and the JSON path, when a request diverges from the recording.
//!
//! A cassette is JSON:
//!
//! ```json
//! {
//!   "order": "sequential",
//!   "exchanges": [
//!     {"expect": {"model": "claude-haiku-4-5", "messages": [{"role": "user"}]},
//!      "events": [{"type": "text_delta", "text": "hi"},
//!                 {"type": "done", "stop_reason": "end_turn"}]},
//!     {"expect": {}, "error": {"kind": "overloaded", "message": "Overloaded"}, "delay_ms": 20}
//!   ]
//! }
//! ```
//!
//! `expect` is matched as a subset of the request (objects: the listed keys; arrays: the listed
//! elements, in order, and `"len"` is not needed); an empty `expect` matches anything. With
//! `"order": "any"` each request takes the first unused exchange it matches, for concurrent
//! callers. [`RecordingProvider`] writes cassettes from a real provider.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fleet_core::provider::{
    CancelToken, Capabilities, ErrorKind, EventStream, ModelRequest, Provider, ProviderError,
    StopReason, StreamEvent, next_event,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The provider's name.
pub const NAME: &str = "scripted";

/// A recorded conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cassette {
    /// How requests find their exchange.
    #[serde(default)]
    pub order: Order,
    /// The exchanges.
    pub exchanges: Vec<Exchange>,
}

/// How requests find their exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// The n-th request takes the n-th exchange.
    #[default]
    Sequential,
    /// Each request takes the first unused exchange it matches.
    Any,
}

/// One request and its answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// What the request must contain.
    #[serde(default)]
    pub expect: Value,
    /// The answer.
    #[serde(default)]
    pub events: Vec<StreamEvent>,
    /// An error after the events (or instead of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ScriptedError>,
    /// A wait before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// A recorded failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedError {
    /// What kind.
    pub kind: ErrorKind,
    /// The provider's message.
    pub message: String,
}

impl Cassette {
    /// Reads a cassette file.
    ///
    /// # Errors
    /// [`ProviderError::Config`] naming the file, line and column of what is wrong.
    pub fn load(path: &Path) -> Result<Self, ProviderError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProviderError::Config {
            provider: NAME.into(),
            message: format!("cannot read cassette {}: {e}", path.display()),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses cassette JSON; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ProviderError::Config`] naming the line, column and field.
    pub fn parse(origin: &str, text: &str) -> Result<Self, ProviderError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            ProviderError::Config {
                provider: NAME.into(),
                message: format!(
                    "{origin}:{}:{}: {}: {inner}",
                    inner.line(),
                    inner.column(),
                    e.path()
                ),
            }
        })
    }
}

#[derive(Debug)]
struct State {
    used: Vec<bool>,
    next: usize,
}

/// Replays a [`Cassette`].
#[derive(Debug, Clone)]
pub struct ScriptedProvider {
    cassette: Arc<Cassette>,
    state: Arc<Mutex<State>>,
    capabilities: Capabilities,
}

impl ScriptedProvider {
    /// Replays `cassette`.
    #[must_use]
    pub fn new(cassette: Cassette) -> Self {
        let used = vec![false; cassette.exchanges.len()];
        Self {
            cassette: Arc::new(cassette),
            state: Arc::new(Mutex::new(State { used, next: 0 })),
            // A replay stands in for the provider it recorded: its usage is priced as that
            // provider's would be.
            capabilities: Capabilities::hosted().with_offline(true),
        }
    }

    /// Claims `capabilities` (for example `free`, to replay a local server's recording).
    #[must_use]
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Replays these exchanges in order.
    #[must_use]
    pub fn sequential(exchanges: Vec<Exchange>) -> Self {
        Self::new(Cassette {
            order: Order::Sequential,
            exchanges,
        })
    }

    /// How many exchanges have not been replayed.
    #[must_use]
    pub fn remaining(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.used.iter().filter(|u| !**u).count()
    }

    fn take(&self, request: &ModelRequest) -> Result<Exchange, ProviderError> {
        let actual = serde_json::to_value(request).unwrap_or(Value::Null);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let diverged = |message: String| ProviderError::Diverged {
            provider: NAME.into(),
            message,
        };
        let exchanges = &self.cassette.exchanges;
        let index = match self.cassette.order {
            Order::Sequential => {
                let i = state.next;
                let exchange = exchanges.get(i).ok_or_else(|| {
                    diverged(format!(
                        "request {} was not recorded (the cassette has {} exchanges); last message: {:?}",
                        i + 1,
                        exchanges.len(),
                        request.messages.last().map(fleet_core::provider::Message::text).unwrap_or_default()
                    ))
                })?;
                if let Err(at) = matches(&exchange.expect, &actual, "request") {
                    return Err(diverged(format!("exchange {}: {at}", i + 1)));
                }
                i
            }
            Order::Any => {
                let mut first_mismatch = None;
                let found =
                    (0..exchanges.len()).filter(|&i| !state.used[i]).find(|&i| {
                        match matches(&exchanges[i].expect, &actual, "request") {
                            Ok(()) => true,
                            Err(at) => {
                                first_mismatch.get_or_insert(format!("exchange {}: {at}", i + 1));
                                false
                            }
                        }
                    });
                found.ok_or_else(|| {
                    diverged(
                        first_mismatch
                            .unwrap_or_else(|| "every recorded exchange was already used".into()),
                    )
                })?
            }
        };
        state.used[index] = true;
        state.next = index + 1;
        Ok(exchanges[index].clone())
    }
}

/// Whether `actual` contains `expected`; on a mismatch, the JSON path and both values.
fn matches(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let here = format!("{path}.{key}");
                match a.get(key) {
                    Some(v) => matches(value, v, &here)?,
                    None if value.is_null() => {}
                    None => return Err(format!("{here}: expected {value}, the request has none")),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() > a.len() {
                return Err(format!(
                    "{path}: expected at least {} elements, the request has {}",
                    e.len(),
                    a.len()
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                matches(ev, av, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => {
            let shown: String = a.to_string().chars().take(200).collect();
            Err(format!("{path}: expected {e}, got {shown}"))
        }
    }
}

impl Provider for ScriptedProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let exchange = self.take(&request)?;
        if let Some(ms) = exchange.delay_ms {
            tokio::select! {
                () = cancel.cancelled() => return Err(ProviderError::Cancelled),
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
            }
        }
        let error = exchange.error.map(|e| ProviderError::Api {
            provider: NAME.into(),
            status: None,
            kind: e.kind,
            message: e.message,
            retry_after: None,
        });
        let items = within_max_tokens(exchange.events, request.max_tokens)
            .into_iter()
            .map(Ok)
            .chain(error.map(Err))
            .collect::<Vec<_>>();
        Ok(Box::pin(futures_util::stream::iter(items)))
    }
}

/// The recorded events as a provider would send them under `max_tokens`: a turn that wrote
/// more is cut there, as a real model stops when its room runs out (its usage says
/// `max_tokens` output tokens and it ends with `max_tokens`).
fn within_max_tokens(mut events: Vec<StreamEvent>, max_tokens: u32) -> Vec<StreamEvent> {
    let max = u64::from(max_tokens);
    let mut cut = false;
    for event in &mut events {
        match event {
            StreamEvent::Usage { usage } if usage.output > max => {
                usage.output = max;
                cut = true;
            }
            StreamEvent::Done { stop_reason } if cut => *stop_reason = StopReason::MaxTokens,
            _ => {}
        }
    }
    events
}

/// Wraps a provider and records every exchange, to save as a cassette.
#[derive(Debug, Clone)]
pub struct RecordingProvider<P> {
    inner: P,
    recorded: Arc<Mutex<Vec<Exchange>>>,
}

impl<P: Provider> RecordingProvider<P> {
    /// Records `inner`.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            recorded: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The cassette so far: each exchange expects the whole request it recorded.
    #[must_use]
    pub fn cassette(&self) -> Cassette {
        Cassette {
            order: Order::Sequential,
            exchanges: self
                .recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl<P: Provider> Provider for RecordingProvider<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let expect = serde_json::to_value(&request).unwrap_or(Value::Null);
        // The answer is read whole, recorded, then replayed to the caller.
        let mut events = Vec::new();
        let mut error = None;
        match self.inner.stream(request, cancel).await {
            Ok(mut stream) => {
                while let Some(item) = next_event(&mut stream).await {
                    match item {
                        Ok(e) => events.push(e),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
            }
            Err(e) => error = Some(e),
        }
        let scripted_error = error.as_ref().map(|e| ScriptedError {
            kind: match e {
                ProviderError::Api { kind, .. } => *kind,
                _ => ErrorKind::Other,
            },
            message: e.to_string(),
        });
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Exchange {
                expect,
                events: events.clone(),
                error: scripted_error,
                delay_ms: None,
            });
        let items = events
            .into_iter()
            .map(Ok)
            .chain(error.map(Err))
            .collect::<Vec<_>>();
        Ok(Box::pin(futures_util::stream::iter(items)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn done() -> StreamEvent {
        StreamEvent::Done {
            stop_reason: fleet_core::provider::StopReason::EndTurn,
        }
    }

    #[tokio::test]
    async fn replays_in_order_and_names_the_divergence() {
        let p = ScriptedProvider::sequential(vec![
            Exchange {
                expect: json!({"model": "a", "messages": [{"content": [{"text": "hi"}]}]}),
                events: vec![StreamEvent::TextDelta { text: "yo".into() }, done()],
                ..Exchange::default()
            },
            Exchange {
                expect: json!({"model": "a"}),
                events: vec![done()],
                ..Exchange::default()
            },
        ]);
        let cancel = CancelToken::new();
        let r = p
            .complete(ModelRequest::new("a", "hi", 10), cancel.clone())
            .await;
        assert_eq!(r.map(|r| r.text()).ok().as_deref(), Some("yo"));
        let e = p
            .complete(ModelRequest::new("b", "hi", 10), cancel.clone())
            .await;
        let message = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "scripted: request diverged from the recording: exchange 2: request.model: expected \"a\", got \"b\""
        );
        // A refused request does not use up its exchange.
        assert_eq!(p.remaining(), 1);
        assert!(
            p.complete(ModelRequest::new("a", "x", 10), cancel.clone())
                .await
                .is_ok()
        );
        let e = p
            .complete(ModelRequest::new("a", "again", 10), cancel)
            .await;
        assert!(
            e.err()
                .is_some_and(|e| e.to_string().contains("request 3 was not recorded"))
        );
    }

    #[tokio::test]
    async fn recording_then_replaying_gives_the_same_answer() {
        let recorder = RecordingProvider::new(crate::model::offline::OfflineProvider::new());
        let cancel = CancelToken::new();
        let first = recorder
            .complete(ModelRequest::new("m", "hello", 50), cancel.clone())
            .await
            .ok();
        let text = serde_json::to_string(&recorder.cassette()).unwrap_or_default();
        let replay = ScriptedProvider::new(Cassette::parse("mem", &text).unwrap_or_default());
        let second = replay
            .complete(ModelRequest::new("m", "hello", 50), cancel.clone())
            .await
            .ok();
        assert!(first.is_some());
        assert_eq!(first, second);
        assert!(
            replay
                .complete(ModelRequest::new("m", "other", 50), cancel)
                .await
                .is_err()
        );
    }

    #[test]
    fn bad_cassettes_name_line_and_field() {
        let e = Cassette::parse(
            "c.json",
            "{\"exchanges\": [{\"events\": [{\"type\": \"bogus\"}]}]}",
        );
        let message = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("scripted: c.json:1:"), "{message}");
        assert!(message.contains("exchanges[0].events[0]"), "{message}");
    }
}
