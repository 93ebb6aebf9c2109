//! Drawing: colours (only on a terminal, never with `NO_COLOR`), numbers people read at a
//! glance, and the work-unit tree.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use fleet_core::Timestamp;
use fleet_core::activity::ActivityKind;
use fleet_core::id::WorkUnitId;
use fleet_core::thread::Thread;
use fleet_core::work_unit::{WorkUnit, WorkUnitState};

/// How output may look.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Style {
    /// ANSI colours.
    pub(crate) color: bool,
    /// Redrawn live regions (a terminal).
    pub(crate) live: bool,
}

/// An ANSI colour.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Paint {
    Green,
    Yellow,
    Red,
    Cyan,
    Dim,
    Bold,
}

impl Style {
    pub(crate) fn paint(self, paint: Paint, text: &str) -> String {
        if !self.color {
            return text.to_owned();
        }
        let code = match paint {
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Red => "31",
            Paint::Cyan => "36",
            Paint::Dim => "2",
            Paint::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// The colour of a unit's state.
    pub(crate) fn state(self, state: WorkUnitState) -> String {
        let paint = match state {
            WorkUnitState::Completed => Paint::Green,
            WorkUnitState::Failed | WorkUnitState::Interrupted => Paint::Red,
            WorkUnitState::Cancelled => Paint::Yellow,
            _ => Paint::Cyan,
        };
        self.paint(paint, &format!("{:<11}", state.to_string()))
    }

    /// A five-cell bar and percentage of the input served from the prompt cache: green when
    /// most of it was, yellow when some, dim when none.
    pub(crate) fn cache_bar(self, ratio: f64) -> String {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let filled = (0..5).filter(|i| ratio * 5.0 > f64::from(*i) + 0.5).count();
        let bar = format!("{}{}", "█".repeat(filled), "░".repeat(5 - filled));
        let paint = if ratio >= 0.6 {
            Paint::Green
        } else if ratio >= 0.2 {
            Paint::Yellow
        } else {
            Paint::Dim
        };
        format!("{} {:>3.0}%", self.paint(paint, &bar), ratio * 100.0)
    }
}

/// Lines printed on stderr above a region that is redrawn in place on a terminal; without a
/// terminal, only the lines.
#[derive(Debug, Default)]
pub(crate) struct LiveRegion {
    live: bool,
    drawn: usize,
}

impl LiveRegion {
    pub(crate) fn new(style: Style) -> Self {
        Self {
            live: style.live,
            drawn: 0,
        }
    }

    /// Prints `lines` (they stay) and redraws the region as `frame()`, which is built only on
    /// a terminal.
    pub(crate) fn show(
        &mut self,
        lines: &[String],
        frame: impl FnOnce() -> Vec<String>,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut buf = String::new();
        let frame = if self.live {
            buf.push_str(&self.clear_code());
            frame()
        } else {
            Vec::new()
        };
        for line in lines.iter().chain(&frame) {
            buf.push_str(line);
            buf.push('\n');
        }
        self.drawn = frame.len();
        let mut err = std::io::stderr().lock();
        err.write_all(buf.as_bytes())?;
        err.flush()
    }

    /// Removes the region.
    pub(crate) fn erase(&mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        let code = self.clear_code();
        self.drawn = 0;
        let mut err = std::io::stderr().lock();
        err.write_all(code.as_bytes())?;
        err.flush()
    }

    /// Moves up over the region and clears to the end of the screen.
    fn clear_code(&self) -> String {
        if self.drawn == 0 {
            String::new()
        } else {
            format!("\x1b[{}A\r\x1b[J", self.drawn)
        }
    }
}

/// `HH:MM:SS` now, local time, for log lines.
pub(crate) fn clock() -> String {
    jiff::Zoned::now().strftime("%H:%M:%S").to_string()
}

/// `950`, `12.3k`, `4.56M`.
pub(crate) fn tokens(n: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    if n < 1_000 {
        n.to_string()
    } else if n < 1_000_000 {
        format!("{:.1}k", f / 1e3)
    } else {
        format!("{:.2}M", f / 1e6)
    }
}

/// `$0.00`, `$0.0123`, `$12.34`: enough digits to see a cheap call.
pub(crate) fn dollars(usd: f64) -> String {
    if usd == 0.0 {
        "$0.00".into()
    } else if usd < 1.0 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// `850ms`, `4.2s`, `3m07s`, `1h02m`.
pub(crate) fn duration_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        #[allow(clippy::cast_precision_loss)]
        let s = ms as f64 / 1e3;
        format!("{s:.1}s")
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Milliseconds from `a` to `b` (0 when `b` is earlier).
pub(crate) fn between(a: Timestamp, b: Timestamp) -> u64 {
    u64::try_from(b.as_millisecond() - a.as_millisecond()).unwrap_or(0)
}

/// `text` cut to `width` characters, with `…` when cut.
/// Line breaks and runs of spaces become one space.
pub(crate) fn fit(text: &str, width: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= width {
        text
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Pads `text` (which may hold colour codes) to `width` visible characters.
pub(crate) fn pad(text: &str, visible: usize, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(visible)))
}

const LABEL: usize = 44;

/// The work-unit tree of every turn of `thread`: one row per unit with state, label, agent,
/// model, tokens, cache share, dollars and duration, children under their parents; failed,
/// cancelled and null units get their reason on the line below. `notes` holds reasons the
/// unit itself does not carry (a `null` result's, from the run summary).
pub(crate) fn tree(
    thread: &Thread,
    notes: &HashMap<WorkUnitId, String>,
    style: Style,
    now: Timestamp,
) -> String {
    let mut out = style.paint(
        Paint::Bold,
        &format!(
            "{:<11} {:<LABEL$} {:<16} {:<18} {:>7} {:<10} {:>9} {:>7}",
            "state", "work unit", "agent", "model", "tokens", "cache", "cost", "time"
        ),
    );
    out.push('\n');
    let cached: HashSet<WorkUnitId> = thread
        .activities
        .iter()
        .filter(|a| matches!(a.kind, ActivityKind::AgentResult { cached: true, .. }))
        .filter_map(|a| a.work_unit_id)
        .collect();
    let look = Look {
        notes,
        cached: &cached,
        style,
        now,
    };
    for (i, turn) in thread.turns.iter().enumerate() {
        if thread.turns.len() > 1 {
            let _ = writeln!(
                out,
                "{}",
                style.paint(
                    Paint::Dim,
                    &format!(
                        "── attempt {} · {} · {}",
                        i + 1,
                        serde_name(&turn.state),
                        turn.started_at
                            .to_zoned(jiff::tz::TimeZone::system())
                            .strftime("%Y-%m-%d %H:%M:%S")
                    )
                )
            );
        }
        row(&mut out, thread, turn.root_id, "", "", &look);
    }
    out
}

/// What every row of a tree needs.
struct Look<'a> {
    notes: &'a HashMap<WorkUnitId, String>,
    cached: &'a HashSet<WorkUnitId>,
    style: Style,
    now: Timestamp,
}

fn row(out: &mut String, thread: &Thread, id: WorkUnitId, lead: &str, rest: &str, look: &Look<'_>) {
    let (notes, style, now) = (look.notes, look.style, look.now);
    let Some(unit) = thread.work_unit(id) else {
        return;
    };
    let label = format!(
        "{lead}{}",
        fit(
            &unit_name(unit),
            LABEL.saturating_sub(lead.chars().count()).max(8)
        )
    );
    let usage = thread.subtree_usage(id);
    let cost = thread.subtree_cost(id);
    let time = unit
        .started_at
        .map(|s| duration_ms(between(s, unit.ended_at.unwrap_or(now))))
        .unwrap_or_else(|| "-".into());
    let cost_text = if cost.unpriced > 0 && cost.usd.dollars() == 0.0 {
        "unpriced".to_owned()
    } else {
        dollars(cost.usd.dollars())
    };
    let _ = writeln!(
        out,
        "{} {} {:<16} {:<18} {:>7} {} {:>9} {:>7}",
        if look.cached.contains(&id) {
            style.paint(Paint::Cyan, &format!("{:<11}", "cached"))
        } else {
            style.state(unit.state)
        },
        pad(&label, label.chars().count(), LABEL),
        fit(unit.agent.as_deref().unwrap_or("-"), 16),
        fit(unit.model.as_deref().unwrap_or("-"), 18),
        tokens(usage.total()),
        style.cache_bar(usage.cache_hit_ratio()),
        cost_text,
        time,
    );
    let children: Vec<_> = thread.children(id).map(|c| c.id).collect();
    let below = if children.is_empty() { "   " } else { "│  " };
    let reason = notes.get(&id).cloned().or_else(|| match unit.state {
        WorkUnitState::Failed | WorkUnitState::Cancelled | WorkUnitState::Interrupted => {
            unit.error.clone()
        }
        _ => None,
    });
    if let Some(reason) = reason {
        let first = reason.lines().next().unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<11} {}",
            "",
            style.paint(Paint::Dim, &fit(&format!("{rest}{below}↳ {first}"), 100))
        );
    }
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let (branch, next) = if last {
            ("└─ ", "   ")
        } else {
            ("├─ ", "│  ")
        };
        row(
            out,
            thread,
            *child,
            &format!("{rest}{branch}"),
            &format!("{rest}{next}"),
            look,
        );
    }
}

