//! The supervisor–worker protocol: JSON-RPC 2.0 over the worker's stdin/stdout, one JSON object
//! per line (stderr is the worker's log). Workers can be written in any language: the
//! protocol's JSON Schema ([`ipc_schema`], committed at `docs/ipc.schema.json`) says everything.
//!
//! The supervisor calls `initialize`, then `task/run` (answered with a [`TaskResult`] while the
//! worker sends `task/progress`, `task/usage` and `task/log` notifications), `task/cancel` and
//! `shutdown`. Every line is checked against the schema at the boundary ([`decode_line`]); a
//! malformed or oversized line gets a JSON-RPC error, never a crash.
//!
//! The supervisor is also the worker's only way to a model (its *model gateway*): the worker
//! asks for one model turn with a `model/stream` request carrying a normalized
//! [`ModelRequest`], and the supervisor answers with `model/event` notifications carrying the
//! normalized [`StreamEvent`]s as they arrive, then a [`ModelStreamResult`] with the usage it
//! metered from the provider's own stream. Either side may stop a request of its own with
//! `$/cancelRequest`. A worker holds no credentials, and what it says it spent (`task/usage`)
//! is a diagnostic that never moves money.
//!
//! Why one file (with its tests beside it, in `tests.rs`): this is the protocol's definition,
//! its message types and the one function that checks a line against them. A worker's author
//! reads it top to bottom beside the schema, and the tests are its examples.

use std::path::PathBuf;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activity::LogLevel;
use crate::money::Usd;
use crate::provider::{ErrorKind, ModelRequest, StopReason, StreamEvent};
use crate::usage::TokenUsage;

/// The JSON-RPC version tag every message carries.
pub const JSONRPC: &str = "2.0";

/// The version of fleet's protocol on top of JSON-RPC, sent with `initialize`. Version 2 added
/// the model gateway (`model/stream`, `model/event`, `$/cancelRequest`).
pub const PROTOCOL_VERSION: u32 = 2;

/// The longest line accepted, in bytes (a model turn carries its whole conversation, images
/// included).
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// JSON-RPC's error codes.
pub mod codes {
    /// Not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a valid message (or too long).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The method exists; its params are wrong.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The receiver failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A task failed (fleet's own code, in the server-error range).
    pub const TASK_FAILED: i64 = -32000;
    /// A task was cancelled.
    pub const TASK_CANCELLED: i64 = -32001;
    /// The gateway refused a model turn: its worst case does not fit the agent's or the
    /// fleet's budget (the agent is paused).
    pub const BUDGET_EXCEEDED: i64 = -32002;
    /// The model turn failed at the provider, or the gateway cannot make it as asked;
    /// `data` is a [`super::ModelErrorData`].
    pub const MODEL_FAILED: i64 = -32003;
    /// A request stopped by `$/cancelRequest` (the Language Server Protocol's code).
    pub const REQUEST_CANCELLED: i64 = -32800;
}

/// A request id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RequestId {
    /// A number.
    Number(u64),
    /// A string.
    Text(String),
}

/// The `"2.0"` tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Version {
    /// JSON-RPC 2.0.
    #[default]
    #[serde(rename = "2.0")]
    V2,
}

/// One line on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Message {
    /// A call that wants an answer.
    Request(Request),
    /// The answer to a request.
    Response(Response),
    /// A call that wants none.
    Notification(Notification),
}

/// A request: `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `"2.0"`.
    pub jsonrpc: Version,
    /// Echoed in the response.
    pub id: RequestId,
    /// The method and its params.
    #[serde(flatten)]
    pub call: Call,
}

