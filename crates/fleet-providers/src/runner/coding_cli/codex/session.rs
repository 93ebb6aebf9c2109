//! [`CodexSession`]: one `codex app-server` process and one Codex thread, turn after turn.

use std::sync::Arc;

use fleet_core::activity::ActivityKind;
use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, CallContext};
use fleet_core::id::WorkUnitId;
use fleet_core::pricing::PriceTable;
use fleet_core::work_unit::ProviderRefs;
use serde_json::{Value, json};

use crate::runner::coding_cli::{
    CliProcess, GRACE, Grants, Step, Target, TreeRecorder, close_tree, open_root, set_refs,
};

use super::NAME;
use super::app_server::CodexStream;

/// One `codex app-server` process and one Codex thread: its turns share the conversation.
#[derive(Debug)]
pub struct CodexSession {
    pub(super) process: CliProcess,
    pub(super) prices: Arc<PriceTable>,
    pub(super) grants: Grants,
    pub(super) next_id: u64,
    pub(super) thread: String,
    pub(super) model: String,
    pub(super) turns: u32,
}

impl CodexSession {
    /// The Codex thread (give it to [`CodexRunner::open`](super::CodexRunner::open) to resume it later).
    #[must_use]
    pub fn thread_id(&self) -> &str {
        &self.thread
    }

    /// The process id of the app-server.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub(super) async fn notify(&mut self, method: &str, params: Value) -> Result<(), AgentError> {
        let mut message = json!({"method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.process.write(&message).await
    }

    /// Sends a request and returns its id.
    pub(super) async fn send(&mut self, method: &str, params: Value) -> Result<u64, AgentError> {
        self.next_id += 1;
        let id = self.next_id;
        self.process
            .write(&json!({"id": id, "method": method, "params": params}))
            .await?;
        Ok(id)
    }

    /// A request outside a turn: what arrives before its response (warnings, `thread/started`)
    /// concerns no turn and is skipped; server requests are refused.
    pub(super) async fn request(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Value, AgentError> {
        let id = self.send(method, params).await?;
        loop {
            let msg = self.next_message().await?;
            if msg.get("method").is_some() {
                if msg.get("id").is_some() {
                    self.refuse(&msg, "fleet has no turn running").await?;
                }
                continue;
            }
            if msg.get("id").and_then(Value::as_u64) == Some(id) {
                return response(method, &msg);
            }
        }
    }

    pub(super) async fn next_message(&mut self) -> Result<Value, AgentError> {
        loop {
            let Some(line) = self.process.next_line().await? else {
                return Err(self.process.died().await);
            };
            if let Ok(msg @ Value::Object(_)) = serde_json::from_str::<Value>(&line) {
                return Ok(msg);
            }
            // Not JSON: skipped (the app-server writes its logs to stderr).
        }
    }

    pub(super) async fn refuse(&mut self, msg: &Value, why: &str) -> Result<(), AgentError> {
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        self.process
            .write(&json!({"id": id, "error": {"code": -32601, "message": why}}))
            .await
    }

    /// Runs one turn: `call`'s prompt as the next user input of the thread, recorded as a work
    /// unit (the context's pre-recorded one, or a new child of its parent) with the subagents
    /// Codex spawned as children.
    ///
    /// # Errors
    /// [`AgentError::Cancelled`] when the context is cancelled (the turn is interrupted);
    /// [`AgentError::Worker`] when the app-server dies or refuses the turn;
    /// [`AgentError::NoAnswer`] when the turn fails.
    pub async fn turn(
        &mut self,
        call: AgentCall,
        ctx: CallContext,
    ) -> Result<AgentOutcome, AgentError> {
        let model = call.model.clone().unwrap_or_else(|| self.model.clone());
        let root = open_root(&call, &ctx, &model).await?;
        let result = match self.process.usable() {
            Ok(()) => self.exchange(&call, &ctx, root, &model).await,
            Err(e) => Err(e),
        };
        self.process.settle(&result);
        self.turns += 1;
        close_tree(&ctx, root, &result).await?;
        result
    }

    pub(super) async fn exchange(
        &mut self,
        call: &AgentCall,
        ctx: &CallContext,
        root: WorkUnitId,
        model: &str,
    ) -> Result<AgentOutcome, AgentError> {
        let prices = Arc::clone(&self.prices);
        let mut recorder = TreeRecorder::new(ctx, &prices, root);
        let mut stream = CodexStream::new(self.thread.clone(), model);
        let mut params = json!({
            "threadId": self.thread,
            "input": [{"type": "text", "text": call.prompt}],
        });
        if call.model.is_some() {
            params["model"] = Value::String(model.to_owned());
        }
        let start = self.send("turn/start", params).await?;
        let finished = loop {
            let msg = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    self.interrupt(&mut stream, &mut recorder).await;
                    return Err(AgentError::Cancelled);
                }
                msg = self.next_message() => msg?,
            };
            let mut finished = None;
            match (msg.get("id"), msg.get("method")) {
                // A server request: an approval, answered from the agent's grants.
                (Some(_), Some(_)) => self.approve(&msg, &stream, &mut recorder).await?,
                (Some(id), None) => {
                    if id.as_u64() == Some(start) {
                        let result = response("turn/start", &msg)?;
                        if let Some(turn) = result.get("turn").and_then(|t| text(t, "id")) {
                            stream.set_turn(&turn);
                        }
                    }
                }
                (None, Some(_)) => {
                    for step in stream.notification(&msg) {
                        if let Some(done) = recorder.apply(step).await? {
                            finished = Some(done);
                        }
                    }
                }
                (None, None) => {}
            }
            if let Some(done) = finished {
                break done;
            }
        };
        set_refs(
            ctx,
            root,
            ProviderRefs {
                provider: NAME.into(),
                thread: Some(self.thread.clone()),
                turn: stream.turn().map(str::to_owned),
                item: None,
                task: None,
            },
        )
        .await?;
        let text = finished.map_err(AgentError::NoAnswer)?;
        Ok(AgentOutcome {
            work_unit_id: root,
            text,
            output: None,
            model: model.to_owned(),
            usage: recorder.usage,
            cost: recorder.cost,
            model_requests: recorder.requests,
            tool_calls: recorder.tool_calls,
        })
    }

