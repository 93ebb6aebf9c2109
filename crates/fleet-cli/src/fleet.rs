//! `fleet start`: the project's specialists under the supervisor, watched in a TUI (or logged
//! as lines with `--headless`); `fleet send`: a task for one of them, through the running
//! fleet's control socket.
//!
//! The control socket (`.fleet/fleet.sock` beside the store) takes one JSON line per
//! connection, `{"agent": "...", "task": "..."}`, and answers with one line:
//! `{"ok": true, "text": "..."}` or `{"ok": false, "error": "..."}`.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use fleet_core::Usd;
use fleet_core::budget::{BudgetLimits, Budgets};
use fleet_core::ipc::TaskRunParams;
use fleet_core::spec::AgentSpec;
use fleet_sandbox::{Sandbox, Supervisor, SupervisorError, SupervisorEvent, WorkerPlan};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::app::{App, RemoveOnDrop, UsageError};
use crate::render;
use crate::{WORKER, exit};

/// What `fleet send` asks.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    agent: String,
    task: String,
}

/// What the fleet answers.
#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn socket_path(app: &App) -> PathBuf {
    app.runs_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("fleet.sock")
}

/// One agent as the screen shows it.
#[derive(Debug, Clone, Default)]
struct AgentView {
    model: String,
    budget: Usd,
    running: usize,
    done: u64,
    failed: u64,
    paused: Option<String>,
    last: String,
}

/// What the fleet looks like now.
#[derive(Default)]
struct FleetState {
    agents: BTreeMap<String, AgentView>,
    log: VecDeque<String>,
    next_task: u64,
    /// Woken when something worth redrawing happened.
    changed: Arc<tokio::sync::Notify>,
}

impl FleetState {
    fn note(&mut self, line: String) {
        self.log.push_back(format!("{} {line}", render::clock()));
        while self.log.len() > 200 {
            self.log.pop_front();
        }
        self.changed.notify_one();
    }
}

type Shared = Arc<Mutex<FleetState>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, FleetState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `fleet start`.
pub(crate) fn start(app: &App, headless: bool) -> anyhow::Result<u8> {
    App::runtime()?.block_on(start_async(app, headless))
}

async fn start_async(app: &App, headless: bool) -> anyhow::Result<u8> {
    // Listening from the start: a signal that arrives while no one listens is lost.
    let signals = Signals::new()?;
    let specs = app.specs()?;
    let dir = app.config.agents_dir();
    for problem in &specs.errors {
        eprintln!("fleet: agent not started: {problem}");
    }
    if specs.specs.is_empty() {
        return Err(UsageError(format!(
            "no agents in {}: declare some (fleet init writes three samples)",
            dir.display()
        ))
        .into());
    }
    // The supervisor is the workers' model gateway: it holds the provider and its
    // credentials; the workers get neither.
    let (provider, said) = app.provider()?;
    let exe = std::env::current_exe().context("cannot find the fleet program")?;
    let sandbox = Sandbox::new(&exe, vec![crate::SANDBOX_HELPER.into()]);
    let budgets = Budgets::new();
    let fleet_budget = app
        .config
        .fleet_budget_usd()
        .and_then(Usd::from_dollars)
        .map(|usd| {
            budgets.add(
                "the fleet",
                None,
                BudgetLimits {
                    output_tokens: None,
                    usd: Some(usd),
                },
            )
        });
    let supervisor = Supervisor::new(sandbox, app.prices()?)
        .charging(budgets, fleet_budget)
        .with_gateway(provider);
    let root = app.config.root().to_owned();
    let state: Shared = Arc::default();
    for spec in &specs.specs {
        let plan = plan_for(spec, &root, &exe);
        for dir in &plan.policy.writable {
            if !dir.exists() {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create {} for {}", dir.display(), spec.name)
                })?;
            }
        }
        supervisor
            .add(plan)
            .await
            .with_context(|| format!("agent {} cannot start", spec.name))?;
        lock(&state).agents.insert(
            spec.name.clone(),
            AgentView {
                model: spec.model.clone(),
                budget: spec.effective_cost_budget(),
                ..AgentView::default()
            },
        );
    }
    let socket = socket_path(app);
    if UnixStream::connect(&socket).await.is_ok() {
        return Err(UsageError(format!(
            "a fleet is already running here (its socket {} answers): quit it first",
            socket.display()
        ))
        .into());
    }
    let _ = std::fs::remove_file(&socket);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let _cleanup = RemoveOnDrop(socket.clone());
    {
        let mut s = lock(&state);
        s.note(said.clone());
        s.note(format!(
            "{} agents supervised; send work with: fleet send AGENT \"task\"",
            specs.specs.len()
        ));
    }

    let events = tokio::spawn(follow_events(supervisor.clone(), state.clone(), headless));
    let serving = tokio::spawn(serve(listener, supervisor.clone(), state.clone(), headless));
    let outcome = if headless {
        for line in lock(&state).log.drain(..) {
            println!("{line}");
        }
        headless_loop(&supervisor, &state, signals).await
    } else {
        tui::run(supervisor.clone(), state.clone(), root.clone()).await
    };
    serving.abort();
    events.abort();
    for name in lock(&state).agents.keys() {
        supervisor.kill(name);
    }
    outcome?;
    Ok(exit::OK)
}

