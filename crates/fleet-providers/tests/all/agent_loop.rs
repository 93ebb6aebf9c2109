use std::sync::Arc;
use std::time::Duration;

use fleet_core::activity::ActivityKind;
use fleet_core::agent::{AgentCall, AgentError, AgentRunner, CallContext};
use fleet_core::budget::BudgetLimits;
use fleet_core::command::WorkUnitDraft;
use fleet_core::id::WorkUnitId;
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::money::Usd;
use fleet_core::provider::{ErrorKind, StopReason, StreamEvent};
use fleet_core::spec::Capability;
use fleet_core::store::memory::MemoryStore;
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use fleet_providers::HostCommands;
use fleet_providers::model::offline::OfflineProvider;
use fleet_providers::model::scripted::ScriptedProvider;
use fleet_providers::model::scripted::{Cassette, Exchange, Order, ScriptedError};
use fleet_providers::runner::agent::{ModelAgentRunner, RunnerDefaults};
use serde_json::{Value, json};

async fn journal() -> (Journal, WorkUnitId) {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let journal = Journal::create(store, Some("test".into())).await.unwrap();
    let (_, root) = journal
        .start_turn(
            Some("go".into()),
            WorkUnitDraft::new(WorkUnitKind::Workflow),
        )
        .await
        .unwrap();
    (journal, root)
}

fn usage(input: u64, output: u64) -> StreamEvent {
    StreamEvent::Usage {
        usage: TokenUsage {
            input,
            output,
            ..TokenUsage::default()
        },
    }
}

fn done(reason: StopReason) -> StreamEvent {
    StreamEvent::Done {
        stop_reason: reason,
    }
}

fn tool_call(id: &str, name: &str, input: Value) -> Vec<StreamEvent> {
    vec![
        StreamEvent::ToolCallStart {
            index: 0,
            id: id.into(),
            name: name.into(),
        },
        StreamEvent::ToolCallEnd {
            index: 0,
            id: id.into(),
            name: name.into(),
            input,
        },
        usage(100, 20),
        done(StopReason::ToolUse),
    ]
}

fn answer(text: &str) -> Vec<StreamEvent> {
    vec![
        StreamEvent::TextDelta { text: text.into() },
        usage(200, 10),
        done(StopReason::EndTurn),
    ]
}

fn exchange(expect: Value, events: Vec<StreamEvent>) -> Exchange {
    Exchange {
        expect,
        events,
        ..Exchange::default()
    }
}

fn runner(provider: ScriptedProvider, dir: &std::path::Path) -> ModelAgentRunner<ScriptedProvider> {
    ModelAgentRunner::builder(provider)
        .workdir(dir)
        .commands(Arc::new(HostCommands))
        .build()
}

fn call(prompt: &str, caps: &[Capability]) -> AgentCall {
    AgentCall {
        capabilities: Some(caps.to_vec()),
        ..AgentCall::new(prompt)
    }
}

async fn unit_state(journal: &Journal, unit: WorkUnitId) -> (WorkUnitState, Option<String>) {
    journal
        .read(|t| {
            let u = t.work_unit(unit).unwrap();
            (u.state, u.error.clone())
        })
        .await
}

