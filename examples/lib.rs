//! Helpers shared by fleet's examples.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use fleet_core::id::WorkUnitId;
use fleet_core::provider::DynProvider;
use fleet_core::spec::SpecSet;
use fleet_core::thread::Thread;

/// Anthropic when `ANTHROPIC_API_KEY` is set, else the offline provider; prints which, in one
/// line.
///
/// # Errors
/// When the key is set but the provider cannot be built.
#[allow(clippy::print_stdout)]
pub fn provider_from_env() -> anyhow::Result<Arc<dyn DynProvider>> {
    let (provider, said) = fleet_providers::from_env()?;
    println!("{said}");
    Ok(provider)
}

/// The repository root and the agent specs in its `agents/` directory (problems with single
/// files are in [`SpecSet::errors`]).
///
/// # Errors
/// When the directory cannot be read or holds no valid spec.
pub fn project_specs() -> anyhow::Result<(PathBuf, SpecSet)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let specs = SpecSet::load_dir(&root.join("agents"))?;
    anyhow::ensure!(!specs.specs.is_empty(), "no valid agent specs in agents/");
    Ok((root, specs))
}

/// The work-unit tree of every turn of `thread` as a table: state, tokens, the share of input
/// served from the prompt cache (a bar and a percentage) and cost, children below their parents
/// with box-drawing branches.
#[must_use]
pub fn draw_tree(thread: &Thread) -> String {
    let mut out = format!(
        "{:<52} {:>9} {:>7} {:<11} {:>10}\n",
        "work unit", "state", "tokens", "cache hits", "cost"
    );
    for turn in &thread.turns {
        draw_unit(&mut out, thread, turn.root_id, "", "");
    }
    out
}

fn draw_unit(out: &mut String, thread: &Thread, id: WorkUnitId, lead: &str, rest: &str) {
    let Some(unit) = thread.work_unit(id) else {
        return;
    };
    let name = unit
        .agent
        .clone()
        .or_else(|| unit.label.clone())
        .unwrap_or_else(|| "work unit".into());
    let mut label = format!("{lead}{name} · {}", unit.model.as_deref().unwrap_or("-"));
    if label.chars().count() > 52 {
        label = format!("{}…", label.chars().take(51).collect::<String>());
    }
    let usage = thread.subtree_usage(unit.id);
    let ratio = usage.cache_hit_ratio();
    let bar: String = (0..5)
        .map(|i| {
            if ratio * 5.0 > f64::from(i) + 0.5 {
                '█'
            } else {
                '░'
            }
        })
        .collect();
    let cache = format!("{bar} {:>3.0}%", ratio * 100.0);
    let _ = writeln!(
        out,
        "{label:<52} {:>9} {:>7} {cache:<11} {:>10}",
        unit.state.to_string(),
        usage.total(),
        thread.subtree_cost(unit.id).to_string()
    );
    let children: Vec<_> = thread.children(id).map(|c| c.id).collect();
    for (i, child) in children.iter().enumerate() {
        let (branch, below) = if i + 1 == children.len() {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        draw_unit(
            out,
            thread,
            *child,
            &format!("{rest}{branch}"),
            &format!("{rest}{below}"),
        );
    }
}
