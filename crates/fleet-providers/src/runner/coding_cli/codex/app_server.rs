//! [`CodexStream`]: reads `codex app-server` notifications for one turn and says what to record.

use std::collections::{HashMap, HashSet};

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::{ProviderRefs, WorkUnitState};
use serde_json::Value;

use crate::runner::coding_cli::{Step, Target};

use super::NAME;
use super::items::{ChildThread, agent_state, item_activities, openai_usage, short, text};

/// Reads `codex app-server` notifications for one turn of a thread.
#[derive(Debug, Default)]
pub struct CodexStream {
    pub(super) thread: String,
    pub(super) turn: Option<String>,
    /// Each thread's model.
    pub(super) models: HashMap<String, String>,
    pub(super) children: HashMap<String, ChildThread>,
    pub(super) ended: HashSet<String>,
    /// Notifications of threads no spawn has named yet.
    pub(super) held: Vec<(String, Value)>,
    /// The root's last message.
    pub(super) answer: String,
    pub(super) finished: bool,
}

impl CodexStream {
    /// A reader for a turn of `thread`, whose model is `model`.
    #[must_use]
    pub fn new(thread: impl Into<String>, model: impl Into<String>) -> Self {
        let thread = thread.into();
        let mut models = HashMap::new();
        models.insert(thread.clone(), model.into());
        Self {
            thread,
            models,
            ..Self::default()
        }
    }

    /// The turn, once `turn/start` or `turn/started` said it.
    #[must_use]
    pub fn turn(&self) -> Option<&str> {
        self.turn.as_deref()
    }

    /// Sets the turn id (from `turn/start`'s response).
    pub fn set_turn(&mut self, turn: &str) {
        self.turn.get_or_insert_with(|| turn.to_owned());
    }

    /// The unit a thread's events belong to; `None` for a thread not yet announced.
    pub(super) fn target(&self, thread: &str) -> Option<Target> {
        if thread == self.thread {
            Some(Target::Root)
        } else if self.children.contains_key(thread) {
            Some(Target::Child(thread.to_owned()))
        } else {
            None
        }
    }

    pub(super) fn refs(&self, thread: &str) -> ProviderRefs {
        let child = self.children.get(thread);
        ProviderRefs {
            provider: NAME.into(),
            thread: Some(thread.to_owned()),
            turn: child.and_then(|c| c.turn.clone()),
            item: child.and_then(|c| c.item.clone()),
            task: None,
        }
    }

