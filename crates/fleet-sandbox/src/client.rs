//! The supervisor's side of one worker process: requests with their answers routed by id,
//! notifications handed over as they come, the worker's own requests (`model/stream`, for the
//! gateway) handed to whoever serves them, and a worker that dies failing every call in flight
//! with its exit status and the tail of its log.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleet_core::ipc::{
    Call, InitializeParams, InitializeResult, Message, ModelStreamParams, Note, RequestId,
    RpcError, TaskResult, TaskRunParams, codes, decode_line,
};
use fleet_core::sync::lock;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{mpsc, oneshot, watch};

use crate::worker::read_line_capped;

/// How much of a worker's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// Why a call to a worker failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The worker answered with an error.
    #[error("the worker answered: {0}")]
    Rpc(RpcError),
    /// The worker exited before answering.
    #[error("the worker exited ({status}) before answering{}", tail_suffix(.stderr_tail))]
    Exited {
        /// How it ended.
        status: String,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// Talking to it failed.
    #[error("cannot talk to the worker: {0}")]
    Io(String),
    /// Its answer was not what the method returns.
    #[error("the worker's answer is malformed: {0}")]
    Malformed(String),
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its log ends with: {}", tail.trim())
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>;

/// What a worker asks of the supervisor.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WorkerRequest {
    /// A model turn for the gateway (answer it with [`WorkerProcess::answer`]).
    ModelStream {
        /// The request's id, for the answer and its `model/event`s.
        id: RequestId,
        /// The turn.
        params: ModelStreamParams,
    },
    /// `$/cancelRequest`: stop the worker's request with this id.
    Cancel(RequestId),
}

/// Where the worker's requests go, once someone serves them.
type Served = Arc<Mutex<Option<mpsc::UnboundedSender<WorkerRequest>>>>;

/// A running worker.
#[derive(Debug)]
pub struct WorkerProcess {
    /// Lines for the worker's stdin, written in batches by one task.
    outbox: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
    notes: Mutex<Option<mpsc::UnboundedReceiver<Note>>>,
    ended: watch::Receiver<Option<(String, String)>>,
    pid: Option<u32>,
    errors: Arc<Mutex<ProtocolErrors>>,
    served: Served,
}

/// What the worker wrote that broke the protocol.
#[derive(Debug, Default)]
struct ProtocolErrors {
    count: u64,
    unseen: Vec<String>,
}

/// How many protocol errors are kept until someone takes them.
const KEPT_ERRORS: usize = 32;

impl WorkerProcess {
    /// Starts `command` (stdin, stdout and stderr are taken over) and begins reading it.
    ///
    /// # Errors
    /// It could not be started.
    pub fn spawn(mut command: tokio::process::Command) -> Result<Self, WorkerError> {
        let mut child: Child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| WorkerError::Io(format!("cannot start the worker: {e}")))?;
        let io = |what: &str| WorkerError::Io(format!("the worker has no {what}"));
        let stdin = child.stdin.take().ok_or_else(|| io("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| io("stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| io("stderr"))?;
        let pending: Pending = Arc::default();
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        let (ended_tx, ended_rx) = watch::channel(None);
        let errors = Arc::new(Mutex::new(ProtocolErrors::default()));
        let (outbox, lines) = mpsc::unbounded_channel();
        let tail = Arc::new(Mutex::new(String::new()));
        let pid = child.id();
        let stderr_done = tokio::spawn(keep_tail(stderr, tail.clone()));
        let served: Served = Arc::default();
        tokio::spawn(read_messages(
            stdout,
            child,
            Routes {
                stderr_done,
                pending: pending.clone(),
                notes: notes_tx,
                ended: ended_tx,
                errors: errors.clone(),
                outbox: outbox.clone(),
                tail,
                served: served.clone(),
            },
        ));
        tokio::spawn(write_lines(stdin, lines));
        Ok(Self {
            outbox,
            pending,
            next_id: AtomicU64::new(1),
            notes: Mutex::new(Some(notes_rx)),
            ended: ended_rx,
            pid,
            errors,
            served,
        })
    }

