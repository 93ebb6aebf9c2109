//! `fleet ask`: one primary-agent turn, its delegated work drawn live as it goes; Ctrl-C
//! cancels it cleanly.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use fleet_core::agent::{AgentCall, AgentRunner, CallContext};
use fleet_core::command::WorkUnitDraft;
use fleet_core::event::TurnState;
use fleet_core::id::WorkUnitId;
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::spec::Capability;
use fleet_core::thread::Thread;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use serde_json::json;

use crate::app::App;
use crate::exit;
use crate::live::SPINNER;
use crate::render::{self, Paint, Style};
use crate::run::{pid_file, recv, runner, signal, specialists};

/// `fleet ask`.
pub(crate) fn ask(app: &App, task: &str, json: bool) -> anyhow::Result<u8> {
    App::runtime()?.block_on(ask_async(app, task, json))
}

async fn ask_async(app: &App, task: &str, json_out: bool) -> anyhow::Result<u8> {
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt());
    let store = app.open_store()?;
    let (provider, said) = app.provider()?;
    if !json_out {
        eprintln!("{}", app.style.paint(Paint::Dim, &said));
    }
    let specs = Arc::new(app.specs()?);
    let specialists = specialists(app, provider.clone())?;
    let runner = runner(app, provider, Arc::clone(&specs), specialists);
    let model = app.config.ask_model().to_owned();
    let journal = Journal::create(
        Arc::clone(&store) as SharedStore,
        Some(format!(
            "ask: {}",
            render::fit(task.lines().next().unwrap_or(task), 60)
        )),
    )
    .await?;
    let thread_id = journal.thread_id();
    let mut draft = WorkUnitDraft::new(WorkUnitKind::PrimaryAgent);
    draft.label = Some(render::fit(task.lines().next().unwrap_or(task), 60));
    draft.agent = Some("primary".into());
    draft.model = Some(model.clone());
    let (turn, primary) = journal.start_turn(Some(task.to_owned()), draft).await?;
    let _pid = pid_file(&app.runs_dir(), thread_id);

    let mut prompt = task.to_owned();
    if !specs.specs.is_empty() {
        prompt.push_str(
            "\n\nSpecialists you can delegate to: start each with spawn_subagent (agent_type = its name), \
             follow it with subagent_status / subagent_result, and answer when their work is in:\n",
        );
        for spec in &specs.specs {
            prompt.push_str(&format!(
                "- {}: {} ({}, budget {})\n",
                spec.name,
                spec.role,
                spec.model,
                spec.effective_cost_budget()
            ));
        }
    }
    let call = AgentCall {
        model: Some(model),
        capabilities: Some(vec![Capability::ReadFiles, Capability::SpawnSubagents]),
        ..AgentCall::new(prompt)
    };
    let cancel = fleet_core::provider::CancelToken::new();
    let ctx = CallContext {
        work_unit: Some(primary),
        cancel: cancel.clone(),
        ..CallContext::new(journal.clone(), primary)
    };
    if !json_out {
        eprintln!(
            "{} {thread_id} {}",
            app.style.paint(Paint::Bold, "ask"),
            app.style
                .paint(Paint::Dim, &format!("({} specialists)", specs.specs.len()))
        );
    }
    // On its own task: the loop below awaits the journal, which the call may hold while it
    // writes, so the call must not depend on the loop polling it.
    let mut work = tokio::spawn(async move { runner.run(call, ctx).await });
    let mut watch = UnitWatch::new(app.style, !json_out);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            r = &mut work => break r.map_err(|e| fleet_core::agent::AgentError::Config(format!("the agent task ended: {e}")))
                .and_then(|r| r),
            _ = tick.tick() => {
                let snapshot = journal.read(Clone::clone).await;
                watch.update(&snapshot)?;
            }
            () = recv(&mut int), if !interrupted => {
                interrupted = true;
                cancel.cancel();
            }
        }
    };
    let state = match &result {
        Ok(_) => TurnState::Completed,
        Err(_) if interrupted => TurnState::Cancelled,
        Err(_) => TurnState::Failed,
    };
    journal
        .execute(fleet_core::command::Command::CompleteTurn {
            turn_id: turn,
            state,
        })
        .await?;
    let thread = journal.read(Clone::clone).await;
    watch.update(&thread)?;
    watch.erase()?;
    if json_out {
        let mut out = std::io::stdout().lock();
        for event in
            fleet_core::store::EventStore::read_stream(&*store, thread_id, 0, usize::MAX).await?
        {
            serde_json::to_writer(&mut out, &event)?;
            writeln!(out)?;
        }
        let answer = match &result {
            Ok(o) => json!({"type": "answer", "thread_id": thread_id, "text": o.text}),
            Err(e) => json!({"type": "answer", "thread_id": thread_id, "error": e.to_string()}),
        };
        serde_json::to_writer(&mut out, &answer)?;
        writeln!(out)?;
    } else {
        eprintln!();
        eprint!(
            "{}",
            render::tree(
                &thread,
                &HashMap::new(),
                app.style,
                fleet_core::Timestamp::now()
            )
        );
        if let Ok(outcome) = &result {
            println!("{}", outcome.text);
        }
    }
    match result {
        Ok(_) => Ok(exit::OK),
        Err(_) if interrupted => Ok(exit::INTERRUPTED),
        Err(fleet_core::agent::AgentError::Budget(e)) => {
            eprintln!("fleet: {e}");
            Ok(exit::BUDGET)
        }
        Err(e) => Err(e.into()),
    }
}