/// A request's method and params: what the supervisor asks of a worker, and (`model/stream`)
/// what a worker asks of the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params")]
pub enum Call {
    /// The first call: who the worker is and where it works. Answered with an
    /// [`InitializeResult`].
    #[serde(rename = "initialize")]
    Initialize(InitializeParams),
    /// Run a task; answered with a [`TaskResult`] when it ends.
    #[serde(rename = "task/run")]
    TaskRun(TaskRunParams),
    /// Stop a running task (its `task/run` is answered with a cancelled error).
    #[serde(rename = "task/cancel")]
    TaskCancel(TaskRef),
    /// Finish and exit; answered with `null` first.
    #[serde(rename = "shutdown")]
    Shutdown(Empty),
    /// (worker → supervisor) One model turn through the supervisor's gateway, for a task
    /// running on the worker: answered with `model/event` notifications as the model streams,
    /// then a [`ModelStreamResult`] (or an error: [`codes::BUDGET_EXCEEDED`],
    /// [`codes::MODEL_FAILED`], [`codes::REQUEST_CANCELLED`]).
    #[serde(rename = "model/stream")]
    ModelStream(ModelStreamParams),
}

/// A notification: `{"jsonrpc":"2.0","method":…,"params":…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// `"2.0"`.
    pub jsonrpc: Version,
    /// The method and its params.
    #[serde(flatten)]
    pub note: Note,
}

/// A notification's method and params: what a worker tells the supervisor while it works,
/// and (`model/event`) the model's stream the supervisor forwards to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params")]
pub enum Note {
    /// How far a task is.
    #[serde(rename = "task/progress")]
    Progress(Progress),
    /// Tokens a worker says a task spent: a diagnostic, shown but never charged (the
    /// gateway meters model turns from the provider's own stream).
    #[serde(rename = "task/usage")]
    Usage(UsageReport),
    /// A log line.
    #[serde(rename = "task/log")]
    Log(LogLine),
    /// (supervisor → worker) One event of a `model/stream` answer, in order.
    #[serde(rename = "model/event")]
    ModelEvent(ModelEventParams),
    /// (either way) Stop a request the sender made; it is answered with
    /// [`codes::REQUEST_CANCELLED`].
    #[serde(rename = "$/cancelRequest")]
    CancelRequest(CancelParams),
}

/// A response: a result or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// `"2.0"`.
    pub jsonrpc: Version,
    /// The request's id (`null` when the request could not be read).
    pub id: Option<RequestId>,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{message} (JSON-RPC error {code})")]
pub struct RpcError {
    /// See [`codes`].
    pub code: i64,
    /// What went wrong, for people.
    pub message: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with `code` and `message`.
    #[must_use]
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// No params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `initialize`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitializeParams {
    /// The protocol version the supervisor speaks ([`PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// The agent's spec, as loaded from `agents/<name>.yaml` (JSON).
    pub spec: Value,
    /// The directory the worker works in (writable).
    pub workspace: PathBuf,
    /// Limits per task.
    #[serde(default)]
    pub limits: TaskLimits,
    /// The model gateway the worker's turns go through, when the supervisor has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayInfo>,
}

/// What the supervisor's model gateway offers (the worker reaches it with `model/stream`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayInfo {
    /// The provider behind it (`anthropic`, `openai`, `offline`, …).
    pub provider: String,
    /// The model the agent's turns use (its spec's).
    pub model: String,
    /// The provider can call tools.
    #[serde(default)]
    pub tools: bool,
    /// It takes images.
    #[serde(default)]
    pub images: bool,
    /// It can think.
    #[serde(default)]
    pub thinking: bool,
    /// It honours cache hints or caches by itself.
    #[serde(default)]
    pub prompt_cache: bool,
    /// Its turns cost nothing (the offline provider, a local server).
    #[serde(default)]
    pub free: bool,
}

/// Limits the worker must keep to per task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TaskLimits {
    /// Most output tokens per model request.
    pub max_tokens: Option<u32>,
    /// Most tool calls.
    pub max_tool_calls: Option<u32>,
    /// Most wall time, in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// `initialize`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitializeResult {
    /// The role the worker serves (e.g. `patch-bot`).
    pub role: String,
    /// The worker's own version, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `task/run`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRunParams {
    /// The task's id (the work unit's), for notifications and `task/cancel`.
    pub task_id: String,
    /// What to do.
    pub prompt: String,
    /// Structured input, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// Names a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    /// The task's id.
    pub task_id: String,
}

