//! The effective configuration: defaults, then the user config file, then the project's
//! `fleet.toml` (found walking up from the working directory), then the environment, then
//! flags; each later layer wins. Every value remembers where it came from, for
//! `fleet config show`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_providers::ProviderSettings;
use fleet_providers::transport::http::ApiKey;

/// The provider name of the benchmarks' fake model (`fleet run` only).
pub(crate) const FAKE: &str = "fake";
/// The project file's name.
pub(crate) const PROJECT_FILE: &str = "fleet.toml";

/// What a value is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Path,
    Count,
    Dollars,
    Switch,
    Secret,
}

/// One setting fleet knows.
struct Key {
    name: &'static str,
    kind: Kind,
    env: Option<&'static str>,
    help: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "provider.name",
        kind: Kind::Text,
        env: Some("FLEET_PROVIDER"),
        help: "anthropic, openai, openai-responses, offline or scripted (default: by the keys set)",
    },
    Key {
        name: "provider.model",
        kind: Kind::Text,
        env: Some("FLEET_MODEL"),
        help: "the model of agent calls that name none",
    },
    Key {
        name: "provider.anthropic_api_key",
        kind: Kind::Secret,
        env: Some("ANTHROPIC_API_KEY"),
        help: "Anthropic's API key (user config or environment only)",
    },
    Key {
        name: "provider.anthropic_base_url",
        kind: Kind::Text,
        env: Some("ANTHROPIC_BASE_URL"),
        help: "Anthropic's API address",
    },
    Key {
        name: "provider.openai_api_key",
        kind: Kind::Secret,
        env: Some("OPENAI_API_KEY"),
        help: "OpenAI's API key (user config or environment only)",
    },
    Key {
        name: "provider.openai_base_url",
        kind: Kind::Text,
        env: Some("OPENAI_BASE_URL"),
        help: "an OpenAI-compatible server, ending in /v1",
    },
    Key {
        name: "provider.cassette",
        kind: Kind::Path,
        env: Some("FLEET_CASSETTE"),
        help: "the recording the scripted provider replays",
    },
    Key {
        name: "provider.offline_latency_ms",
        kind: Kind::Count,
        env: Some("FLEET_OFFLINE_LATENCY_MS"),
        help: "how long the offline provider takes per answer",
    },
    Key {
        name: "provider.idle_timeout_secs",
        kind: Kind::Count,
        env: Some("FLEET_IDLE_TIMEOUT_SECS"),
        help: "how long a model's answer may go without a byte before the call times out (default 300)",
    },
    Key {
        name: "provider.max_retries",
        kind: Kind::Count,
        env: Some("FLEET_MAX_RETRIES"),
        help: "retries of a refused or dropped model request, with exponential backoff (default 4)",
    },
    Key {
        name: "ask.model",
        kind: Kind::Text,
        env: Some("FLEET_ASK_MODEL"),
        help: "the primary agent's model for `fleet ask`",
    },
    Key {
        name: "run.concurrency",
        kind: Kind::Count,
        env: Some("FLEET_CONCURRENCY"),
        help: "agent calls in flight per run",
    },
    Key {
        name: "run.max_calls",
        kind: Kind::Count,
        env: Some("FLEET_MAX_CALLS"),
        help: "most agent() calls in one run (Claude Code's cap: 1000)",
    },
    Key {
        name: "run.budget_usd",
        kind: Kind::Dollars,
        env: Some("FLEET_BUDGET_USD"),
        help: "a run's dollar budget",
    },
    Key {
        name: "run.budget_tokens",
        kind: Kind::Count,
        env: Some("FLEET_BUDGET_TOKENS"),
        help: "a run's output-token budget",
    },
    Key {
        name: "run.fail_on_null",
        kind: Kind::Switch,
        env: Some("FLEET_FAIL_ON_NULL"),
        help: "true: any agent() call that comes back null fails the run (exit 1)",
    },
    Key {
        name: "fleet.budget_usd",
        kind: Kind::Dollars,
        env: Some("FLEET_FLEET_BUDGET_USD"),
        help: "what `fleet start`'s specialists may spend in all, over their own budgets",
    },
    Key {
        name: "prices.file",
        kind: Kind::Path,
        env: Some("FLEET_PRICES"),
        help: "a price table (the built-in table's YAML format) whose models add to or replace the built-in ones",
    },
    Key {
        name: "store.path",
        kind: Kind::Path,
        env: Some("FLEET_STORE"),
        help: "the SQLite store (default: .fleet/fleet.db in the project)",
    },
    Key {
        name: "agents.dir",
        kind: Kind::Path,
        env: None,
        help: "where the agent specs are (default: agents/ in the project)",
    },
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    User(PathBuf),
    Project(PathBuf),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(p) | Self::Project(p) => write!(f, "{}", p.display()),
            Self::Env(v) => write!(f, "env {v}"),
            Self::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// A configuration problem: where, what, and how to fix it.
