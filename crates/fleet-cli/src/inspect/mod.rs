//! The commands that look at what fleet knows: runs, status, stop, trace, cost, workflows and
//! agents.

use anyhow::Context;
use fleet_core::Timestamp;
use fleet_core::activity::ActivityKind;
use fleet_core::event::TurnState;
use fleet_core::id::ThreadId;
use fleet_core::store::EventStore;
use fleet_core::store::sqlite::SqliteStore;
use fleet_core::thread::Thread;
use fleet_core::work_unit::WorkUnitKind;
use serde_json::Value;

use crate::app::{App, UsageError};
use crate::render::{self, Paint};

mod catalog;
mod cost;
mod runs;
mod status;
mod trace;

pub(crate) use self::catalog::{agents_list, agents_validate, workflows_list, workflows_show};
pub(crate) use self::cost::cost;
pub(crate) use self::runs::runs;
pub(crate) use self::status::{status, stop};
pub(crate) use self::trace::trace;

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
