//! `fleet init`: makes the working directory a fleet project.

use std::path::PathBuf;

use anyhow::Context;

use crate::app::{App, UsageError};
use crate::config::PROJECT_FILE;
use crate::exit;

/// What `fleet init` writes: path (relative to the project) and content.
const FILES: &[(&str, &str)] = &[
    (PROJECT_FILE, include_str!("templates/fleet.toml")),
    (
        "agents/patch-bot.yaml",
        include_str!("../../../agents/patch-bot.yaml"),
    ),
    (
        "agents/test-writer-bot.yaml",
        include_str!("../../../agents/test-writer-bot.yaml"),
    ),
    (
        "agents/doc-bot.yaml",
        include_str!("../../../agents/doc-bot.yaml"),
    ),
    (
        ".fleet/workflows/hello.js",
        include_str!("templates/hello.js"),
    ),
];

/// Writes every file, or none when any already exists.
pub(crate) fn init(app: &App) -> anyhow::Result<u8> {
    let root = app.config.cwd.clone();
    let existing: Vec<PathBuf> = FILES
        .iter()
        .map(|(path, _)| root.join(path))
        .filter(|p| p.exists())
        .collect();
    if !existing.is_empty() {
        let names: Vec<String> = existing
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
            .collect();
        return Err(UsageError(format!(
            "not overwriting {} in {}: move them away or init another directory",
            names.join(", "),
            root.display()
        ))
        .into());
    }
    for (path, content) in FILES {
        let path = root.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
        app.say(&format!(
            "created {}",
            path.strip_prefix(&root).unwrap_or(&path).display()
        ))?;
    }
    app.say("\nnext: fleet run hello    (then: fleet trace, fleet agents list, fleet start)")?;
    Ok(exit::OK)
}