#[derive(Debug)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Flags that override the configuration.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub(crate) provider: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) ask_model: Option<String>,
    pub(crate) concurrency: Option<u64>,
    pub(crate) max_calls: Option<u64>,
    pub(crate) budget_usd: Option<f64>,
    pub(crate) budget_tokens: Option<u64>,
    pub(crate) fail_on_null: bool,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The project's root (where `fleet.toml` is), if the working directory is in one.
    pub(crate) project: Option<PathBuf>,
    /// The user config file's path (it may not exist).
    pub(crate) user_file: Option<PathBuf>,
    /// The working directory.
    pub(crate) cwd: PathBuf,
    values: BTreeMap<&'static str, (String, Source)>,
}

impl Config {
    /// Loads every layer for a process working in `cwd` with environment `env`.
    pub(crate) fn load(
        cwd: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        // A `fleet.toml` that is not a file (a directory, say) would send the run to the
        // global store in silence: it is an error.
        if let Some(odd) = cwd
            .ancestors()
            .map(|dir| dir.join(PROJECT_FILE))
            .take_while(|file| !file.is_file())
            .find(|file| file.exists())
        {
            return Err(ConfigError(format!(
                "{} is not a file: the project's configuration is a TOML file there; remove or rename what is in its place",
                odd.display()
            )));
        }
        let project = find_project(cwd);
        let user_file = env("FLEET_CONFIG").map(PathBuf::from).or_else(|| {
            env("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))
                .map(|dir| dir.join("fleet").join("config.toml"))
        });
        let mut config = Self {
            project: project.clone(),
            user_file: user_file.clone(),
            cwd: cwd.to_owned(),
            values: BTreeMap::new(),
        };
        if let Some(file) = user_file.filter(|f| f.is_file()) {
            config.layer_file(&file, Source::User(file.clone()))?;
        }
        if let Some(root) = &project {
            let file = root.join(PROJECT_FILE);
            config.layer_file(&file, Source::Project(file.clone()))?;
        }
        for key in KEYS {
            if let Some(var) = key.env
                && let Some(value) = env(var).map(|v| v.trim().to_owned())
                && !value.is_empty()
            {
                check(key, &value).map_err(|e| ConfigError(format!("{var}: {e}")))?;
                config.values.insert(key.name, (value, Source::Env(var)));
            }
        }
        let mut flag = |name: &'static str, flag: &'static str, value: Option<String>| {
            if let Some(value) = value {
                config.values.insert(name, (value, Source::Flag(flag)));
            }
        };
        flag("provider.name", "--provider", flags.provider.clone());
        flag("provider.model", "--model", flags.model.clone());
        flag("ask.model", "--model", flags.ask_model.clone());
        flag(
            "run.concurrency",
            "--concurrency",
            flags.concurrency.map(|n| n.to_string()),
        );
        flag(
            "run.budget_usd",
            "--budget-usd",
            flags.budget_usd.map(|n| n.to_string()),
        );
        flag(
            "run.max_calls",
            "--max-calls",
            flags.max_calls.map(|n| n.to_string()),
        );
        flag(
            "run.budget_tokens",
            "--budget-tokens",
            flags.budget_tokens.map(|n| n.to_string()),
        );
        flag(
            "run.fail_on_null",
            "--fail-on-null",
            flags.fail_on_null.then(|| "true".to_owned()),
        );
        if let Some(name) = config.get("provider.name")
            && !fleet_providers::PROVIDERS.contains(&name)
            && name != FAKE
        {
            let (_, from) = &config.values["provider.name"];
            return Err(ConfigError(format!(
                "{from}: provider {name:?} is not one fleet has: use {} (or {FAKE}, the benchmarks' model, with `fleet run`)",
                fleet_providers::PROVIDERS.join(", ")
            )));
        }
        Ok(config)
    }

    fn layer_file(&mut self, file: &Path, source: Source) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", file.display())))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            ConfigError(format!(
                "{}: not valid TOML: {}",
                file.display(),
                e.to_string().trim()
            ))
        })?;
        let project = matches!(source, Source::Project(_));
        for (section, body) in &table {
            let toml::Value::Table(body) = body else {
                return Err(ConfigError(format!(
                    "{}: `{section}` must be a table ([{section}] with keys under it)",
                    file.display()
                )));
            };
            for (name, value) in body {
                let full = format!("{section}.{name}");
                let Some(key) = KEYS.iter().find(|k| k.name == full) else {
                    let hint = nearest(&full)
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_else(|| "; `fleet config show` lists every key".into());
                    return Err(ConfigError(format!(
                        "{}: unknown key `{full}`{hint}",
                        file.display()
                    )));
                };
                if project && key.kind == Kind::Secret {
                    return Err(ConfigError(format!(
                        "{}: `{full}` does not belong in the project file, which is usually committed: \
                         put it in the user config ({}) or the environment ({})",
                        file.display(),
                        self.user_file.as_ref().map_or_else(
                            || "~/.config/fleet/config.toml".into(),
                            |p| p.display().to_string()
                        ),
                        key.env.unwrap_or_default()
                    )));
                }
                let value = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err(ConfigError(format!(
                            "{}: `{full}` must be a {}, not {}",
                            file.display(),
                            kind_name(key.kind),
                            other.type_str()
                        )));
                    }
                };
                check(key, &value)
                    .map_err(|e| ConfigError(format!("{}: `{full}`: {e}", file.display())))?;
                let value = if key.kind == Kind::Path {
                    // Relative paths are relative to the file that says them.
                    let base = file.parent().unwrap_or(Path::new("."));
                    base.join(&value).display().to_string()
                } else {
                    value
                };
                self.values.insert(key.name, (value, source.clone()));
            }
        }
        Ok(())
    }

    /// A value, if set anywhere.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    fn count(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|v| v.parse().ok())
    }

    /// Whether `fleet run` uses the benchmarks' fake model.
    pub(crate) fn fake_model(&self) -> bool {
        self.get("provider.name") == Some(FAKE)
    }

    /// What picks and builds the provider.
    pub(crate) fn provider_settings(&self) -> ProviderSettings {
        ProviderSettings {
            provider: self.get("provider.name").map(str::to_owned),
            anthropic_api_key: self.get("provider.anthropic_api_key").map(ApiKey::new),
            anthropic_base_url: self.get("provider.anthropic_base_url").map(str::to_owned),
            openai_api_key: self.get("provider.openai_api_key").map(ApiKey::new),
            openai_base_url: self.get("provider.openai_base_url").map(str::to_owned),
            cassette: self.get("provider.cassette").map(PathBuf::from),
            offline_latency: self
                .count("provider.offline_latency_ms")
                .map(Duration::from_millis),
            idle_timeout: self
                .count("provider.idle_timeout_secs")
                .map(Duration::from_secs),
            max_retries: self
                .count("provider.max_retries")
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    /// The model of calls that name none, if configured.
    pub(crate) fn model(&self) -> Option<&str> {
        self.get("provider.model")
    }

    /// The primary agent's model for `fleet ask`.
    pub(crate) fn ask_model(&self) -> &str {
        self.get("ask.model").unwrap_or("claude-sonnet-4-5")
    }

    pub(crate) fn concurrency(&self) -> Option<usize> {
        self.count("run.concurrency")
            .and_then(|n| usize::try_from(n).ok())
    }

    pub(crate) fn max_calls(&self) -> Option<u32> {
        self.count("run.max_calls")
            .and_then(|n| u32::try_from(n).ok())
    }

    pub(crate) fn budget_usd(&self) -> Option<f64> {
        self.get("run.budget_usd").and_then(|v| v.parse().ok())
    }

    pub(crate) fn fail_on_null(&self) -> bool {
        self.get("run.fail_on_null") == Some("true")
    }

    pub(crate) fn budget_tokens(&self) -> Option<u64> {
        self.count("run.budget_tokens")
    }

    /// What the fleet's specialists may spend in all.
    pub(crate) fn fleet_budget_usd(&self) -> Option<f64> {
        self.get("fleet.budget_usd").and_then(|v| v.parse().ok())
    }

    /// The configured price table, relative to the project's root.
    pub(crate) fn prices_file(&self) -> Option<PathBuf> {
        self.get("prices.file").map(|p| self.root().join(p))
    }

    /// The SQLite store: configured, else `.fleet/fleet.db` in the project, else in the user's
    /// data directory.
    pub(crate) fn store_path(&self, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        if let Some(path) = self.get("store.path") {
            return self.cwd.join(path);
        }
        if let Some(root) = &self.project {
            return root.join(".fleet").join("fleet.db");
        }
        env("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local").join("share")))
            .unwrap_or_else(std::env::temp_dir)
            .join("fleet")
            .join("fleet.db")
    }

    /// Where the agent specs are.
    pub(crate) fn agents_dir(&self) -> PathBuf {
        match self.get("agents.dir") {
            Some(dir) => self.cwd.join(dir),
            None => self.root().join("agents"),
        }
    }

    /// The project's root, or the working directory outside a project.
    pub(crate) fn root(&self) -> &Path {
        self.project.as_deref().unwrap_or(&self.cwd)
    }

    /// Every key with its effective value (secrets redacted) and where it came from, for
    /// `fleet config show`.
    pub(crate) fn show(&self, store: &Path) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "project      {}",
            self.project.as_ref().map_or_else(
                || "none (no fleet.toml here or above; `fleet init` makes one)".into(),
                |p| p.join(PROJECT_FILE).display().to_string()
            )
        );
        let _ = writeln!(
            out,
            "user config  {}",
            self.user_file.as_ref().map_or_else(
                || "none (HOME is not set)".into(),
                |p| format!(
                    "{}{}",
                    p.display(),
                    if p.is_file() { "" } else { " (not present)" }
                )
            )
        );
        let _ = writeln!(out);
        let width = KEYS.iter().map(|k| k.name.len()).max().unwrap_or(0);
        for key in KEYS {
            let (value, from) = match self.values.get(key.name) {
                Some((value, from)) => {
                    let shown = if key.kind == Kind::Secret {
                        redact(value)
                    } else {
                        format!("{value:?}")
                    };
                    (shown, from.to_string())
                }
                None if key.name == "store.path" => (
                    format!("{:?}", store.display().to_string()),
                    "default".into(),
                ),
                None => ("(unset)".into(), format!("default · {}", key.help)),
            };
            let _ = writeln!(out, "{:<width$}  {value:<28}  # {from}", key.name);
        }
        out
    }
}

/// `sk-a…(redacted)`: enough to tell two keys apart, never the key.
fn redact(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("\"{head}…\" (redacted, {} chars)", secret.chars().count())
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Text | Kind::Secret => "string",
        Kind::Path => "path (string)",
        Kind::Count => "whole number",
        Kind::Dollars => "number of dollars",
        Kind::Switch => "true or false",
    }
}

fn check(key: &Key, value: &str) -> Result<(), String> {
    match key.kind {
        Kind::Count => value
            .parse::<u64>()
            .map(drop)
            .map_err(|_| format!("{value:?} is not a whole number ≥ 0")),
        Kind::Dollars => match value.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(()),
            _ => Err(format!("{value:?} is not an amount of dollars ≥ 0")),
        },
        Kind::Switch => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("{value:?} is not true or false")),
        },
        Kind::Text | Kind::Path | Kind::Secret => Ok(()),
    }
}

fn nearest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::jaro_winkler(k.name, name), k.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The nearest directory at or above `cwd` holding `fleet.toml`.
pub(crate) fn find_project(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors()
        .find(|dir| dir.join(PROJECT_FILE).is_file())
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests;
