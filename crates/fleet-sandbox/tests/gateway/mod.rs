//! The model gateway through real sandboxed workers (the Python fixture worker, and the
//! standard-library example in `examples/python-worker/`): turns stream through the
//! supervisor, only what the gateway metered moves money, and budgets hold under concurrency.

use fleet_core::budget::{BudgetLimits, Budgets, MIN_USEFUL_OUTPUT};
use fleet_core::money::Usd;
use fleet_core::pricing::PriceTable;
use fleet_core::provider::ModelRequest;
use fleet_sandbox::{SupervisorError, SupervisorEvent, WorkerError};
use serde_json::Value;

use super::*;

fn haiku() -> fleet_core::pricing::ModelPrice {
    *PriceTable::builtin()
        .unwrap()
        .price("claude-haiku-4-5")
        .unwrap()
}

/// What the mock's turn for `prompt` with `max_tokens` costs.
fn turn_cost(prompt: &str, max_tokens: u32) -> Usd {
    haiku().cost(&mock::usage_of(&ModelRequest::new(
        "claude-haiku-4-5",
        prompt,
        max_tokens,
    )))
}

fn failed_with(error: &SupervisorError) -> String {
    match error {
        SupervisorError::Task(WorkerError::Rpc(e)) => e.message.clone(),
        // The task failed because the gateway refused a turn: the refusal is the error.
        SupervisorError::Refused { reason, .. } => reason.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn turns_stream_through_the_gateway_and_only_what_it_metered_is_charged() {
    let Some(sandbox) = sandbox_or_skip("turns_stream_through_the_gateway…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    let mut events = supervisor.subscribe();
    supervisor.add(python_plan(&place, "")).await.unwrap();

    // The worker claims a billion tokens of each kind; its one model turn is what counts.
    let done = supervisor
        .call("echo-bot", task("t1", "forge"))
        .await
        .unwrap();
    let output = done.result.output.unwrap();
    assert_eq!(output["model"], "echo: forge", "{output}");
    assert_eq!(output["error"], Value::Null);
    let cost = turn_cost("forge", 20);
    assert_eq!((done.turns, done.cost), (1, cost));
    assert_eq!((done.usage.input, done.usage.output), (2, 20));
    // The worker is told what was metered and charged.
    assert_eq!(output["result"]["usage"]["output"], 20);
    assert_eq!(output["result"]["model"], "claude-haiku-4-5");
    assert_eq!(supervisor.spent("echo-bot").unwrap().spent.usd, cost);
    assert_eq!(
        supervisor.spent("echo-bot").unwrap().reserved.usd,
        Usd::ZERO
    );
    let seen: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        seen.iter().any(|e| matches!(e, SupervisorEvent::ReportedUsage { usage, .. } if usage.output == 1_000_000_000)),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| matches!(e, SupervisorEvent::ModelTurn { task_id, turn, .. } if task_id == "t1" && turn.cost == cost)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn turns_are_only_for_the_workers_own_task_and_its_agents_model() {
    let Some(sandbox) = sandbox_or_skip("turns_are_only_for…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    supervisor.add(python_plan(&place, "")).await.unwrap();
    let stranger = supervisor
        .call("echo-bot", task("t1", "stranger"))
        .await
        .unwrap_err();
    assert!(
        failed_with(&stranger).contains(r#"no task \"not-t1\" is running on this worker"#),
        "{stranger}"
    );
    let dear = supervisor
        .call("echo-bot", task("t2", "dear"))
        .await
        .unwrap_err();
    assert!(
        failed_with(&dear).contains(
            "agent echo-bot uses the model of its spec, claude-haiku-4-5; the turn asked for claude-opus-4-1"
        ),
        "{dear}"
    );
    assert_eq!(supervisor.spent("echo-bot").unwrap().spent.usd, Usd::ZERO);
}

#[tokio::test]
async fn a_worker_cancels_its_turn_and_the_reservation_is_released() {
    let Some(sandbox) = sandbox_or_skip("a_worker_cancels_its_turn…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    supervisor.add(python_plan(&place, "")).await.unwrap();
    let cancelled = supervisor
        .call("echo-bot", task("t1", "long"))
        .await
        .unwrap_err();
    let message = failed_with(&cancelled);
    assert!(message.contains("-32800"), "{message}");
    let status = supervisor.spent("echo-bot").unwrap();
    assert_eq!(
        (status.spent.usd, status.reserved.usd),
        (Usd::ZERO, Usd::ZERO)
    );
}

#[tokio::test]
async fn a_cancelled_task_is_told_to_stop_and_its_worker_takes_the_next() {
    let Some(sandbox) = sandbox_or_skip("a_cancelled_task_is_told_to_stop…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    let mut plan = python_plan(&place, "");
    plan.max = 1;
    supervisor.add(plan).await.unwrap();
    let cancel = fleet_core::provider::CancelToken::new();
    let running = tokio::spawn({
        let supervisor = supervisor.clone();
        let cancel = cancel.clone();
        async move {
            let with = fleet_sandbox::TaskOptions {
                cancel: Some(cancel),
                ..Default::default()
            };
            // "spend" waits for its task/cancel, then answers that it was cancelled.
            supervisor
                .stream_with("echo-bot", task("t1", "spend"), with)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let asked = std::time::Instant::now();
    cancel.cancel();
    let ended = running.await.unwrap().unwrap_err();
    assert!(
        matches!(&ended, SupervisorError::Cancelled { agent } if agent == "echo-bot"),
        "{ended:?}"
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(3),
        "the worker stopped when told, without the grace period running out"
    );
    // The one worker is free again, and its next task runs.
    let next = supervisor
        .call("echo-bot", task("t2", "abc"))
        .await
        .unwrap();
    assert_eq!(next.result.text, "cba");
    assert_eq!(supervisor.workers("echo-bot"), 1);
}

#[tokio::test]
async fn a_turn_that_does_not_fit_is_cut_to_what_is_left_then_the_agent_pauses_until_resumed() {
    let Some(sandbox) = sandbox_or_skip("a_turn_that_does_not_fit…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    let mut events = supervisor.subscribe();
    // A turn of 2000 output tokens of claude-haiku-4-5 is $0.010002: one fits in $0.015.
    supervisor
        .add(python_plan(&place, "cost_budget: 0.015\n"))
        .await
        .unwrap();
    let budget = Usd::from_dollars(0.015).unwrap();
    let one = turn_cost("budget", 2000);
    supervisor
        .call("echo-bot", task("t1", "budget"))
        .await
        .unwrap();
    assert_eq!(supervisor.spent("echo-bot").unwrap().spent.usd, one);
    // The second does not fit whole: it may write only what the rest of the budget pays for.
    let cut = supervisor
        .call("echo-bot", task("t2", "budget"))
        .await
        .unwrap();
    assert!(
        (MIN_USEFUL_OUTPUT.into()..2000).contains(&cut.usage.output),
        "{:?}",
        cut.usage
    );
    let spent = supervisor.spent("echo-bot").unwrap().spent.usd;
    assert!(spent <= budget, "{spent} > {budget}");
    assert!(
        budget.saturating_sub(spent) < turn_cost("budget", MIN_USEFUL_OUTPUT),
        "{spent} of {budget} spent, and a turn worth making would still fit"
    );
    // What is left is not worth a turn: the third is refused and pauses the agent.
    let refused = supervisor
        .call("echo-bot", task("t3", "budget"))
        .await
        .unwrap_err();
    let message = failed_with(&refused);
    assert!(
        matches!(&refused, SupervisorError::Refused { agent, .. } if agent == "echo-bot"),
        "{refused:?}"
    );
    assert!(
        message.contains("agent echo-bot: model turn refused")
            && message.contains("echo-bot has spent $0.0150 of its $0.0150 budget"),
        "{message}"
    );
    // Nothing more was spent, and the agent is paused: the next task does not start.
    assert_eq!(supervisor.spent("echo-bot").unwrap().spent.usd, spent);
    assert!(matches!(
        supervisor.call("echo-bot", task("t4", "x")).await,
        Err(SupervisorError::Paused { agent, .. }) if agent == "echo-bot"
    ));
    let paused: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(e, SupervisorEvent::AgentPaused { .. }))
        .collect();
    assert_eq!(paused.len(), 1, "{paused:?}");
    // The user raises the budget: it runs again.
    supervisor.resume("echo-bot", Some(Usd::from_dollars(1.0).unwrap()));
    supervisor
        .call("echo-bot", task("t5", "budget"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_larger_than_estimated_is_cut_off_before_it_writes_what_the_budget_cannot_pay() {
    let Some(sandbox) = sandbox_or_skip("a_prompt_larger_than_estimated…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    supervisor
        .add(python_plan(&place, "cost_budget: 0.015\n"))
        .await
        .unwrap();
    // The gateway estimates a few prompt tokens; the provider then says 20 000 ($0.02 of
    // claude-haiku-4-5's input, past the $0.015 budget): the turn is cut before its text.
    // The fixture worker reports the gateway's error as its answer.
    let report = supervisor
        .call("echo-bot", task("t1", "big:20000"))
        .await
        .unwrap();
    let message = report.result.output.as_ref().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(
            "agent echo-bot: the turn was cut off: its prompt was 20000 tokens, more than estimated"
        ),
        "{message}"
    );
    // Only the prompt the estimate missed (and the one output token reported with it) passed
    // the cap; nothing is left reserved, and the agent is paused with the true figure.
    let status = supervisor.spent("echo-bot").unwrap();
    let revealed = haiku().cost(&fleet_core::usage::TokenUsage {
        input: 20_000,
        output: 1,
        ..fleet_core::usage::TokenUsage::default()
    });
    assert_eq!(status.spent.usd, revealed);
    assert_eq!(status.reserved.usd, Usd::ZERO);
    let paused = supervisor.paused("echo-bot").unwrap();
    assert!(
        paused.contains(&format!(
            "echo-bot has spent {revealed} of its $0.0150 budget"
        )),
        "{paused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_tasks_never_spend_past_the_budget() {
    let Some(sandbox) = sandbox_or_skip("a_hundred_concurrent_tasks…") else {
        return;
    };
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    let mut plan = python_plan(&place, "cost_budget: 0.05\n");
    plan.max = 8;
    supervisor.add(plan).await.unwrap();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let supervisor = supervisor.clone();
            tokio::spawn(async move {
                supervisor
                    .call("echo-bot", task(&format!("t{i}"), "budget"))
                    .await
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => done += 1,
            Err(SupervisorError::Paused { agent, reason }) => {
                assert_eq!(agent, "echo-bot");
                assert!(reason.contains("of its $0.05 budget"), "{reason}");
            }
            Err(e) => {
                let message = failed_with(&e);
                // Refused at its reservation, or after the agent was paused by another's.
                assert!(
                    (message.contains("agent echo-bot: model turn refused")
                        || message.contains("agent echo-bot is paused"))
                        && message.contains("of its $0.05 budget"),
                    "{message}"
                );
            }
        }
    }
    let status = supervisor.spent("echo-bot").unwrap();
    let budget = Usd::from_dollars(0.05).unwrap();
    assert!(
        status.spent.usd <= budget,
        "{} > {budget}",
        status.spent.usd
    );
    assert_eq!(status.reserved.usd, Usd::ZERO);
    // The agent is paused, and says so with what it has spent now, not when it was paused.
    let paused = supervisor.paused("echo-bot").unwrap();
    assert!(
        paused.contains(&format!(
            "echo-bot has spent {} of its $0.05 budget",
            status.spent.usd
        )),
        "{paused}"
    );
    // Turns that did not fit waited for those in flight rather than failing: four whole turns
    // of $0.010002, then one cut to what was left, and only then a refusal.
    assert_eq!(done, 5);
    assert!(
        budget.saturating_sub(status.spent.usd) < turn_cost("budget", MIN_USEFUL_OUTPUT),
        "{} of {budget} spent",
        status.spent.usd
    );
}

#[tokio::test]
async fn the_fleets_budget_caps_every_agent_under_it() {
    let Some(sandbox) = sandbox_or_skip("the_fleets_budget…") else {
        return;
    };
    let place = Place::new();
    let budgets = Budgets::new();
    let fleet = budgets.add(
        "the fleet",
        None,
        BudgetLimits {
            output_tokens: None,
            usd: Some(Usd::from_dollars(0.015).unwrap()),
        },
    );
    let supervisor = supervisor_with_mock(sandbox).charging(budgets.clone(), Some(fleet));
    supervisor
        .add(python_plan(&place, "cost_budget: 5\n"))
        .await
        .unwrap();
    supervisor
        .call("echo-bot", task("t1", "budget"))
        .await
        .unwrap();
    // The second is cut to what the fleet's budget has left, the third refused by it.
    supervisor
        .call("echo-bot", task("t2", "budget"))
        .await
        .unwrap();
    let spent = budgets.status(fleet).unwrap().spent.usd;
    assert!(spent > turn_cost("budget", 2000) && spent <= Usd::from_dollars(0.015).unwrap());
    let refused = supervisor
        .call("echo-bot", task("t3", "budget"))
        .await
        .unwrap_err();
    let message = failed_with(&refused);
    assert!(message.contains("the fleet"), "{message}");
    assert_eq!(budgets.status(fleet).unwrap().spent.usd, spent);
}

#[tokio::test]
async fn a_worker_cannot_reach_the_network_itself() {
    let Some(sandbox) = sandbox_or_skip("a_worker_cannot_reach_the_network…") else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let place = Place::new();
    let supervisor = supervisor_with_mock(sandbox);
    supervisor.add(python_plan(&place, "")).await.unwrap();
    let said = supervisor
        .call("echo-bot", task("t1", &format!("connect 127.0.0.1 {port}")))
        .await
        .unwrap()
        .result
        .text;
    assert!(said.starts_with("refused: "), "{said}");
}

#[tokio::test]
async fn the_standard_library_python_example_answers_through_the_gateway() {
    let Some(sandbox) = sandbox_or_skip("the_standard_library_python_example…") else {
        return;
    };
    let place = Place::new();
    let example = place.path("out").join("example_worker.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-worker/worker.py"),
        &example,
    )
    .unwrap();
    let mut plan = python_plan(&place, "system: Answer briefly.\n");
    plan.args = vec![example.into()];
    let supervisor = supervisor_with_mock(sandbox);
    supervisor.add(plan).await.unwrap();
    let done = supervisor
        .call("echo-bot", task("t1", "name three colours"))
        .await
        .unwrap();
    assert_eq!(done.result.text, "echo: name three colours");
    assert_eq!(done.turns, 1);
    assert!(done.cost > Usd::ZERO);
    assert_eq!(supervisor.spent("echo-bot").unwrap().spent.usd, done.cost);
}
