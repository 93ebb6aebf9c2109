//! How `fleet run` shows a run as it goes: a live tree of phases and calls in flight on a
//! terminal, plain lines elsewhere, JSON lines with `--json`; and the summary at the end.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use fleet_core::activity::LogLevel;
use fleet_core::id::WorkUnitId;
use fleet_core::money::Usd;
use fleet_workflow::{CallState, RunEvent, RunState, RunSummary};
use serde_json::{Value, json};

use crate::render::{self, Paint, Style};

/// The frames of the spinner on calls in flight.
pub(crate) const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// How many in-flight calls the live view lists before it says "and N more".
pub(crate) const SHOWN_IN_FLIGHT: usize = 8;

/// How a run is shown.
pub(crate) enum View {
    Json,
    Human(Live),
}

impl View {
    pub(crate) fn event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match self {
            Self::Json => {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(&mut out, event)?;
                writeln!(out)
            }
            Self::Human(live) => {
                let lines = live.event(event);
                live.show(&lines)
            }
        }
    }

    pub(crate) fn tick(&mut self) -> std::io::Result<()> {
        match self {
            Self::Json => Ok(()),
            Self::Human(live) => {
                live.spin += 1;
                live.show(&[])
            }
        }
    }

    pub(crate) fn note(&mut self, text: &str) -> std::io::Result<()> {
        match self {
            Self::Json => Ok(()),
            Self::Human(live) => {
                let line = live.style.paint(Paint::Yellow, text);
                live.show(&[line])
            }
        }
    }

    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        match self {
            Self::Json => Ok(()),
            Self::Human(live) => live.erase(),
        }
    }

    pub(crate) fn finish(&mut self, summary: &RunSummary) -> std::io::Result<()> {
        match self {
            Self::Json => {
                let mut out = std::io::stdout().lock();
                let line = json!({
                    "type": "result",
                    "run_id": summary.run_id,
                    "state": summary.state,
                    "result": summary.result,
                    "error": summary.error,
                });
                serde_json::to_writer(&mut out, &line)?;
                writeln!(out)
            }
            Self::Human(live) => {
                live.erase()?;
                live.done = true;
                let mut err = std::io::stderr().lock();
                write!(err, "{}", summary_table(summary, live.style))?;
                drop(err);
                let mut out = std::io::stdout().lock();
                match &summary.result {
                    Value::Null => Ok(()),
                    Value::String(text) => writeln!(out, "{text}"),
                    other => writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(other).unwrap_or_default()
                    ),
                }
            }
        }
    }
}

/// One agent call in flight.
struct Flight {
    label: String,
    agent: Option<String>,
    started: Instant,
    tokens: u64,
    tool_calls: u64,
}

/// The live picture of a run: lines that stay (phases, finished calls, logs) above a region
/// redrawn in place (calls in flight with a spinner, and a status line).
pub(crate) struct Live {
    style: Style,
    name: String,
    started: Instant,
    phase: Option<String>,
    flights: BTreeMap<WorkUnitId, Flight>,
    completed: u64,
    cached: u64,
    null: u64,
    failed: u64,
    tokens: u64,
    cost: Usd,
    region: render::LiveRegion,
    spin: usize,
    done: bool,
}

impl Live {
    pub(crate) fn new(style: Style, name: String) -> Self {
        Self {
            style,
            name,
            started: Instant::now(),
            phase: None,
            flights: BTreeMap::new(),
            completed: 0,
            cached: 0,
            null: 0,
            failed: 0,
            tokens: 0,
            cost: Usd::ZERO,
            region: render::LiveRegion::new(style),
            spin: 0,
            done: false,
        }
    }