/// A specialist's plan: its sandbox, from its spec, with nothing of the provider in it (no
/// settings, no keys: its model turns go through the supervisor's gateway).
fn plan_for(spec: &AgentSpec, root: &Path, exe: &Path) -> WorkerPlan {
    let policy = fleet_core::SandboxPolicy::from_spec(&spec.sandbox, root);
    let mut plan = WorkerPlan::for_spec(spec, exe, policy);
    plan.args = vec![WORKER.into()];
    plan
}

async fn follow_events(supervisor: Supervisor, state: Shared, headless: bool) {
    let mut events = supervisor.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let line = {
            let mut s = lock(&state);
            let line = match &event {
                SupervisorEvent::WorkerStarted { agent } => format!("{agent}: worker started"),
                SupervisorEvent::WorkerStopped { agent } => format!("{agent}: idle worker stopped"),
                SupervisorEvent::WorkerDied {
                    agent,
                    status,
                    stderr_tail,
                    ..
                } => format!(
                    "{agent}: worker died ({status}): {}",
                    stderr_tail.lines().last().unwrap_or_default()
                ),
                SupervisorEvent::TaskRetried {
                    agent,
                    task_id,
                    attempt,
                } => format!("{agent}: task {task_id} retried (attempt {attempt})"),
                SupervisorEvent::AgentPaused { agent, reason } => {
                    if let Some(view) = s.agents.get_mut(agent) {
                        view.paused = Some(reason.clone());
                    }
                    format!("{agent}: PAUSED: {reason}")
                }
                SupervisorEvent::ProtocolError { agent, message } => {
                    format!("{agent}: protocol error: {message}")
                }
                SupervisorEvent::ReportedUsage {
                    agent,
                    task_id,
                    usage,
                    ..
                } => format!(
                    "{agent}: task {task_id} says it used {} output tokens (not charged: the gateway meters)",
                    usage.output
                ),
                // Every model turn: too many to log; the cost overlay shows their sum.
                SupervisorEvent::ModelTurn { .. } => continue,
                other => format!("{other:?}"),
            };
            s.note(line.clone());
            line
        };
        if headless {
            println!("{} {line}", render::clock());
        }
    }
}

async fn serve(listener: UnixListener, supervisor: Supervisor, state: Shared, headless: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let supervisor = supervisor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _ = handle(stream, supervisor, state, headless).await;
        });
    }
}

