//! `fleet trace`: a run's work-unit tree, with each unit's tokens, cost and time.

use std::collections::HashMap;

use fleet_core::Timestamp;
use fleet_core::activity::{ActivityKind, LogLevel};
use serde_json::Value;

use crate::app::App;
use crate::exit;
use crate::render::{self, Paint};

use super::{info, open_thread, paint_state};

/// `fleet trace`.
pub(crate) fn trace(app: &App, run: Option<&str>) -> anyhow::Result<u8> {
    let (_store, thread) = open_thread(app, run)?;
    let i = info(app, &thread);
    let mut notes = HashMap::new();
    for activity in &thread.activities {
        if let ActivityKind::RunEnded { summary, .. } = &activity.kind {
            for list in ["nulls", "failures"] {
                for note in summary
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let (Some(unit), Some(reason)) = (
                        note.get("work_unit_id")
                            .and_then(|v| serde_json::from_value(v.clone()).ok()),
                        note.get("reason").and_then(Value::as_str),
                    ) {
                        let prefix = if list == "nulls" { "null: " } else { "" };
                        notes.insert(unit, format!("{prefix}{reason}"));
                    }
                }
            }
        }
    }
    // Warnings and errors logged on a unit (a paused agent, say) are its note when it has
    // no other.
    for activity in &thread.activities {
        if let (
            Some(unit),
            ActivityKind::Log {
                level: LogLevel::Warn | LogLevel::Error,
                message,
            },
        ) = (activity.work_unit_id, &activity.kind)
        {
            notes
                .entry(unit)
                .and_modify(|note: &mut String| {
                    note.push_str("; ");
                    note.push_str(message);
                })
                .or_insert_with(|| message.clone());
        }
    }
    // A turn in flight when the process ended: its cost is known only as its reservation.
    for (unit, usd) in thread.unconfirmed() {
        let note = format!(
            "unconfirmed: up to {} for a model turn in flight when its process ended",
            render::dollars(usd.dollars())
        );
        notes
            .entry(unit)
            .and_modify(|n: &mut String| {
                n.push_str("; ");
                n.push_str(&note);
            })
            .or_insert(note);
    }
    let now = Timestamp::now();
    let unsure = if i.unconfirmed.1 > 0 {
        format!(
            " (+ up to {} unconfirmed)",
            render::dollars(i.unconfirmed.0)
        )
    } else {
        String::new()
    };
    let mut out = format!(
        "{} {} {} · {} · {} tokens · {}{unsure}\n\n",
        app.style.paint(Paint::Bold, &i.name),
        i.id.short(),
        paint_state(app, &i.state).trim_end(),
        render::duration_ms(i.wall_ms),
        render::tokens(i.tokens),
        render::dollars(i.usd)
    );
    out.push_str(&render::tree(&thread, &notes, app.style, now));
    app.say(out.trim_end())?;
    Ok(exit::OK)
}
