//! The commands that look at what fleet knows: runs, status, stop, trace, cost, workflows and
//! agents.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::spec::SpecSet;
use fleet_core::{EventStore, SqliteStore, Thread, ThreadId, Timestamp, TurnState, WorkUnitKind};
use serde_json::Value;

use crate::app::{App, UsageError};
use crate::exit;
use crate::render::{self, Paint};

/// What a run looks like in lists.
struct RunInfo {
    id: ThreadId,
    kind: &'static str,
    name: String,
    state: String,
    started: Timestamp,
    wall_ms: u64,
    calls: usize,
    tokens: u64,
    usd: f64,
    attempts: usize,
    /// Up to what the calls in flight when their process ended may have cost, and how many.
    unconfirmed: (f64, usize),
}

/// `thread`'s unconfirmed charges: (dollars, calls).
fn unconfirmed(thread: &Thread) -> (f64, usize) {
    let open = thread.unconfirmed();
    (open.iter().map(|(_, usd)| usd.dollars()).sum(), open.len())
}

/// The pid of the process running `id`, if one is alive.
fn live_pid(app: &App, id: ThreadId) -> Option<i32> {
    let text = std::fs::read_to_string(app.runs_dir().join(format!("{id}.pid"))).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let alive = rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
    alive.then_some(pid)
}

fn info(app: &App, thread: &Thread) -> RunInfo {
    let root = thread
        .turns
        .first()
        .and_then(|t| thread.work_unit(t.root_id));
    let kind = match root.map(|u| (u.kind, u.agent.as_deref())) {
        Some((WorkUnitKind::Workflow, _)) => "workflow",
        Some((WorkUnitKind::PrimaryAgent, Some(crate::fleet::FLEET_LABEL))) => "fleet",
        Some((WorkUnitKind::PrimaryAgent, _)) => "ask",
        _ => "thread",
    };
    let name = thread
        .activities
        .iter()
        .find_map(|a| match &a.kind {
            ActivityKind::RunStarted { name, .. } => Some(name.clone()),
            _ => None,
        })
        .or_else(|| thread.title.clone())
        .unwrap_or_else(|| "-".into());
    let last = thread.turns.last();
    let state = match last.map(|t| t.state) {
        None => "empty".to_owned(),
        Some(TurnState::Running) if live_pid(app, thread.id).is_some() => "running".to_owned(),
        Some(TurnState::Running) => "interrupted".to_owned(),
        Some(TurnState::Cancelled) => "stopped".to_owned(),
        Some(state) => render::serde_name(&state),
    };
    let started = thread.created_at;
    let end = last.and_then(|t| t.ended_at).unwrap_or_else(|| {
        if state == "running" {
            Timestamp::now()
        } else {
            thread.updated_at
        }
    });
    let roots: Vec<_> = thread.turns.iter().map(|t| t.root_id).collect();
    let (mut tokens, mut usd) = (0, 0.0);
    for root in &roots {
        tokens += thread.subtree_usage(*root).total();
        usd += thread.subtree_cost(*root).usd.dollars();
    }
    let calls = thread
        .work_units
        .values()
        .filter(|u| u.kind == WorkUnitKind::DelegatedAgent)
        .count();
    RunInfo {
        id: thread.id,
        kind,
        name,
        state,
        started,
        wall_ms: render::between(started, end),
        calls,
        tokens,
        usd,
        attempts: thread.turns.len(),
        unconfirmed: unconfirmed(thread),
    }
}

fn paint_state(app: &App, state: &str) -> String {
    let paint = match state {
        "completed" => Paint::Green,
        "failed" | "interrupted" => Paint::Red,
        "stopped" | "cancelled" => Paint::Yellow,
        _ => Paint::Cyan,
    };
    render::pad(&app.style.paint(paint, state), state.len(), 11)
}

/// Local date and time, to the minute.
fn when(t: Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

async fn threads(store: &SqliteStore, ids: &[ThreadId]) -> anyhow::Result<Vec<Thread>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(t) = store.snapshot(*id).await? {
            out.push(t);
        }
    }
    Ok(out)
}