/// Follows a thread's units between snapshots: on a terminal, a live tree of what is running;
/// elsewhere, a line when a unit starts and when it ends.
struct UnitWatch {
    style: Style,
    enabled: bool,
    states: HashMap<WorkUnitId, WorkUnitState>,
    region: render::LiveRegion,
    spin: usize,
}

impl UnitWatch {
    fn new(style: Style, enabled: bool) -> Self {
        Self {
            style,
            enabled,
            states: HashMap::new(),
            region: render::LiveRegion::new(style),
            spin: 0,
        }
    }

    fn update(&mut self, thread: &Thread) -> std::io::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let s = self.style;
        let mut lines = Vec::new();
        for unit in thread.work_units.values() {
            let before = self.states.insert(unit.id, unit.state);
            if before == Some(unit.state) {
                continue;
            }
            let name = render::fit(&render::unit_name(unit), 60);
            let agent = unit.agent.as_deref().unwrap_or("-");
            match unit.state {
                WorkUnitState::Running
                    if before.is_none() || before == Some(WorkUnitState::Pending) =>
                {
                    lines.push(format!("  {} {name} [{agent}]", s.paint(Paint::Cyan, "→")));
                }
                WorkUnitState::Completed => lines.push(format!(
                    "  {} {name} [{agent}] {}",
                    s.paint(Paint::Green, "✓"),
                    s.paint(
                        Paint::Dim,
                        &format!(
                            "{} tokens · {}",
                            render::tokens(thread.subtree_usage(unit.id).total()),
                            render::dollars(thread.subtree_cost(unit.id).usd.dollars())
                        )
                    )
                )),
                WorkUnitState::Failed | WorkUnitState::Cancelled | WorkUnitState::Interrupted => {
                    lines.push(format!(
                        "  {} {name} [{agent}] {}: {}",
                        s.paint(Paint::Red, "✗"),
                        unit.state,
                        unit.error.as_deref().unwrap_or("no reason given")
                    ));
                }
                _ => {}
            }
        }
        self.spin += 1;
        let spin = SPINNER[self.spin % SPINNER.len()];
        self.region.show(&lines, || {
            thread
                .work_units
                .values()
                .filter(|u| !u.state.is_terminal())
                .map(|u| {
                    format!(
                        "  {} {} [{}] {}",
                        s.paint(Paint::Cyan, spin),
                        render::fit(&render::unit_name(u), 60),
                        u.agent.as_deref().unwrap_or("-"),
                        s.paint(
                            Paint::Dim,
                            &format!(
                                "{} tokens",
                                render::tokens(thread.subtree_usage(u.id).total())
                            )
                        )
                    )
                })
                .collect()
        })
    }

    fn erase(&mut self) -> std::io::Result<()> {
        self.region.erase()
    }
}
