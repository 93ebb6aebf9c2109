//! One test per behaviour of `docs/workflows.md`, each asserting the exact result.

use std::time::Duration;

use fleet_core::money::Usd;
use fleet_workflow::{CallState, RunState, ScriptLimits};
use serde_json::json;

use super::*;

fn parse_err(source: &str) -> String {
    Script::parse("wf.js", source).unwrap_err().to_string()
}

// ---- script shape -------------------------------------------------------------------------

#[tokio::test]
async fn the_returned_value_is_the_result() {
    let ran =
        run("const a = await agent('hello world!');\nreturn { a, n: [1, Infinity, NaN] };").await;
    assert_eq!(ran.summary.state, RunState::Completed, "{}", ran.error());
    assert_eq!(
        ran.summary.result,
        json!({"a": "ok:o world!", "n": [1, null, null]})
    );
    assert_eq!(ran.summary.calls.completed, 1);
}

#[test]
fn the_header_is_read_statically() {
    let s = Script::parse(
        "wf.js",
        "// lead comment\nexport const meta = {\n  name: 'x', description: `plain`, title: \"T\",\n  whenToUse: 'w', n: -3, f: 1.5e3, nested: { list: [true, null, 0x10] },\n  phases: [{ title: 'Scan', detail: 'd', model: 'haiku' }, { detail: 'no title' }, 'junk'],\n};\nreturn 1;",
    )
    .unwrap();
    assert_eq!(s.meta.name, "x");
    assert_eq!(s.meta.description, "plain");
    assert_eq!(s.meta.title.as_deref(), Some("T"));
    assert_eq!(s.meta.phases.len(), 1);
    assert_eq!(s.meta.phases[0].model.as_deref(), Some("haiku"));
    assert_eq!(s.meta_json["n"], json!(-3));
    assert_eq!(s.meta_json["nested"]["list"], json!([true, null, 16]));
    let dropped = Script::parse(
        "wf.js",
        "export const meta = { name: 'x', description: 'd', phases: 'bad' }",
    )
    .unwrap();
    assert!(dropped.meta.phases.is_empty());
}

#[test]
fn header_errors_name_file_line_and_column() {
    let cases = [
        (
            "export const meta = { name: foo, description: 'd' }",
            "wf.js:1:29: `foo`: identifiers are not allowed",
        ),
        (
            "export const meta = {\n  name: f(), description: 'd' }",
            "wf.js:2:9: `f`: calls are not allowed",
        ),
        (
            "export const meta = { name: new X(), description: 'd' }",
            "wf.js:1:29: `new` is not allowed",
        ),
        (
            "export const meta = { ...o, name: 'n', description: 'd' }",
            "wf.js:1:23: spreads are not allowed",
        ),
        (
            "export const meta = { [k]: 1, name: 'n', description: 'd' }",
            "wf.js:1:23: computed keys are not allowed",
        ),
        (
            "export const meta = { name: 'n', description: 'd', run() {} }",
            "wf.js:1:52: `run`: methods are not allowed",
        ),
        (
            "export const meta = { __proto__: {}, name: 'n', description: 'd' }",
            "wf.js:1:23: the key `__proto__` is not allowed",
        ),
        (
            "export const meta = { name: 'n', description: `a${b}` }",
            "wf.js:1:47: template strings in the header cannot use `${}`",
        ),
        (
            "export const meta = { name: 'n' }",
            "wf.js:1:1: `meta.description` is missing",
        ),
        (
            "export const meta = { name: '', description: 'd' }",
            "wf.js:1:1: `meta.name` must be a non-empty string",
        ),
        (
            "const x = 1;\nexport const meta = {}",
            "wf.js:1:1: expected `export`, found `const`",
        ),
        (
            "export const meta = { name: 'n', description: 'd' };\nconst m = await import('fs');",
            "wf.js:2:17: `import` is not available",
        ),
        (
            "export const meta = { name: 'n', description: 'd' };\nimport fs from 'fs';",
            "wf.js:2:1: `import` is not available",
        ),
    ];
    for (source, expected) in cases {
        let err = parse_err(source);
        assert!(
            err.starts_with(expected),
            "{source}\n  gave: {err}\n  want: {expected}"
        );
    }
    // `import` as a property or a key is fine.
    Script::parse(
        "wf.js",
        "export const meta = { name: 'n', description: 'd' };\nconst o = { import: 1 }; o.import;",
    )
    .unwrap();
}

