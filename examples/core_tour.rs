//! A tour of fleet-core, end to end, on the embedded defaults.
//!
//! It loads the project's agent specs, opens the durable SQLite store at `.fleet/fleet.db`,
//! records one turn in which a primary agent delegates to each specialist (and one specialist to
//! a subagent of its own), prices every token, admits every call against a dollar budget by
//! reservation, reopens the store to show that everything persisted, and draws the work-unit
//! tree. No model is called: the token counts are what a small review would use, so that the
//! bookkeeping can be seen without an API key. Run it with:
//!
//! ```text
//! cargo run -p fleet-examples --example core-tour
//! ```

#![allow(clippy::print_stdout)]

use anyhow::Context;
use fleet_core::budget::{Amount, BudgetId, BudgetLimits, Budgets};
use fleet_core::command::{Command, Recorder};
use fleet_core::event::TurnState;
use fleet_core::id::WorkUnitId;
use fleet_core::money::Usd;
use fleet_core::pricing::PriceTable;
use fleet_core::store::EventStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};

/// One simulated model call of the turn.
struct Call {
    unit: WorkUnitId,
    model: String,
    max_tokens: u64,
    budget: BudgetId,
    usage: TokenUsage,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let (root, specs) = fleet_examples::project_specs()?;
    for problem in &specs.errors {
        println!("agent spec problem: {problem}");
    }
    println!(
        "offline tour: no model is called; fleet-core records, prices and budgets a simulated turn.\n"
    );

    let db = root.join(".fleet/fleet.db");
    let store = SqliteStore::open(&db).with_context(|| format!("opening {}", db.display()))?;
    let prices = PriceTable::builtin()?;
    let budgets = Budgets::new();
    let run_budget = budgets.add(
        "run",
        None,
        BudgetLimits {
            usd: Usd::from_dollars(0.25),
            ..BudgetLimits::default()
        },
    );

    let mut thread =
        Recorder::create(&store, Some("core tour: review the workspace".into())).await?;
    let (turn, primary) = thread
        .start_turn_with(
            WorkUnitKind::PrimaryAgent,
            Some("review the workspace and fix what fails".into()),
            |d| {
                d.label = Some("primary agent".into());
                d.model = Some("claude-sonnet-4-5".into());
            },
        )
        .await?;

    // The primary agent plans, then delegates one task to each specialist; patch-bot delegates
    // once more. Every call is charged to its agent's budget and, through it, to the run's.
    let mut calls = vec![Call {
        unit: primary,
        model: "claude-sonnet-4-5".into(),
        max_tokens: 8_192,
        budget: run_budget,
        usage: TokenUsage::from_anthropic(1_800, 420, 12_000, 0, 0),
    }];
    for (i, spec) in specs.specs.iter().enumerate() {
        let budget = budgets.add(
            format!("agent:{}", spec.name),
            Some(run_budget),
            BudgetLimits {
                usd: Some(spec.effective_cost_budget()),
                ..BudgetLimits::default()
            },
        );
        let unit = thread
            .start_work_unit(primary, WorkUnitKind::DelegatedAgent, |d| {
                d.label = Some(spec.role.clone());
                d.agent = Some(spec.name.clone());
                d.model = Some(spec.model.clone());
            })
            .await?;
        let max_tokens = u64::from(spec.max_tokens.unwrap_or(4_096));
        let usage = TokenUsage {
            input: 900 + 300 * i as u64,
            output: 350 + 120 * i as u64,
            cache_read: 4_000,
            ..TokenUsage::default()
        };
        calls.push(Call {
            unit,
            model: spec.model.clone(),
            max_tokens,
            budget,
            usage,
        });
        if spec.name == "patch-bot" {
            let sub = thread
                .start_work_unit(unit, WorkUnitKind::DelegatedAgent, |d| {
                    d.label = Some("run the failing test and read its output".into());
                    d.model = Some("claude-haiku-4-5".into());
                })
                .await?;
            let usage = TokenUsage {
                input: 600,
                output: 90,
                ..TokenUsage::default()
            };
            calls.push(Call {
                unit: sub,
                model: "claude-haiku-4-5".into(),
                max_tokens: 1_024,
                budget,
                usage,
            });
        }
    }
    for call in &calls {
        // Admitted only if its worst case (prompt at the dearest input rate plus max_tokens of
        // output) fits every budget above it; then settled to what it really cost.
        let price = prices.price(&call.model).with_context(|| {
            format!(
                "no price for {}: a dollar budget cannot admit it",
                call.model
            )
        })?;
        let worst = Amount {
            output_tokens: call.max_tokens,
            usd: price.worst_case(call.usage.total_input(), call.max_tokens),
        };
        let reservation = budgets.reserve(&[call.budget], worst)?;
        reservation.settle(Amount {
            output_tokens: call.usage.output,
            usd: price.cost(&call.usage),
        });
        thread
            .execute(Command::RecordUsage {
                work_unit_id: call.unit,
                model: Some(call.model.clone()),
                usage: call.usage,
            })
            .await?;
    }
    for call in calls.iter().rev() {
        thread
            .finish_work_unit(call.unit, WorkUnitState::Completed, None)
            .await?;
    }
    thread.complete_turn(turn, TurnState::Completed).await?;
    let id = thread.thread().id;
    drop(thread);
    drop(store);

    // Everything was durable: a fresh store reads the same tree back from disk.
    let store = SqliteStore::open(&db)?;
    let tree = store.snapshot(id).await?.context("the thread persisted")?;
    print!("{}", fleet_examples::draw_tree(&tree));
    let status = budgets.status(run_budget).context("run budget")?;
    let root_cost = tree.subtree_cost(tree.turns[0].root_id);
    anyhow::ensure!(
        root_cost.usd == status.spent.usd && root_cost.is_complete(),
        "the budget ledger ({}) and the persisted tree ({root_cost}) disagree",
        status.spent.usd
    );
    println!(
        "\nrun budget: {} spent of {} ({} reserved)",
        status.spent.usd,
        status.limits.usd.unwrap_or_default(),
        status.reserved.usd
    );
    println!(
        "{} events in {}; thread {id}",
        store.read_stream(id, 0, usize::MAX).await?.len(),
        db.display()
    );
    Ok(())
}