/// `fleet runs`.
pub(crate) fn runs(app: &App, limit: usize) -> anyhow::Result<u8> {
    let Some(store) = app.existing_store()? else {
        app.say("no runs yet: `fleet run hello` starts one")?;
        return Ok(exit::OK);
    };
    let mut ids = store.thread_ids()?;
    // UUIDv7 ids sort by creation: newest first.
    ids.sort_by(|a, b| b.cmp(a));
    let width = short_width(&ids);
    let total = ids.len();
    ids.truncate(limit);
    let rt = App::runtime()?;
    let threads = rt.block_on(threads(&store, &ids))?;
    let mut out = app.style.paint(
        Paint::Bold,
        &format!(
            "{:<width$}  {:<8} {:<22} {:<11} {:<16} {:>7} {:>6} {:>7} {:>9}",
            "run", "kind", "name", "state", "started", "time", "calls", "tokens", "cost"
        ),
    );
    out.push('\n');
    let mut unsure = (0.0, 0, 0);
    for thread in &threads {
        let i = info(app, thread);
        let marked = if i.unconfirmed.1 > 0 {
            unsure = (
                unsure.0 + i.unconfirmed.0,
                unsure.1 + i.unconfirmed.1,
                unsure.2 + 1,
            );
            format!("{}*", render::dollars(i.usd))
        } else {
            render::dollars(i.usd)
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<8} {:<22} {} {:<16} {:>7} {:>6} {:>7} {:>9}",
            short_id(i.id, width),
            i.kind,
            render::fit(&i.name, 22),
            paint_state(app, &i.state),
            when(i.started),
            render::duration_ms(i.wall_ms),
            i.calls,
            render::tokens(i.tokens),
            marked,
        );
    }
    if unsure.1 > 0 {
        let _ = writeln!(
            out,
            "* {} run(s) also owe up to {} unconfirmed: {} call(s) were in flight when their process ended, and the provider may have billed them (fleet cost RUN)",
            unsure.2,
            render::dollars(unsure.0),
            unsure.1
        );
    }
    if total > ids.len() {
        let _ = writeln!(
            out,
            "… {} older (--limit {total} shows all)",
            total - ids.len()
        );
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// How much of the end of every run id tells the runs apart (at least the 8 digits of
/// [`ThreadId::short`]; more, as git does, in a store where two share them).
fn short_width(ids: &[ThreadId]) -> usize {
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    (8..36)
        .find(|&n| {
            let mut ends: Vec<&str> = texts.iter().map(|t| &t[t.len() - n..]).collect();
            ends.sort_unstable();
            ends.windows(2).all(|w| w[0] != w[1])
        })
        .unwrap_or(36)
}

/// The last `width` characters of `id`.
fn short_id(id: ThreadId, width: usize) -> String {
    let text = id.to_string();
    text[text.len().saturating_sub(width)..].to_owned()
}

fn open_thread(app: &App, run: Option<&str>) -> anyhow::Result<(SqliteStore2, Thread)> {
    let store = app
        .existing_store()?
        .ok_or_else(|| UsageError(format!("no runs yet in {}", app.store_path().display())))?;
    let id = app.run_or_newest(&store, run)?;
    let rt = App::runtime()?;
    let thread = rt
        .block_on(store.snapshot(id))?
        .with_context(|| format!("run {id} has no events"))?;
    Ok((store, thread))
}

type SqliteStore2 = std::sync::Arc<SqliteStore>;

/// The last attempt's summary, as recorded when it ended.
fn recorded_summary(thread: &Thread) -> Option<&Value> {
    thread.activities.iter().rev().find_map(|a| match &a.kind {
        ActivityKind::RunEnded { summary, .. } => Some(summary),
        _ => None,
    })
}

/// `fleet status`.
pub(crate) fn status(app: &App, run: Option<&str>) -> anyhow::Result<u8> {
    let (_store, thread) = open_thread(app, run)?;
    let i = info(app, &thread);
    let s = app.style;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  {}",
        s.paint(Paint::Bold, &i.name),
        i.id.short(),
        paint_state(app, &i.state).trim_end()
    );
    let _ = writeln!(out, "  id        {}", i.id);
    let _ = writeln!(out, "  kind      {}", i.kind);
    let _ = writeln!(
        out,
        "  started   {} ({} attempt{})",
        when(i.started),
        i.attempts,
        if i.attempts == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "  time      {}", render::duration_ms(i.wall_ms));
    let mut by_state: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for unit in thread
        .work_units
        .values()
        .filter(|u| u.kind == WorkUnitKind::DelegatedAgent)
    {
        *by_state.entry(unit.state.to_string()).or_default() += 1;
    }
    let calls: Vec<String> = by_state.iter().map(|(k, v)| format!("{v} {k}")).collect();
    let _ = writeln!(
        out,
        "  calls     {}",
        if calls.is_empty() {
            "none".into()
        } else {
            calls.join(" · ")
        }
    );
    let _ = writeln!(out, "  tokens    {}", render::tokens(i.tokens));
    let _ = writeln!(out, "  cost      {}", render::dollars(i.usd));
    if let Some(error) = recorded_summary(&thread)
        .and_then(|s| s.get("error"))
        .and_then(Value::as_str)
    {
        let _ = writeln!(out, "  error     {error}");
    }
    let running: Vec<_> = thread
        .work_units
        .values()
        .filter(|u| u.kind == WorkUnitKind::DelegatedAgent && !u.state.is_terminal())
        .collect();
    if !running.is_empty() && i.state == "running" {
        let _ = writeln!(out, "  in flight");
        for unit in running.iter().take(10) {
            let _ = writeln!(
                out,
                "    {} {}",
                s.paint(Paint::Cyan, "⠿"),
                render::unit_name(unit)
            );
        }
    }
    match i.state.as_str() {
        "interrupted" | "stopped" if i.kind == "workflow" => {
            let _ = writeln!(out, "  resume    fleet run --resume {}", i.id.short());
        }
        "running" => {
            let _ = writeln!(out, "  stop      fleet stop {}", i.id.short());
        }
        _ => {}
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// `fleet stop`: asks the process running the run to stop it (as Ctrl-C there would), and
/// waits until it has.
pub(crate) fn stop(app: &App, run: &str) -> anyhow::Result<u8> {
    let store = app
        .existing_store()?
        .ok_or_else(|| UsageError(format!("no runs in {}", app.store_path().display())))?;
    let id = app.resolve_run(&store, run)?;
    let Some(pid) = live_pid(app, id) else {
        let rt = App::runtime()?;
        let thread = rt
            .block_on(store.snapshot(id))?
            .context("the run has no events")?;
        let i = info(app, &thread);
        app.say(&format!(
            "run {} is not running ({}){}",
            id.short(),
            i.state,
            if i.state == "interrupted" {
                format!("; resume it with: fleet run --resume {}", id.short())
            } else {
                String::new()
            }
        ))?;
        return Ok(exit::OK);
    };
    let target = rustix::process::Pid::from_raw(pid).context("a bad pid file")?;
    rustix::process::kill_process(target, rustix::process::Signal::INT)
        .with_context(|| format!("cannot signal process {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_pid(app, id).is_some() {
        if Instant::now() > deadline {
            anyhow::bail!(
                "process {pid} has not stopped run {} within 30 s",
                id.short()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    app.say(&format!(
        "stopped run {0}; resume it with: fleet run --resume {0}",
        id.short()
    ))?;
    Ok(exit::OK)
}

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

/// `fleet cost`.
pub(crate) fn cost(app: &App, run: Option<&str>, since: Option<&str>) -> anyhow::Result<u8> {
    let Some(store) = app.existing_store()? else {
        app.say("nothing spent yet: no store at this project")?;
        return Ok(exit::OK);
    };
    let s = app.style;
    // (model, calls, input, output, cache read, cost, unpriced)
    let mut rows: Vec<(String, u64, u64, u64, u64, f64, u64)> = Vec::new();
    let title;
    let mut unsure = (0.0, 0);
    if let Some(run) = run {
        let id = app.resolve_run(&store, run)?;
        let rt = App::runtime()?;
        let thread = rt
            .block_on(store.snapshot(id))?
            .context("the run has no events")?;
        let mut by: std::collections::BTreeMap<String, (u64, fleet_core::TokenUsage, f64, u64)> =
            Default::default();
        for unit in thread.work_units.values() {
            if unit.usage.total() == 0 {
                continue;
            }
            let e = by
                .entry(unit.model.clone().unwrap_or_else(|| "-".into()))
                .or_default();
            e.0 += 1;
            e.1 += unit.usage;
            e.2 += unit.cost.usd.dollars();
            e.3 += unit.cost.unpriced;
        }
        for (model, (n, u, usd, unpriced)) in by {
            rows.push((
                model,
                n,
                u.input + u.cache_write + u.cache_write_1h + u.cache_read,
                u.output,
                u.cache_read,
                usd,
                unpriced,
            ));
        }
        title = format!("run {}", id.short());
        unsure = unconfirmed(&thread);
    } else {
        let since_ts = since.map(parse_since).transpose()?;
        let rt = App::runtime()?;
        for id in store.thread_ids()? {
            if let Some(thread) = rt.block_on(store.snapshot(id))?
                && since_ts.is_none_or(|t| thread.updated_at >= t)
            {
                let (usd, calls) = unconfirmed(&thread);
                unsure = (unsure.0 + usd, unsure.1 + calls);
            }
        }
        for m in store.usage_by_model(since_ts)? {
            let u = m.usage;
            rows.push((
                m.model.unwrap_or_else(|| "-".into()),
                m.records,
                u.input + u.cache_write + u.cache_write_1h + u.cache_read,
                u.output,
                u.cache_read,
                m.cost.usd.dollars(),
                m.cost.unpriced,
            ));
        }
        title = since.map_or_else(|| "all runs".to_owned(), |d| format!("since {d}"));
    }
    let mut out = format!("{} {}\n\n", s.paint(Paint::Bold, "spend:"), title);
    out.push_str(&s.paint(
        Paint::Bold,
        &format!(
            "{:<24} {:>8} {:>9} {:>9} {:<10} {:>10}",
            "model", "records", "input", "output", "cache", "cost"
        ),
    ));
    out.push('\n');
    let (mut total, mut any_unpriced) = (0.0, false);
    let max = rows.iter().map(|r| r.5).fold(0.0, f64::max);
    for (model, n, input, output, cache, usd, unpriced) in &rows {
        total += usd;
        any_unpriced |= *unpriced > 0;
        #[allow(clippy::cast_precision_loss)]
        let ratio = if *input == 0 {
            0.0
        } else {
            *cache as f64 / *input as f64
        };
        // A bar of this model's share of the spend.
        let width = if max > 0.0 {
            (usd / max * 20.0).round()
        } else {
            0.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bar = "▇".repeat(width as usize);
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>9} {:>9} {} {:>10} {}{}",
            render::fit(model, 24),
            n,
            render::tokens(*input),
            render::tokens(*output),
            s.cache_bar(ratio),
            render::dollars(*usd),
            s.paint(Paint::Cyan, &bar),
            if *unpriced > 0 {
                " (some unpriced)"
            } else {
                ""
            }
        );
    }
    if rows.is_empty() {
        out.push_str("(no usage recorded)\n");
    }
    let _ = writeln!(
        out,
        "{:<24} {:>61}",
        s.paint(Paint::Bold, "total"),
        render::dollars(total)
    );
    if unsure.1 > 0 {
        let _ = writeln!(
            out,
            "{:<24} {:>61}",
            s.paint(Paint::Bold, "unconfirmed"),
            format!("up to {}", render::dollars(unsure.0))
        );
        let _ = writeln!(
            out,
            "{} call(s) were in flight when their process ended: the provider may have billed them, so the bill counts their reservations apart",
            unsure.1
        );
    }
    if any_unpriced {
        out.push_str("some usage had no price: add the model to the price table\n");
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// `2026-11-01` (local midnight) or an RFC 3339 timestamp.
fn parse_since(text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        UsageError(format!(
            "--since {text:?}: not a date; write YYYY-MM-DD (e.g. 2026-11-01) or an RFC 3339 time"
        ))
    })?;
    Ok(date
        .to_zoned(jiff::tz::TimeZone::system())
        .context("that date does not exist here")?
        .timestamp())
}

/// `fleet workflows list`.
pub(crate) fn workflows_list(app: &App) -> anyhow::Result<u8> {
    let catalog = app.catalog();
    let mut out = app.style.paint(
        Paint::Bold,
        &format!("{:<20} {:<10} {}", "workflow", "from", "description"),
    );
    out.push('\n');
    for (name, entry) in catalog.entries() {
        let _ = writeln!(
            out,
            "{:<20} {:<10} {}",
            name,
            render::serde_name(&entry.source),
            render::fit(&entry.script.meta.description, 70)
        );
    }
    for problem in &catalog.errors {
        let _ = writeln!(
            out,
            "{} {problem}",
            app.style.paint(Paint::Red, "not registered:")
        );
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// `fleet workflows show NAME`.
pub(crate) fn workflows_show(app: &App, name: &str) -> anyhow::Result<u8> {
    let catalog = app.catalog();
    let script = catalog.find(name).map_err(UsageError)?;
    let meta = &script.meta;
    let mut out = format!(
        "{}\n  {}\n  from {}\n",
        app.style.paint(Paint::Bold, &meta.name),
        meta.description,
        script.origin
    );
    if let Some(when) = &meta.when_to_use {
        let _ = writeln!(out, "  when to use: {when}");
    }
    if !meta.phases.is_empty() {
        let _ = writeln!(out, "  phases:");
        for phase in &meta.phases {
            let _ = writeln!(out, "    ▶ {}", phase.title);
        }
    }
    if let Some(args) = script.meta_json.get("args") {
        let _ = writeln!(
            out,
            "  args: {}",
            serde_json::to_string_pretty(args)?.replace('\n', "\n  ")
        );
    }
    let _ = writeln!(out, "\nrun it: fleet run {}", meta.name);
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

fn specs_in(app: &App, dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, SpecSet)> {
    let dir = dir.unwrap_or_else(|| app.config.agents_dir());
    // Listing or validating what is not there is not a success.
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(UsageError(format!(
            "{} {what}: agents are declared in <name>.yaml files there (`fleet init` writes three samples), or point agents.dir in fleet.toml elsewhere",
            shown(&dir)
        ))
        .into());
    }
    let set = SpecSet::load_dir(&dir).map_err(|e| UsageError(format!("{}: {e}", shown(&dir))))?;
    Ok((dir, set))
}

fn shown(dir: &Path) -> String {
    dir.display().to_string()
}

/// `fleet agents list`.
pub(crate) fn agents_list(app: &App, dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let (dir, set) = specs_in(app, dir)?;
    let mut out = app.style.paint(
        Paint::Bold,
        &format!(
            "{:<18} {:<20} {:>8}  {:<40} {}",
            "agent", "model", "budget", "capabilities", "role"
        ),
    );
    out.push('\n');
    for spec in &set.specs {
        let caps: Vec<String> = spec
            .capabilities
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<18} {:<20} {:>8}  {:<40} {}",
            spec.name,
            spec.model,
            spec.effective_cost_budget().to_string(),
            caps.join(", "),
            spec.role
        );
    }
    for d in &set.errors {
        let _ = writeln!(out, "{} {d}", app.style.paint(Paint::Red, "error"));
    }
    let _ = write!(out, "{} agents in {}", set.specs.len(), shown(&dir));
    app.say(&out)?;
    Ok(if set.errors.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// `fleet agents validate`.
pub(crate) fn agents_validate(app: &App, dir: Option<PathBuf>) -> anyhow::Result<u8> {
    let (dir, set) = specs_in(app, dir)?;
    let mut out = String::new();
    for spec in &set.specs {
        let _ = writeln!(
            out,
            "ok       {:<20} {} ({})",
            spec.name, spec.model, spec.role
        );
    }
    for d in &set.errors {
        let _ = writeln!(out, "error    {d}");
    }
    let _ = write!(
        out,
        "{} valid, {} problem(s) in {}",
        set.specs.len(),
        set.errors.len(),
        shown(&dir)
    );
    app.say(&out)?;
    Ok(if set.errors.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