async fn handle(
    stream: UnixStream,
    supervisor: Supervisor,
    state: Shared,
    headless: bool,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(BufReader::new(read), 1 << 20)
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply {
            ok: false,
            text: None,
            error: Some(format!(
                "not a request ({e}): send one line {{\"agent\": \"...\", \"task\": \"...\"}}"
            )),
        },
        Ok(request) => run_task(&supervisor, &state, request, headless).await,
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

async fn run_task(
    supervisor: &Supervisor,
    state: &Shared,
    request: Request,
    headless: bool,
) -> Reply {
    let say = |line: String| {
        let mut s = lock(state);
        s.note(line.clone());
        if headless {
            println!("{} {line}", render::clock());
        }
    };
    let id = {
        let mut s = lock(state);
        if !s.agents.contains_key(&request.agent) {
            let known: Vec<String> = s.agents.keys().cloned().collect();
            return Reply {
                ok: false,
                text: None,
                error: Some(format!(
                    "no agent {:?} in this fleet; it has: {}",
                    request.agent,
                    known.join(", ")
                )),
            };
        }
        s.next_task += 1;
        if let Some(view) = s.agents.get_mut(&request.agent) {
            view.running += 1;
        }
        s.next_task
    };
    let agent = request.agent.clone();
    say(format!(
        "{agent}: task {id} started: {}",
        render::fit(&request.task, 60)
    ));
    let result = supervisor
        .call(
            &agent,
            TaskRunParams {
                task_id: format!("task-{id}"),
                prompt: request.task,
                input: None,
            },
        )
        .await;
    let spent = supervisor
        .spent(&agent)
        .map(|s| s.spent.usd)
        .unwrap_or_default();
    let (reply, line) = {
        let mut s = lock(state);
        let view = s.agents.entry(agent.clone()).or_default();
        view.running = view.running.saturating_sub(1);
        match result {
            Ok(done) => {
                view.done += 1;
                view.last = render::fit(done.result.text.lines().next().unwrap_or_default(), 60);
                (
                    Reply {
                        ok: true,
                        text: Some(done.result.text),
                        error: None,
                    },
                    format!(
                        "{agent}: task {id} done: {} model turns, {}; {agent} has spent {spent} of {}",
                        done.turns, done.cost, view.budget
                    ),
                )
            }
            Err(e) => {
                view.failed += 1;
                if let SupervisorError::Paused { reason, .. } = &e {
                    view.paused = Some(reason.clone());
                }
                view.last = render::fit(&e.to_string(), 60);
                (
                    Reply {
                        ok: false,
                        text: None,
                        error: Some(e.to_string()),
                    },
                    format!("{agent}: task {id} failed: {e}"),
                )
            }
        }
    };
    say(line);
    reply
}

/// SIGINT and SIGTERM, listened for.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }
}

async fn headless_loop(
    supervisor: &Supervisor,
    state: &Shared,
    mut signals: Signals,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = signals.int.recv() => {}
        _ = signals.term.recv() => {}
    }
    let total: Usd = lock(state)
        .agents
        .keys()
        .filter_map(|a| supervisor.spent(a).map(|s| s.spent.usd))
        .fold(Usd::ZERO, |a, b| a + b);
    println!("fleet stopped; spent {total} in all");
    Ok(())
}

/// `fleet send`.
pub(crate) fn send(app: &App, agent: &str, task: &str) -> anyhow::Result<u8> {
    App::runtime()?.block_on(async {
        let socket = socket_path(app);
        let stream = UnixStream::connect(&socket).await.map_err(|_| {
            anyhow::anyhow!(
                "no fleet is running here (nothing answers at {}): start one with `fleet start`",
                socket.display()
            )
        })?;
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(&Request {
            agent: agent.to_owned(),
            task: task.to_owned(),
        })?;
        line.push(b'\n');
        write.write_all(&line).await?;
        let mut answer = String::new();
        BufReader::new(read).read_line(&mut answer).await?;
        let reply: Reply = serde_json::from_str(&answer)
            .with_context(|| format!("the fleet answered something else: {answer:?}"))?;
        if reply.ok {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", reply.text.unwrap_or_default())?;
            Ok(exit::OK)
        } else {
            eprintln!("fleet: {}", reply.error.unwrap_or_default());
            Ok(exit::FAILED)
        }
    })
}