    /// The worker's own requests, from now on (once: the first caller serves them). Until
    /// then, or when no one does, they are answered with an error.
    pub fn requests(&self) -> Option<mpsc::UnboundedReceiver<WorkerRequest>> {
        let mut served = lock(&self.served);
        if served.is_some() {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *served = Some(tx);
        Some(rx)
    }

    /// Answers the worker's request `id`. A worker that is gone is not an error here: its
    /// end is reported to whoever waits on its task.
    pub fn answer(&self, id: RequestId, answer: Result<Value, RpcError>) {
        let message = match answer {
            Ok(value) => Message::result(id, value),
            Err(error) => Message::error(Some(id), error),
        };
        let _ = self.outbox.send(message.to_line());
    }

    /// Sends the worker a notification (as for [`WorkerProcess::answer`], a worker that is
    /// gone is not an error here).
    pub fn notify(&self, note: Note) {
        let _ = self.outbox.send(Message::notification(note).to_line());
    }

    /// How many lines from the worker broke the protocol (each answered with a JSON-RPC
    /// error, when it was not itself an answer).
    #[must_use]
    pub fn protocol_error_count(&self) -> u64 {
        lock(&self.errors).count
    }

    /// The protocol errors not taken yet (the most recent few), for the log.
    #[must_use]
    pub fn take_protocol_errors(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.errors).unseen)
    }

    /// The worker's notifications (once: the first caller gets them).
    pub fn notifications(&self) -> Option<mpsc::UnboundedReceiver<Note>> {
        lock(&self.notes).take()
    }

    /// Sends `call` and waits for its answer.
    ///
    /// # Errors
    /// The worker's error, its exit, or a broken pipe.
    pub async fn call(&self, call: Call) -> Result<Value, WorkerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let line = Message::request(RequestId::Number(id), call).to_line();
        if self.outbox.send(line).is_err() {
            lock(&self.pending).remove(&id);
            return Err(self
                .exit_error()
                .await
                .unwrap_or_else(|| WorkerError::Io("the worker's input is closed".into())));
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(WorkerError::Rpc(error)),
            Err(_) => Err(self
                .exit_error()
                .await
                .unwrap_or_else(|| WorkerError::Io("the worker stopped answering".into()))),
        }
    }

    /// Sends `call` without waiting for its answer (which is read and dropped).
    ///
    /// # Errors
    /// The worker's input is closed.
    pub fn send(&self, call: Call) -> Result<(), WorkerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, _) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        self.outbox
            .send(Message::request(RequestId::Number(id), call).to_line())
            .map_err(|_| WorkerError::Io("the worker's input is closed".into()))
    }

    async fn exit_error(&self) -> Option<WorkerError> {
        let mut ended = self.ended.clone();
        let (status, stderr_tail) = ended.wait_for(Option::is_some).await.ok()?.clone()?;
        Some(WorkerError::Exited {
            status,
            stderr_tail,
        })
    }

    /// `initialize`.
    ///
    /// # Errors
    /// As [`WorkerProcess::call`], or a malformed answer.
    pub async fn initialize(
        &self,
        params: InitializeParams,
    ) -> Result<InitializeResult, WorkerError> {
        let value = self.call(Call::Initialize(params)).await?;
        serde_json::from_value(value).map_err(|e| WorkerError::Malformed(e.to_string()))
    }

    /// `task/run`.
    ///
    /// # Errors
    /// As [`WorkerProcess::call`], or a malformed answer.
    pub async fn run_task(&self, params: TaskRunParams) -> Result<TaskResult, WorkerError> {
        let value = self.call(Call::TaskRun(params)).await?;
        serde_json::from_value(value).map_err(|e| WorkerError::Malformed(e.to_string()))
    }

    /// Kills the worker (its process group: the helper made it a session leader).
    pub fn kill(&self) {
        if let Some(pid) = self
            .pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }

    /// How the worker ended, once it has: its status and the end of its log.
    #[must_use]
    pub fn ended(&self) -> Option<(String, String)> {
        self.ended.borrow().clone()
    }
}

