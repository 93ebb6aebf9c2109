//! [`ModelRouter`]: one [`Provider`] over many, each request sent by its model's name, so a
//! supervisor's gateway (or an agent loop) can serve `claude-haiku-4-5` from Anthropic and
//! `gpt-5-mini` from OpenAI at once.

use std::sync::Arc;

use fleet_core::provider::{
    CancelToken, Capabilities, DynProvider, EventStream, ModelRequest, Provider, ProviderError,
};

/// Sends each request to the provider of the first route whose prefix its model starts with,
/// else to the default one.
#[derive(Clone)]
pub struct ModelRouter {
    routes: Vec<(String, Arc<dyn DynProvider>)>,
    default: Arc<dyn DynProvider>,
    name: String,
}

impl std::fmt::Debug for ModelRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(prefix, p)| format!("{prefix}* → {}", p.name_dyn()))
            .collect();
        f.debug_struct("ModelRouter")
            .field("routes", &routes)
            .field("default", &self.default.name_dyn())
            .finish()
    }
}

impl ModelRouter {
    /// A router sending every request to `default`.
    #[must_use]
    pub fn new(default: Arc<dyn DynProvider>) -> Self {
        let name = default.name_dyn().to_owned();
        Self {
            routes: Vec::new(),
            default,
            name,
        }
    }

    /// Sends requests whose model starts with `prefix` (`claude-`, `gpt-`) to `provider`.
    #[must_use]
    pub fn route(mut self, prefix: impl Into<String>, provider: Arc<dyn DynProvider>) -> Self {
        let names: Vec<&str> = std::iter::once(self.default.name_dyn())
            .chain(self.routes.iter().map(|(_, p)| p.name_dyn()))
            .collect();
        if !names.contains(&provider.name_dyn()) {
            self.name = format!("{}+{}", self.name, provider.name_dyn());
        }
        self.routes.push((prefix.into(), provider));
        self
    }

    /// The provider that serves `model`.
    #[must_use]
    pub fn provider_for(&self, model: &str) -> &Arc<dyn DynProvider> {
        self.routes
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix.as_str()))
            .map_or(&self.default, |(_, provider)| provider)
    }

    fn all(&self) -> impl Iterator<Item = &Arc<dyn DynProvider>> {
        std::iter::once(&self.default).chain(self.routes.iter().map(|(_, p)| p))
    }
}

impl Provider for ModelRouter {
    fn name(&self) -> &str {
        &self.name
    }

    /// What every provider behind it can do (free only if all are).
    fn capabilities(&self) -> Capabilities {
        self.all()
            .map(|p| p.capabilities_dyn())
            .reduce(|a, b| {
                let mut both = a;
                both.tools &= b.tools;
                both.images &= b.images;
                both.thinking &= b.thinking;
                both.prompt_cache &= b.prompt_cache;
                both.subagents &= b.subagents;
                both.free &= b.free;
                both.offline &= b.offline;
                both
            })
            .unwrap_or_default()
    }

    async fn stream(
        &self,
        request: ModelRequest,
        cancel: CancelToken,
    ) -> Result<EventStream, ProviderError> {
        let provider = Arc::clone(self.provider_for(&request.model));
        provider.stream_dyn(request, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::offline::OfflineProvider;
    use crate::model::scripted::{Cassette, ScriptedProvider};
    use fleet_core::provider::{ResponseBuilder, next_event};

    async fn answer(router: &ModelRouter, model: &str) -> String {
        let mut stream = router
            .stream(ModelRequest::new(model, "hi", 64), CancelToken::new())
            .await
            .unwrap();
        let mut builder = ResponseBuilder::default();
        while let Some(event) = next_event(&mut stream).await {
            builder.push(event.unwrap());
        }
        builder.finish().text()
    }

    #[tokio::test]
    async fn each_request_goes_to_the_provider_of_its_model() {
        let scripted: Arc<dyn DynProvider> = Arc::new(ScriptedProvider::new(Cassette {
            exchanges: vec![crate::model::scripted::Exchange {
                events: vec![
                    fleet_core::provider::StreamEvent::TextDelta {
                        text: "from the scripted one".into(),
                    },
                    fleet_core::provider::StreamEvent::Done {
                        stop_reason: fleet_core::provider::StopReason::EndTurn,
                    },
                ],
                expect: serde_json::json!({}),
                ..crate::model::scripted::Exchange::default()
            }],
            ..Cassette::default()
        }));
        let router = ModelRouter::new(Arc::new(OfflineProvider::new())).route("gpt-", scripted);
        assert_eq!(router.name(), "offline+scripted");
        assert_eq!(router.provider_for("gpt-5-mini").name_dyn(), "scripted");
        assert_eq!(
            router.provider_for("claude-haiku-4-5").name_dyn(),
            "offline"
        );
        assert_eq!(answer(&router, "gpt-5-mini").await, "from the scripted one");
        assert!(
            answer(&router, "claude-haiku-4-5")
                .await
                .starts_with("[offline model")
        );
        assert!(
            !router.capabilities().free,
            "free only if every provider is"
        );
    }
}