#[tokio::test]
async fn multi_step_tool_use_records_activities_usage_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "alpha\nbeta\n").unwrap();
    let provider = ScriptedProvider::sequential(vec![
        exchange(
            json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": [{"text": "Summarise notes.txt"}]}],
                   "tools": [{"name": "read_file"}, {"name": "list_dir"}, {"name": "search_text"}]}),
            tool_call("t1", "read_file", json!({"path": "notes.txt"})),
        ),
        exchange(
            json!({"messages": [{}, {"role": "assistant"}, {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "     1\talpha\n     2\tbeta\n", "is_error": false}]}]}),
            tool_call("t2", "read_file", json!({"path": "missing.txt"})),
        ),
        exchange(
            json!({"messages": [{}, {}, {}, {}, {"content": [{"tool_use_id": "t2", "is_error": true}]}]}),
            answer("alpha and beta"),
        ),
    ]);
    let runner = runner(provider.clone(), dir.path());
    let (journal, root) = journal().await;
    let outcome = runner
        .run(
            call("Summarise notes.txt", &[Capability::ReadFiles]),
            CallContext::new(journal.clone(), root),
        )
        .await
        .unwrap();
    assert_eq!(provider.remaining(), 0);
    assert_eq!(outcome.text, "alpha and beta");
    assert_eq!((outcome.model_requests, outcome.tool_calls), (3, 2));
    assert_eq!(
        outcome.usage,
        TokenUsage {
            input: 400,
            output: 50,
            ..TokenUsage::default()
        }
    );
    // Haiku 4.5: $1/M in, $5/M out.
    assert_eq!(outcome.cost.usd, Usd::from_nanos(400_000 + 250_000));
    let (kinds, unit) = journal
        .read(|t| {
            let unit = t.work_unit(outcome.work_unit_id).unwrap().clone();
            let kinds: Vec<String> = t
                .activities_of(outcome.work_unit_id)
                .map(|a| match &a.kind {
                    ActivityKind::Message { role, .. } => format!("message:{role:?}"),
                    ActivityKind::ToolCall { name, .. } => format!("call:{name}"),
                    ActivityKind::ToolResult { is_error, .. } => format!("result:{is_error}"),
                    ActivityKind::TurnAdmitted { tokens_before, .. } => {
                        format!("admitted:{tokens_before}")
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            (kinds, unit)
        })
        .await;
    assert_eq!(
        kinds,
        [
            // Each priced turn's reservation is journaled before it goes to the model.
            "message:User",
            "admitted:0",
            "call:read_file",
            "result:false",
            "admitted:120",
            "call:read_file",
            "result:true",
            "admitted:240",
            "message:Assistant"
        ]
    );
    assert_eq!(unit.state, WorkUnitState::Completed);
    assert_eq!(unit.kind, WorkUnitKind::DelegatedAgent);
    assert_eq!(unit.parent_id, Some(root));
    assert_eq!(unit.model.as_deref(), Some("claude-haiku-4-5"));
    assert_eq!(unit.usage.output, 50);
    assert_eq!(unit.cost.usd, outcome.cost.usd);
}

fn verdict_schema() -> Value {
    json!({"type": "object", "properties": {"verdict": {"enum": ["pass", "fail"]}}, "required": ["verdict"]})
}

#[tokio::test]
async fn invalid_structured_output_is_sent_back_until_it_validates() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::sequential(vec![
        exchange(
            json!({"tool_choice": {"type": "tool", "name": "structured_output"}, "tools": [{"name": "structured_output", "input_schema": verdict_schema()}]}),
            tool_call("s1", "structured_output", json!({"verdict": "maybe"})),
        ),
        exchange(
            json!({"messages": [{}, {}, {"content": [{"tool_use_id": "s1", "is_error": true}]}]}),
            tool_call("s2", "structured_output", json!({"verdict": "pass"})),
        ),
    ]);
    let (journal, root) = journal().await;
    let outcome = runner(provider.clone(), dir.path())
        .run(
            AgentCall {
                schema: Some(verdict_schema()),
                ..AgentCall::new("judge")
            },
            CallContext::new(journal, root),
        )
        .await
        .unwrap();
    assert_eq!(outcome.output, Some(json!({"verdict": "pass"})));
    assert_eq!(provider.remaining(), 0);
}

#[tokio::test]
async fn structured_output_fails_after_five_attempts_with_the_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = || {
        exchange(
            json!({}),
            tool_call("s", "structured_output", json!({"verdict": 3})),
        )
    };
    let provider = ScriptedProvider::sequential((0..5).map(|_| bad()).collect());
    let (journal, root) = journal().await;
    let error = runner(provider.clone(), dir.path())
        .run(
            AgentCall {
                schema: Some(verdict_schema()),
                ..AgentCall::new("judge")
            },
            CallContext::new(journal.clone(), root),
        )
        .await
        .unwrap_err();
    assert_eq!(provider.remaining(), 0);
    let AgentError::InvalidOutput { attempts, error } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*attempts, 5);
    assert!(error.contains("/verdict"), "{error}");
    let failed = journal
        .read(|t| {
            t.children(root)
                .map(|u| (u.state, u.error.clone()))
                .collect::<Vec<_>>()
        })
        .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, WorkUnitState::Failed);
    assert!(
        failed[0]
            .1
            .as_deref()
            .is_some_and(|e| e.starts_with("structured output still invalid after 5 attempts"))
    );
}

