//! [`CodexStream`]: reads `codex app-server` notifications for one turn and says what to record.

use std::collections::{HashMap, HashSet};

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::work_unit::{ProviderRefs, WorkUnitState};
use serde::Deserialize;
use serde_json::Value;

use crate::runner::coding_cli::{Step, Target};

use super::NAME;
use super::items::{ChildThread, agent_state, item_activities, short};
use super::wire::{Item, Notification};

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
    pub(super) held: Vec<(String, Notification)>,
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
        let held: Vec<Notification> = {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
                .into_iter()
                .partition(|(t, _)| t == thread);
            self.held = rest;
            mine.into_iter().map(|(_, v)| v).collect()
        };
        for notification in held {
            steps.extend(self.read(notification));
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

    /// What one notification (`{"method", "params"}`) asks to record. A notification fleet
    /// reads that is not of its shape is logged on the root.
    pub fn notification(&mut self, msg: &Value) -> Vec<Step> {
        match Notification::deserialize(msg) {
            Ok(notification) => self.read(notification),
            Err(e) => vec![Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::activity::LogLevel::Warn,
                    message: format!(
                        "codex: skipped a notification it cannot read ({e}): {}",
                        msg.to_string().chars().take(120).collect::<String>()
                    ),
                },
            }],
        }
    }

    fn read(&mut self, notification: Notification) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(thread) = notification.thread().map(str::to_owned) else {
            return steps;
        };
        let Some(target) = self.target(&thread) else {
            // A child thread's events can come before the spawn that names it.
            if !self.finished {
                self.held.push((thread, notification));
            }
            return steps;
        };
        match notification {
            Notification::TurnStarted(params) => {
                let turn = params.turn.id;
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
            Notification::ItemStarted(params) => {
                if let Some(item) = &params.item {
                    self.item(&target, item, false, &mut steps);
                }
            }
            Notification::ItemCompleted(params) => {
                if let Some(item) = &params.item {
                    self.item(&target, item, true, &mut steps);
                }
            }
            Notification::TokenUsageUpdated(params) => {
                let usage = params
                    .token_usage
                    .and_then(|u| u.last)
                    .unwrap_or_default()
                    .tokens();
                if usage.total() > 0 {
                    steps.push(Step::Usage {
                        model: self.models.get(&thread).cloned().unwrap_or_default(),
                        target,
                        usage,
                    });
                }
            }
            Notification::Error(params) => {
                let message = params
                    .error
                    .and_then(|e| e.message)
                    .unwrap_or_else(|| "error".into());
                steps.push(Step::Activity {
                    target,
                    kind: ActivityKind::Log {
                        level: fleet_core::activity::LogLevel::Warn,
                        message: format!("codex: {message}"),
                    },
                });
            }
            Notification::TurnCompleted(params) => {
                let turn = params.turn;
                // Only the root thread's own turn ends the fleet turn.
                if target != Target::Root || (self.turn.is_some() && turn.id != self.turn) {
                    return steps;
                }
                // Threads never announced belong to this turn: under the root.
                while let Some((orphan, _)) = self.held.first().cloned() {
                    self.open_child(&orphan, Target::Root, None, None, None, &mut steps);
                }
                self.finished = true;
                let error = match turn.status.as_deref() {
                    Some("failed") => Some(format!(
                        "codex failed: {}",
                        turn.error
                            .and_then(|e| e.message)
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
            Notification::Other => {}
        }
        steps
    }

    pub(super) fn item(
        &mut self,
        target: &Target,
        item: &Item,
        completed: bool,
        steps: &mut Vec<Step>,
    ) {
        match item {
            Item::AgentMessage { text } => {
                if !completed {
                    return;
                }
                if *target == Target::Root {
                    self.answer.clone_from(text);
                }
                steps.push(Step::Activity {
                    target: target.clone(),
                    kind: ActivityKind::Message {
                        role: Role::Assistant,
                        text: text.clone(),
                    },
                });
            }
            Item::Collab(collab) => {
                item_activities(target, item, completed, steps);
                if collab.tool == "spawnAgent" {
                    for thread in collab.receivers.iter().flatten() {
                        self.open_child(
                            thread,
                            target.clone(),
                            Some(collab.id.clone()).filter(|id| !id.is_empty()),
                            collab.prompt.as_deref().map(short),
                            collab.model.clone(),
                            steps,
                        );
                    }
                }
                for (thread, state) in collab.agent_states() {
                    if let Some((state, error)) = agent_state(&state) {
                        self.end_child(&thread, state, error, steps);
                    }
                }
            }
            Item::SubAgentActivity(activity) => {
                let Some(thread) = activity.agent_thread_id.as_deref() else {
                    return;
                };
                match activity.kind.as_deref() {
                    Some("started") => self.open_child(
                        thread,
                        target.clone(),
                        Some(activity.id.clone()).filter(|id| !id.is_empty()),
                        activity.agent_path.clone(),
                        activity.model.clone(),
                        steps,
                    ),
                    Some("completed") => {
                        self.end_child(thread, WorkUnitState::Completed, None, steps);
                    }
                    Some("interrupted") => self.end_child(
                        thread,
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
