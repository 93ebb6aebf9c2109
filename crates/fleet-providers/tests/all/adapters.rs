use std::time::Duration;

use fleet_core::provider::{
    CancelToken, Content, ErrorKind, ModelRequest, ModelResponse, Provider, ProviderError,
    StopReason, StreamEvent, ToolSpec, next_event,
};
use fleet_core::usage::TokenUsage;
use fleet_providers::model::anthropic::AnthropicProvider;
use fleet_providers::model::decode;
use fleet_providers::model::openai::{OpenAiApi, OpenAiProvider};
use fleet_providers::transport::http::{ApiKey, HttpClient};
use fleet_providers::transport::http::{HttpConfig, RetryPolicy};
use proptest::prelude::*;
use serde_json::json;

use crate::server::{Reply, Server};

const KEY: &str = "sk-test-SECRET-KEY-1234";

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn http() -> HttpClient {
    HttpClient::new(HttpConfig {
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        },
    })
    .unwrap()
}

fn anthropic(server: &Server) -> AnthropicProvider {
    AnthropicProvider::new(http(), &server.base, ApiKey::new(KEY))
}

fn openai(server: &Server, key: Option<&str>, api: OpenAiApi) -> OpenAiProvider {
    OpenAiProvider::new(
        http(),
        "openai",
        format!("{}/v1", server.base),
        key.map(ApiKey::new),
        api,
    )
}

fn request() -> ModelRequest {
    let mut r = ModelRequest::new("claude-sonnet-4-5", "What's the weather in SF?", 1024);
    r.tools.push(ToolSpec {
        name: "get_weather".into(),
        description: "Weather at a place".into(),
        input_schema: json!({"type": "object", "properties": {"location": {"type": "string"}}}),
    });
    r
}

async fn collect(p: &impl Provider, r: ModelRequest) -> Result<ModelResponse, ProviderError> {
    p.complete(r, CancelToken::new()).await
}

fn tool_use_response() -> ModelResponse {
    ModelResponse {
        content: vec![
            Content::Text {
                text: "Okay, let's check the weather — ünïcode ✓".into(),
            },
            Content::ToolUse {
                id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
                name: "get_weather".into(),
                input: json!({"location": "San Francisco, CA", "unit": "fahrenheit"}),
            },
            Content::ToolUse {
                id: "toolu_02".into(),
                name: "list_dir".into(),
                input: json!({}),
            },
        ],
        usage: TokenUsage {
            input: 472,
            output: 89,
            cache_write: 1200,
            cache_write_1h: 0,
            cache_read: 3000,
        },
        stop_reason: Some(StopReason::ToolUse),
    }
}

#[tokio::test]
async fn anthropic_streams_tools_and_cache_usage_and_sends_the_right_request() {
    let server = Server::start(vec![Reply::sse(
        &fixture("anthropic/tool_use.sse"),
        &[7, 1, 13, 2, 64],
    )])
    .await;
    let got = collect(&anthropic(&server), request()).await.unwrap();
    assert_eq!(got, tool_use_response());
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].header("x-api-key"), Some(KEY));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        seen[0].body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What's the weather in SF?"}]}],
            "tools": [{"name": "get_weather", "description": "Weather at a place",
                       "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
            "stream": true,
        })
    );
}