    /// Takes in an event; returns the lines it leaves behind.
    fn event(&mut self, event: &RunEvent) -> Vec<String> {
        let s = self.style;
        match event {
            RunEvent::RunStarted {
                run_id, resumed, ..
            } => vec![format!(
                "{} {} {}",
                s.paint(Paint::Bold, if *resumed { "resuming run" } else { "run" }),
                run_id.short(),
                s.paint(Paint::Dim, &format!("({})", self.name))
            )],
            RunEvent::PhaseStarted { title } => {
                self.phase = Some(title.clone());
                vec![s.paint(Paint::Bold, &format!("▶ {title}"))]
            }
            RunEvent::AgentStarted {
                work_unit_id,
                label,
                agent_type,
                ..
            } => {
                self.flights.insert(
                    *work_unit_id,
                    Flight {
                        label: label.clone(),
                        agent: agent_type.clone(),
                        started: Instant::now(),
                        tokens: 0,
                        tool_calls: 0,
                    },
                );
                Vec::new()
            }
            RunEvent::AgentProgress {
                work_unit_id,
                usage,
                tool_calls,
                ..
            } => {
                if let Some(f) = self.flights.get_mut(work_unit_id) {
                    f.tokens = usage.total();
                    f.tool_calls = *tool_calls;
                }
                Vec::new()
            }
            RunEvent::AgentFinished {
                work_unit_id,
                label,
                state,
                reason,
                usage,
                cost_usd,
                ..
            } => {
                let flight = self.flights.remove(work_unit_id);
                let elapsed = flight.map_or(0, |f| {
                    u64::try_from(f.started.elapsed().as_millis()).unwrap_or(u64::MAX)
                });
                self.tokens += usage.total();
                self.cost += *cost_usd;
                let reason = reason.as_deref().unwrap_or("no reason given");
                let line = match state {
                    CallState::Completed => {
                        self.completed += 1;
                        format!(
                            "  {} {label} {}",
                            s.paint(Paint::Green, "✓"),
                            s.paint(
                                Paint::Dim,
                                &format!(
                                    "{} tokens · {} · {}",
                                    render::tokens(usage.total()),
                                    render::dollars(cost_usd.dollars()),
                                    render::duration_ms(elapsed)
                                )
                            )
                        )
                    }
                    CallState::Cached => {
                        self.cached += 1;
                        format!(
                            "  {} {label} {}",
                            s.paint(Paint::Cyan, "↺"),
                            s.paint(Paint::Dim, "(from the journal)")
                        )
                    }
                    CallState::Null => {
                        self.null += 1;
                        format!("  {} {label} → null: {reason}", s.paint(Paint::Yellow, "∅"))
                    }
                    CallState::Failed => {
                        self.failed += 1;
                        format!("  {} {label}: {reason}", s.paint(Paint::Red, "✗"))
                    }
                };
                vec![line]
            }
            RunEvent::Log { level, message } => {
                let mark = match level {
                    LogLevel::Warn | LogLevel::Error => s.paint(Paint::Yellow, "!"),
                    _ => s.paint(Paint::Dim, "·"),
                };
                vec![format!("  {mark} {message}")]
            }
            RunEvent::BudgetWarning { message } => {
                vec![format!("  {} {message}", s.paint(Paint::Yellow, "$"))]
            }
            _ => Vec::new(),
        }
    }

    /// The redrawn region.
    fn frame(&self) -> Vec<String> {
        let s = self.style;
        let spin = SPINNER[self.spin % SPINNER.len()];
        let mut lines: Vec<String> = self
            .flights
            .values()
            .take(SHOWN_IN_FLIGHT)
            .map(|f| {
                let agent = f
                    .agent
                    .as_ref()
                    .map(|a| format!(" [{a}]"))
                    .unwrap_or_default();
                format!(
                    "  {} {}{agent} {}",
                    s.paint(Paint::Cyan, spin),
                    render::fit(&f.label, 60),
                    s.paint(
                        Paint::Dim,
                        &format!(
                            "{} tokens · {} tools · {}",
                            render::tokens(f.tokens),
                            f.tool_calls,
                            render::duration_ms(
                                u64::try_from(f.started.elapsed().as_millis()).unwrap_or(u64::MAX)
                            )
                        )
                    )
                )
            })
            .collect();
        if self.flights.len() > SHOWN_IN_FLIGHT {
            lines.push(s.paint(
                Paint::Dim,
                &format!(
                    "  … and {} more in flight",
                    self.flights.len() - SHOWN_IN_FLIGHT
                ),
            ));
        }
        lines.push(format!(
            "{} {}{} · {} running · {} done · {} null · {} failed · {} tokens · {} · {}",
            s.paint(Paint::Cyan, spin),
            s.paint(Paint::Bold, &self.name),
            self.phase
                .as_ref()
                .map(|p| format!(" · {p}"))
                .unwrap_or_default(),
            self.flights.len(),
            self.completed + self.cached,
            self.null,
            self.failed,
            render::tokens(self.tokens),
            render::dollars(self.cost.dollars()),
            render::duration_ms(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(0)),
        ));
        lines
    }

