//! Reading the CLI's output: each line, as its [wire](super::wire) type, becomes the [`Step`]s
//! to record, and the permission requests to answer. Pure: no I/O, no clock.

use std::collections::{HashMap, HashSet, VecDeque};

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{ProviderRefs, WorkUnitState};
use serde_json::{Value, json};

use super::NAME;
use super::wire::{
    Assistant, Block, ControlRequest, Finished, Line, System, TaskStarted, TaskStatus, User,
    UserBlock,
};
use crate::runner::coding_cli::{Step, Target, read_line};

/// A tool the CLI asks permission to use (a `can_use_tool` control request).
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    /// The control request's id, to answer.
    pub request_id: String,
    /// The tool; empty for a request that is not about a tool (a hook, an MCP message), whose
    /// `input` then says its `subtype`.
    pub tool: String,
    /// Its input.
    pub input: Value,
    /// The `tool_use` it is for, when the CLI says.
    pub tool_use_id: Option<String>,
}

/// Reads the CLI's stream-json output, line by line.
#[derive(Debug, Default)]
pub struct ClaudeStream {
    session_id: Option<String>,
    model: Option<String>,
    /// Children by `tool_use_id`.
    children: HashSet<String>,
    /// Children that ended.
    ended: HashSet<String>,
    /// Children started in the background.
    background: HashSet<String>,
    /// A background child was reported since the last `result`: the CLI will run a follow-up
    /// turn for it.
    notified: bool,
    /// Who made each tool call.
    callers: HashMap<String, Target>,
    /// Plans carried by `ExitPlanMode` calls.
    plans: HashMap<String, String>,
    last_plan: Option<String>,
    /// Assistant message ids whose usage is counted.
    counted: HashSet<String>,
    /// Tokens counted per child, and the model it last spoke with.
    child_tokens: HashMap<String, (u64, String)>,
    /// The CLI's `modelUsage` at the last `result` (it counts the whole session).
    session_usage: HashMap<String, TokenUsage>,
    /// What the results of this turn reported beyond that.
    turn_usage: Vec<(String, TokenUsage)>,
    turn_error: Option<String>,
    /// Permission requests not yet answered.
    requests: VecDeque<PermissionRequest>,
    /// Lines that were not JSON objects, or not of their type's shape.
    malformed: u64,
}