    /// Answers an approval request from the agent's grants; other requests are refused.
    pub(super) async fn approve(
        &mut self,
        msg: &Value,
        stream: &CodexStream,
        recorder: &mut TreeRecorder<'_>,
    ) -> Result<(), AgentError> {
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let command = match params.get("command") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let (verdict, legacy) = match method {
            "item/commandExecution/requestApproval" => (self.grants.command(&command), false),
            "execCommandApproval" => (self.grants.command(&command), true),
            "item/fileChange/requestApproval" => (self.grants.file_change(), false),
            "applyPatchApproval" => (self.grants.file_change(), true),
            _ => {
                return self
                    .refuse(msg, &format!("fleet does not handle {method}"))
                    .await;
            }
        };
        let decision = match (&verdict, legacy) {
            (Ok(()), false) => "accept",
            (Err(_), false) => "decline",
            (Ok(()), true) => "approved",
            (Err(_), true) => "denied",
        };
        if let Err(why) = &verdict {
            let thread = params.get("threadId").and_then(Value::as_str).unwrap_or("");
            let target = stream.target(thread).unwrap_or(Target::Root);
            recorder
                .apply(Step::Activity {
                    target,
                    kind: ActivityKind::Log {
                        level: fleet_core::activity::LogLevel::Info,
                        message: format!("refused {method}: {why}"),
                    },
                })
                .await?;
        }
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        self.process
            .write(&json!({"id": id, "result": {"decision": decision}}))
            .await
    }

    /// `turn/interrupt`, a moment for the turn to end (recording what it did), then the process
    /// is stopped.
    pub(super) async fn interrupt(
        &mut self,
        stream: &mut CodexStream,
        recorder: &mut TreeRecorder<'_>,
    ) {
        if let Some(turn) = stream.turn().map(str::to_owned) {
            let thread = self.thread.clone();
            if self
                .send(
                    "turn/interrupt",
                    json!({"threadId": thread, "turnId": turn}),
                )
                .await
                .is_ok()
            {
                let _ = tokio::time::timeout(GRACE, async {
                    while let Ok(msg) = self.next_message().await {
                        if msg.get("id").is_some() {
                            continue;
                        }
                        for step in stream.notification(&msg) {
                            match step {
                                Step::Finished { .. } => return,
                                Step::Activity { .. } | Step::Usage { .. } => {
                                    let _ = recorder.apply(step).await;
                                }
                                _ => {}
                            }
                        }
                    }
                })
                .await;
            }
        }
        self.process.kill("it was interrupted").await;
    }

    /// Ends the session: the app-server's input is closed and it gets a moment to exit before it
    /// is killed.
    pub async fn close(self) {
        self.process.close().await;
    }
}

/// A JSON-RPC response's result, or its error as an [`AgentError::Worker`].
pub(super) fn response(method: &str, msg: &Value) -> Result<Value, AgentError> {
    if let Some(error) = msg.get("error") {
        return Err(AgentError::Worker(format!(
            "codex refused {method}: {}",
            text(error, "message").unwrap_or_else(|| error.to_string())
        )));
    }
    Ok(msg.get("result").cloned().unwrap_or(Value::Null))
}

/// A string field of a JSON-RPC result or error (the responses' framing is read as JSON).
pub(super) fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}