/// `task/run`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    /// The answer for people.
    pub text: String,
    /// A structured answer, if the task asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// `task/progress`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// The task.
    pub task_id: String,
    /// What it is doing.
    pub message: String,
    /// How much is done, 0 to 1, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub fraction: Option<f64>,
}

/// `task/usage`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// The task.
    pub task_id: String,
    /// The model that spent the tokens (for pricing).
    pub model: String,
    /// The tokens.
    pub usage: TokenUsage,
}

/// `model/stream`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStreamParams {
    /// The task the turn is for (one running on this worker).
    pub task_id: String,
    /// The turn, normalized: system, messages (text, image, tool-use and tool-result content),
    /// tools with their schemas, model, most output tokens, effort and cache hints.
    pub request: ModelRequest,
}

/// `model/event`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelEventParams {
    /// The `model/stream` request this event answers.
    pub request_id: RequestId,
    /// The event.
    pub event: StreamEvent,
}

/// `$/cancelRequest`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    /// The request to stop.
    pub id: RequestId,
}

/// `model/stream`'s result: what the gateway metered and charged for the turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelStreamResult {
    /// The model that answered.
    pub model: String,
    /// The tokens, from the provider's own stream.
    pub usage: TokenUsage,
    /// Why the model stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// The dollars charged for it.
    pub cost: Usd,
}

/// The `data` of a [`codes::MODEL_FAILED`] error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelErrorData {
    /// What kind of failure the provider reported.
    pub kind: ErrorKind,
    /// The HTTP status, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether trying the turn again may succeed.
    pub retryable: bool,
    /// How long the provider asked to wait before trying again, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `task/log`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// The task, if the line is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// How important.
    pub level: LogLevel,
    /// The line.
    pub message: String,
}

impl Message {
    /// A request.
    #[must_use]
    pub fn request(id: RequestId, call: Call) -> Self {
        Self::Request(Request {
            jsonrpc: Version::V2,
            id,
            call,
        })
    }

    /// A notification.
    #[must_use]
    pub fn notification(note: Note) -> Self {
        Self::Notification(Notification {
            jsonrpc: Version::V2,
            note,
        })
    }

    /// A successful response.
    #[must_use]
    pub fn result(id: RequestId, result: Value) -> Self {
        Self::Response(Response {
            jsonrpc: Version::V2,
            id: Some(id),
            result: Some(result),
            error: None,
        })
    }

    /// An error response.
    #[must_use]
    pub fn error(id: Option<RequestId>, error: RpcError) -> Self {
        Self::Response(Response {
            jsonrpc: Version::V2,
            id,
            result: None,
            error: Some(error),
        })
    }

    /// The message as one line, with its newline.
    #[must_use]
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// The protocol's JSON Schema, as committed at `docs/ipc.schema.json`.
#[must_use]
pub fn ipc_schema() -> Value {
    let mut generator = schemars::SchemaGenerator::default();
    // The results are not part of a message's type (a response's `result` is any value), but
    // workers need their shapes.
    generator.subschema_for::<InitializeResult>();
    generator.subschema_for::<TaskResult>();
    generator.subschema_for::<ModelStreamResult>();
    generator.subschema_for::<ModelErrorData>();
    let mut schema = Value::from(generator.root_schema_for::<Message>());
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "title".into(),
            "fleet worker protocol (JSON-RPC 2.0, one message per line)".into(),
        );
    }
    schema
}

/// The methods of requests.
const CALLS: &[&str] = &[
    "initialize",
    "task/run",
    "task/cancel",
    "shutdown",
    "model/stream",
];

