//! `fleet status` and `fleet stop`: one run's state, and stopping it from another process.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_core::store::EventStore;
use fleet_core::work_unit::WorkUnitKind;
use serde_json::Value;

use crate::app::{App, UsageError};
use crate::exit;
use crate::render::{self, Paint};

use super::{info, live_pid, open_thread, paint_state, recorded_summary, when};

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