#[tokio::test]
async fn a_hard_budget_stops_the_next_model_request() {
    let dir = tempfile::tempdir().unwrap();
    // A request that does not fit whole is cut to what is left, down to 256 output tokens: the
    // first is admitted for 270 of its 1000, and once it has spent 20 the 250 left are too few.
    let provider = ScriptedProvider::sequential(vec![
        exchange(json!({}), tool_call("t1", "list_dir", json!({}))),
        exchange(json!({}), answer("never reached")),
    ]);
    let (journal, root) = journal().await;
    let mut ctx = CallContext::new(journal.clone(), root);
    let run_budget = ctx.budgets.add(
        "run",
        None,
        BudgetLimits {
            output_tokens: Some(270),
            usd: Usd::from_dollars(1.0),
        },
    );
    ctx.charge_to = vec![run_budget];
    let call = AgentCall {
        max_tokens: Some(1000),
        ..call("look around", &[Capability::ReadFiles])
    };
    let error = runner(provider.clone(), dir.path())
        .run(call, ctx.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Budget(_)), "{error:?}");
    assert_eq!(provider.remaining(), 1, "the second request was never made");
    let status = ctx.budgets.status(run_budget).unwrap();
    // Only what the first request really used is spent; nothing stays reserved.
    assert_eq!(status.spent.output_tokens, 20);
    assert_eq!(status.spent.usd, Usd::from_nanos(100 * 1_000 + 20 * 5_000));
    assert_eq!(
        (status.reserved.output_tokens, status.reserved.usd),
        (0, Usd::ZERO)
    );
    let state = journal
        .read(|t| t.children(root).next().map(|u| u.state))
        .await;
    assert_eq!(state, Some(WorkUnitState::Failed));
}

#[tokio::test]
async fn a_call_past_its_timeout_fails_and_a_cancelled_one_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let slow = || Exchange {
        delay_ms: Some(5_000),
        ..exchange(json!({}), answer("late"))
    };
    let provider = ScriptedProvider::new(Cassette {
        order: Order::Any,
        exchanges: vec![slow(), slow()],
    });
    let runner = runner(provider, dir.path());
    let (journal, root) = journal().await;

    let started = std::time::Instant::now();
    let error = runner
        .run(
            AgentCall {
                timeout: Some(Duration::from_millis(100)),
                ..AgentCall::new("slow")
            },
            CallContext::new(journal.clone(), root),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::TimedOut(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let ctx = CallContext::new(journal.clone(), root);
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let error = runner
        .run(AgentCall::new("slow too"), ctx)
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::Cancelled), "{error:?}");
    let states: Vec<_> = journal
        .read(|t| t.children(root).map(|u| u.state).collect())
        .await;
    assert_eq!(states, [WorkUnitState::Failed, WorkUnitState::Cancelled]);
}

#[tokio::test]
async fn provider_errors_fail_the_call_with_the_providers_message() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::sequential(vec![Exchange {
        error: Some(ScriptedError {
            kind: ErrorKind::Overloaded,
            message: "Overloaded".into(),
        }),
        ..exchange(
            json!({}),
            vec![StreamEvent::TextDelta { text: "par".into() }],
        )
    }]);
    let (journal, root) = journal().await;
    let error = runner(provider, dir.path())
        .run(AgentCall::new("x"), CallContext::new(journal.clone(), root))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "scripted: stream error Overloaded: Overloaded"
    );
    let unit = journal
        .read(|t| t.children(root).next().map(|u| u.id))
        .await
        .unwrap();
    assert_eq!(
        unit_state(&journal, unit).await,
        (WorkUnitState::Failed, Some(error.to_string()))
    );
}

#[tokio::test]
async fn too_many_tool_calls_fail_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::sequential(
        (0..3)
            .map(|i| {
                exchange(
                    json!({}),
                    tool_call(&format!("t{i}"), "list_dir", json!({})),
                )
            })
            .collect(),
    );
    let (journal, root) = journal().await;
    let call = AgentCall {
        max_tool_calls: Some(2),
        ..call("loop", &[Capability::ReadFiles])
    };
    let error = runner(provider, dir.path())
        .run(call, CallContext::new(journal, root))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::TooManyToolCalls(2)),
        "{error:?}"
    );
}