/// Writes queued lines to the worker, whatever is queued at once in one write. Ends when the
/// worker's input breaks (the reader then reports how it ended).
async fn write_lines(mut stdin: ChildStdin, mut lines: mpsc::UnboundedReceiver<String>) {
    let mut batch = String::new();
    while let Some(line) = lines.recv().await {
        batch.clear();
        batch.push_str(&line);
        while let Ok(more) = lines.try_recv() {
            batch.push_str(&more);
        }
        if stdin.write_all(batch.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn keep_tail(stderr: impl AsyncRead + Unpin, tail: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut tail = lock(&tail);
        tail.push_str(&line);
        tail.push('\n');
        if tail.len() > STDERR_TAIL {
            let cut = tail.len() - STDERR_TAIL;
            let cut = (cut..tail.len())
                .find(|i| tail.is_char_boundary(*i))
                .unwrap_or(0);
            tail.drain(..cut);
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => s.to_string(),
        },
        Err(e) => format!("status unknown: {e}"),
    }
}

/// Where what a worker writes goes.
struct Routes {
    stderr_done: tokio::task::JoinHandle<()>,
    pending: Pending,
    notes: mpsc::UnboundedSender<Note>,
    ended: watch::Sender<Option<(String, String)>>,
    errors: Arc<Mutex<ProtocolErrors>>,
    outbox: mpsc::UnboundedSender<String>,
    tail: Arc<Mutex<String>>,
    served: Served,
}

async fn read_messages(stdout: impl AsyncRead + Unpin, mut child: Child, routes: Routes) {
    let Routes {
        stderr_done,
        pending,
        notes,
        ended,
        errors,
        outbox,
        tail,
        served,
    } = routes;
    let broke = |message: String| {
        let mut errors = lock(&errors);
        errors.count += 1;
        if errors.unseen.len() < KEPT_ERRORS {
            errors.unseen.push(message);
        }
    };
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        if trimmed.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode_line(trimmed) {
            Ok(Message::Response(response)) => {
                let waiter = match &response.id {
                    Some(RequestId::Number(id)) => lock(&pending).remove(id),
                    _ => None,
                };
                let Some(waiter) = waiter else {
                    broke(format!(
                        "an answer to no request in flight (id {:?})",
                        response.id
                    ));
                    continue;
                };
                let answer = match (response.result, response.error) {
                    (_, Some(error)) => Err(error),
                    (result, None) => Ok(result.unwrap_or(Value::Null)),
                };
                let _ = waiter.send(answer);
            }
            Ok(Message::Notification(notification)) => match notification.note {
                Note::CancelRequest(cancel) => {
                    if let Some(served) = &*lock(&served) {
                        let _ = served.send(WorkerRequest::Cancel(cancel.id));
                    }
                }
                Note::ModelEvent(_) => {
                    broke("a model/event from the worker (the gateway sends those)".into());
                }
                note => {
                    let _ = notes.send(note);
                }
            },
            Ok(Message::Request(request)) => {
                let refused = match request.call {
                    Call::ModelStream(params) => {
                        let served = lock(&served);
                        match &*served {
                            Some(to) => to
                                .send(WorkerRequest::ModelStream {
                                    id: request.id.clone(),
                                    params,
                                })
                                .err()
                                .map(|_| "the supervisor stopped serving model turns"),
                            None => Some("this supervisor has no model gateway"),
                        }
                    }
                    other => {
                        broke(format!("a request from the worker ({other:?})"));
                        Some("workers may ask the supervisor only for model/stream")
                    }
                };
                if let Some(why) = refused {
                    let error = RpcError::new(codes::METHOD_NOT_FOUND, why);
                    let _ = outbox.send(Message::error(Some(request.id), error).to_line());
                }
            }
            Err((id, error)) => {
                broke(error.to_string());
                let _ = outbox.send(Message::error(id, error).to_line());
            }
        }
    }
    let status = describe(child.wait().await);
    // The log's last lines, unless something the worker left behind keeps stderr open.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stderr_done).await;
    let tail = lock(&tail).clone();
    let _ = ended.send(Some((status, tail)));
    lock(&pending).clear();
}
