//! What every command shares: the configuration, the environment, the store, the provider,
//! the specs and the workflow catalog, built on demand.

use std::collections::HashMap;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use fleet_core::id::ThreadId;
use fleet_core::provider::DynProvider;
use fleet_core::spec::SpecSet;
use fleet_core::store::sqlite::SqliteStore;
use fleet_workflow::Catalog;

use crate::config::{Config, Overrides};
use crate::render::Style;

/// A command-line mistake the parser could not catch (a run id that matches nothing, say).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Removes a file (a pid file, a socket) when dropped.
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The process's view of the world.
pub(crate) struct App {
    pub(crate) config: Config,
    env: HashMap<String, String>,
    /// Colours and live drawing on stderr.
    pub(crate) style: Style,
}

impl App {
    pub(crate) fn load(overrides: &Overrides) -> anyhow::Result<Self> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let cwd = std::env::current_dir().context("the working directory is unreadable")?;
        let lookup = |k: &str| env.get(k).cloned();
        let config = Config::load(&cwd, &lookup, overrides)?;
        let tty = std::io::stderr().is_terminal() && env.get("TERM").is_none_or(|t| t != "dumb");
        let style = Style {
            color: tty && !env.contains_key("NO_COLOR"),
            live: tty,
        };
        Ok(Self { config, env, style })
    }

    pub(crate) fn env(&self, key: &str) -> Option<String> {
        self.env.get(key).cloned()
    }

    /// Writes `text` and a newline to stdout.
    pub(crate) fn say(&self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")
    }

    pub(crate) fn store_path(&self) -> PathBuf {
        self.config.store_path(&|k| self.env(k))
    }

    /// The directory beside the store where running processes leave their pid.
    pub(crate) fn runs_dir(&self) -> PathBuf {
        self.store_path()
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            .join("runs")
    }

    /// Opens (creating if needed) the SQLite store.
    pub(crate) fn open_store(&self) -> anyhow::Result<Arc<SqliteStore>> {
        let path = self.store_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let store = SqliteStore::open(&path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        Ok(Arc::new(store))
    }

    /// Opens the store only if it exists (a read-only command in a new project has nothing to show).
    pub(crate) fn existing_store(&self) -> anyhow::Result<Option<Arc<SqliteStore>>> {
        if self.store_path().is_file() {
            self.open_store().map(Some)
        } else {
            Ok(None)
        }
    }

    /// The configured provider and the line that says which.
    pub(crate) fn provider(&self) -> anyhow::Result<(Arc<dyn DynProvider>, String)> {
        if self.config.fake_model() {
            anyhow::bail!(
                "the fake model is a stand-in for benchmarks and runs workflows only: use it with `fleet run`, or pick another provider"
            );
        }
        Ok(fleet_providers::from_settings(
            &self.config.provider_settings(),
        )?)
    }

    /// The price table: the built-in one, with the configured `prices.file` over it.
    pub(crate) fn prices(&self) -> anyhow::Result<Arc<fleet_core::pricing::PriceTable>> {
        let builtin = fleet_core::pricing::PriceTable::shipped();
        let Some(file) = self.config.prices_file() else {
            return Ok(builtin);
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the price table {} (prices.file): {e}",
                file.display()
            )
        })?;
        let overrides = fleet_core::pricing::PriceTable::from_yaml(&file, &text)
            .map_err(|d| anyhow::anyhow!("{d}"))?;
        Ok(Arc::new((*builtin).clone().with_overrides(overrides)))
    }

    /// The project's agent specs (none when the directory does not exist).
    pub(crate) fn specs(&self) -> anyhow::Result<SpecSet> {
        let dir = self.config.agents_dir();
        if !dir.is_dir() {
            return Ok(SpecSet::default());
        }
        SpecSet::load_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
    }

    /// The workflows fleet finds from here.
    pub(crate) fn catalog(&self) -> Catalog {
        let home = self.env("HOME").map(PathBuf::from);
        Catalog::discover(&self.config.cwd, home.as_deref())
    }

    /// A runtime for one command.
    pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    }

    /// The run `id` names: a whole id, or a prefix that only one run has.
    pub(crate) fn resolve_run(&self, store: &SqliteStore, id: &str) -> anyhow::Result<ThreadId> {
        let ids = store.thread_ids()?;
        let wanted = id.trim().to_ascii_lowercase();
        // A run id's start is its time (runs started together share it), its end is random:
        // either end of it names a run.
        let matching: Vec<ThreadId> = ids
            .into_iter()
            .filter(|t| {
                let full = t.to_string();
                full.starts_with(&wanted) || full.ends_with(&wanted)
            })
            .collect();
        match matching.as_slice() {
            [one] => Ok(*one),
            [] => Err(UsageError(format!(
                "no run {id:?} in {}: `fleet runs` lists them",
                self.store_path().display()
            ))
            .into()),
            many => {
                let shown: Vec<String> = many.iter().take(5).map(ToString::to_string).collect();
                Err(UsageError(format!(
                    "{id:?} matches {} runs ({}{}): give more of the id, or its last 8 characters (its random part)",
                    many.len(),
                    shown.join(", "),
                    if many.len() > 5 { ", …" } else { "" }
                ))
                .into())
            }
        }
    }

    /// The run `id` names, or the newest run.
    pub(crate) fn run_or_newest(
        &self,
        store: &SqliteStore,
        id: Option<&str>,
    ) -> anyhow::Result<ThreadId> {
        match id {
            Some(id) => self.resolve_run(store, id),
            None => store.thread_ids()?.first().copied().ok_or_else(|| {
                UsageError("no runs yet: `fleet run hello` starts one".into()).into()
            }),
        }
    }
}
