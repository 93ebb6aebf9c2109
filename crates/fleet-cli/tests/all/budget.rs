//! Budgets under pressure, driven through `fleet run` as a user runs it: many concurrent calls
//! on a small dollar budget queue for it and use it up, instead of crowding each other out.

use serde_json::json;

use super::user::Project;

/// The run's spend, in dollars, from `fleet run --json`'s last event.
fn summary_of(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "run_ended")
        .map(|v| v["summary"].clone())
        .unwrap_or_else(|| panic!("no run_ended event in {stdout}"))
}

#[test]
fn a_thousand_calls_at_concurrency_64_use_a_small_budget_before_the_first_refusal() {
    let p = Project::init();
    // Every turn writes 20 tokens from a 10-token prompt on claude-haiku-4-5 ($1 in, $5 out per
    // million): $0.00011, so 1 000 calls would cost $0.11 and $0.10 runs out first. Each asks
    // for up to 4 096 output tokens (the default), a worst case of $0.02: without queueing, 64 calls in
    // flight would reserve $1.31 and all but a few would be refused at once.
    let turn = json!({"expect": {}, "events": [
        {"type": "text_delta", "text": "ok"},
        {"type": "usage", "usage": {"input": 10, "output": 20}},
        {"type": "done", "stop_reason": "end_turn"}
    ]});
    let cassette = p.root().join("cassette.json");
    std::fs::write(
        &cassette,
        json!({"order": "any", "exchanges": vec![turn; 1000]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        p.root().join(".fleet/workflows/many.js"),
        "export const meta = { name: 'many', description: 'a thousand small calls' };\n\
         const answers = await parallel(Array.from({ length: 1000 }, (_, i) => () =>\n\
           agent(`task ${i}`, { label: `t${i}`, model: 'claude-haiku-4-5' })));\n\
         return answers.filter((a) => a !== null).length;\n",
    )
    .unwrap();
    let out = p
        .fleet([
            "run",
            "many",
            "--json",
            "--concurrency",
            "64",
            "--budget-usd",
            "0.10",
        ])
        .env("FLEET_PROVIDER", "scripted")
        .env("FLEET_CASSETTE", &cassette)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "a run ended by its budget exits 4: {stderr}{}",
        &stdout[stdout.len().saturating_sub(3000)..]
    );
    let summary = summary_of(&stdout);
    let spent = summary["cost_usd"].as_f64().unwrap();
    let completed = summary["calls"]["completed"].as_u64().unwrap();
    let failed = summary["calls"]["failed"].as_u64().unwrap();
    eprintln!("spent ${spent:.5} of $0.10 in {completed} calls; {failed} refused");
    assert!(spent <= 0.10, "the cap is never passed: ${spent}");
    assert!(
        spent >= 0.095,
        "at least 95% of the budget is used before calls are refused: ${spent}, {completed} completed"
    );
    assert_eq!(completed + failed, 1000, "{summary}");
    assert!(failed > 0, "$0.10 cannot pay for all 1 000: {summary}");
    // Every refusal came after the budget was used: each names the run's dollar budget.
    for failure in summary["failures"].as_array().unwrap() {
        let reason = failure["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("Workflow dollar budget exceeded ("),
            "{reason}"
        );
    }
}
