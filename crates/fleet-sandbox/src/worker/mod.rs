//! The worker side of the protocol: a [`Role`] and [`serve`], which reads the supervisor's
//! requests from stdin and answers on stdout (see [`fleet_core::ipc`]). A task reaches its
//! model through the supervisor's gateway ([`Task::model`]). Workers need not be written in
//! Rust: anything that speaks the protocol's JSON lines will do.

mod error;
mod model;

pub use self::error::RoleError;
pub use self::model::GatewayModel;
use self::model::Link;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fleet_core::activity::LogLevel;
use fleet_core::ipc::{
    Call, GatewayInfo, InitializeResult, LogLine, MAX_LINE_BYTES, Message, Note, Progress,
    RequestId, RpcError, TaskLimits, TaskResult, UsageReport, codes, decode_line,
};
use fleet_core::provider::CancelToken;
use fleet_core::sync::lock;
use fleet_core::usage::TokenUsage;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// What `initialize` told the worker.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// The agent's spec (JSON).
    pub spec: Value,
    /// Where it works.
    pub workspace: PathBuf,
    /// Limits per task.
    pub limits: TaskLimits,
    /// The protocol version the supervisor speaks.
    pub protocol: u32,
    /// The supervisor's model gateway, when it has one.
    pub gateway: Option<GatewayInfo>,
}

/// One task, with the means to report on it and to reach its model.
#[derive(Clone)]
pub struct Task {
    /// Its id.
    pub id: String,
    /// What to do.
    pub prompt: String,
    /// Structured input.
    pub input: Option<Value>,
    /// Cancelled by `task/cancel` (or shutdown).
    pub cancel: CancelToken,
    out: mpsc::UnboundedSender<Message>,
    link: Link,
    gateway: Option<GatewayInfo>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("id", &self.id)
            .field("prompt", &self.prompt)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// The task's model: a [`fleet_core::provider::Provider`] whose turns go to the supervisor's gateway
    /// (which holds the credentials, and meters and charges every turn). Give it to the agent
    /// loop like any provider.
    #[must_use]
    pub fn model(&self) -> GatewayModel {
        GatewayModel::new(self.link.clone(), self.id.clone(), self.gateway.as_ref())
    }

    fn note(&self, note: Note) {
        // The writer is gone only when the supervisor went away.
        let _ = self.out.send(Message::notification(note));
    }

    /// Sends `task/progress`.
    pub fn progress(&self, message: impl Into<String>, fraction: Option<f64>) {
        self.note(Note::Progress(Progress {
            task_id: self.id.clone(),
            message: message.into(),
            fraction,
        }));
    }

    /// Sends `task/usage`: tokens the worker believes it spent on `model`. A diagnostic for the
    /// log: the supervisor charges only what its gateway metered.
    pub fn usage(&self, model: impl Into<String>, usage: TokenUsage) {
        self.note(Note::Usage(UsageReport {
            task_id: self.id.clone(),
            model: model.into(),
            usage,
        }));
    }

    /// Sends `task/log`.
    pub fn log(&self, level: LogLevel, message: impl Into<String>) {
        self.note(Note::Log(LogLine {
            task_id: Some(self.id.clone()),
            level,
            message: message.into(),
        }));
    }
}

/// What a worker does: set up, run tasks, finish.
pub trait Role: Send + Sync + 'static {
    /// Called once, by `initialize`.
    fn init(
        &mut self,
        ctx: &WorkerContext,
    ) -> impl Future<Output = Result<InitializeResult, RoleError>> + Send;

    /// Runs one task; an `Err` answers `task/run` with a task-failed error.
    fn on_task(&self, task: Task) -> impl Future<Output = Result<TaskResult, RoleError>> + Send;

    /// Called by `shutdown`, before the worker exits.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Serves `role` on stdin/stdout until `shutdown` or end of input. Run it on a runtime with
/// I/O enabled (`enable_io` or `enable_all`): the pipes are read by the runtime's event loop.
///
/// # Errors
/// Reading stdin or writing stdout failed.
pub async fn serve_stdio<R: Role>(role: R) -> std::io::Result<()> {
    // Pipes (as the supervisor gives them) are read and written by the runtime's own event
    // loop; tokio's stdin and stdout, the fallback, hand every read and write to a blocking
    // thread, which costs a thread switch each way per message.
    match stdio_pipes() {
        Some((input, output)) => serve(role, tokio::io::BufReader::new(input), output).await,
        None => {
            serve(
                role,
                tokio::io::BufReader::new(tokio::io::stdin()),
                tokio::io::stdout(),
            )
            .await
        }
    }
}

/// Stdin and stdout as non-blocking pipes of the runtime, when both are pipes.
fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::AsFd;
    let input = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let input = tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(input)).ok()?;
    let output = tokio::net::unix::pipe::Sender::from_file(std::fs::File::from(output)).ok()?;
    Some((input, output))
}

