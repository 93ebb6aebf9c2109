//! Choosing a provider from settings (a CLI's layered configuration) or from the environment,
//! as fleet's binaries and workers do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::provider::{DynProvider, ProviderError};

use crate::model::anthropic::AnthropicProvider;
use crate::model::offline::OfflineProvider;
use crate::model::openai::{OpenAiApi, OpenAiProvider};
use crate::model::router::ModelRouter;
use crate::model::scripted::ScriptedProvider;
use crate::transport::http::{ApiKey, HttpClient, HttpConfig};

/// The provider names [`from_settings`] knows.
pub const PROVIDERS: [&str; 5] = [
    "anthropic",
    "openai",
    "openai-responses",
    "offline",
    "scripted",
];

/// What picks and builds a provider. [`ProviderSettings::from_env`] reads the environment;
/// a CLI layers its config files under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSettings {
    /// `anthropic`, `openai`, `openai-responses`, `offline` or `scripted`; `None` picks by keys.
    pub provider: Option<String>,
    /// Anthropic's key.
    pub anthropic_api_key: Option<ApiKey>,
    /// Anthropic's base URL (default `https://api.anthropic.com`).
    pub anthropic_base_url: Option<String>,
    /// OpenAI's key.
    pub openai_api_key: Option<ApiKey>,
    /// An OpenAI(-compatible) base URL, ending in `/v1`.
    pub openai_base_url: Option<String>,
    /// The cassette the scripted provider replays.
    pub cassette: Option<PathBuf>,
    /// How long the offline provider waits before each answer.
    pub offline_latency: Option<Duration>,
    /// How long a hosted provider's answer may go without a byte (default 300 s).
    pub idle_timeout: Option<Duration>,
    /// Retries of a refused or dropped request (default 4).
    pub max_retries: Option<u32>,
}

impl ProviderSettings {
    /// `FLEET_PROVIDER`, `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `OPENAI_API_KEY`,
    /// `OPENAI_BASE_URL`, `FLEET_CASSETTE`, `FLEET_OFFLINE_LATENCY_MS`,
    /// `FLEET_IDLE_TIMEOUT_SECS` and `FLEET_MAX_RETRIES` (blank counts as unset).
    #[must_use]
    pub fn from_env() -> Self {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Self {
            provider: var("FLEET_PROVIDER"),
            anthropic_api_key: ApiKey::from_env("ANTHROPIC_API_KEY"),
            anthropic_base_url: var("ANTHROPIC_BASE_URL"),
            openai_api_key: ApiKey::from_env("OPENAI_API_KEY"),
            openai_base_url: var("OPENAI_BASE_URL"),
            cassette: var("FLEET_CASSETTE").map(PathBuf::from),
            offline_latency: var("FLEET_OFFLINE_LATENCY_MS")
                .and_then(|ms| ms.parse().ok())
                .map(Duration::from_millis),
            idle_timeout: var("FLEET_IDLE_TIMEOUT_SECS")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs),
            max_retries: var("FLEET_MAX_RETRIES").and_then(|n| n.parse().ok()),
        }
    }
}

/// The provider the environment asks for, and a line saying which and why: [`from_settings`]
/// of [`ProviderSettings::from_env`].
///
/// # Errors
/// As [`from_settings`].
pub fn from_env() -> Result<(Arc<dyn DynProvider>, String), ProviderError> {
    from_settings(&ProviderSettings::from_env())
}

