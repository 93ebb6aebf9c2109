//! [`CodexExecStream`]: reads `codex exec --json` events for one call.

use std::collections::HashSet;

use fleet_core::activity::{ActivityKind, Role};
use fleet_core::work_unit::ProviderRefs;

use crate::runner::coding_cli::{Step, Target, read_line};

use super::NAME;
use super::items::{agent_state, item_activities, short};
use super::wire::{Collab, ExecEvent, Item};

/// Reads `codex exec --json` output (one JSON event a line) for one call.
#[derive(Debug, Default)]
pub struct CodexExecStream {
    pub(super) model: String,
    pub(super) thread: Option<String>,
    pub(super) children: HashSet<String>,
    pub(super) ended: HashSet<String>,
    pub(super) answer: String,
    pub(super) malformed: u64,
}

impl CodexExecStream {
    /// A reader for a call on `model`.
    #[must_use]
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    /// The thread, once `thread.started` said it.
    #[must_use]
    pub fn thread(&self) -> Option<&str> {
        self.thread.as_deref()
    }

    /// What `line` asks to record; a line that is not a JSON object, or not of its event's
    /// shape, is logged and skipped.
    pub fn line(&mut self, line: &str) -> Vec<Step> {
        let event = match read_line::<ExecEvent>("codex", line) {
            Ok(Some(event)) => event,
            Ok(None) => return Vec::new(),
            Err(skipped) => {
                self.malformed += 1;
                return vec![*skipped];
            }
        };
        let mut steps = Vec::new();
        match event {
            ExecEvent::ThreadStarted { thread_id } => self.thread = thread_id,
            ExecEvent::ItemStarted { item } => self.item(item, Phase::Started, &mut steps),
            ExecEvent::ItemUpdated { item } => self.item(item, Phase::Updated, &mut steps),
            ExecEvent::ItemCompleted { item } => self.item(item, Phase::Completed, &mut steps),
            ExecEvent::TurnCompleted { usage } => {
                steps.push(Step::Usage {
                    target: Target::Root,
                    model: self.model.clone(),
                    usage: usage.unwrap_or_default().tokens(),
                });
                steps.push(Step::Finished {
                    text: self.answer.clone(),
                    error: None,
                    model_usage: Vec::new(),
                });
            }
            ExecEvent::TurnFailed { error } => steps.push(Step::Finished {
                text: self.answer.clone(),
                error: Some(format!(
                    "codex failed: {}",
                    error
                        .and_then(|e| e.message)
                        .unwrap_or_else(|| "no reason given".into())
                )),
                model_usage: Vec::new(),
            }),
            ExecEvent::Error { message } => steps.push(Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::activity::LogLevel::Warn,
                    message: format!("codex: {}", message.unwrap_or_default()),
                },
            }),
            ExecEvent::Other => {}
        }
        steps
    }

    fn item(&mut self, item: Option<Item>, phase: Phase, steps: &mut Vec<Step>) {
        let Some(item) = item else {
            return;
        };
        let completed = phase == Phase::Completed;
        match item {
            Item::AgentMessage { text } if completed => {
                self.answer.clone_from(&text);
                steps.push(Step::Activity {
                    target: Target::Root,
                    kind: ActivityKind::Message {
                        role: Role::Assistant,
                        text,
                    },
                });
            }
            Item::Error { message } if completed => steps.push(Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::activity::LogLevel::Warn,
                    message: format!("codex: {}", message.unwrap_or_default()),
                },
            }),
            Item::Collab(collab) => {
                if phase != Phase::Updated {
                    item_activities(
                        &Target::Root,
                        &Item::Collab(collab.clone()),
                        completed,
                        steps,
                    );
                }
                self.collab(&collab, steps);
            }
            item if phase != Phase::Updated => {
                item_activities(&Target::Root, &item, completed, steps);
            }
            _ => {}
        }
    }

    /// `codex exec` shows a spawn and the states `wait` reports, never the child's own events.
    pub(super) fn collab(&mut self, item: &Collab, steps: &mut Vec<Step>) {
        if item.tool == "spawn_agent" {
            for thread in item.receivers.iter().flatten() {
                if self.children.insert(thread.clone()) {
                    steps.push(Step::OpenChild {
                        key: thread.clone(),
                        parent: Target::Root,
                        label: item.prompt.as_deref().map(short),
                        agent: None,
                        model: None,
                    });
                    steps.push(Step::StartChild {
                        key: thread.clone(),
                        refs: ProviderRefs {
                            provider: NAME.into(),
                            thread: Some(thread.clone()),
                            turn: None,
                            item: Some(item.id.clone()).filter(|id| !id.is_empty()),
                            task: None,
                        },
                    });
                }
            }
        }
        for (thread, state) in item.agent_states() {
            if let Some((state, error)) = agent_state(&state)
                && self.children.contains(&thread)
                && self.ended.insert(thread.clone())
            {
                steps.push(Step::EndChild {
                    key: thread,
                    state,
                    error,
                });
            }
        }
    }
}

/// Where an `item.*` event is in the item's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Started,
    Updated,
    Completed,
}
