//! Finding workflows: saved scripts in the project and the user's home, and the built-ins.
//!
//! Saved workflows are `.fleet/workflows/*.js` and `.claude/workflows/*.js` in every directory
//! from the working directory up to the repository root (closest wins; `.fleet` before
//! `.claude` in the same directory), then `~/.fleet/workflows/` and `~/.claude/workflows/` (the
//! user's own Claude Code workflows; `.fleet` first here too). A project workflow beats a
//! personal one of the same name, and both beat a built-in. The name is `meta.name`. A file
//! whose header is bad is reported with the reason, not registered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::script::{Script, ScriptError};

/// A workflow the catalog cannot give.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No workflow has that name.
    #[error("unknown workflow '{name}'; known: {}.{}", known.join(", "), suggestion_text(.closest.as_deref()))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names the catalog has.
        known: Vec<String>,
        /// The closest known name, when one is close.
        closest: Option<String>,
    },
    /// A file of that name was found, but its header is bad.
    #[error("workflow '{name}' cannot be registered: {error}")]
    Unregistered {
        /// The name asked for.
        name: String,
        /// What is wrong with the file.
        error: ScriptError,
    },
    /// `workflow(ref)` was given something that names no workflow.
    #[error("workflow(): expected a name, {{ name }} or {{ scriptPath }}")]
    BadReference,
    /// The file `{ scriptPath }` names does not load.
    #[error("workflow(): {0}")]
    Script(ScriptError),
}

fn suggestion_text(closest: Option<&str>) -> String {
    closest
        .map(|k| format!(" Did you mean '{k}'?"))
        .unwrap_or_default()
}

/// Where a workflow was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// In the project (`.fleet/workflows` or `.claude/workflows`).
    Project,
    /// In `~/.fleet/workflows`.
    Personal,
    /// Shipped with fleet.
    Builtin,
}

/// A registered workflow.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its script.
    pub script: Arc<Script>,
    /// Where it was found.
    pub source: Source,
    /// Same-named workflows it hides (their origins).
    pub shadows: Vec<String>,
}

/// The workflows a run can name, and the files that could not be registered.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<String, Entry>,
    /// Files with a bad header, with the reason.
    pub errors: Vec<ScriptError>,
}

const BUILTINS: &[(&str, &str)] = &[
    ("deep-research", include_str!("builtins/deep-research.js")),
    ("review-code", include_str!("builtins/review-code.js")),
    ("find-issues", include_str!("builtins/find-issues.js")),
];

impl Catalog {
    /// The built-in workflows only.
    #[must_use]
    pub fn builtins() -> Self {
        let mut catalog = Self::default();
        for (name, source) in BUILTINS {
            match Script::parse(format!("builtin:{name}"), *source) {
                Ok(script) => catalog.add(script, Source::Builtin),
                Err(e) => catalog.errors.push(e),
            }
        }
        catalog
    }

    /// The built-ins, the personal workflows in `home` (`~/.fleet/workflows`, then
    /// `~/.claude/workflows`) and the project workflows from `cwd` up to the repository root.
    #[must_use]
    pub fn discover(cwd: &Path, home: Option<&Path>) -> Self {
        let mut catalog = Self::builtins();
        if let Some(home) = home {
            // `.fleet` last, so that it replaces what it shadows, as in a project directory.
            catalog.scan(&home.join(".claude").join("workflows"), Source::Personal);
            catalog.scan(&home.join(".fleet").join("workflows"), Source::Personal);
        }
        // Farthest first, so that closer directories replace what they shadow.
        let mut dirs = project_dirs(cwd);
        dirs.reverse();
        for dir in dirs {
            catalog.scan(&dir.join(".claude").join("workflows"), Source::Project);
            catalog.scan(&dir.join(".fleet").join("workflows"), Source::Project);
        }
        catalog
    }

    fn scan(&mut self, dir: &Path, source: Source) {
        let Ok(read) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = read
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "js" || e == "mjs"))
            .collect();
        files.sort();
        for file in files {
            match Script::load(&file) {
                Ok(script) => self.add(script, source),
                Err(e) => self.errors.push(e),
            }
        }
    }

    fn add(&mut self, script: Script, source: Source) {
        let name = script.meta.name.clone();
        let mut shadows = Vec::new();
        if let Some(old) = self.entries.remove(&name) {
            shadows.push(old.script.origin.clone());
            shadows.extend(old.shadows);
        }
        self.entries.insert(
            name,
            Entry {
                script: Arc::new(script),
                source,
                shadows,
            },
        );
    }

    /// The workflow named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    /// Every registered workflow, by name.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// What `workflow(ref)` names: a name, `{name}` or `{scriptPath}` (relative to `base`).
    ///
    /// # Errors
    /// What `workflow()` rejects with.
    pub fn resolve(
        &self,
        reference: &Value,
        base: Option<&Path>,
    ) -> Result<Arc<Script>, CatalogError> {
        let name = match reference {
            Value::String(name) => name.as_str(),
            Value::Object(map) => {
                if let Some(path) = map.get("scriptPath").and_then(Value::as_str) {
                    let path = Path::new(path);
                    let path = match base {
                        Some(base) if path.is_relative() => base.join(path),
                        _ => path.to_path_buf(),
                    };
                    return Script::load(&path)
                        .map(Arc::new)
                        .map_err(CatalogError::Script);
                }
                map.get("name")
                    .and_then(Value::as_str)
                    .ok_or(CatalogError::BadReference)?
            }
            _ => return Err(CatalogError::BadReference),
        };
        self.find(name)
    }

    /// Why the file named `name` (`name.js` in a workflow directory) was not registered, when
    /// one was found and its header is bad (no `meta`, a syntax error).
    #[must_use]
    pub fn unregistered(&self, name: &str) -> Option<&ScriptError> {
        self.errors
            .iter()
            .find(|e| Path::new(&e.origin).file_stem().and_then(|s| s.to_str()) == Some(name))
    }

    /// The script named `name`.
    ///
    /// # Errors
    /// When no workflow has that name (the error lists the known ones), or the file of that
    /// name has a bad header.
    pub fn find(&self, name: &str) -> Result<Arc<Script>, CatalogError> {
        if let Some(entry) = self.entries.get(name) {
            return Ok(entry.script.clone());
        }
        // A file of that name that could not be registered: say why, not that it is unknown.
        if let Some(e) = self.unregistered(name) {
            return Err(CatalogError::Unregistered {
                name: name.to_owned(),
                error: e.clone(),
            });
        }
        let known: Vec<String> = self.entries.keys().cloned().collect();
        Err(CatalogError::Unknown {
            name: name.to_owned(),
            closest: fleet_core::sync::did_you_mean(name, known.iter().map(String::as_str))
                .map(str::to_owned),
            known,
        })
    }
}

/// ` Did you mean '<closest>'?` when one of `known` is close to `name`, else nothing.
pub(crate) fn suggestion<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    suggestion_text(fleet_core::sync::did_you_mean(name, known))
}

/// The directories from `cwd` up to the repository root (the first with `.git`), closest
/// first; all the way up when there is no repository.
fn project_dirs(cwd: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for dir in cwd.ancestors() {
        dirs.push(dir.to_path_buf());
        if dir.join(".git").exists() {
            break;
        }
    }
    dirs
}
