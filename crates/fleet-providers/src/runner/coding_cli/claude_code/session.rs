//! One `claude` process, whose turns share a conversation: each turn writes a user message,
//! reads the stream until the turn's `result`, answers the CLI's permission requests and
//! records what it read.

use std::sync::Arc;

use fleet_core::activity::ActivityKind;
use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, CallContext};
use fleet_core::id::WorkUnitId;
use fleet_core::pricing::PriceTable;
use fleet_core::spec::PermissionMode;
use fleet_core::work_unit::ProviderRefs;
use serde_json::json;

use super::NAME;
use super::stream::{ClaudeStream, PermissionRequest};
use super::wire::{ControlResponse, Input, OwnRequest, Verdict};
use crate::runner::coding_cli::{
    CliProcess, GRACE, Grants, Step, TreeRecorder, close_tree, open_root, set_refs,
};

/// One `claude` process: its turns share a conversation.
#[derive(Debug)]
pub struct ClaudeCodeSession {
    process: CliProcess,
    stream: ClaudeStream,
    prices: Arc<PriceTable>,
    grants: Grants,
    turns: u32,
}

impl ClaudeCodeSession {
    pub(super) fn new(process: CliProcess, prices: Arc<PriceTable>, grants: Grants) -> Self {
        Self {
            process,
            stream: ClaudeStream::new(),
            prices,
            grants,
            turns: 0,
        }
    }

    /// The CLI's session id, once its first turn began.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.stream.session_id()
    }

    /// The process id of the CLI.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Turns taken so far.
    #[must_use]
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Runs one turn: `call`'s prompt as the next user message of the conversation, recorded as
    /// a work unit (the context's pre-recorded one, or a new child of its parent) with the
    /// subagents it started as children.
    ///
    /// # Errors
    /// [`AgentError::Cancelled`] when the context is cancelled (the CLI is interrupted, then
    /// stopped); [`AgentError::Worker`] when the CLI exits before the turn's result (with its
    /// exit status and stderr tail) or the session already ended; [`AgentError::NoAnswer`] when
    /// the CLI reports an error.
    pub async fn turn(
        &mut self,
        call: AgentCall,
        ctx: CallContext,
    ) -> Result<AgentOutcome, AgentError> {
        let model = call
            .model
            .clone()
            .or_else(|| call.agent.as_ref().map(|a| a.model.clone()))
            .or_else(|| self.stream.model().map(str::to_owned))
            .unwrap_or_else(|| "claude-sonnet-4-5".into());
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

    async fn exchange(
        &mut self,
        call: &AgentCall,
        ctx: &CallContext,
        root: WorkUnitId,
        model: &str,
    ) -> Result<AgentOutcome, AgentError> {
        self.stream.begin_turn();
        let prices = Arc::clone(&self.prices);
        let mut recorder = TreeRecorder::new(ctx, &prices, root);
        self.process.write(&Input::user(&call.prompt)).await?;
        let finished = loop {
            let next = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => {
                    self.interrupt(&mut recorder).await;
                    return Err(AgentError::Cancelled);
                }
                next = self.process.next_line() => next?,
            };
            let Some(line) = next else {
                return Err(self.process.died().await);
            };
            let mut finished = None;
            for step in self.stream.line(&line) {
                if let Some(done) = recorder.apply(step).await? {
                    finished = Some(done);
                }
            }
            for request in self.stream.take_requests() {
                self.answer(request, &mut recorder).await?;
            }
            if let Some(done) = finished {
                break done;
            }
        };
        if let Some(session) = self.stream.session_id() {
            let refs = ProviderRefs {
                provider: NAME.into(),
                thread: Some(session.to_owned()),
                turn: Some(format!("turn-{}", self.turns + 1)),
                item: None,
                task: None,
            };
            set_refs(ctx, root, refs).await?;
        }
        let text = finished.map_err(AgentError::NoAnswer)?;
        let output = recorder
            .plan
            .clone()
            .map(|plan| json!({"plan": plan, "text": text}));
        Ok(AgentOutcome {
            work_unit_id: root,
            text,
            output,
            model: model.to_owned(),
            usage: recorder.usage,
            cost: recorder.cost,
            model_requests: recorder.requests,
            tool_calls: recorder.tool_calls,
        })
    }

    /// Answers a permission request from the agent's grants; in plan mode, the request to
    /// leave it is refused and its plan recorded.
    async fn answer(
        &mut self,
        request: PermissionRequest,
        recorder: &mut TreeRecorder<'_>,
    ) -> Result<(), AgentError> {
        if request.tool.is_empty() {
            let what = request
                .input
                .get("subtype")
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("this request");
            let answer = Input::ControlResponse {
                response: ControlResponse::Error {
                    request_id: &request.request_id,
                    error: format!("fleet does not handle {what}"),
                },
            };
            return self.process.write(&answer).await;
        }
        let who = self.stream.caller(request.tool_use_id.as_deref());
        let verdict = if request.tool == "ExitPlanMode" && self.grants.mode == PermissionMode::Plan
        {
            let plan = request
                .input
                .get("plan")
                .and_then(serde_json::Value::as_str)
                .or_else(|| self.stream.plan(request.tool_use_id.as_deref()))
                .unwrap_or_default()
                .to_owned();
            recorder
                .apply(Step::Activity {
                    target: who.clone(),
                    kind: ActivityKind::ProposedPlan { plan },
                })
                .await?;
            Err(
                "fleet recorded this plan for approval. Stay in plan mode: do not make \
                 changes; end your turn now."
                    .to_owned(),
            )
        } else {
            self.grants.claude_tool(&request.tool)
        };
        let response = match &verdict {
            Ok(()) => Verdict::Allow {
                updated_input: &request.input,
            },
            Err(why) => {
                recorder
                    .apply(Step::Activity {
                        target: who,
                        kind: ActivityKind::Log {
                            level: fleet_core::activity::LogLevel::Info,
                            message: format!("refused {}: {why}", request.tool),
                        },
                    })
                    .await?;
                Verdict::Deny { message: why }
            }
        };
        let answer = Input::ControlResponse {
            response: ControlResponse::Success {
                request_id: &request.request_id,
                response,
            },
        };
        self.process.write(&answer).await
    }

    /// The CLI's interrupt control request; the turn's last lines are recorded for a moment,
    /// then the process is stopped.
    async fn interrupt(&mut self, recorder: &mut TreeRecorder<'_>) {
        let interrupt = Input::ControlRequest {
            request_id: "fleet-interrupt",
            request: OwnRequest::Interrupt,
        };
        if self.process.write(&interrupt).await.is_ok() {
            let _ = tokio::time::timeout(GRACE, async {
                while let Ok(Some(line)) = self.process.next_line().await {
                    for step in self.stream.line(&line) {
                        match step {
                            Step::Finished { .. } => return,
                            // What it did and spent is kept; every open unit ends cancelled.
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
        self.process.kill("it was interrupted").await;
    }

    /// Ends the session: the CLI's input is closed and it gets a moment to exit before it is
    /// killed.
    pub async fn close(self) {
        self.process.close().await;
    }
}
