//! A primary agent delegates one task to each specialist declared in `agents/*.yaml`; the
//! specialists run concurrently on fleet's real agent loop (model → tools → results), each
//! recorded as a `delegated_agent` work unit in the durable SQLite store at `.fleet/fleet.db`,
//! each admitted against its own `cost_budget` under a run budget. The work-unit tree is drawn
//! from what the store persisted.
//!
//! With `ANTHROPIC_API_KEY` set it calls Anthropic with each spec's model; otherwise it runs on
//! the deterministic offline provider and says so. Run it with:
//!
//! ```text
//! cargo run -p fleet-examples --example delegate
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use anyhow::Context;
use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
use fleet_core::budget::{BudgetLimits, Budgets};
use fleet_core::command::WorkUnitDraft;
use fleet_core::event::TurnState;
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::money::Usd;
use fleet_core::store::EventStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use fleet_providers::runner::agent::ModelAgentRunner;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (root, specs) = fleet_examples::project_specs()?;
    for problem in &specs.errors {
        println!("agent spec problem: {problem}");
    }

    let provider = fleet_examples::provider_from_env()?;

    let specs = Arc::new(specs);
    let runner = ModelAgentRunner::builder(provider)
        .workdir(&root)
        .specs(Arc::clone(&specs))
        .build();

    let db = root.join(".fleet/fleet.db");
    let store: SharedStore =
        Arc::new(SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?);
    let journal = Journal::create(Arc::clone(&store), Some("delegate example".into())).await?;
    let mut draft = WorkUnitDraft::new(WorkUnitKind::PrimaryAgent);
    draft.label = Some("survey the project with every specialist".into());
    draft.agent = Some("primary".into());
    let (turn, primary) = journal
        .start_turn(Some("survey the project".into()), draft)
        .await?;

    let budgets = Budgets::new();
    let run_budget = budgets.add(
        "run",
        None,
        BudgetLimits {
            usd: Usd::from_dollars(0.50),
            ..BudgetLimits::default()
        },
    );
    let calls = specs.specs.iter().map(|spec| {
        let budget = budgets.add(
            format!("agent:{}", spec.name),
            Some(run_budget),
            BudgetLimits {
                usd: Some(spec.effective_cost_budget()),
                ..BudgetLimits::default()
            },
        );
        let call = AgentCall {
            agent: Some(Arc::new(spec.clone())),
            // A real model reads the request; the offline model follows the `call` line.
            prompt: format!(
                "You are {}: {}. Take a first look at this project without changing anything, \
                 and say in two sentences what you would work on first.\ncall list_dir {{\"path\": \".\"}}",
                spec.name, spec.role
            ),
            max_tool_calls: Some(5),
            ..AgentCall::default()
        };
        let ctx = CallContext {
            budgets: budgets.clone(),
            charge_to: vec![budget],
            ..CallContext::new(journal.clone(), primary)
        };
        let runner = runner.clone();
        let name = spec.name.clone();
        async move { (name, runner.run(call, ctx).await) }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut failed = 0;
    for (name, result) in &results {
        match result {
            Ok(outcome) => {
                let first = outcome.text.lines().next().unwrap_or_default();
                println!("{name}: {first}");
            }
            Err(e) => {
                failed += 1;
                println!("{name}: failed: {e}");
            }
        }
    }
    let state = if failed == 0 {
        WorkUnitState::Completed
    } else {
        WorkUnitState::Failed
    };
    journal.set_state(primary, state, None).await?;
    journal
        .execute(fleet_core::command::Command::CompleteTurn {
            turn_id: turn,
            state: TurnState::Completed,
        })
        .await?;

    // Everything is durable: read the tree back from the store.
    let tree = store
        .snapshot(journal.thread_id())
        .await?
        .context("the thread persisted")?;
    println!();
    print!("{}", fleet_examples::draw_tree(&tree));
    let spent = budgets.status(run_budget).context("run budget")?.spent;
    println!(
        "\nrun budget: {} of $0.50 spent, {} output tokens; thread {} in {}",
        spent.usd,
        spent.output_tokens,
        tree.id,
        db.display()
    );
    anyhow::ensure!(failed == 0, "{failed} specialists failed");
    Ok(())
}