/// The subagent tool's names (the CLI offers `Agent`; older versions and `init` say `Task`).
fn is_subagent_tool(name: &str) -> bool {
    matches!(name, "Agent" | "Task")
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

impl ClaudeStream {
    /// A reader for a fresh session.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The session id, once `system/init` said it.
    #[must_use]
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The model the session runs on, once `system/init` said it.
    #[must_use]
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Lines that were not JSON objects, or not of the shape their type has (they are
    /// skipped, counted and logged).
    #[must_use]
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Assistant messages whose usage was counted.
    #[must_use]
    pub fn model_requests(&self) -> usize {
        self.counted.len()
    }

    /// The permission requests read so far and not yet taken.
    pub fn take_requests(&mut self) -> Vec<PermissionRequest> {
        self.requests.drain(..).collect()
    }

    /// The plan an `ExitPlanMode` call carried (by its `tool_use_id`, else the latest).
    #[must_use]
    pub fn plan(&self, tool_use_id: Option<&str>) -> Option<&str> {
        tool_use_id
            .and_then(|id| self.plans.get(id))
            .or(self.last_plan.as_ref())
            .map(String::as_str)
    }

    /// Who made the tool call `tool_use_id` (the root when unknown).
    #[must_use]
    pub fn caller(&self, tool_use_id: Option<&str>) -> Target {
        tool_use_id
            .and_then(|id| self.callers.get(id).cloned())
            .unwrap_or(Target::Root)
    }

    /// Forgets the last turn's children: a new turn starts its own tree.
    pub fn begin_turn(&mut self) {
        self.children.clear();
        self.ended.clear();
        self.background.clear();
        self.callers.clear();
        self.notified = false;
        self.turn_usage.clear();
        self.turn_error = None;
    }

    fn target(&self, parent_tool_use_id: Option<&str>) -> Target {
        match parent_tool_use_id {
            Some(id) if self.children.contains(id) => Target::Child(id.to_owned()),
            _ => Target::Root,
        }
    }

    fn open(
        &mut self,
        steps: &mut Vec<Step>,
        id: &str,
        parent: Target,
        label: Option<String>,
        agent: Option<String>,
    ) {
        if self.children.insert(id.to_owned()) {
            steps.push(Step::OpenChild {
                key: id.to_owned(),
                parent,
                label,
                agent,
                model: None,
            });
        }
    }

    fn end(
        &mut self,
        steps: &mut Vec<Step>,
        id: &str,
        state: WorkUnitState,
        error: Option<String>,
    ) {
        if self.children.contains(id) && self.ended.insert(id.to_owned()) {
            steps.push(Step::EndChild {
                key: id.to_owned(),
                state,
                error,
            });
        }
    }

    /// What `line` asks to record. Unknown message types and fields are ignored; a line that is
    /// not a JSON object, or not of its type's shape, is counted and reported as a log activity
    /// of the root. Permission requests are kept for [`take_requests`](Self::take_requests).
    pub fn line(&mut self, line: &str) -> Vec<Step> {
        let message = match read_line::<Line>("claude-code", line) {
            Ok(Some(message)) => message,
            Ok(None) => return Vec::new(),
            Err(skipped) => {
                self.malformed += 1;
                return vec![*skipped];
            }
        };
        let mut steps = Vec::new();
        match message {
            Line::System(System::Init(init)) => {
                self.session_id = init.session_id.or(self.session_id.take());
                self.model = init.model.or(self.model.take());
            }
            Line::System(System::TaskStarted(task)) => self.task_started(task, &mut steps),
            Line::System(System::TaskNotification(task)) => {
                self.task_usage(&task, &mut steps);
                self.task_ended(&task, true, &mut steps);
            }
            Line::System(System::TaskUpdated(task)) => {
                self.task_usage(&task, &mut steps);
                self.task_ended(&task, false, &mut steps);
            }
            Line::System(System::TaskProgress(task)) => self.task_usage(&task, &mut steps),
            Line::Assistant(message) => self.assistant(message, &mut steps),
            Line::User(message) => self.user(&message, &mut steps),
            Line::ControlRequest(request) => self.control_request(request),
            Line::Result(result) => self.result(result, &mut steps),
            Line::System(System::Other) | Line::Other => {}
        }
        steps
    }

    fn control_request(
        &mut self,
        ControlRequest {
            request_id,
            request,
        }: ControlRequest,
    ) {
        self.requests
            .push_back(if request.subtype == "can_use_tool" {
                PermissionRequest {
                    request_id,
                    tool: request.tool_name.unwrap_or_default(),
                    input: request.input,
                    tool_use_id: request.tool_use_id,
                }
            } else {
                // Hooks, MCP messages and the like: fleet registers none of them.
                PermissionRequest {
                    request_id,
                    tool: String::new(),
                    input: json!({ "subtype": request.subtype }),
                    tool_use_id: None,
                }
            });
    }

    fn task_started(&mut self, task: TaskStarted, steps: &mut Vec<Step>) {
        let Some(id) = task.tool_use_id else {
            return;
        };
        let parent = self.target(task.parent_tool_use_id.as_deref());
        self.open(steps, &id, parent, task.description, task.subagent_type);
        if task.is_backgrounded == Some(true) {
            self.background.insert(id.clone());
        }
        if !self.ended.contains(&id) {
            steps.push(Step::StartChild {
                key: id.clone(),
                refs: ProviderRefs {
                    provider: NAME.into(),
                    thread: self.session_id.clone(),
                    turn: None,
                    item: Some(id),
                    task: task.task_id,
                },
            });
        }
    }

    /// A subagent's message lines carry the usage of their start (one output token); its
    /// task messages say how many tokens it used in all. The difference is output it wrote.
    fn task_usage(&mut self, task: &TaskStatus, steps: &mut Vec<Step>) {
        let Some(id) = task.tool_use_id.as_deref() else {
            return;
        };
        let Some(total) = task.usage.as_ref().and_then(|u| u.total_tokens) else {
            return;
        };
        if self.ended.contains(id) || !self.children.contains(id) {
            return;
        }
        let Some((counted, model)) = self.child_tokens.get_mut(id) else {
            return;
        };
        if total > *counted {
            let usage = TokenUsage {
                output: total - *counted,
                ..TokenUsage::default()
            };
            *counted = total;
            steps.push(Step::Usage {
                target: Target::Child(id.to_owned()),
                model: model.clone(),
                usage,
            });
        }
    }

    /// A `task_notification` (`notification`) or `task_updated` line: the child ends when its
    /// status is terminal (a notification without one means it completed).
    fn task_ended(&mut self, task: &TaskStatus, notification: bool, steps: &mut Vec<Step>) {
        let Some(id) = task.tool_use_id.as_deref() else {
            return;
        };
        let status = task
            .status()
            .unwrap_or(if notification { "completed" } else { "running" });
        let ended = match status {
            "completed" | "success" => Some((WorkUnitState::Completed, None)),
            "failed" | "error" => Some((
                WorkUnitState::Failed,
                Some(
                    task.summary
                        .clone()
                        .unwrap_or_else(|| "the subagent failed".into()),
                ),
            )),
            "killed" | "cancelled" | "stopped" => Some((
                WorkUnitState::Cancelled,
                Some("the subagent was stopped".into()),
            )),
            _ => None,
        };
        if notification && self.background.contains(id) {
            self.notified = true;
        }
        if let Some((state, error)) = ended {
            self.end(steps, id, state, error);
        }
    }

    fn assistant(&mut self, line: Assistant, steps: &mut Vec<Step>) {
        let target = self.target(line.parent_tool_use_id.as_deref());
        let Some(message) = line.message else {
            return;
        };
        let model = message.model.unwrap_or_default();
        for block in message.content {
            match block {
                Block::Text { text } => steps.push(Step::Activity {
                    target: target.clone(),
                    kind: ActivityKind::Message {
                        role: Role::Assistant,
                        text,
                    },
                }),
                Block::ToolUse { id, name, input } => {
                    self.callers.insert(id.clone(), target.clone());
                    if name == "ExitPlanMode"
                        && let Some(plan) = text(&input, "plan")
                    {
                        self.plans.insert(id.clone(), plan.clone());
                        self.last_plan = Some(plan);
                    }
                    let subagent = (is_subagent_tool(&name) && !id.is_empty())
                        .then(|| (text(&input, "description"), text(&input, "subagent_type")));
                    steps.push(Step::Activity {
                        target: target.clone(),
                        kind: ActivityKind::ToolCall {
                            call_id: id.clone(),
                            name,
                            input,
                        },
                    });
                    if let Some((label, agent)) = subagent {
                        self.open(steps, &id, target.clone(), label, agent);
                    }
                }
                Block::Other => {}
            }
        }
        // One line per content block repeats the message's usage: count it once.
        if let Some(usage) = message.usage
            && let Some(id) = message.id
            && self.counted.insert(id)
        {
            let usage = usage.tokens();
            if let Target::Child(id) = &target {
                let entry = self
                    .child_tokens
                    .entry(id.clone())
                    .or_insert((0, String::new()));
                entry.0 += usage.total();
                entry.1.clone_from(&model);
            }
            steps.push(Step::Usage {
                target,
                model,
                usage,
            });
        }
    }

    fn user(&mut self, line: &User, steps: &mut Vec<Step>) {
        let target = self.target(line.parent_tool_use_id.as_deref());
        let blocks = line
            .message
            .as_ref()
            .map_or(&[][..], |m| m.content.blocks());
        for block in blocks {
            let UserBlock::ToolResult {
                tool_use_id: id,
                is_error,
                content,
            } = block
            else {
                continue;
            };
            let is_error = is_error.unwrap_or(false);
            let output = content.as_ref().map(|c| c.text()).unwrap_or_default();
            steps.push(Step::Activity {
                target: target.clone(),
                kind: ActivityKind::ToolResult {
                    call_id: id.clone(),
                    output: Value::String(output.clone()),
                    is_error,
                },
            });
            // A background subagent's tool result only says it was launched.
            if self.background.contains(id) {
                continue;
            }
            // The parent's tool result ends a subagent that nothing else has ended.
            let (state, error) = if is_error {
                (
                    WorkUnitState::Failed,
                    Some(output.chars().take(500).collect()),
                )
            } else {
                (WorkUnitState::Completed, None)
            };
            self.end(steps, id, state, error);
        }
    }

    fn result(&mut self, result: Finished, steps: &mut Vec<Step>) {
        let is_error = result.is_error.unwrap_or(false)
            || result.subtype.as_deref().is_some_and(|s| s != "success");
        let answer = result.result.unwrap_or_default();
        if is_error && self.turn_error.is_none() {
            let why = if answer.is_empty() {
                result.subtype.clone().unwrap_or_else(|| "error".into())
            } else {
                answer.clone()
            };
            self.turn_error = Some(format!("claude ended in error: {why}"));
        }
        // `modelUsage` counts the whole session: this result adds what grew since the last.
        for (model, usage) in &result.model_usage {
            let total = usage.tokens();
            let before = self.session_usage.insert(model.clone(), total);
            let before = before.unwrap_or_default();
            let grew = TokenUsage {
                input: total.input.saturating_sub(before.input),
                output: total.output.saturating_sub(before.output),
                cache_write: total.cache_write.saturating_sub(before.cache_write),
                cache_write_1h: total.cache_write_1h.saturating_sub(before.cache_write_1h),
                cache_read: total.cache_read.saturating_sub(before.cache_read),
            };
            match self.turn_usage.iter_mut().find(|(m, _)| m == model) {
                Some((_, sum)) => *sum += grew,
                None => self.turn_usage.push((model.clone(), grew)),
            }
        }
        // A background subagent still running, or just reported, brings a follow-up turn.
        let running_in_background = self
            .background
            .iter()
            .any(|id| !self.ended.contains(id.as_str()));
        // The CLI's follow-up turn answers the reports that came before it.
        let is_follow_up =
            result.origin.as_ref().and_then(|o| o.kind.as_deref()) == Some("task-notification");
        if is_follow_up {
            self.notified = false;
        }
        if (running_in_background || self.notified) && !is_error {
            return;
        }
        // Whatever is still open ended with the turn.
        let open: Vec<String> = self.children.difference(&self.ended).cloned().collect();
        for id in open {
            let state = if is_error {
                WorkUnitState::Failed
            } else {
                WorkUnitState::Completed
            };
            let error = is_error.then(|| "the session ended in error".to_owned());
            self.end(steps, &id, state, error);
        }
        steps.push(Step::Finished {
            text: answer,
            error: self.turn_error.take(),
            model_usage: std::mem::take(&mut self.turn_usage),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_not_of_its_types_shape_is_counted_and_logged_not_guessed_at() {
        let mut stream = ClaudeStream::new();
        let steps = stream.line(r#"{"type":"assistant","message":{"content":"x"}}"#);
        let [
            Step::Activity {
                target,
                kind: ActivityKind::Log { message, .. },
            },
        ] = &steps[..]
        else {
            panic!("{steps:?}")
        };
        assert_eq!(*target, Target::Root);
        assert!(
            message.contains("skipped a line it cannot read"),
            "{message}"
        );
        assert_eq!(stream.malformed(), 1);
        // Types it does not know are not malformed: they are skipped quietly.
        assert!(
            stream
                .line(r#"{"type":"tool_progress","elapsed":1}"#)
                .is_empty()
        );
        assert_eq!(stream.malformed(), 1);
    }
}
