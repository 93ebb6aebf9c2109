//! `fleet workflows` and `fleet agents`: what a run can name, and whether the specs are valid.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fleet_core::spec::SpecSet;

use crate::app::{App, UsageError};
use crate::exit;
use crate::render::{self, Paint};

/// `fleet workflows list`.
pub(crate) fn workflows_list(app: &App) -> anyhow::Result<u8> {
    let catalog = app.catalog();
    let mut out = app.style.paint(
        Paint::Bold,
        &format!("{:<20} {:<10} {}", "workflow", "from", "description"),
    );
    out.push('\n');
    for (name, entry) in catalog.entries() {
        let _ = writeln!(
            out,
            "{:<20} {:<10} {}",
            name,
            render::serde_name(&entry.source),
            render::fit(&entry.script.meta.description, 70)
        );
    }
    for problem in &catalog.errors {
        let _ = writeln!(
            out,
            "{} {problem}",
            app.style.paint(Paint::Red, "not registered:")
        );
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// `fleet workflows show NAME`.
pub(crate) fn workflows_show(app: &App, name: &str) -> anyhow::Result<u8> {
    let catalog = app.catalog();
    let script = catalog.find(name).map_err(|e| UsageError(e.to_string()))?;
    let meta = &script.meta;
    let mut out = format!(
        "{}\n  {}\n  from {}\n",
        app.style.paint(Paint::Bold, &meta.name),
        meta.description,
        script.origin
    );
    if let Some(when) = &meta.when_to_use {
        let _ = writeln!(out, "  when to use: {when}");
    }
    if !meta.phases.is_empty() {
        let _ = writeln!(out, "  phases:");
        for phase in &meta.phases {
            let _ = writeln!(out, "    ▶ {}", phase.title);
        }
    }
    if let Some(args) = script.meta_json.get("args") {
        let _ = writeln!(
            out,
            "  args: {}",
            serde_json::to_string_pretty(args)?.replace('\n', "\n  ")
        );
    }
    let _ = writeln!(out, "\nrun it: fleet run {}", meta.name);
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

fn specs_in(app: &App, dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, SpecSet)> {
    let dir = dir.unwrap_or_else(|| app.config.agents_dir());
    // Listing or validating what is not there is not a success.
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(UsageError(format!(
            "{} {what}: agents are declared in <name>.yaml files there (`fleet init` writes three samples), or point agents.dir in fleet.toml elsewhere",
            shown(&dir)
        ))
        .into());
    }
    let set = SpecSet::load_dir(&dir).map_err(|e| UsageError(format!("{}: {e}", shown(&dir))))?;
    Ok((dir, set))
}

fn shown(dir: &Path) -> String {
    dir.display().to_string()
}

/// `fleet agents list`.
pub(crate) fn agents_list(app: &App, dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let (dir, set) = specs_in(app, dir)?;
    let mut out = app.style.paint(
        Paint::Bold,
        &format!(
            "{:<18} {:<20} {:>8}  {:<40} {}",
            "agent", "model", "budget", "capabilities", "role"
        ),
    );
    out.push('\n');
    for spec in &set.specs {
        let caps: Vec<String> = spec
            .capabilities
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<18} {:<20} {:>8}  {:<40} {}",
            spec.name,
            spec.model,
            spec.effective_cost_budget().to_string(),
            caps.join(", "),
            spec.role
        );
    }
    for d in &set.errors {
        let _ = writeln!(out, "{} {d}", app.style.paint(Paint::Red, "error"));
    }
    let _ = write!(out, "{} agents in {}", set.specs.len(), shown(&dir));
    app.say(&out)?;
    Ok(if set.errors.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// `fleet agents validate`.
pub(crate) fn agents_validate(app: &App, dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let (dir, set) = specs_in(app, dir)?;
    let mut out = String::new();
    for spec in &set.specs {
        let _ = writeln!(
            out,
            "ok       {:<20} {} ({})",
            spec.name, spec.model, spec.role
        );
    }
    for d in &set.errors {
        let _ = writeln!(out, "error    {d}");
    }
    let _ = write!(
        out,
        "{} valid, {} problem(s) in {}",
        set.specs.len(),
        set.errors.len(),
        shown(&dir)
    );
    app.say(&out)?;
    Ok(if set.errors.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