/// The name serde gives a unit variant (`delegated_agent`, `builtin`).
pub(crate) fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How a unit is called in a tree: its label, else its agent, else its kind.
pub(crate) fn unit_name(unit: &WorkUnit) -> String {
    unit.label
        .clone()
        .or_else(|| unit.agent.clone())
        .unwrap_or_else(|| serde_name(&unit.kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(12_345), "12.3k");
        assert_eq!(tokens(4_560_000), "4.56M");
        assert_eq!(dollars(0.0), "$0.00");
        assert_eq!(dollars(0.01234), "$0.0123");
        assert_eq!(dollars(12.345), "$12.35");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(4_200), "4.2s");
        assert_eq!(duration_ms(187_000), "3m07s");
        assert_eq!(duration_ms(3_720_000), "1h02m");
        assert_eq!(fit("abcdef", 4), "abc…");
    }

    #[test]
    fn cache_bar_fills_with_the_share_and_colours_only_when_asked() {
        let plain = Style::default();
        assert_eq!(plain.cache_bar(0.0), "░░░░░   0%");
        assert_eq!(plain.cache_bar(0.82), "████░  82%");
        assert_eq!(plain.cache_bar(1.0), "█████ 100%");
        let colour = Style {
            color: true,
            live: true,
        };
        assert_eq!(colour.cache_bar(0.82), "\x1b[32m████░\x1b[0m  82%");
        assert_eq!(colour.cache_bar(0.4), "\x1b[33m██░░░\x1b[0m  40%");
    }
}
