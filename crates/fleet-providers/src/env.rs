//! Choosing a provider from the environment, as fleet's binaries and workers do.

use std::sync::Arc;

use fleet_core::provider::{DynProvider, ProviderError};

use crate::{AnthropicProvider, OfflineProvider, OpenAiApi, OpenAiProvider, ScriptedProvider};

/// The provider the environment asks for, and a line saying which and why.
///
/// `FLEET_PROVIDER` picks one: `anthropic` (`ANTHROPIC_API_KEY`), `openai` (`OPENAI_API_KEY`,
/// `OPENAI_BASE_URL`; Chat Completions), `openai-responses`, `offline`, or `scripted` (replays
/// the cassette at `FLEET_CASSETTE`). Unset: Anthropic when `ANTHROPIC_API_KEY` is set, else
/// OpenAI when `OPENAI_API_KEY` or `OPENAI_BASE_URL` is, else the offline provider.
///
/// # Errors
/// An unknown `FLEET_PROVIDER`, a provider asked for without its key, or one that cannot be
/// built (a cassette that does not load).
pub fn from_env() -> Result<(Arc<dyn DynProvider>, String), ProviderError> {
    let config = |message: String| ProviderError::Config {
        provider: "environment".into(),
        message,
    };
    let chosen = std::env::var("FLEET_PROVIDER").ok();
    let missing = |name: &str, key: &str| {
        config(format!(
            "FLEET_PROVIDER={name} but {key} is not set: set it, or pick another provider"
        ))
    };
    let openai =
        |api: OpenAiApi, name: &str| -> Result<(Arc<dyn DynProvider>, String), ProviderError> {
            let provider = OpenAiProvider::from_env(api)?
                .ok_or_else(|| missing(name, "OPENAI_API_KEY or OPENAI_BASE_URL"))?;
            Ok((Arc::new(provider), format!("provider: {name}")))
        };
    match chosen.as_deref() {
        Some("anthropic") => {
            let provider = AnthropicProvider::from_env()?
                .ok_or_else(|| missing("anthropic", "ANTHROPIC_API_KEY"))?;
            Ok((Arc::new(provider), "provider: anthropic".into()))
        }
        Some("openai") => openai(OpenAiApi::ChatCompletions, "openai"),
        Some("openai-responses") => openai(OpenAiApi::Responses, "openai-responses"),
        Some("offline") => Ok((Arc::new(OfflineProvider::new()), "provider: offline".into())),
        Some("scripted") => {
            let path = std::env::var_os("FLEET_CASSETTE")
                .ok_or_else(|| missing("scripted", "FLEET_CASSETTE"))?;
            let cassette = crate::Cassette::load(std::path::Path::new(&path))?;
            Ok((
                Arc::new(ScriptedProvider::new(cassette)),
                format!(
                    "provider: scripted ({})",
                    std::path::Path::new(&path).display()
                ),
            ))
        }
        Some(other) => Err(config(format!(
            "FLEET_PROVIDER={other} is not a provider: use anthropic, openai, openai-responses, offline or scripted"
        ))),
        None => {
            if let Some(provider) = AnthropicProvider::from_env()? {
                return Ok((
                    Arc::new(provider),
                    "provider: anthropic (ANTHROPIC_API_KEY is set)".into(),
                ));
            }
            if let Some(provider) = OpenAiProvider::from_env(OpenAiApi::ChatCompletions)? {
                return Ok((
                    Arc::new(provider),
                    "provider: openai (OPENAI_API_KEY or OPENAI_BASE_URL is set)".into(),
                ));
            }
            Ok((
                Arc::new(OfflineProvider::new()),
                "provider: offline (no API key configured; answers are deterministic stand-ins, tokens are counted, dollars are $0)".into(),
            ))
        }
    }
}