#[tokio::test]
async fn write_edit_and_run_tools_change_the_workdir() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::sequential(vec![
        exchange(
            json!({}),
            tool_call(
                "w",
                "write_file",
                json!({"path": "src/a.txt", "content": "one\ntwo\n"}),
            ),
        ),
        exchange(
            json!({}),
            tool_call(
                "e",
                "edit_file",
                json!({"path": "src/a.txt", "patch": "@@\n one\n-two\n+2\n"}),
            ),
        ),
        exchange(
            json!({}),
            tool_call("r", "run_command", json!({"argv": ["cat", "src/a.txt"]})),
        ),
        exchange(
            json!({"messages": [{}, {}, {}, {}, {}, {}, {"content": [{"content": "exit 0\n--- stdout\none\n2\n\n--- stderr\n", "is_error": false}]}]}),
            answer("done"),
        ),
    ]);
    let (journal, root) = journal().await;
    let caps = [
        Capability::ReadFiles,
        Capability::WriteFiles,
        Capability::RunCommands,
    ];
    let outcome = runner(provider.clone(), dir.path())
        .run(call("edit", &caps), CallContext::new(journal, root))
        .await
        .unwrap();
    assert_eq!(outcome.text, "done");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("src/a.txt")).unwrap(),
        "one\n2\n"
    );
}

#[tokio::test]
async fn tools_are_gated_by_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    // Without capabilities no tools are offered, and a call to one is answered as an error.
    let provider = ScriptedProvider::sequential(vec![
        exchange(
            json!({"tools": null}),
            tool_call("w", "write_file", json!({"path": "x", "content": ""})),
        ),
        exchange(
            json!({"messages": [{}, {}, {"content": [{"is_error": true, "content": "there is no tool named \"write_file\"; the tools are: "}]}]}),
            answer("ok"),
        ),
    ]);
    let (journal, root) = journal().await;
    let outcome = runner(provider, dir.path())
        .run(call("try", &[]), CallContext::new(journal, root))
        .await
        .unwrap();
    assert_eq!(outcome.text, "ok");
    assert!(!dir.path().join("x").exists());
}

fn parent_turn(n: usize) -> Value {
    // The parent's n-th request: its first message is the parent prompt and it has 2n-1 messages.
    let mut messages = vec![json!({"content": [{"text": "parent task"}]})];
    messages.extend((1..2 * n - 1).map(|_| json!({})));
    json!({"messages": messages})
}

#[tokio::test]
async fn background_subagents_are_spawned_polled_and_awaited_as_child_units() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::new(Cassette {
        order: Order::Any,
        exchanges: vec![
            exchange(
                parent_turn(1),
                tool_call(
                    "p1",
                    "spawn_subagent",
                    json!({"prompt": "sub task: count files", "label": "counter"}),
                ),
            ),
            exchange(
                parent_turn(2),
                tool_call("p2", "subagent_status", json!({"task_id": "task_1"})),
            ),
            exchange(
                parent_turn(3),
                tool_call("p3", "subagent_result", json!({"task_id": "task_1"})),
            ),
            exchange(
                json!({"messages": [{}, {}, {}, {}, {}, {}, {"content": [{"content": "3 files", "is_error": false}]}]}),
                answer("the subagent counted 3 files"),
            ),
            Exchange {
                delay_ms: Some(150),
                ..exchange(
                    json!({"messages": [{"content": [{"text": "sub task: count files"}]}]}),
                    answer("3 files"),
                )
            },
        ],
    });
    let (journal, root) = journal().await;
    let outcome = runner(provider.clone(), dir.path())
        .run(
            call("parent task", &[Capability::SpawnSubagents]),
            CallContext::new(journal.clone(), root),
        )
        .await
        .unwrap();
    assert_eq!(outcome.text, "the subagent counted 3 files");
    assert_eq!(provider.remaining(), 0);
    let (status_result, child) = journal
        .read(|t| {
            let status = t
                .activities_of(outcome.work_unit_id)
                .find_map(|a| match &a.kind {
                    ActivityKind::ToolResult {
                        call_id, output, ..
                    } if call_id == "p2" => Some(output.clone()),
                    _ => None,
                });
            let children: Vec<_> = t
                .children(outcome.work_unit_id)
                .map(|u| (u.label.clone(), u.state, u.usage.output))
                .collect();
            (status, children)
        })
        .await;
    let status: Value = serde_json::from_str(status_result.unwrap().as_str().unwrap()).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(
        child,
        [(Some("counter".to_owned()), WorkUnitState::Completed, 10)]
    );
    // The child's usage rolls up into the parent's subtree.
    let subtree = journal
        .read(|t| t.subtree_usage(outcome.work_unit_id).output)
        .await;
    assert_eq!(subtree, 20 + 20 + 20 + 10 + 10);
}