/// Serves `role`: requests from `input`, answers and notifications to `output`, one JSON
/// object per line. Tasks run concurrently, each answered when it ends. Bad lines are
/// answered with JSON-RPC errors and logged on stderr.
///
/// # Errors
/// Reading or writing failed.
pub async fn serve<R: Role>(
    role: R,
    mut input: impl AsyncBufRead + Unpin,
    output: impl AsyncWrite + Unpin + Send + 'static,
) -> std::io::Result<()> {
    let (out, mut queue) = mpsc::unbounded_channel::<Message>();
    let link = Link::new(out.clone());
    let writer = tokio::spawn(async move {
        let mut output = output;
        let mut batch = String::new();
        while let Some(message) = queue.recv().await {
            // Whatever else is queued goes out in the same write.
            batch.clear();
            batch.push_str(&message.to_line());
            while let Ok(more) = queue.try_recv() {
                batch.push_str(&more.to_line());
            }
            output.write_all(batch.as_bytes()).await?;
            output.flush().await?;
        }
        std::io::Result::Ok(())
    });
    // Before `initialize` the role is ours to set up; after, the tasks share it.
    let mut fresh = Some(role);
    let mut ready: Option<Arc<R>> = None;
    let mut gateway: Option<GatewayInfo> = None;
    let running: Arc<Mutex<HashMap<String, CancelToken>>> = Arc::default();
    let reply = |id: RequestId, answer: Result<Value, RpcError>| {
        let _ = out.send(match answer {
            Ok(v) => Message::result(id, v),
            Err(e) => Message::error(Some(id), e),
        });
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if read_line_capped(&mut input, &mut line).await? == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = match decode_line(trim_newline(&line)) {
            Ok(Message::Request(r)) => r,
            Ok(Message::Response(response)) => {
                if !link.route_response(response) {
                    log_stderr("an answer from the supervisor to no request in flight");
                }
                continue;
            }
            Ok(Message::Notification(notification)) => {
                match notification.note {
                    Note::ModelEvent(event) => {
                        // A turn dropped by its task still gets the events already on the way.
                        link.route_event(event);
                    }
                    other => log_stderr(&format!(
                        "a notification workers do not take from the supervisor: {other:?}"
                    )),
                }
                continue;
            }
            Err((id, error)) => {
                log_stderr(&format!("bad message from the supervisor: {error}"));
                let _ = out.send(Message::error(id, error));
                continue;
            }
        };
        let id = request.id;
        let role = match (request.call, &ready) {
            (Call::Initialize(params), None) => {
                let Some(mut role) = fresh.take() else {
                    continue;
                };
                gateway.clone_from(&params.gateway);
                let ctx = WorkerContext {
                    spec: params.spec,
                    workspace: params.workspace,
                    limits: params.limits,
                    protocol: params.protocol,
                    gateway: params.gateway,
                };
                let answer = role
                    .init(&ctx)
                    .await
                    .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
                    .and_then(|r| {
                        serde_json::to_value(r)
                            .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
                    });
                reply(id, answer);
                ready = Some(Arc::new(role));
                continue;
            }
            (Call::Initialize(_), Some(_)) => {
                reply(
                    id,
                    Err(RpcError::new(codes::INVALID_REQUEST, "already initialized")),
                );
                continue;
            }
            (call, Some(role)) => (call, role.clone()),
            (_, None) => {
                reply(
                    id,
                    Err(RpcError::new(
                        codes::INVALID_REQUEST,
                        "the first request must be `initialize`",
                    )),
                );
                continue;
            }
        };
        match role {
            (Call::TaskRun(params), role) => {
                let cancel = CancelToken::new();
                lock(&running).insert(params.task_id.clone(), cancel.clone());
                let task = Task {
                    id: params.task_id,
                    prompt: params.prompt,
                    input: params.input,
                    cancel: cancel.clone(),
                    out: out.clone(),
                    link: link.clone(),
                    gateway: gateway.clone(),
                };
                let (out, running) = (out.clone(), running.clone());
                tokio::spawn(async move {
                    let task_id = task.id.clone();
                    let answer = tokio::select! {
                        // A cancelled task is reported cancelled, whatever it returns.
                        biased;
                        () = cancel.cancelled() => Message::error(
                            Some(id.clone()),
                            RpcError::new(codes::TASK_CANCELLED, "the task was cancelled"),
                        ),
                        result = role.on_task(task) => match result {
                            Ok(result) => serde_json::to_value(result).map_or_else(
                                |e| Message::error(Some(id.clone()), RpcError::new(codes::INTERNAL_ERROR, e.to_string())),
                                |v| Message::result(id.clone(), v),
                            ),
                            Err(e) => Message::error(Some(id.clone()), RpcError::new(codes::TASK_FAILED, e.to_string())),
                        },
                    };
                    lock(&running).remove(&task_id);
                    let _ = out.send(answer);
                });
            }
            (Call::TaskCancel(task), _) => {
                let found = lock(&running).get(&task.task_id).cloned();
                let answer = match found {
                    Some(cancel) => {
                        cancel.cancel();
                        Ok(Value::Null)
                    }
                    None => Err(RpcError::new(
                        codes::INVALID_PARAMS,
                        format!("no running task \"{}\"", task.task_id),
                    )),
                };
                reply(id, answer);
            }
            (Call::Shutdown(_), role) => {
                for cancel in lock(&running).values() {
                    cancel.cancel();
                }
                role.shutdown().await;
                reply(id, Ok(Value::Null));
                break;
            }
            (Call::ModelStream(_), _) => reply(
                id,
                Err(RpcError::new(
                    codes::METHOD_NOT_FOUND,
                    "model/stream is the worker's request to the supervisor, not the other way",
                )),
            ),
            (Call::Initialize(_), _) => {}
        }
    }
    link.close();
    drop(link);
    drop(out);
    writer.await.unwrap_or(Ok(()))
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads one line into `line`, keeping at most [`MAX_LINE_BYTES`] + 1 bytes of it (so that an
/// oversized line is reported, not buffered whole). Returns the bytes consumed (0 at the end).
pub(crate) async fn read_line_capped(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = (MAX_LINE_BYTES + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        input.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

#[allow(clippy::print_stderr)]
fn log_stderr(message: &str) {
    // A worker's stderr is its log.
    eprintln!("{message}");
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;

    struct Shout;

    impl Role for Shout {
        async fn init(&mut self, ctx: &WorkerContext) -> Result<InitializeResult, RoleError> {
            Ok(InitializeResult {
                role: ctx.spec["name"].as_str().unwrap_or("?").to_owned(),
                version: None,
            })
        }

        async fn on_task(&self, task: Task) -> Result<TaskResult, RoleError> {
            match task.prompt.as_str() {
                "wait" => {
                    task.cancel.cancelled().await;
                    Err("unreachable".into())
                }
                "fail" => Err("cannot do that".into()),
                prompt => {
                    task.progress("shouting", Some(0.5));
                    task.usage("m", TokenUsage::default());
                    Ok(TaskResult {
                        text: prompt.to_uppercase(),
                        output: None,
                    })
                }
            }
        }
    }

    #[tokio::test]
    async fn serve_answers_tasks_notifies_cancels_and_reports_bad_lines() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server);
        let served = tokio::spawn(serve(Shout, BufReader::new(server_read), server_write));
        let (client_read, mut client_write) = tokio::io::split(client);
        let mut lines = BufReader::new(client_read).lines();
        let mut send = async |line: &str| {
            client_write
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
        };
        let mut next = async || -> Value {
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap()
        };

        send(r#"{"jsonrpc":"2.0","id":1,"method":"task/run","params":{"task_id":"t0","prompt":"x"}}"#).await;
        assert_eq!(
            next().await["error"]["message"],
            "the first request must be `initialize`"
        );
        send(r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocol":2,"spec":{"name":"shout-bot"},"workspace":"/w"}}"#).await;
        assert_eq!(
            next().await,
            json!({"jsonrpc":"2.0","id":2,"result":{"role":"shout-bot"}})
        );
        send("this is not json").await;
        assert_eq!(next().await["error"]["code"], codes::PARSE_ERROR);
        send(r#"{"jsonrpc":"2.0","id":3,"method":"task/run","params":{"task_id":"t1","prompt":"hello"}}"#).await;
        assert_eq!(next().await["method"], "task/progress");
        assert_eq!(next().await["params"]["model"], "m");
        assert_eq!(
            next().await,
            json!({"jsonrpc":"2.0","id":3,"result":{"text":"HELLO"}})
        );
        send(r#"{"jsonrpc":"2.0","id":4,"method":"task/run","params":{"task_id":"t2","prompt":"fail"}}"#).await;
        let failed = next().await;
        assert_eq!(
            (failed["id"].clone(), failed["error"]["code"].clone()),
            (json!(4), json!(codes::TASK_FAILED))
        );
        send(r#"{"jsonrpc":"2.0","id":5,"method":"task/run","params":{"task_id":"t3","prompt":"wait"}}"#).await;
        send(r#"{"jsonrpc":"2.0","id":6,"method":"task/cancel","params":{"task_id":"t3"}}"#).await;
        let mut answers = [next().await, next().await];
        answers.sort_by_key(|a| a["id"].as_u64());
        assert_eq!(answers[0]["error"]["code"], codes::TASK_CANCELLED);
        assert_eq!(answers[1], json!({"jsonrpc":"2.0","id":6,"result":null}));
        send(r#"{"jsonrpc":"2.0","id":7,"method":"shutdown","params":{}}"#).await;
        assert_eq!(next().await, json!({"jsonrpc":"2.0","id":7,"result":null}));
        served.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn an_oversized_line_is_refused_without_being_buffered_whole() {
        let mut input = vec![b'x'; MAX_LINE_BYTES * 3];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let mut reader = BufReader::new(input.as_slice());
        let mut line = Vec::new();
        let n = read_line_capped(&mut reader, &mut line).await.unwrap();
        assert_eq!(
            (n, line.len()),
            (MAX_LINE_BYTES * 3 + 1, MAX_LINE_BYTES + 1)
        );
        assert!(
            decode_line(&line)
                .unwrap_err()
                .1
                .message
                .contains("exceeds the limit")
        );
        line.clear();
        read_line_capped(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, b"next\n");
    }
}