#[tokio::test]
async fn anthropic_streams_thinking_with_its_signature() {
    let server = Server::start(vec![Reply::sse(&fixture("anthropic/thinking.sse"), &[5])]).await;
    let got = collect(
        &anthropic(&server),
        ModelRequest::new("claude-opus-4-5", "27*453?", 4000),
    )
    .await
    .unwrap();
    assert_eq!(
        got.content,
        vec![
            Content::Thinking {
                text: "Let me solve this step by step:\n\n1. First break down 27 * 453".into(),
                signature: Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into()),
            },
            Content::Text {
                text: "27 * 453 = 12,231".into()
            },
        ]
    );
    assert_eq!(got.usage.output, 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_split_of_the_wire_gives_the_same_answer(sizes in proptest::collection::vec(1usize..40, 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = rt.block_on(async {
            let server = Server::start(vec![Reply::sse(&fixture("anthropic/tool_use.sse"), &sizes)]).await;
            collect(&anthropic(&server), request()).await
        });
        prop_assert_eq!(got.ok(), Some(tool_use_response()));
    }
}

#[tokio::test]
async fn an_error_event_after_http_200_fails_the_stream_with_the_providers_message() {
    let server = Server::start(vec![Reply::sse(
        &fixture("anthropic/error_mid_stream.sse"),
        &[50],
    )])
    .await;
    let mut stream = anthropic(&server)
        .stream(request(), CancelToken::new())
        .await
        .unwrap();
    let mut events = Vec::new();
    let mut error = None;
    while let Some(item) = next_event(&mut stream).await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => error = Some(e),
        }
    }
    assert!(events.contains(&StreamEvent::TextDelta {
        text: "Partial".into()
    }));
    let error = error.unwrap();
    assert!(
        matches!(
            error,
            ProviderError::Api {
                status: None,
                kind: ErrorKind::Overloaded,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "anthropic: stream error Overloaded: Overloaded"
    );
}

#[tokio::test]
async fn malformed_json_in_a_frame_is_a_clear_error() {
    let server = Server::start(vec![Reply::sse(&fixture("anthropic/malformed.sse"), &[9])]).await;
    let error = collect(&anthropic(&server), request()).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ProviderError::Decode { .. }), "{error:?}");
    assert!(
        text.starts_with("anthropic: malformed stream: event \"content_block_delta\":"),
        "{text}"
    );
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_a_transport_error() {
    let body = fixture("anthropic/tool_use.sse");
    let mut reply = Reply::sse(&body[..body.len() / 2], &[100]);
    reply.drop_mid_stream = true;
    let server = Server::start(vec![reply]).await;
    let error = collect(&anthropic(&server), request()).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Transport { .. }),
        "{error:?}"
    );
    // Cut cleanly at a frame boundary, the answer is still incomplete.
    let cut = body.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let server = Server::start(vec![Reply::sse(&body[..cut], &[100])]).await;
    let error = collect(&anthropic(&server), request()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("closed before the answer was complete"),
        "{error}"
    );
}