#[tokio::test]
async fn a_cancelled_subagent_ends_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let provider = ScriptedProvider::new(Cassette {
        order: Order::Any,
        exchanges: vec![
            exchange(
                parent_turn(1),
                tool_call(
                    "p1",
                    "spawn_subagent",
                    json!({"prompt": "sub: wait forever"}),
                ),
            ),
            exchange(
                parent_turn(2),
                tool_call("p2", "cancel_subagent", json!({"task_id": "task_1"})),
            ),
            exchange(
                parent_turn(3),
                tool_call(
                    "p3",
                    "subagent_result",
                    json!({"task_id": "task_1", "wait": false}),
                ),
            ),
            exchange(
                json!({"messages": [{}, {}, {}, {}, {}, {}, {"content": [{"is_error": true}]}]}),
                answer("gave up"),
            ),
            Exchange {
                delay_ms: Some(10_000),
                ..exchange(
                    json!({"messages": [{"content": [{"text": "sub: wait forever"}]}]}),
                    answer("never"),
                )
            },
        ],
    });
    let (journal, root) = journal().await;
    let outcome = runner(provider, dir.path())
        .run(
            call("parent task", &[Capability::SpawnSubagents]),
            CallContext::new(journal.clone(), root),
        )
        .await
        .unwrap();
    assert_eq!(outcome.text, "gave up");
    let child: Vec<_> = journal
        .read(|t| t.children(outcome.work_unit_id).map(|u| u.state).collect())
        .await;
    assert_eq!(child, [WorkUnitState::Cancelled]);
}

#[tokio::test]
async fn the_offline_provider_runs_the_whole_loop_for_free() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "hello").unwrap();
    let runner = ModelAgentRunner::builder(OfflineProvider::new())
        .workdir(dir.path())
        .defaults(RunnerDefaults {
            model: "claude-sonnet-4-5".into(),
            ..RunnerDefaults::default()
        })
        .build();
    let (journal, root) = journal().await;
    let mut ctx = CallContext::new(journal.clone(), root);
    // A dollar budget of a millionth of a dollar admits any number of free calls.
    let b = ctx.budgets.add(
        "run",
        None,
        BudgetLimits {
            usd: Some(Usd::from_nanos(1_000)),
            output_tokens: None,
        },
    );
    ctx.charge_to = vec![b];
    let outcome = runner
        .run(
            call(
                "Read it.\ncall read_file {\"path\": \"a.txt\"}",
                &[Capability::ReadFiles],
            ),
            ctx.clone(),
        )
        .await
        .unwrap();
    assert!(
        outcome.text.starts_with("[offline model"),
        "{}",
        outcome.text
    );
    assert!(
        outcome.text.contains(": ok, 13 bytes:      1\thello"),
        "{}",
        outcome.text
    );
    assert_eq!(outcome.tool_calls, 1);
    assert!(outcome.usage.input > 0);
    assert_eq!(outcome.cost.usd, Usd::ZERO);
    assert!(outcome.cost.is_complete());

    let structured = runner
        .run(
            AgentCall {
                schema: Some(verdict_schema()),
                ..AgentCall::new("judge this")
            },
            ctx,
        )
        .await
        .unwrap();
    let verdict = structured.output.unwrap();
    assert!(
        verdict["verdict"] == "pass" || verdict["verdict"] == "fail",
        "{verdict}"
    );
}

#[tokio::test]
async fn a_call_with_its_own_workdir_reads_there_not_in_the_runners() {
    let runners_dir = tempfile::tempdir().unwrap();
    let calls_dir = tempfile::tempdir().unwrap();
    std::fs::write(runners_dir.path().join("notes.txt"), "runner's\n").unwrap();
    std::fs::write(calls_dir.path().join("notes.txt"), "the call's\n").unwrap();
    let provider = ScriptedProvider::sequential(vec![
        exchange(
            json!({}),
            tool_call("t1", "read_file", json!({"path": "notes.txt"})),
        ),
        exchange(
            json!({"messages": [{}, {}, {"content": [
                {"tool_use_id": "t1", "content": "     1\tthe call's\n", "is_error": false}]}]}),
            answer("read it"),
        ),
    ]);
    let runner = runner(provider, runners_dir.path());
    let (journal, root) = journal().await;
    let mut call = call("Read notes.txt", &[Capability::ReadFiles]);
    call.workdir = Some(calls_dir.path().to_path_buf());
    let outcome = runner
        .run(call, CallContext::new(journal, root))
        .await
        .unwrap();
    assert_eq!(outcome.text, "read it");
}