/// The screen.
mod tui {
    use super::*;
    use crossterm::event::{Event, EventStream, KeyCode, KeyEventKind, KeyModifiers};
    use futures_util::StreamExt;
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Color, Modifier, Style as TStyle};
    use ratatui::text::{Line, Span};
    use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Row, Table, TableState};

    pub(super) async fn run(
        supervisor: Supervisor,
        state: Shared,
        root: PathBuf,
    ) -> anyhow::Result<()> {
        let mut terminal =
            ratatui::try_init().context("cannot draw on this terminal (use --headless)")?;
        let outcome = event_loop(&mut terminal, &supervisor, &state, &root).await;
        ratatui::restore();
        outcome
    }

    async fn event_loop(
        terminal: &mut ratatui::DefaultTerminal,
        supervisor: &Supervisor,
        state: &Shared,
        root: &Path,
    ) -> anyhow::Result<()> {
        let mut keys = EventStream::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut selected = TableState::default().with_selected(Some(0));
        let mut show_cost = true;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let changed = lock(state).changed.clone();
        loop {
            terminal.draw(|f| draw(f, supervisor, state, root, &mut selected, show_cost))?;
            tokio::select! {
                _ = tick.tick() => {}
                () = changed.notified() => {}
                _ = term.recv() => return Ok(()),
                key = keys.next() => {
                    let Some(Ok(Event::Key(key))) = key else { continue };
                    if key.kind != KeyEventKind::Press {
                        continue;
                    }
                    let count = lock(state).agents.len();
                    match key.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                        KeyCode::Char('c') => show_cost = !show_cost,
                        KeyCode::Down | KeyCode::Char('j') => {
                            selected.select(Some((selected.selected().unwrap_or(0) + 1).min(count.saturating_sub(1))));
                        }
                        KeyCode::Up | KeyCode::Char('k') => {
                            selected.select(Some(selected.selected().unwrap_or(0).saturating_sub(1)));
                        }
                        KeyCode::Char('r') => {
                            let mut s = lock(state);
                            let name = s.agents.keys().nth(selected.selected().unwrap_or(0)).cloned();
                            if let Some(name) = name {
                                // Resuming gives the agent as much again as its budget.
                                let budget = s.agents.get(&name).map(|v| v.budget).unwrap_or_default();
                                let spent = supervisor.spent(&name).map(|b| b.spent.usd).unwrap_or_default();
                                supervisor.resume(&name, Some(spent + budget));
                                if let Some(view) = s.agents.get_mut(&name) {
                                    view.paused = None;
                                    view.budget = spent + budget;
                                }
                                s.note(format!("{name}: resumed with a budget of {}", spent + budget));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn draw(
        f: &mut ratatui::Frame<'_>,
        supervisor: &Supervisor,
        state: &Shared,
        root: &Path,
        selected: &mut TableState,
        show_cost: bool,
    ) {
        let s = lock(state);
        let agents = s.agents.len();
        let cost_height = if show_cost {
            u16::try_from(agents).unwrap_or(20) + 3
        } else {
            0
        };
        let [top, workers, cost, log, help] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(u16::try_from(agents).unwrap_or(20) + 3),
            Constraint::Length(cost_height),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(f.area());
        let total: Usd = s
            .agents
            .keys()
            .filter_map(|a| supervisor.spent(a).map(|b| b.spent.usd))
            .fold(Usd::ZERO, |a, b| a + b);
        let in_flight: usize = s.agents.values().map(|v| v.running).sum();
        f.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(
                    " fleet ",
                    TStyle::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
                ),
                Span::raw(format!(
                    " {} · {agents} agents · {in_flight} tasks in flight · spent {total}",
                    root.display()
                )),
            ])),
            top,
        );
        let rows = s.agents.iter().map(|(name, v)| {
            let workers = supervisor.workers(name);
            let (state_text, color) = if v.paused.is_some() {
                ("paused", Color::Red)
            } else if v.running > 0 {
                ("working", Color::Cyan)
            } else if workers > 0 {
                ("idle", Color::Green)
            } else {
                ("ready", Color::Gray)
            };
            Row::new(vec![
                name.clone(),
                v.model.clone(),
                state_text.to_owned(),
                workers.to_string(),
                v.running.to_string(),
                v.done.to_string(),
                v.failed.to_string(),
                v.last.clone(),
            ])
            .style(TStyle::new().fg(color))
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(18),
                Constraint::Length(18),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(5),
                Constraint::Length(7),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new([
                "agent",
                "model",
                "state",
                "workers",
                "in flight",
                "done",
                "failed",
                "last",
            ])
            .style(TStyle::new().add_modifier(Modifier::BOLD)),
        )
        .row_highlight_style(TStyle::new().add_modifier(Modifier::REVERSED))
        .block(Block::default().borders(Borders::ALL).title(" workers "));
        f.render_stateful_widget(table, workers, selected);

        if show_cost {
            let block = Block::default()
                .borders(Borders::ALL)
                .title(format!(" cost · total {total} "));
            let inner = block.inner(cost);
            f.render_widget(block, cost);
            let rows = Layout::vertical(vec![Constraint::Length(1); agents + 1]).split(inner);
            for (i, (name, v)) in s.agents.iter().enumerate() {
                let Some(area) = rows.get(i) else { break };
                let spent = supervisor
                    .spent(name)
                    .map(|b| b.spent.usd)
                    .unwrap_or_default();
                f.render_widget(Paragraph::new(cost_line(name, spent, v)), *area);
            }
            let budgets = s.agents.values().fold(Usd::ZERO, |a, v| a + v.budget);
            let paused: Vec<&str> = s
                .agents
                .iter()
                .filter(|(_, v)| v.paused.is_some())
                .map(|(n, _)| n.as_str())
                .collect();
            if let Some(area) = rows.get(agents) {
                let mut line = format!("{:<18}{total} of {budgets} budgeted", "total");
                if !paused.is_empty() {
                    line.push_str(&format!(" · paused: {}", paused.join(", ")));
                }
                f.render_widget(
                    Paragraph::new(line).style(TStyle::new().add_modifier(Modifier::BOLD)),
                    *area,
                );
            }
        }

        let height = usize::from(log.height.saturating_sub(2));
        let items: Vec<ListItem<'_>> = s
            .log
            .iter()
            .rev()
            .take(height)
            .rev()
            .map(|l| ListItem::new(l.as_str()))
            .collect();
        f.render_widget(
            List::new(items).block(Block::default().borders(Borders::ALL).title(" events ")),
            log,
        );
        f.render_widget(
            Paragraph::new(" q quit · ↑↓ select · r resume a paused agent · c cost overlay · fleet send AGENT \"task\" from another terminal")
                .style(TStyle::new().add_modifier(Modifier::DIM)),
            help,
        );
    }

    /// `doc-bot  ██████░░░░░░░░░░░░░░  $0.25 / $0.50  50%`, red with the reason when paused.
    fn cost_line(name: &str, spent: Usd, v: &AgentView) -> Line<'static> {
        let ratio = if v.budget.nanos() > 0 {
            #[allow(clippy::cast_precision_loss)]
            let r = spent.nanos() as f64 / v.budget.nanos() as f64;
            r.clamp(0.0, 1.0)
        } else {
            1.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let filled = (ratio * 20.0).round() as usize;
        let color = if v.paused.is_some() {
            Color::Red
        } else if ratio > 0.8 {
            Color::Yellow
        } else {
            Color::Green
        };
        let mut spans = vec![
            Span::raw(format!("{name:<18}")),
            Span::styled("█".repeat(filled), TStyle::new().fg(color)),
            Span::styled("░".repeat(20 - filled), TStyle::new().fg(Color::DarkGray)),
            Span::raw(format!("  {spent} / {}  {:>3.0}%", v.budget, ratio * 100.0)),
        ];
        if let Some(reason) = &v.paused {
            spans.push(Span::styled(
                format!("  PAUSED: {reason}"),
                TStyle::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
        }
        Line::from(spans)
    }
}
