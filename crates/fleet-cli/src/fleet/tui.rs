//! `fleet start`'s screen: the agents, their workers and tasks, the cost overlay and the log;
//! `c` toggles the overlay, `r` resumes the selected paused agent, `q` quits.

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