#[tokio::test]
async fn a_successful_answer_that_is_not_an_event_stream_says_what_it_is() {
    let page = |status: u16, content_type: &str, body: &str| {
        let mut reply = Reply::error(status, &[], body);
        reply.headers = vec![("content-type".into(), content_type.into())];
        reply
    };
    let cases = [
        (
            page(
                200,
                "text/html",
                "<html><body>Welcome to the proxy</body></html>",
            ),
            "anthropic: malformed stream: the answer is neither an event stream nor JSON (is the base URL a proxy or another server?); it began: <html><body>Welcome to the proxy</body></html>",
        ),
        (
            page(
                200,
                "application/json",
                r#"{"type":"error","error":{"type":"api_error","message":"stream disabled for this key"}}"#,
            ),
            "anthropic: malformed stream: the answer is a JSON error, not an event stream: stream disabled for this key",
        ),
        (
            page(200, "application/json", r#"{"id":"msg_1","content":[]}"#),
            "anthropic: malformed stream: the answer is JSON, not an event stream (was the request sent without `stream: true`, or to another server?): {\"id\":\"msg_1\",\"content\":[]}",
        ),
    ];
    for (reply, expected) in cases {
        let server = Server::start(vec![reply]).await;
        let error = collect(&anthropic(&server), request()).await.unwrap_err();
        assert!(matches!(error, ProviderError::Decode { .. }), "{error:?}");
        assert_eq!(error.to_string(), expected);
    }
}

#[tokio::test]
async fn retries_429_and_529_honouring_retry_after() {
    let ok = Reply::sse(&fixture("anthropic/tool_use.sse"), &[4096]);
    let server = Server::start(vec![
        Reply::error(429, &[("retry-after", "0")], r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#),
        Reply::error(529, &[("retry-after-ms", "10")], r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
        Reply::error(500, &[], r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#),
        ok,
    ])
    .await;
    let got = collect(&anthropic(&server), request()).await.unwrap();
    assert_eq!(got, tool_use_response());
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert!(
        seen.windows(2).all(|w| w[0].body == w[1].body),
        "a retry sends the same request"
    );
}

#[tokio::test]
async fn a_429_without_retry_after_is_a_spend_cap_and_not_retried() {
    let server = Server::start(vec![Reply::error(
        429,
        &[],
        r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
    )])
    .await;
    let p = openai(&server, Some(KEY), OpenAiApi::ChatCompletions);
    let error = collect(&p, request()).await.unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert!(
        matches!(
            error,
            ProviderError::Api {
                status: Some(429),
                kind: ErrorKind::SpendCap,
                ..
            }
        ),
        "{error:?}"
    );
    let text = format!("{error} {error:?}");
    assert!(
        text.contains("openai: HTTP 429 SpendCap: You exceeded your current quota"),
        "{text}"
    );
    assert!(!text.contains(KEY), "the key leaked: {text}");
}

#[tokio::test]
async fn retries_give_up_after_the_policy_with_the_last_error() {
    let overloaded = || {
        Reply::error(
            529,
            &[],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
    };
    let server = Server::start(vec![
        overloaded(),
        overloaded(),
        overloaded(),
        overloaded(),
        overloaded(),
    ])
    .await;
    let error = collect(&anthropic(&server), request()).await.unwrap_err();
    assert_eq!(server.seen().len(), 4, "one try and three retries");
    assert_eq!(
        error.to_string(),
        "anthropic: HTTP 529 Overloaded: Overloaded"
    );
    // A client error is not retried.
    let server = Server::start(vec![Reply::error(400, &[], r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#)]).await;
    let error = collect(&anthropic(&server), request()).await.unwrap_err();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        error.to_string(),
        "anthropic: HTTP 400 InvalidRequest: max_tokens: Field required"
    );
}

#[tokio::test]
async fn cancelling_stops_a_slow_stream_promptly() {
    let mut reply = Reply::sse(&fixture("anthropic/tool_use.sse"), &[40]);
    reply.pause = Duration::from_millis(200);
    let server = Server::start(vec![reply]).await;
    let cancel = CancelToken::new();
    let p = anthropic(&server);
    let mut stream = p.stream(request(), cancel.clone()).await.unwrap();
    let started = std::time::Instant::now();
    let stopper = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stopper.cancel();
    });
    let mut last = None;
    while let Some(item) = next_event(&mut stream).await {
        last = Some(item);
    }
    assert!(
        matches!(last, Some(Err(ProviderError::Cancelled))),
        "{last:?}"
    );
    // The fixture would take seconds at this pace; cancellation ends it at the next poll.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn openai_chat_merges_tool_call_fragments_by_index_and_reads_cached_usage() {
    let server = Server::start(vec![Reply::sse(
        &fixture("openai_chat/tool_calls.sse"),
        &[3, 17],
    )])
    .await;
    let p = OpenAiProvider::new(
        http(),
        "openai",
        format!("{}/v1/", server.base),
        Some(ApiKey::new(KEY)),
        OpenAiApi::ChatCompletions,
    );
    let got = collect(&p, ModelRequest::new("gpt-5-mini", "look", 256))
        .await
        .unwrap();
    assert_eq!(
        got,
        ModelResponse {
            content: vec![
                Content::Text {
                    text: "Checking both.".into()
                },
                Content::ToolUse {
                    id: "call_abc".into(),
                    name: "read_file".into(),
                    input: json!({"path": "src/lib.rs"})
                },
                Content::ToolUse {
                    id: "call_def".into(),
                    name: "list_dir".into(),
                    input: json!({"path": "."})
                },
            ],
            usage: TokenUsage {
                input: 176,
                output: 40,
                cache_read: 1024,
                ..TokenUsage::default()
            },
            stop_reason: Some(StopReason::ToolUse),
        }
    );
    let seen = &server.seen()[0];
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(seen.body["stream_options"], json!({"include_usage": true}));
    // A local base URL gets max_tokens.
    assert_eq!(seen.body["max_tokens"], json!(256));
}

#[tokio::test]
async fn openai_compatible_local_servers_without_ids_or_usage_work_keyless() {
    let server = Server::start(vec![Reply::sse(
        &fixture("openai_chat/local_no_ids.sse"),
        &[11],
    )])
    .await;
    let p = OpenAiProvider::new(
        http(),
        "ollama",
        format!("{}/v1", server.base),
        None,
        OpenAiApi::ChatCompletions,
    );
    assert!(p.capabilities().free);
    let got = collect(&p, ModelRequest::new("llama3.2", "ls", 64))
        .await
        .unwrap();
    assert_eq!(
        got.content,
        vec![Content::ToolUse {
            id: "call_0".into(),
            name: "list_dir".into(),
            input: json!({"path": "."})
        }]
    );
    assert_eq!(got.usage, TokenUsage::default());
    assert_eq!(server.seen()[0].header("authorization"), None);
}

#[tokio::test]
async fn openai_responses_function_calls_and_the_function_call_output_round_trip() {
    let server = Server::start(vec![
        Reply::sse(&fixture("openai_responses/function_call.sse"), &[29]),
        Reply::sse(&fixture("openai_responses/text.sse"), &[31]),
    ])
    .await;
    let p = openai(&server, Some(KEY), OpenAiApi::Responses);
    let mut request = ModelRequest::new("gpt-5", "read the readme", 500);
    let first = collect(&p, request.clone()).await.unwrap();
    assert_eq!(
        first,
        ModelResponse {
            content: vec![
                Content::Text {
                    text: "Let me look.".into()
                },
                Content::ToolUse {
                    id: "call_Xyz".into(),
                    name: "read_file".into(),
                    input: json!({"path": "README.md"})
                },
            ],
            usage: TokenUsage {
                input: 500,
                output: 60,
                cache_read: 1500,
                ..TokenUsage::default()
            },
            stop_reason: Some(StopReason::ToolUse),
        }
    );
    assert_eq!(server.seen()[0].path, "/v1/responses");

    // The answer and the tool's result go back; the call id ties them together.
    request.messages.push(fleet_core::provider::Message {
        role: fleet_core::provider::MessageRole::Assistant,
        content: first.content.clone(),
    });
    request.messages.push(fleet_core::provider::Message {
        role: fleet_core::provider::MessageRole::User,
        content: vec![Content::ToolResult {
            tool_use_id: "call_Xyz".into(),
            content: "ship it".into(),
            is_error: false,
        }],
    });
    let second = collect(&p, request).await.unwrap();
    assert_eq!(second.text(), "The README says: ship it.");
    assert_eq!(second.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(second.usage.cache_read, 2000);
    assert_eq!(
        server.seen()[1].body["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "read the readme"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me look."}]},
            {"type": "function_call", "call_id": "call_Xyz", "name": "read_file", "arguments": "{\"path\":\"README.md\"}"},
            {"type": "function_call_output", "call_id": "call_Xyz", "output": "ship it"},
        ])
    );
}

#[tokio::test]
async fn openai_responses_failed_is_an_error_with_the_message() {
    let server = Server::start(vec![Reply::sse(
        &fixture("openai_responses/failed.sse"),
        &[8],
    )])
    .await;
    let p = openai(&server, None, OpenAiApi::Responses);
    let error = collect(&p, ModelRequest::new("gpt-5", "x", 10))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "openai: stream error Server: The model failed to generate a response."
    );
}

#[test]
fn recorded_bodies_decode_without_a_connection() {
    let events = decode::anthropic(&fixture("anthropic/tool_use.sse")).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCallDelta { .. }))
            .count(),
        3
    );
    assert!(decode::openai_chat(&fixture("openai_chat/tool_calls.sse")).is_ok());
    assert!(decode::openai_responses(&fixture("openai_responses/function_call.sse")).is_ok());
    let cut = fixture("openai_responses/function_call.sse");
    assert!(decode::openai_responses(&cut[..cut.len() - 300]).is_err());
}

