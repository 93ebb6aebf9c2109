use serde_json::json;

use super::*;

#[test]
fn every_message_round_trips_through_a_line() {
    let messages = [
        Message::request(
            RequestId::Number(1),
            Call::Initialize(InitializeParams {
                protocol: PROTOCOL_VERSION,
                spec: json!({"name": "doc-bot"}),
                workspace: "/w".into(),
                limits: TaskLimits {
                    max_tokens: Some(100),
                    ..TaskLimits::default()
                },
                gateway: Some(GatewayInfo {
                    provider: "anthropic".into(),
                    model: "claude-haiku-4-5".into(),
                    tools: true,
                    images: true,
                    thinking: false,
                    prompt_cache: true,
                    free: false,
                }),
            }),
        ),
        Message::request(
            RequestId::Number(9),
            Call::ModelStream(ModelStreamParams {
                task_id: "u1".into(),
                request: {
                    let mut request = ModelRequest::new("claude-haiku-4-5", "look", 64);
                    request.messages[0]
                        .content
                        .push(crate::provider::Content::Image {
                            source: crate::provider::ImageSource::Base64 {
                                media_type: "image/png".into(),
                                data: "iVBORw0KGgo=".into(),
                            },
                        });
                    request.tools.push(crate::provider::ToolSpec {
                        name: "read_file".into(),
                        description: "reads".into(),
                        input_schema: json!({"type": "object"}),
                    });
                    request
                },
            }),
        ),
        Message::notification(Note::ModelEvent(ModelEventParams {
            request_id: RequestId::Number(9),
            event: StreamEvent::TextDelta { text: "hi".into() },
        })),
        Message::notification(Note::CancelRequest(CancelParams {
            id: RequestId::Number(9),
        })),
        Message::request(
            RequestId::Text("t".into()),
            Call::TaskRun(TaskRunParams {
                task_id: "u1".into(),
                prompt: "fix".into(),
                input: None,
            }),
        ),
        Message::request(RequestId::Number(3), Call::Shutdown(Empty {})),
        Message::notification(Note::Usage(UsageReport {
            task_id: "u1".into(),
            model: "m".into(),
            usage: TokenUsage::default(),
        })),
        Message::notification(Note::Log(LogLine {
            task_id: None,
            level: LogLevel::Warn,
            message: "hm".into(),
        })),
        Message::result(RequestId::Number(2), json!({"text": "done"})),
        Message::error(None, RpcError::new(codes::PARSE_ERROR, "bad")),
    ];
    for message in messages {
        let line = message.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let back = decode_line(line.trim_end().as_bytes()).unwrap();
        assert_eq!(back, message, "{line}");
    }
}

#[test]
fn bad_lines_get_the_right_error_and_keep_the_id() {
    let err = |line: &str| decode_line(line.as_bytes()).unwrap_err();
    let (id, e) = err("{not json");
    assert_eq!((id, e.code), (None, codes::PARSE_ERROR));
    assert!(
        e.message.starts_with("not JSON at column 2"),
        "{}",
        e.message
    );
    let (id, e) = err(r#"{"jsonrpc":"2.0","id":7,"method":"task/fly","params":{}}"#);
    assert_eq!(
        (id, e.code),
        (Some(RequestId::Number(7)), codes::METHOD_NOT_FOUND)
    );
    assert!(e.message.contains("unknown method \"task/fly\""));
    let (id, e) = err(r#"{"jsonrpc":"2.0","id":"a","method":"task/run","params":{"task_id":"u"}}"#);
    assert_eq!(
        (id, e.code),
        (Some(RequestId::Text("a".into())), codes::INVALID_PARAMS)
    );
    assert!(e.message.contains("prompt"), "{}", e.message);
    let (_, e) = err(r#"{"jsonrpc":"1.0","id":1,"method":"shutdown","params":{}}"#);
    assert_eq!(e.code, codes::INVALID_REQUEST);
    let long = format!("\"{}\"", "x".repeat(MAX_LINE_BYTES));
    let (_, e) = err(&long);
    assert_eq!(e.code, codes::INVALID_REQUEST);
    assert!(e.message.contains("exceeds the limit"));
}

#[test]
fn model_turn_lines_are_checked_like_every_other() {
    let err = |line: &str| decode_line(line.as_bytes()).unwrap_err();
    let (id, e) = err(
        r#"{"jsonrpc":"2.0","id":4,"method":"model/stream","params":{"task_id":"t","request":{"model":"m"}}}"#,
    );
    assert_eq!(
        (id, e.code),
        (Some(RequestId::Number(4)), codes::INVALID_PARAMS)
    );
    assert!(
        e.message.starts_with("model/stream params:"),
        "{}",
        e.message
    );
    let (_, e) = err(
        r#"{"jsonrpc":"2.0","method":"model/event","params":{"request_id":4,"event":{"type":"warp"}}}"#,
    );
    assert_eq!(e.code, codes::INVALID_PARAMS, "{}", e.message);
    let ok = decode_line(br#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":4}}"#);
    assert!(matches!(
        ok,
        Ok(Message::Notification(Notification {
            note: Note::CancelRequest(CancelParams {
                id: RequestId::Number(4)
            }),
            ..
        }))
    ));
    // Params that are all optional may be left out; required ones may not.
    let ok = decode_line(br#"{"jsonrpc":"2.0","id":9,"method":"shutdown"}"#);
    assert!(
        matches!(
            ok,
            Ok(Message::Request(Request {
                call: Call::Shutdown(_),
                ..
            }))
        ),
        "{ok:?}"
    );
    let (_, e) = err(r#"{"jsonrpc":"2.0","id":10,"method":"task/cancel"}"#);
    assert_eq!(e.code, codes::INVALID_PARAMS, "{}", e.message);
    assert!(
        e.message.starts_with("task/cancel params:"),
        "{}",
        e.message
    );
}

#[test]
fn the_schema_names_the_results_workers_return() {
    let schema = ipc_schema();
    let defs = schema["$defs"].as_object().unwrap();
    for name in [
        "InitializeResult",
        "TaskResult",
        "ModelStreamResult",
        "ModelErrorData",
        "ModelRequest",
        "StreamEvent",
        "Request",
        "Notification",
        "Response",
    ] {
        assert!(defs.contains_key(name), "{name} missing");
    }
}