/// The provider `settings` ask for, and a line saying which and why.
///
/// `provider` picks one: `anthropic` (needs its key), `openai` (a key or a base URL; Chat
/// Completions), `openai-responses`, `offline`, or `scripted` (replays `cassette`). Unset:
/// Anthropic when its key is set, else OpenAI when its key or base URL is, else the offline
/// provider.
///
/// # Errors
/// An unknown provider, a provider asked for without its key, or one that cannot be built (a
/// cassette that does not load).
pub fn from_settings(
    settings: &ProviderSettings,
) -> Result<(Arc<dyn DynProvider>, String), ProviderError> {
    let config = |message: String| ProviderError::Config {
        provider: "config".into(),
        message,
    };
    let missing = |name: &str, key: &str| {
        config(format!(
            "the provider is {name} but {key} is not set: set it, or pick another provider"
        ))
    };
    let http = || {
        let mut config = HttpConfig::default();
        if let Some(idle) = settings.idle_timeout {
            config.idle_timeout = idle;
        }
        if let Some(n) = settings.max_retries {
            config.retry.max_retries = n;
        }
        HttpClient::new(config)
    };
    let anthropic = |key: &ApiKey| -> Result<Arc<dyn DynProvider>, ProviderError> {
        let base = settings
            .anthropic_base_url
            .clone()
            .unwrap_or_else(|| crate::model::anthropic::DEFAULT_BASE_URL.into());
        Ok(Arc::new(AnthropicProvider::new(http()?, base, key.clone())))
    };
    let openai = |api: OpenAiApi, name: &str| -> Result<Arc<dyn DynProvider>, ProviderError> {
        let base = settings
            .openai_base_url
            .clone()
            .unwrap_or_else(|| crate::model::openai::DEFAULT_BASE_URL.into());
        Ok(Arc::new(OpenAiProvider::new(
            http()?,
            name,
            base,
            settings.openai_api_key.clone(),
            api,
        )))
    };
    let has_openai = settings.openai_api_key.is_some() || settings.openai_base_url.is_some();
    let offline = || -> Arc<dyn DynProvider> {
        Arc::new(
            settings
                .offline_latency
                .map_or_else(OfflineProvider::new, OfflineProvider::with_latency),
        )
    };
    match settings.provider.as_deref() {
        Some("anthropic") => {
            let key = settings
                .anthropic_api_key
                .as_ref()
                .ok_or_else(|| missing("anthropic", "ANTHROPIC_API_KEY"))?;
            Ok((anthropic(key)?, "provider: anthropic".into()))
        }
        Some(name @ ("openai" | "openai-responses")) => {
            if !has_openai {
                return Err(missing(name, "OPENAI_API_KEY or OPENAI_BASE_URL"));
            }
            let api = if name == "openai" {
                OpenAiApi::ChatCompletions
            } else {
                OpenAiApi::Responses
            };
            Ok((openai(api, name)?, format!("provider: {name}")))
        }
        Some("offline") => Ok((offline(), "provider: offline".into())),
        Some("scripted") => {
            let path = settings
                .cassette
                .as_ref()
                .ok_or_else(|| missing("scripted", "FLEET_CASSETTE"))?;
            let cassette = crate::model::scripted::Cassette::load(path)?;
            Ok((
                Arc::new(ScriptedProvider::new(cassette)),
                format!("provider: scripted ({})", path.display()),
            ))
        }
        Some(other) => Err(config(format!(
            "{other:?} is not a provider: use {}",
            PROVIDERS.join(", ")
        ))),
        None => {
            if let Some(key) = &settings.anthropic_api_key {
                if has_openai {
                    // Both: each model goes to its maker's API.
                    let router = ModelRouter::new(anthropic(key)?)
                        .route("gpt-", openai(OpenAiApi::ChatCompletions, "openai")?)
                        .route("o1", openai(OpenAiApi::ChatCompletions, "openai")?)
                        .route("o3", openai(OpenAiApi::ChatCompletions, "openai")?)
                        .route("o4", openai(OpenAiApi::ChatCompletions, "openai")?);
                    return Ok((
                        Arc::new(router),
                        "provider: anthropic for claude-* models, openai for gpt-* and o* (both keys are configured)".into(),
                    ));
                }
                return Ok((
                    anthropic(key)?,
                    "provider: anthropic (an Anthropic API key is configured)".into(),
                ));
            }
            if has_openai {
                return Ok((
                    openai(OpenAiApi::ChatCompletions, "openai")?,
                    "provider: openai (an OpenAI key or base URL is configured)".into(),
                ));
            }
            Ok((
                offline(),
                "provider: offline (no API key configured; answers are deterministic stand-ins, tokens are counted, dollars are $0)".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_by_keys_and_names_what_is_missing() {
        let none = ProviderSettings::default();
        let (p, said) = from_settings(&none).unwrap();
        assert_eq!(p.name_dyn(), "offline");
        assert!(said.contains("no API key configured"), "{said}");

        let keyed = ProviderSettings {
            anthropic_api_key: Some(ApiKey::new("sk-test")),
            ..ProviderSettings::default()
        };
        let (p, said) = from_settings(&keyed).unwrap();
        assert_eq!(p.name_dyn(), "anthropic");
        assert!(!said.contains("sk-test"));

        let both = ProviderSettings {
            anthropic_api_key: Some(ApiKey::new("sk-a")),
            openai_api_key: Some(ApiKey::new("sk-o")),
            ..ProviderSettings::default()
        };
        let (p, said) = from_settings(&both).unwrap();
        assert_eq!(p.name_dyn(), "anthropic+openai", "each model to its maker");
        assert!(said.contains("openai for gpt-*"), "{said}");

        let local = ProviderSettings {
            openai_base_url: Some("http://127.0.0.1:9/v1".into()),
            provider: Some("openai-responses".into()),
            ..ProviderSettings::default()
        };
        assert_eq!(
            from_settings(&local).unwrap().0.name_dyn(),
            "openai-responses"
        );

        let wanting = ProviderSettings {
            provider: Some("anthropic".into()),
            ..ProviderSettings::default()
        };
        let err = from_settings(&wanting).err().unwrap().to_string();
        assert!(err.contains("ANTHROPIC_API_KEY is not set"), "{err}");

        let unknown = ProviderSettings {
            provider: Some("antropic".into()),
            ..ProviderSettings::default()
        };
        let err = from_settings(&unknown).err().unwrap().to_string();
        assert!(err.contains("use anthropic, openai"), "{err}");
    }
}
