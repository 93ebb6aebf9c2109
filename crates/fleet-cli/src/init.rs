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

/// Where the sample agents work (their specs' `sandbox.writable`).
const WORKSPACE: &str = "workspace";

/// Makes `dir` the sample agents' workspace: a git repository with a first commit (they
/// commit their work there), unless it already is one.
fn workspace(app: &App, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if dir.join(".git").exists() {
        return Ok(());
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=fleet", "-c", "user.email=fleet@localhost"])
            .args(args)
            .output()
    };
    let made = git(&["init", "--quiet"]).and_then(|out| {
        if out.status.success() {
            git(&[
                "commit",
                "--quiet",
                "--allow-empty",
                "-m",
                "fleet init: the agents' workspace",
            ])
        } else {
            Ok(out)
        }
    });
    let said = match made {
        Ok(out) if out.status.success() => app.say(&format!(
            "created {WORKSPACE}/ (a git repository: the sample agents work and commit there; put the code they work on in it)"
        )),
        Ok(out) => app.say(&format!(
            "created {WORKSPACE}/, but `git init` there failed ({}): the sample agents commit their work, so make it a git repository",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => app.say(&format!(
            "created {WORKSPACE}/, but git cannot be run ({e}): the sample agents commit their work, so install git and run `git init {WORKSPACE}`"
        )),
    };
    Ok(said?)
}

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
    workspace(app, &root.join(WORKSPACE))?;
    app.say("\nnext: fleet run hello    (then: fleet trace, fleet agents list, fleet start)")?;
    Ok(exit::OK)
}
