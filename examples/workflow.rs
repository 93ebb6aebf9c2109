//! Runs a workflow the way `fleet run` will: a built-in (or any discovered workflow) executes on
//! the QuickJS engine, every `agent()` call runs on fleet's real agent loop and is recorded in
//! the SQLite store at `.fleet/fleet.db`; progress prints as it happens, then the persisted
//! work-unit tree and the run summary are drawn.
//!
//! With `ANTHROPIC_API_KEY` set it calls Anthropic; otherwise it runs on the deterministic
//! offline provider and says so. By default it reviews fleet's own `crates/` directory:
//!
//! ```text
//! cargo run -p fleet-examples --example workflow
//! cargo run -p fleet-examples --example workflow -- find-issues '{"path": "crates"}'
//! cargo run -p fleet-examples --example workflow -- --resume <run-id> review-code '{"path": "crates"}'
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use anyhow::{Context, bail};
use fleet_core::journal::SharedStore;
use fleet_core::store::EventStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_providers::runner::agent::ModelAgentRunner;
use fleet_workflow::{Catalog, Resume, RunEvent, RunId, RunOptions, WorkflowEngine};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    let resume = match argv.iter().position(|a| a == "--resume") {
        Some(at) if at + 1 < argv.len() => {
            let id: RunId = argv[at + 1].parse().context("--resume takes a run id")?;
            argv.drain(at..=at + 1);
            Some(Resume {
                run_id: id,
                strict: false,
            })
        }
        Some(_) => bail!("--resume takes a run id"),
        None => None,
    };
    let name = argv
        .first()
        .cloned()
        .unwrap_or_else(|| "review-code".into());
    let args: serde_json::Value = match argv.get(1) {
        Some(json) => {
            serde_json::from_str(json).context("the second argument must be JSON args")?
        }
        None => serde_json::json!({ "path": "crates" }),
    };

    let (root, specs) = fleet_examples::project_specs()?;
    let provider = fleet_examples::provider_from_env()?;

    let specs = Arc::new(specs);
    let runner = ModelAgentRunner::builder(provider)
        .workdir(&root)
        .specs(Arc::clone(&specs))
        .build();
    let db = root.join(".fleet/fleet.db");
    let store: SharedStore =
        Arc::new(SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?);
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let catalog = Catalog::discover(&std::env::current_dir()?, home.as_deref());
    for problem in &catalog.errors {
        println!("workflow not registered: {problem}");
    }
    let script = catalog.find(&name)?;
    let engine = WorkflowEngine::new(Arc::clone(&store), Arc::new(runner))
        .with_specs(specs.specs.iter().cloned())
        .with_catalog(catalog);
    let options = RunOptions {
        args: Some(args),
        ..RunOptions::default()
    };
    let run = engine.start(script, options, resume).await?;
    println!("run {} ({name})\n", run.id());

    let mut seen = 0;
    loop {
        let events = run.next_events(seen).await;
        if events.is_empty() {
            break;
        }
        seen += events.len();
        for event in events {
            match event {
                RunEvent::PhaseStarted { title } => println!("▶ {title}"),
                RunEvent::AgentFinished {
                    label,
                    state,
                    usage,
                    ..
                } => {
                    println!("  {state:?} {label} ({} out tokens)", usage.output);
                }
                RunEvent::Log { message, .. } => println!("  · {message}"),
                _ => {}
            }
        }
    }
    let summary = run.wait().await;
    let thread = store
        .snapshot(run.id())
        .await?
        .context("the run's thread is missing")?;
    println!("\n{}", fleet_examples::draw_tree(&thread));
    println!(
        "{}: {} completed, {} cached, {} null, {} failed; {} output tokens, ${:.4}, {} ms",
        summary.state.as_str(),
        summary.calls.completed,
        summary.calls.cached,
        summary.calls.null,
        summary.calls.failed,
        summary.usage.output,
        summary.cost_usd.dollars(),
        summary.wall_ms
    );
    if let Some(error) = &summary.error {
        println!("error: {error}");
    }
    println!("result: {}", serde_json::to_string_pretty(&summary.result)?);
    println!(
        "\nresume it: cargo run -p fleet-examples --example workflow -- --resume {} {name} '<same args>'",
        run.id()
    );
    Ok(())
}
