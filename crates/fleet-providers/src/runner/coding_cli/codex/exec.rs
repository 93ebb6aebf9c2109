//! [`CodexExecStream`]: reads `codex exec --json` events for one call.

use std::collections::HashSet;

use fleet_core::ProviderRefs;
use fleet_core::activity::{ActivityKind, Role};
use serde_json::Value;

use crate::runner::coding_cli::{Step, Target};

use super::NAME;
use super::items::{agent_state, item_activities, openai_usage, short, text};

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

    /// What `line` asks to record; a line that is not a JSON object is logged and skipped.
    pub fn line(&mut self, line: &str) -> Vec<Step> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        let Ok(msg @ Value::Object(_)) = serde_json::from_str::<Value>(line) else {
            self.malformed += 1;
            return vec![Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::LogLevel::Warn,
                    message: format!(
                        "codex: skipped a line that is not a JSON object: {}",
                        line.chars().take(120).collect::<String>()
                    ),
                },
            }];
        };
        let mut steps = Vec::new();
        match msg.get("type").and_then(Value::as_str).unwrap_or("") {
            "thread.started" => self.thread = text(&msg, "thread_id"),
            kind @ ("item.started" | "item.updated" | "item.completed") => {
                let item = msg.get("item").cloned().unwrap_or(Value::Null);
                let completed = kind == "item.completed";
                match item.get("type").and_then(Value::as_str).unwrap_or("") {
                    "agent_message" if completed => {
                        self.answer = text(&item, "text").unwrap_or_default();
                        steps.push(Step::Activity {
                            target: Target::Root,
                            kind: ActivityKind::Message {
                                role: Role::Assistant,
                                text: self.answer.clone(),
                            },
                        });
                    }
                    "error" if completed => steps.push(Step::Activity {
                        target: Target::Root,
                        kind: ActivityKind::Log {
                            level: fleet_core::LogLevel::Warn,
                            message: format!(
                                "codex: {}",
                                text(&item, "message").unwrap_or_default()
                            ),
                        },
                    }),
                    "collab_tool_call" => {
                        if kind != "item.updated" {
                            item_activities(&Target::Root, &item, completed, &mut steps);
                        }
                        self.collab(&item, &mut steps);
                    }
                    _ if kind != "item.updated" => {
                        item_activities(&Target::Root, &item, completed, &mut steps);
                    }
                    _ => {}
                }
            }
            "turn.completed" => {
                let usage = msg.get("usage").cloned().unwrap_or(Value::Null);
                steps.push(Step::Usage {
                    target: Target::Root,
                    model: self.model.clone(),
                    usage: openai_usage(
                        &usage,
                        "input_tokens",
                        "cached_input_tokens",
                        "output_tokens",
                    ),
                });
                steps.push(Step::Finished {
                    text: self.answer.clone(),
                    error: None,
                    model_usage: Vec::new(),
                });
            }
            "turn.failed" => steps.push(Step::Finished {
                text: self.answer.clone(),
                error: Some(format!(
                    "codex failed: {}",
                    msg.get("error")
                        .and_then(|e| text(e, "message"))
                        .unwrap_or_else(|| "no reason given".into())
                )),
                model_usage: Vec::new(),
            }),
            "error" => steps.push(Step::Activity {
                target: Target::Root,
                kind: ActivityKind::Log {
                    level: fleet_core::LogLevel::Warn,
                    message: format!("codex: {}", text(&msg, "message").unwrap_or_default()),
                },
            }),
            _ => {}
        }
        steps
    }

    /// `codex exec` shows a spawn and the states `wait` reports, never the child's own events.
    pub(super) fn collab(&mut self, item: &Value, steps: &mut Vec<Step>) {
        let item_id = text(item, "id");
        if text(item, "tool").as_deref() == Some("spawn_agent") {
            for thread in item
                .get("receiver_thread_ids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if self.children.insert(thread.to_owned()) {
                    steps.push(Step::OpenChild {
                        key: thread.to_owned(),
                        parent: Target::Root,
                        label: text(item, "prompt").map(|p| short(&p)),
                        agent: None,
                        model: None,
                    });
                    steps.push(Step::StartChild {
                        key: thread.to_owned(),
                        refs: ProviderRefs {
                            provider: NAME.into(),
                            thread: Some(thread.to_owned()),
                            turn: None,
                            item: item_id.clone(),
                            task: None,
                        },
                    });
                }
            }
        }
        for (thread, state) in item
            .get("agents_states")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some((state, error)) = agent_state(state)
                && self.children.contains(thread)
                && self.ended.insert(thread.clone())
            {
                steps.push(Step::EndChild {
                    key: thread.clone(),
                    state,
                    error,
                });
            }
        }
    }
}