#[tokio::test]
async fn a_body_that_does_not_compile_never_starts() {
    let ran = run("await agent('a');\nconst = 5;").await;
    assert_eq!(ran.summary.state, RunState::Failed);
    assert!(ran.error().starts_with("wf.js:3:7: "), "{}", ran.error());
    assert_eq!(
        ran.fake
            .stats
            .calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn an_uncaught_throw_fails_with_message_and_stack() {
    let ran = run("function inner() { throw new RangeError('boom'); }\ninner();").await;
    assert_eq!(ran.summary.state, RunState::Failed);
    let error = ran.error();
    assert!(error.starts_with("RangeError: boom\n"), "{error}");
    assert!(error.contains("at inner (wf.js:2:30)"), "{error}");
    assert!(error.contains("wf.js:3:1"), "{error}");
    assert!(!error.contains("prelude"), "{error}");
}

#[tokio::test]
async fn returning_a_function_fails_and_undefined_is_null() {
    let ran = run("return () => 1;").await;
    assert_eq!(ran.error(), "workflow result cannot be a function");
    let ran = run("const x = 1;").await;
    assert_eq!(
        (ran.summary.state, ran.summary.result.clone()),
        (RunState::Completed, json!(null))
    );
}

#[tokio::test]
async fn the_script_sees_meta_and_deep_copied_args() {
    let options = RunOptions {
        args: Some(json!({"list": [1, 2]})),
        ..RunOptions::default()
    };
    let ran = run_with(
        "args.list.push(3); return [meta.name, args.list, Object.isFrozen(meta)];",
        options,
        FakeModel::new(),
    )
    .await;
    assert_eq!(ran.summary.result, json!(["t", [1, 2, 3], true]));
    let ran = run("return typeof args;").await;
    assert_eq!(ran.summary.result, json!("undefined"));
}

// ---- the realm -----------------------------------------------------------------------------

#[tokio::test]
async fn no_io_globals_exist() {
    let ran = run(
        "const absent = ['require','process','fetch','URL','Buffer','module','setTimeout','setInterval','console','performance','queueMicrotask','structuredClone','std','os'].filter(n => typeof globalThis[n] !== 'undefined');\nconst injected = ['agent','parallel','pipeline','phase','log','budget','workflow','meta'].filter(n => typeof globalThis[n] === 'undefined');\nreturn [absent, injected];",
    )
    .await;
    assert_eq!(ran.summary.result, json!([[], []]), "{}", ran.error());
}

#[tokio::test]
async fn eval_and_function_constructors_throw() {
    let ran = run(
        "const out = [];\nfor (const f of [() => eval('1'), () => new Function('return 1'), () => (function(){}).constructor('return 1'), () => (async function(){}).constructor('return 1')]) {\n  try { f(); out.push('ran'); } catch (e) { out.push(e.name); }\n}\nreturn [out, (() => 1) instanceof Function];",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!([["EvalError", "EvalError", "EvalError", "EvalError"], true]),
        "{}",
        ran.error()
    );
}

#[tokio::test]
async fn clocks_and_randomness_throw_with_the_exact_prefixes() {
    let ran = run(
        "const out = [];\nfor (const f of [() => Date.now(), () => new Date(), () => Date(), () => Math.random()]) {\n  try { f(); out.push('ran'); } catch (e) { out.push(e.message); }\n}\nreturn [out, new Date(0).toISOString(), Math.max(1, 2), new Date(0) instanceof Date];",
    )
    .await;
    let result = &ran.summary.result;
    for i in 0..3 {
        assert!(
            result[0][i].as_str().unwrap().starts_with(
                "Date.now() / new Date() are unavailable in workflow scripts (breaks resume)."
            ),
            "{result}"
        );
    }
    assert!(
        result[0][3]
            .as_str()
            .unwrap()
            .starts_with("Math.random() is unavailable in workflow scripts (breaks resume).")
    );
    assert_eq!(result[1], json!("1970-01-01T00:00:00.000Z"));
    assert_eq!(
        (result[2].clone(), result[3].clone()),
        (json!(2), json!(true))
    );
}

// ---- limits ---------------------------------------------------------------------------------

#[tokio::test]
async fn cpu_time_is_limited_and_cannot_be_caught() {
    let options = RunOptions {
        limits: ScriptLimits {
            cpu: Duration::from_millis(200),
            ..ScriptLimits::default()
        },
        ..RunOptions::default()
    };
    // Nor by parallel(), which turns an item's throw into a null.
    for body in [
        "try { for (;;) {} } catch (e) { return 'caught'; }",
        "return await parallel([() => 1, () => { for (;;) {} }, () => 3]);",
        "return await pipeline([1, 2], (x) => agent('go ' + x), (x) => { for (;;) {} });",
    ] {
        let ran = run_with(body, options.clone(), FakeModel::new()).await;
        assert_eq!(ran.summary.state, RunState::Failed, "{body}");
        assert!(
            ran.error()
                .starts_with("the script used more than 200ms of CPU time"),
            "{body}: {}",
            ran.error()
        );
    }
}

#[tokio::test]
async fn cpu_time_waiting_on_agents_does_not_count() {
    let options = RunOptions {
        limits: ScriptLimits {
            cpu: Duration::from_millis(150),
            ..ScriptLimits::default()
        },
        ..RunOptions::default()
    };
    let fake = FakeModel::with_latency(Duration::from_millis(100));
    let ran = run_with(
        "for (let i = 0; i < 4; i++) await agent('wait ' + i);\nreturn 'done';",
        options,
        fake,
    )
    .await;
    assert_eq!(ran.summary.result, json!("done"), "{}", ran.error());
}

#[tokio::test]
async fn heap_exhaustion_ends_the_run_even_when_caught() {
    let options = RunOptions {
        limits: ScriptLimits {
            heap_bytes: 32 << 20,
            ..ScriptLimits::default()
        },
        ..RunOptions::default()
    };
    let ran = run_with(
        "const keep = [];\ntry { for (;;) keep.push('x'.repeat(1 << 16) + keep.length); } catch (e) { return 'caught ' + e.message; }",
        options,
        FakeModel::new(),
    )
    .await;
    assert_eq!(
        ran.summary.state,
        RunState::Failed,
        "{:?}",
        ran.summary.result
    );
    assert!(
        ran.error()
            .starts_with("the script's heap exceeded 33554432 bytes"),
        "{}",
        ran.error()
    );
}

#[tokio::test]
async fn the_1001st_agent_call_throws() {
    let ran = run(
        "const r = await parallel(Array.from({ length: 1000 }, (_, i) => () => agent('call ' + i)));\ntry { await agent('one more'); return 'no'; } catch (e) { return [r.filter(x => x !== null).length, e.message]; }",
    )
    .await;
    assert_eq!(ran.summary.result[0], json!(1000), "{}", ran.error());
    assert!(
        ran.summary.result[1]
            .as_str()
            .unwrap()
            .starts_with("Workflow agent() call cap reached (1000)")
    );
}

#[tokio::test]
async fn more_than_4096_items_is_an_explicit_error() {
    let ran = run(
        "const out = [];\ntry { await parallel(Array.from({ length: 4097 }, () => () => 1)); } catch (e) { out.push(e.message); }\ntry { await pipeline(Array.from({ length: 4097 }, (_, i) => i), x => x); } catch (e) { out.push(e.message); }\nconst ok = await parallel(Array.from({ length: 4096 }, (_, i) => () => i));\nreturn [out, ok.length];",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!([
            [
                "parallel() got 4097 items; at most 4096 are allowed per call. Split the work into batches.",
                "pipeline() got 4097 items; at most 4096 are allowed per call. Split the work into batches."
            ],
            4096
        ])
    );
}

#[tokio::test]
async fn a_promise_nothing_can_settle_fails_the_run() {
    let ran = run("await new Promise(() => {});").await;
    assert!(
        ran.error()
            .starts_with("the script is waiting on a promise that can never settle"),
        "{}",
        ran.error()
    );
}

/// A runner whose `spin` call keeps waking itself (a busy host future) until it is cancelled.
struct Spinner(FakeModel);

impl fleet_core::agent::AgentRunner for Spinner {
    async fn run(
        &self,
        call: fleet_core::agent::AgentCall,
        ctx: fleet_core::agent::CallContext,
    ) -> Result<fleet_core::agent::AgentOutcome, fleet_core::agent::AgentError> {
        if call.prompt == "spin" {
            while !ctx.cancel.is_cancelled() {
                tokio::task::yield_now().await;
            }
            return Err(fleet_core::agent::AgentError::Cancelled);
        }
        self.0.run(call, ctx).await
    }
}

#[tokio::test]
async fn a_host_future_that_keeps_waking_itself_does_not_starve_the_script() {
    let engine = WorkflowEngine::new(memory(), Arc::new(Spinner(FakeModel::new())));
    let handle = engine
        .start(
            script("agent('spin');\nreturn await agent('fast');"),
            RunOptions::default(),
            None,
        )
        .await
        .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(20), handle.wait())
        .await
        .expect("the script got its answer while the other call kept polling");
    assert_eq!(summary.result, json!("ok:fast"), "{:?}", summary.error);
}

// ---- primitives -----------------------------------------------------------------------------

#[tokio::test]
async fn parallel_keeps_order_and_turns_failures_into_logged_nulls() {
    let ran = run(
        "return await parallel([() => agent('first item'), () => { throw new Error('nope'); }, () => agent('third!!!'), 42, async () => 7]);",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!(["ok:rst item", null, "ok:third!!!", null, 7]),
        "{}",
        ran.error()
    );
    let logs = ran.logs();
    assert!(
        logs.contains(&"parallel[1] failed: nope".to_owned()),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("parallel[3] failed: not a function")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn parallel_and_pipeline_of_nothing_and_of_plain_values_resolve() {
    let ran = run(
        "const thenable = { then(ok) { ok('from a thenable'); } };\n\
         return [await parallel([]), await pipeline([]), await pipeline([], (x) => x),\n\
                 await parallel([() => 1, () => thenable, () => Promise.reject(new Error('late'))]),\n\
                 await pipeline([1, 2], (x) => x * 10, async (x) => x + 1)];",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!([[], [], [], [1, "from a thenable", null], [11, 21]]),
        "{}",
        ran.error()
    );
    assert!(
        ran.logs().contains(&"parallel[2] failed: late".to_owned()),
        "{:?}",
        ran.logs()
    );
}

#[tokio::test]
async fn parallel_hands_agent_results_to_its_slots_and_to_every_other_awaiter() {
    // The engine hands an agent() result to parallel()'s slot without a promise reaction;
    // the promise itself still settles for whoever else holds it, a promise returned twice
    // fills both slots, and a call that rejects (over its own token budget) is a logged null.
    let ran = run(
        "const p = agent('shared one');\n\
         const r = await parallel([() => p, () => p, () => agent('over budget', { budget: 0 }), () => agent('fine')]);\n\
         let rejected; try { await agent('again over', { budget: 0 }); } catch (e) { rejected = e.message; }\n\
         return [r, await p, typeof rejected];",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!([
            ["ok:ared one", "ok:ared one", null, "ok:fine"],
            "ok:ared one",
            "string"
        ]),
        "{}",
        ran.error()
    );
    let logs = ran.logs();
    assert!(
        logs.iter().any(|l| l.starts_with("parallel[2] failed: ")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn parallel_is_bounded_by_the_run_concurrency() {
    let options = RunOptions {
        concurrency: 3,
        ..RunOptions::default()
    };
    let fake = FakeModel::with_latency(Duration::from_millis(20));
    let ran = run_with("return (await parallel(Array.from({ length: 12 }, (_, i) => () => agent('p' + i)))).length;", options, fake).await;
    assert_eq!(ran.summary.result, json!(12));
    assert_eq!(
        ran.fake
            .stats
            .peak
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
}

#[tokio::test]
async fn calls_started_in_one_loop_are_answered_while_the_loop_runs() {
    // The host polls what a call's start woke, and the calls that yielded before it, before
    // returning to the script: the first calls end (and free their slots for the next) while
    // the script is still starting the rest, not all after it.
    use fleet_core::event::Event;
    use fleet_core::store::DynEventStore;
    use fleet_core::work_unit::WorkUnitState;

    let store = memory();
    let engine = WorkflowEngine::new(store.clone(), Arc::new(FakeModel::new()));
    let options = RunOptions {
        concurrency: 2,
        ..RunOptions::default()
    };
    let body = "const all = [];\nfor (let i = 0; i < 40; i++) all.push(agent('c' + i));\nreturn (await Promise.all(all)).length;";
    let handle = engine.start(script(body), options, None).await.unwrap();
    let summary = handle.wait().await;
    assert_eq!(summary.result, json!(40), "{:?}", summary.error);
    let events = store.read_all_dyn(0, usize::MAX).await.unwrap();
    let mut first = None;
    let (mut first_done, mut last_created) = (None, None);
    for (at, recorded) in events.iter().enumerate() {
        match &recorded.event {
            Event::WorkUnitUpserted { work_unit } if work_unit.label.as_deref() == Some("c0") => {
                first = Some(work_unit.id);
            }
            Event::WorkUnitUpserted { work_unit } if work_unit.label.as_deref() == Some("c39") => {
                last_created = Some(at);
            }
            Event::WorkUnitStateChanged {
                work_unit_id,
                state: WorkUnitState::Completed,
                ..
            } if Some(*work_unit_id) == first => first_done = Some(at),
            _ => {}
        }
    }
    let (first_done, last_created) = (first_done.unwrap(), last_created.unwrap());
    assert!(
        first_done < last_created,
        "c0 was answered at event {first_done}, after c39 was created at {last_created}"
    );
}

#[tokio::test]
async fn pipeline_flows_items_through_stages_without_a_barrier() {
    let ran = run(
        "return await pipeline([1, 2, 3, 4],\n  (prev, item, i) => prev * 10,\n  (prev, item, i) => { if (item === 2) throw new Error('bad two'); if (item === 3) return null; return [prev, item, i]; },\n  (prev) => prev.concat('done'));",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!([[10, 1, 0, "done"], null, null, [40, 4, 3, "done"]]),
        "{}",
        ran.error()
    );
    assert!(
        ran.logs()
            .contains(&"pipeline[1] stage 1 failed: bad two".to_owned()),
        "{:?}",
        ran.logs()
    );
}

#[tokio::test]
async fn pipeline_stages_go_on_from_agent_results_and_plain_values_alike() {
    // The engine takes an item from an agent() result to its next stage itself: a rejecting
    // call is that stage's logged failure, a stage sees the item as it was when the pipeline
    // started, and a long run of plain-value stages goes on without growing the stack.
    let ran = run(
        "const items = ['a', 'b', 'c'];\n\
         const r = await pipeline(items,\n\
           (item) => agent('first ' + item),\n\
           (prev, item, i) => { items[i] = 'changed'; return i === 1 ? agent('too dear', { budget: 0 }) : agent(prev + ' then ' + item); },\n\
           async (prev, item) => prev + '/' + item);\n\
         const many = Array.from({ length: 5000 }, () => (x) => x + 1);\n\
         return [r, (await pipeline([0, 10], ...many))];",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!([["ok:a then a/a", null, "ok:c then c/c"], [5000, 5010]]),
        "{}",
        ran.error()
    );
    assert!(
        ran.logs()
            .iter()
            .any(|l| l.starts_with("pipeline[1] stage 1 failed: ")),
        "{:?}",
        ran.logs()
    );
}

#[tokio::test]
async fn phases_group_agent_calls_and_log_lines_are_events() {
    let ran = run("phase('Scan');\nawait agent('a');\nlog('half way');\nphase('Fix');\nawait agent('b', { phase: 'Other' });\nawait agent('c');").await;
    let phases: Vec<_> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::PhaseStarted { title } => Some(format!("+{title}")),
            RunEvent::PhaseEnded { title } => Some(format!("-{title}")),
            RunEvent::AgentStarted { phase, .. } => {
                Some(format!("agent@{}", phase.clone().unwrap_or_default()))
            }
            RunEvent::Log { message, .. } => Some(format!("log:{message}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            "+Scan",
            "agent@Scan",
            "log:half way",
            "-Scan",
            "+Fix",
            "agent@Other",
            "agent@Fix",
            "-Fix"
        ]
    );
}

#[tokio::test]
async fn unknown_options_warn_and_bad_ones_reject() {
    let ran = run(
        "const a = await agent('x', { colour: 'red' });\nlet e1, e2;\ntry { await agent('y', { effort: 'huge' }); } catch (e) { e1 = e.message; }\ntry { await agent(5); } catch (e) { e2 = e.message; }\nreturn [a, e1, e2];",
    )
    .await;
    assert_eq!(ran.summary.result[0], json!("ok:x"));
    assert!(
        ran.summary.result[1]
            .as_str()
            .unwrap()
            .contains("`effort` must be one of low, medium, high, xhigh, max")
    );
    assert_eq!(
        ran.summary.result[2],
        json!("agent(prompt, opts): prompt must be a string, got number")
    );
    assert!(
        ran.logs()
            .contains(&"agent(): unknown option `colour` ignored".to_owned())
    );
}

#[tokio::test]
async fn a_schema_call_resolves_to_the_structured_output() {
    let ran = run("return await agent('x', { schema: { type: 'object', properties: { answer: { type: 'string' } } } });").await;
    assert_eq!(ran.summary.result, json!({"answer": "ok:x"}));
    let ran = run(
        "try { await agent('x', { schema: { type: 'array' } }); } catch (e) { return e.message; }",
    )
    .await;
    assert!(
        ran.summary
            .result
            .as_str()
            .unwrap()
            .contains("root is an object")
    );
}

#[tokio::test]
async fn a_provider_failure_resolves_null_and_is_counted_with_its_reason() {
    let fake = FakeModel {
        fail_on: Some("flaky".into()),
        ..FakeModel::new()
    };
    let ran = run_with(
        "return [await agent('flaky one'), await agent('fine')];",
        RunOptions::default(),
        fake,
    )
    .await;
    assert_eq!(ran.summary.result, json!([null, "ok:fine"]));
    assert_eq!(
        (ran.summary.calls.null, ran.summary.calls.completed),
        (1, 1)
    );
    assert_eq!(ran.summary.nulls[0].label, "flaky one");
    assert_eq!(
        ran.summary.nulls[0].reason,
        "fake: connection failed: connection reset"
    );
    assert!(ran.events.iter().any(|e| matches!(
        e,
        RunEvent::AgentFinished {
            state: CallState::Null,
            ..
        }
    )));
}

#[tokio::test]
async fn the_token_budget_stops_new_calls_once_spent() {
    let options = RunOptions {
        budget_tokens: Some(12),
        ..RunOptions::default()
    };
    // Each fake call writes up to 5 output tokens, and only what the cap leaves: 5, 10, then
    // the third is granted the last 2, so the run ends at its cap, not past it (Claude Code
    // lets in-flight calls pass it), and the next call is refused.
    let ran = run_with(
        "const out = [budget.total, budget.remaining()];\nfor (let i = 0; i < 5; i++) {\n  try { await agent('c' + i); out.push(budget.spent()); } catch (e) { out.push(e.message); break; }\n}\nreturn out;",
        options,
        FakeModel::new(),
    )
    .await;
    let r = &ran.summary.result;
    assert_eq!(
        r.as_array().unwrap()[..5],
        [json!(12), json!(12), json!(5), json!(10), json!(12)],
        "{r}"
    );
    assert!(
        r[5].as_str()
            .unwrap()
            .starts_with("Workflow token budget exceeded (12 / 12 output tokens)"),
        "{r}"
    );
    // A notice at 80 % and another at the cap, each with the true share.
    let notices: Vec<&str> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            RunEvent::BudgetWarning { message } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        [
            "83% of the token budget is spent (10 / 12 output tokens)",
            "100% of the token budget is spent (12 / 12 output tokens)"
        ]
    );
    let ran = run("return [budget.total, budget.remaining(), budget.usd.total];").await;
    assert_eq!(ran.summary.result, json!([null, null, null]));
    let ran = run("return budget.remaining() === Infinity;").await;
    assert_eq!(ran.summary.result, json!(true));
}

#[tokio::test]
async fn the_dollar_budget_is_visible_to_the_script() {
    let options = RunOptions {
        budget_usd: Usd::from_dollars(2.5),
        ..RunOptions::default()
    };
    let ran = run_with(
        "await agent('x'); return [budget.usd.total, budget.usd.spent(), budget.usd.remaining()];",
        options,
        FakeModel::new(),
    )
    .await;
    let r: Vec<f64> = serde_json::from_value(ran.summary.result.clone()).unwrap();
    assert_eq!(r, [2.5, 0.0, 2.5]);
}

#[tokio::test]
async fn unknown_agent_types_reject_with_a_suggestion() {
    let ran = run(
        "try { await agent('x', { agentType: 'patch-bto' }); } catch (e) { return e.message; }",
    )
    .await;
    assert_eq!(
        ran.summary.result,
        json!(
            "agent(): unknown agentType 'patch-bto'; declared agents: none are declared (add agents/<name>.yaml)."
        )
    );
}

// ---- nesting --------------------------------------------------------------------------------

#[tokio::test]
async fn a_nested_workflow_runs_inline_one_level_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("child.js"),
        "export const meta = { name: 'child', description: 'c' };\nphase('inner');\nconst a = await agent('child ' + args.n);\nlet nested;\ntry { await workflow('child'); } catch (e) { nested = e.message; }\nreturn { a, nested, sees: typeof agent };",
    )
    .unwrap();
    let body = format!(
        "const r = await workflow({{ scriptPath: {:?} }}, {{ n: 7 }});\nlet unknown;\ntry {{ await workflow('nope'); }} catch (e) {{ unknown = e.message; }}\nreturn [r, unknown];",
        dir.path().join("child.js").display().to_string()
    );
    let ran = run(&body).await;
    assert_eq!(ran.summary.state, RunState::Completed, "{}", ran.error());
    let r = &ran.summary.result;
    assert_eq!(r[0]["a"], json!("ok:child 7"));
    assert!(
        r[0]["nested"]
            .as_str()
            .unwrap()
            .starts_with("workflow() cannot be called from a nested workflow")
    );
    assert!(
        r[1].as_str().unwrap().starts_with(
            "unknown workflow 'nope'; known: deep-research, find-issues, review-code."
        )
    );
    assert_eq!(ran.summary.calls.completed, 1);
}

#[tokio::test]
async fn a_failing_nested_workflow_rejects_catchably() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.js"),
        "export const meta = { name: 'bad', description: 'b' };\nthrow new Error('child broke');",
    )
    .unwrap();
    let body = format!(
        "try {{ await workflow({{ scriptPath: {:?} }}); }} catch (e) {{ return e.message; }}",
        dir.path().join("bad.js").display().to_string()
    );
    let ran = run(&body).await;
    assert!(
        ran.summary
            .result
            .as_str()
            .unwrap()
            .starts_with("Error: child broke"),
        "{}",
        ran.summary.result
    );
}

// ---- runs -----------------------------------------------------------------------------------

#[tokio::test]
async fn stop_cancels_agents_in_flight_and_records_them_cancelled() {
    let store = memory();
    let fake = FakeModel::with_latency(Duration::from_secs(30));
    let engine = WorkflowEngine::new(store.clone(), Arc::new(fake));
    let handle = engine
        .start(
            script("return await parallel([() => agent('a'), () => agent('b')]);"),
            RunOptions::default(),
            None,
        )
        .await
        .unwrap();
    // Wait until both calls are in flight.
    let mut seen = 0;
    while seen < 2 {
        let events = handle.next_events(0).await;
        seen = events
            .iter()
            .filter(|e| matches!(e, RunEvent::AgentStarted { .. }))
            .count();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.stop();
    let summary = tokio::time::timeout(Duration::from_secs(5), handle.wait())
        .await
        .unwrap();
    assert_eq!(summary.state, RunState::Stopped);
    let thread = store.snapshot_dyn(handle.id()).await.unwrap().unwrap();
    let states: Vec<_> = thread
        .work_units
        .values()
        .map(|u| (format!("{:?}", u.kind), u.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("Workflow".to_owned(), "cancelled"),
            ("DelegatedAgent".into(), "cancelled"),
            ("DelegatedAgent".into(), "cancelled")
        ]
    );
}

#[tokio::test]
async fn many_runs_at_once_and_a_busy_script_starves_nobody() {
    let engine = WorkflowEngine::new(memory(), Arc::new(FakeModel::new()));
    let busy = engine
        .start(
            script("let x = 0; for (let i = 0; i < 3e7; i++) x += i; return x > 0;"),
            RunOptions::default(),
            None,
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut quick = Vec::new();
    for i in 0..8 {
        quick.push(
            engine
                .start(
                    script(&format!("return await agent('run {i}');")),
                    RunOptions::default(),
                    None,
                )
                .await
                .unwrap(),
        );
    }
    for (i, handle) in quick.iter().enumerate() {
        assert_eq!(handle.wait().await.result, json!(format!("ok:run {i}")));
    }
    let quick_done = started.elapsed();
    assert_eq!(
        busy.state(),
        RunState::Running,
        "the busy script should still be running"
    );
    assert!(quick_done < Duration::from_secs(2), "{quick_done:?}");
    assert_eq!(busy.wait().await.result, json!(true));
    assert_eq!(engine.runs().len(), 9);
}

#[tokio::test]
async fn every_run_phase_call_and_log_is_recorded_in_the_tree() {
    let store = memory();
    let engine = WorkflowEngine::new(store.clone(), Arc::new(FakeModel::new()));
    let handle = engine
        .start(
            script("phase('One');\nlog('hi');\nawait agent('a', { label: 'first' });\nreturn 1;"),
            RunOptions::default(),
            None,
        )
        .await
        .unwrap();
    let summary = handle.wait().await;
    let thread = store.snapshot_dyn(handle.id()).await.unwrap().unwrap();
    let root = thread.turns[0].root_id;
    let unit = thread.work_unit(root).unwrap();
    assert_eq!(
        (unit.kind, unit.state.as_str(), unit.label.as_deref()),
        (
            fleet_core::work_unit::WorkUnitKind::Workflow,
            "completed",
            Some("t")
        )
    );
    let child = thread.children(root).next().unwrap();
    assert_eq!(
        (
            child.label.as_deref(),
            child.phase.as_deref(),
            child.state.as_str()
        ),
        (Some("first"), Some("One"), "completed")
    );
    assert_eq!(child.usage.output, 5);
    let kinds: Vec<_> = thread
        .activities
        .iter()
        .map(|a| {
            serde_json::to_value(&a.kind).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["run_started", "phase", "log", "agent_result", "run_ended"]
    );
    assert_eq!(summary.usage.output, 5);
}

// ---- discovery ------------------------------------------------------------------------------

#[test]
fn discovery_prefers_the_closest_project_then_personal_then_builtin() {
    use fleet_workflow::{Catalog, Source};
    let root = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let repo = root.path().join("repo");
    let deep = repo.join("a").join("b");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let write = |dir: &std::path::Path, file: &str, name: &str, description: &str| {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join(file),
            format!(
                "export const meta = {{ name: '{name}', description: '{description}' }};\nreturn 1;"
            ),
        )
        .unwrap();
    };
    write(
        &home.path().join(".fleet/workflows"),
        "p.js",
        "shared",
        "personal",
    );
    write(
        &home.path().join(".fleet/workflows"),
        "only.js",
        "personal-only",
        "personal",
    );
    // The user's own Claude Code workflows are found too; `~/.fleet` wins a name in both.
    write(
        &home.path().join(".claude/workflows"),
        "mine.js",
        "claude-personal",
        "personal claude",
    );
    write(
        &home.path().join(".claude/workflows"),
        "only.js",
        "personal-only",
        "personal claude, shadowed",
    );
    write(
        &repo.join(".claude/workflows"),
        "cc.js",
        "shared",
        "claude at root",
    );
    write(
        &repo.join(".fleet/workflows"),
        "r.js",
        "review-code",
        "project override of a built-in",
    );
    write(&deep.join(".fleet/workflows"), "d.js", "shared", "closest");
    write(
        &deep.join(".claude/workflows"),
        "x.js",
        "cc-only",
        "claude close",
    );
    std::fs::write(
        deep.join(".fleet/workflows/bad.js"),
        "export const meta = { name: nope };",
    )
    .unwrap();
    // Above the repository root: never read.
    write(
        &root.path().join(".fleet/workflows"),
        "above.js",
        "above",
        "outside the repo",
    );

    let catalog = Catalog::discover(&deep, Some(home.path()));
    let get = |name: &str| {
        catalog
            .get(name)
            .map(|e| (e.script.meta.description.clone(), e.source))
    };
    assert_eq!(get("shared"), Some(("closest".into(), Source::Project)));
    assert_eq!(catalog.get("shared").unwrap().shadows.len(), 2);
    assert_eq!(
        get("personal-only"),
        Some(("personal".into(), Source::Personal))
    );
    assert_eq!(
        get("claude-personal"),
        Some(("personal claude".into(), Source::Personal))
    );
    assert_eq!(
        get("review-code"),
        Some(("project override of a built-in".into(), Source::Project))
    );
    assert_eq!(
        get("cc-only"),
        Some(("claude close".into(), Source::Project))
    );
    assert_eq!(get("deep-research").map(|g| g.1), Some(Source::Builtin));
    assert_eq!(get("above"), None);
    assert_eq!(catalog.errors.len(), 1);
    assert!(catalog.errors[0].to_string().ends_with("bad.js:1:29: `nope`: identifiers are not allowed in the header, which is read without running the script; use a literal"));
}

// ---- agent types, per-type concurrency, phase budgets ---------------------------------------

fn spec(name: &str) -> fleet_core::spec::AgentSpec {
    let yaml = format!("name: {name}\nrole: tests\nmodel: fake\ncost_budget: 0.25\n");
    let file = format!("agents/{name}.yaml");
    fleet_core::spec::AgentSpec::from_yaml(std::path::Path::new(&file), &yaml).unwrap()
}

#[tokio::test]
async fn agent_types_select_specs_and_have_their_own_concurrency() {
    let fake = FakeModel::with_latency(Duration::from_millis(15));
    let engine =
        WorkflowEngine::new(memory(), Arc::new(fake.clone())).with_specs([spec("patch-bot")]);
    let mut options = RunOptions::default();
    options.agent_concurrency.insert("patch-bot".into(), 2);
    let handle = engine
        .start(
            script("const r = await parallel(Array.from({ length: 8 }, (_, i) => () => agent('fix ' + i, { agentType: 'patch-bot' })));\nlet e; try { await agent('x', { agentType: 'patch-bto' }); } catch (err) { e = err.message; }\nreturn [r.length, e];"),
            options,
            None,
        )
        .await
        .unwrap();
    let summary = handle.wait().await;
    assert_eq!(summary.result[0], json!(8), "{:?}", summary.error);
    assert!(
        summary.result[1]
            .as_str()
            .unwrap()
            .ends_with("declared agents: patch-bot. Did you mean 'patch-bot'?"),
        "{}",
        summary.result
    );
    assert_eq!(fake.stats.peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    let started: Vec<_> = handle
        .events_since(0)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::AgentStarted { agent_type, .. } => agent_type,
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 8);
}

#[tokio::test]
async fn a_phase_budget_stops_calls_in_that_phase_only() {
    let mut options = RunOptions::default();
    options.phase_budgets.insert(
        "Scan".into(),
        fleet_workflow::PhaseBudget {
            tokens: Some(10),
            usd: None,
        },
    );
    let ran = run_with(
        "phase('Scan');\nconst out = [];\nfor (let i = 0; i < 4; i++) { try { await agent('s' + i); out.push('ok'); } catch (e) { out.push(e.message); break; } }\nphase('Fix');\nout.push(await agent('after'));\nreturn out;",
        options,
        FakeModel::new(),
    )
    .await;
    let r = &ran.summary.result;
    assert_eq!(
        (r[0].clone(), r[1].clone()),
        (json!("ok"), json!("ok")),
        "{r}"
    );
    assert!(
        r[2].as_str()
            .unwrap()
            .starts_with("Phase 'Scan' token budget exceeded (10 / 10 output tokens)"),
        "{r}"
    );
    assert_eq!(r[3], json!("ok:after"));
}

#[tokio::test]
async fn claude_code_model_aliases_name_real_models_and_can_be_remapped() {
    let models = |options: RunOptions| async move {
        let store = memory();
        let engine = WorkflowEngine::new(store.clone(), Arc::new(FakeModel::new()));
        let handle = engine
            .start(
                script(
                    "await agent('a', { model: 'haiku' });\nawait agent('b', { model: 'opus' });\nawait agent('c', { model: 'my-model' });",
                ),
                options,
                None,
            )
            .await
            .unwrap();
        assert_eq!(handle.wait().await.state, RunState::Completed);
        let thread = store.snapshot_dyn(handle.id()).await.unwrap().unwrap();
        let root = thread.turns[0].root_id;
        thread
            .children(root)
            .map(|u| u.model.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        models(RunOptions::default()).await,
        ["claude-haiku-4-5", "claude-opus-4-5", "my-model"]
    );
    let options = RunOptions {
        model_aliases: [("haiku".to_owned(), "gpt-5-mini".to_owned())].into(),
        ..RunOptions::default()
    };
    assert_eq!(models(options).await, ["gpt-5-mini", "opus", "my-model"]);
}