/// The same wire scenarios for every adapter.
mod every_adapter {
    use super::*;

    struct Case {
        name: &'static str,
        fixture: &'static str,
        error_fixture: &'static str,
        make: fn(&Server) -> Box<dyn fleet_core::provider::DynProvider>,
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "anthropic",
                fixture: "anthropic/tool_use.sse",
                error_fixture: "anthropic/error_mid_stream.sse",
                make: |s| Box::new(anthropic(s)),
            },
            Case {
                name: "openai_chat",
                fixture: "openai_chat/tool_calls.sse",
                error_fixture: "openai_chat/error_mid_stream.sse",
                make: |s| Box::new(openai(s, Some(KEY), OpenAiApi::ChatCompletions)),
            },
            Case {
                name: "openai_responses",
                fixture: "openai_responses/function_call.sse",
                error_fixture: "openai_responses/error_mid_stream.sse",
                make: |s| Box::new(openai(s, Some(KEY), OpenAiApi::Responses)),
            },
        ]
    }

    async fn run(
        case: &Case,
        replies: Vec<Reply>,
    ) -> (Result<ModelResponse, ProviderError>, usize) {
        let server = Server::start(replies).await;
        let provider = (case.make)(&server);
        let result = provider.complete(request(), CancelToken::new()).await;
        (result, server.seen().len())
    }

    #[tokio::test]
    async fn splits_errors_retries_and_drops() {
        for case in cases() {
            let body = fixture(case.fixture);
            let (whole, _) = run(&case, vec![Reply::sse(&body, &[body.len()])]).await;
            let whole = whole.unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert!(whole.tool_calls().count() >= 1, "{}", case.name);
            for sizes in [&[1usize][..], &[2, 3, 5], &[7, 64, 1]] {
                let (split, _) = run(&case, vec![Reply::sse(&body, sizes)]).await;
                assert_eq!(
                    split.as_ref().ok(),
                    Some(&whole),
                    "{} split {sizes:?}",
                    case.name
                );
            }

            let (error, _) =
                run(&case, vec![Reply::sse(&fixture(case.error_fixture), &[13])]).await;
            assert!(
                matches!(error, Err(ProviderError::Api { status: None, .. })),
                "{}: {error:?}",
                case.name
            );

            // A frame whose JSON is cut off.
            let cut = body
                .windows(3)
                .position(|w| w == b"\"}}")
                .map(|i| i + 1)
                .unwrap();
            let mut broken = body[..cut].to_vec();
            broken.extend_from_slice(b"\n\n");
            let (malformed, _) = run(&case, vec![Reply::sse(&broken, &[50])]).await;
            assert!(
                matches!(malformed, Err(ProviderError::Decode { .. })),
                "{}: {malformed:?}",
                case.name
            );

            let mut dropped = Reply::sse(&body[..body.len() / 2], &[33]);
            dropped.drop_mid_stream = true;
            let (dropped, _) = run(&case, vec![dropped]).await;
            assert!(
                matches!(dropped, Err(ProviderError::Transport { .. })),
                "{}: {dropped:?}",
                case.name
            );

            let (retried, requests) = run(
                &case,
                vec![
                    Reply::error(429, &[("retry-after", "0.01")], r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#),
                    Reply::error(529, &[], r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
                    Reply::sse(&body, &[100]),
                ],
            )
            .await;
            assert_eq!(
                (retried.ok(), requests),
                (Some(whole.clone()), 3),
                "{}",
                case.name
            );

            let (capped, requests) = run(
                &case,
                vec![Reply::error(
                    429,
                    &[],
                    r#"{"error":{"message":"quota","type":"insufficient_quota"}}"#,
                )],
            )
            .await;
            assert!(
                matches!(
                    capped,
                    Err(ProviderError::Api {
                        kind: ErrorKind::SpendCap,
                        ..
                    })
                ),
                "{}",
                case.name
            );
            assert_eq!(requests, 1, "{}", case.name);
        }
    }
}