/// The methods of notifications.
const NOTES: &[&str] = &[
    "task/progress",
    "task/usage",
    "task/log",
    "model/event",
    "$/cancelRequest",
];

fn validator() -> &'static Result<jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::validator_for(&ipc_schema()).map_err(|e| e.to_string()))
}

/// Methods whose params may be omitted (each takes [`Empty`]).
const PARAMS_OPTIONAL: &[&str] = &["shutdown"];

/// Reads one line (without its newline): checked for size, parsed, validated against the
/// schema, then typed. The error is what to answer (its id is the request's when it could be
/// read).
///
/// # Errors
/// The JSON-RPC error for the line, with the id to answer it with.
pub fn decode_line(line: &[u8]) -> Result<Message, (Option<RequestId>, RpcError)> {
    if line.len() > MAX_LINE_BYTES {
        return Err((
            None,
            RpcError::new(
                codes::INVALID_REQUEST,
                format!(
                    "message of {} bytes exceeds the limit of {MAX_LINE_BYTES} bytes",
                    line.len()
                ),
            ),
        ));
    }
    let mut value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            None,
            RpcError::new(
                codes::PARSE_ERROR,
                format!("not JSON at column {}: {e}", e.column()),
            ),
        )
    })?;
    let id = value
        .get("id")
        .and_then(|id| serde_json::from_value::<RequestId>(id.clone()).ok());
    let method = value
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(method) = &method
        && !CALLS.contains(&method.as_str())
        && !NOTES.contains(&method.as_str())
    {
        return Err((
            id,
            RpcError::new(
                codes::METHOD_NOT_FOUND,
                format!(
                    "unknown method \"{method}\" (known: {}, {})",
                    CALLS.join(", "),
                    NOTES.join(", ")
                ),
            ),
        ));
    }
    // JSON-RPC lets a call whose params are all optional leave them out.
    if let (Some(method), Some(object)) = (&method, value.as_object_mut())
        && PARAMS_OPTIONAL.contains(&method.as_str())
        && !object.contains_key("params")
    {
        object.insert("params".into(), Value::Object(serde_json::Map::new()));
    }
    let validator = validator()
        .as_ref()
        .map_err(|e| (id.clone(), RpcError::new(codes::INTERNAL_ERROR, e.clone())))?;
    // Valid, the common case, is the cheap question; the errors are looked for only when not.
    if !validator.is_valid(&value)
        && let Some(error) = validator.iter_errors(&value).next()
    {
        // The schema is a union, so its first error rarely names the culprit: when the method
        // is known, its params are checked on their own for a precise message.
        if let Some(method) = &method {
            let pair = serde_json::json!({
                "method": method,
                "params": value.get("params").cloned().unwrap_or(Value::Null),
            });
            let problem = if NOTES.contains(&method.as_str()) {
                serde_json::from_value::<Note>(pair).err()
            } else {
                serde_json::from_value::<Call>(pair).err()
            };
            if let Some(e) = problem {
                return Err((
                    id,
                    RpcError::new(codes::INVALID_PARAMS, format!("{method} params: {e}")),
                ));
            }
        }
        let at = error.instance_path().to_string();
        let at = if at.is_empty() {
            "the message".to_owned()
        } else {
            at
        };
        return Err((
            id,
            RpcError::new(codes::INVALID_REQUEST, format!("{at}: {error}")),
        ));
    }
    // Which kind it is is plain from its keys: typed as that kind straight away, rather than
    // tried against each in turn as the untagged `Message` would.
    let typed = match (method.is_some(), value.get("id").is_some()) {
        (true, true) => serde_json::from_value(value).map(Message::Request),
        (true, false) => serde_json::from_value(value).map(Message::Notification),
        (false, _) => serde_json::from_value(value).map(Message::Response),
    };
    typed.map_err(|e| {
        (
            id,
            RpcError::new(codes::INVALID_REQUEST, format!("not a valid message: {e}")),
        )
    })
}

#[cfg(test)]
mod tests;