    /// Opens the child thread `thread` under `parent` (once), then replays what was held for it.
    pub(super) fn open_child(
        &mut self,
        thread: &str,
        parent: Target,
        item: Option<String>,
        label: Option<String>,
        model: Option<String>,
        steps: &mut Vec<Step>,
    ) {
        if thread == self.thread || self.children.contains_key(thread) {
            return;
        }
        if let Some(model) = model.clone().filter(|m| !m.is_empty()) {
            self.models.insert(thread.to_owned(), model);
        }
        self.children
            .insert(thread.to_owned(), ChildThread { item, turn: None });
        steps.push(Step::OpenChild {
            key: thread.to_owned(),
            parent,
            label: label.or_else(|| Some(format!("subagent {}", short(thread)))),
            agent: None,
            model: self.models.get(thread).cloned(),
        });
        steps.push(Step::StartChild {
            key: thread.to_owned(),
            refs: self.refs(thread),
        });
        let held: Vec<Value> = {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|(t, _)| t == thread);
            self.held = rest;
            mine.into_iter().map(|(_, v)| v).collect()
        };
        for msg in held {
            steps.extend(self.notification(&msg));
        }
    }

    pub(super) fn end_child(
        &mut self,
        thread: &str,
        state: WorkUnitState,
        error: Option<String>,
        steps: &mut Vec<Step>,
    ) {
        if self.children.contains_key(thread) && self.ended.insert(thread.to_owned()) {
            steps.push(Step::EndChild {
                key: thread.to_owned(),
                state,
                error,
            });
        }
    }

    /// What one notification (`{"method", "params"}`) asks to record.
    pub fn notification(&mut self, msg: &Value) -> Vec<Step> {
        let mut steps = Vec::new();
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let Some(thread) = params.get("threadId").and_then(Value::as_str) else {
            return steps;
        };
        let Some(target) = self.target(thread) else {
            // A child thread's events can come before the spawn that names it.
            if !self.finished {
                self.held.push((thread.to_owned(), msg.clone()));
            }
            return steps;
        };
        match method {
            "turn/started" => {
                let turn = params.get("turn").and_then(|t| text(t, "id"));
                match &target {
                    Target::Root => {
                        if let Some(turn) = turn {
                            self.set_turn(&turn);
                        }
                    }
                    Target::Child(key) => {
                        if let Some(child) = self.children.get_mut(key) {
                            child.turn = turn;
                        }
                        if !self.ended.contains(key) {
                            steps.push(Step::StartChild {
                                key: key.clone(),
                                refs: self.refs(key),
                            });
                        }
                    }
                }
            }
            "item/started" | "item/completed" => {
                let completed = method == "item/completed";
                let item = params.get("item").cloned().unwrap_or(Value::Null);
                self.item(&target, &item, completed, &mut steps);
            }
            "thread/tokenUsage/updated" => {
                let last = params
                    .get("tokenUsage")
                    .and_then(|u| u.get("last"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let usage = openai_usage(&last, "inputTokens", "cachedInputTokens", "outputTokens");
                if usage.total() > 0 {
                    steps.push(Step::Usage {
                        model: self.models.get(thread).cloned().unwrap_or_default(),
                        target,
                        usage,
                    });
                }
            }
            "error" => {
                let message = params
                    .get("error")
                    .and_then(|e| text(e, "message"))
                    .unwrap_or_else(|| "error".into());
                steps.push(Step::Activity {
                    target,
                    kind: ActivityKind::Log {
                        level: fleet_core::LogLevel::Warn,
                        message: format!("codex: {message}"),
                    },
                });
            }
            "turn/completed" => {
                let turn = params.get("turn").cloned().unwrap_or(Value::Null);
                let id = text(&turn, "id");
                // Only the root thread's own turn ends the fleet turn.
                if target != Target::Root || (self.turn.is_some() && id != self.turn) {
                    return steps;
                }
                // Threads never announced belong to this turn: under the root.
                while let Some((orphan, _)) = self.held.first().cloned() {
                    self.open_child(&orphan, Target::Root, None, None, None, &mut steps);
                }
                self.finished = true;
                let error = match turn.get("status").and_then(Value::as_str) {
                    Some("failed") => Some(format!(
                        "codex failed: {}",
                        turn.get("error")
                            .and_then(|e| text(e, "message"))
                            .unwrap_or_else(|| "no reason given".into())
                    )),
                    Some("interrupted") => Some("codex: the turn was interrupted".to_owned()),
                    _ => None,
                };
                steps.push(Step::Finished {
                    text: self.answer.clone(),
                    error,
                    model_usage: Vec::new(),
                });
            }
            _ => {}
        }
        steps
    }

    pub(super) fn item(
        &mut self,
        target: &Target,
        item: &Value,
        completed: bool,
        steps: &mut Vec<Step>,
    ) {
        match item.get("type").and_then(Value::as_str).unwrap_or("") {
            "agentMessage" if completed => {
                let said = text(item, "text").unwrap_or_default();
                if *target == Target::Root {
                    self.answer.clone_from(&said);
                }
                steps.push(Step::Activity {
                    target: target.clone(),
                    kind: ActivityKind::Message {
                        role: Role::Assistant,
                        text: said,
                    },
                });
            }
            "collabAgentToolCall" => {
                item_activities(target, item, completed, steps);
                let spawn = text(item, "tool").as_deref() == Some("spawnAgent");
                let receivers: Vec<String> = item
                    .get("receiverThreadIds")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if spawn {
                    for thread in &receivers {
                        self.open_child(
                            thread,
                            target.clone(),
                            text(item, "id"),
                            text(item, "prompt").map(|p| short(&p)),
                            text(item, "model"),
                            steps,
                        );
                    }
                }
                for (thread, state) in item
                    .get("agentsStates")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    if let Some((state, error)) = agent_state(state) {
                        self.end_child(thread, state, error, steps);
                    }
                }
            }
            "subAgentActivity" => {
                let Some(thread) = text(item, "agentThreadId") else {
                    return;
                };
                match item.get("kind").and_then(Value::as_str) {
                    Some("started") => self.open_child(
                        &thread,
                        target.clone(),
                        text(item, "id"),
                        text(item, "agentPath"),
                        text(item, "model"),
                        steps,
                    ),
                    Some("completed") => {
                        self.end_child(&thread, WorkUnitState::Completed, None, steps);
                    }
                    Some("interrupted") => self.end_child(
                        &thread,
                        WorkUnitState::Cancelled,
                        Some("the subagent was interrupted".into()),
                        steps,
                    ),
                    _ => {}
                }
            }
            _ => item_activities(target, item, completed, steps),
        }
    }
}