    /// Prints `lines` above the live region and redraws it (on a terminal), or just the lines.
    fn show(&mut self, lines: &[String]) -> std::io::Result<()> {
        if self.done {
            return Ok(());
        }
        let mut region = std::mem::take(&mut self.region);
        let shown = region.show(lines, || self.frame());
        self.region = region;
        shown
    }

    /// Removes the live region.
    fn erase(&mut self) -> std::io::Result<()> {
        self.region.erase()
    }
}

/// The table drawn when a run ends.
fn summary_table(summary: &RunSummary, s: Style) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let state = match summary.state {
        RunState::Completed => s.paint(Paint::Green, "completed"),
        RunState::Failed => s.paint(Paint::Red, "failed"),
        RunState::Stopped | RunState::Running => s.paint(Paint::Yellow, "stopped"),
    };
    let u = &summary.usage;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} {}  {state} in {}",
        s.paint(Paint::Bold, &summary.name),
        summary.run_id.short(),
        render::duration_ms(summary.wall_ms)
    );
    let _ = writeln!(
        out,
        "  calls   {:>6} completed {:>6} cached {:>6} null {:>6} failed",
        summary.calls.completed, summary.calls.cached, summary.calls.null, summary.calls.failed
    );
    let _ = writeln!(
        out,
        "  tokens  {:>6} in        {:>6} out    {:>6} cache read ({})",
        render::tokens(u.input + u.cache_read + u.cache_write + u.cache_write_1h),
        render::tokens(u.output),
        render::tokens(u.cache_read),
        s.cache_bar(u.cache_hit_ratio()),
    );
    let _ = writeln!(
        out,
        "  cost    {:>6}{}",
        render::dollars(summary.cost_usd.dollars()),
        if summary.unpriced {
            " (some usage had no price)"
        } else {
            ""
        }
    );
    // The first few causes; the rest are in the trace.
    const SHOWN: usize = 5;
    for note in summary.nulls.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  {} {} → null: {}",
            s.paint(Paint::Yellow, "∅"),
            note.label,
            note.reason
        );
    }
    for note in summary.failures.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            s.paint(Paint::Red, "✗"),
            note.label,
            note.reason
        );
    }
    let hidden =
        summary.nulls.len().saturating_sub(SHOWN) + summary.failures.len().saturating_sub(SHOWN);
    if hidden > 0 {
        let _ = writeln!(
            out,
            "  … and {hidden} more: fleet trace {}",
            summary.run_id.short()
        );
    }
    if summary.state == RunState::Completed && summary.calls.null > 0 {
        let _ = writeln!(
            out,
            "  {}",
            s.paint(
                Paint::Dim,
                &format!(
                    "{} of {} calls came back null; the script went on without them (--fail-on-null fails the run instead)",
                    summary.calls.null,
                    summary.calls.completed
                        + summary.calls.cached
                        + summary.calls.null
                        + summary.calls.failed
                )
            )
        );
    }
    if summary.state == RunState::Completed && summary.budget_exhausted {
        let _ = writeln!(
            out,
            "  {} the script finished, but a budget refused {} of its calls (exit 4); raise it to run them",
            s.paint(Paint::Red, "budget:"),
            summary.calls.failed
        );
    }
    if let Some(error) = &summary.error
        && summary.state == RunState::Failed
    {
        let _ = writeln!(out, "  {} {error}", s.paint(Paint::Red, "error:"));
    }
    let _ = writeln!(
        out,
        "  {}",
        s.paint(
            Paint::Dim,
            &format!("trace: fleet trace {}", summary.run_id.short())
        )
    );
    out
}
