//! `fleet start`: the project's specialists under the supervisor, watched in a TUI (or logged
//! as lines with `--headless`); `fleet send`: a task for one of them, through the running
//! fleet's control socket.
//!
//! The control socket (`.fleet/fleet.sock` beside the store) takes one JSON line per
//! connection, `{"agent": "...", "task": "...", "input": {...}}`, and answers with one line:
//! `{"ok": true, "text": "..."}` or `{"ok": false, "error": "...", "paused": true|false}`.
//!
//! A session of `fleet start` is a thread in the store: its root unit is the fleet, every task
//! a `delegated_agent` unit under it with the model turns the gateway metered, so `fleet runs`,
//! `fleet trace` and `fleet cost` show the fleet's work beside the workflows'.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use fleet_core::activity::{ActivityKind, LogLevel};
use fleet_core::agent::{AgentCall, AgentError, CallContext};
use fleet_core::command::{Command, WorkUnitDraft};
use fleet_core::event::TurnState;
use fleet_core::id::{TurnId, WorkUnitId};
use fleet_core::journal::{Journal, SharedStore};
use fleet_core::money::Usd;
use fleet_core::spec::AgentSpec;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};
use fleet_sandbox::{SpecialistRunner, Supervisor, SupervisorEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::app::{App, RemoveOnDrop, UsageError};
use crate::render;
use crate::{exit, specialists};

/// What `fleet send` asks.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    agent: String,
    task: String,
    /// The task's structured input (e.g. `{"test_command": ["make", "test"]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<Value>,
}

/// What the fleet answers.
#[derive(Debug, Serialize, Deserialize)]
struct Reply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The agent is paused (over budget): it takes no task until resumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
}

impl Reply {
    fn refused(error: String) -> Self {
        Self {
            ok: false,
            text: None,
            error: Some(error),
            paused: false,
        }
    }
}

/// One session of `fleet start`, as the store records it.
struct Session {
    supervisor: Supervisor,
    runner: SpecialistRunner,
    specs: BTreeMap<String, Arc<AgentSpec>>,
    journal: Journal,
    turn: TurnId,
    root: WorkUnitId,
}

impl Session {
    /// A thread for the session: a turn whose root unit is the fleet.
    async fn open(app: &App, supervisor: &Supervisor, specs: &[AgentSpec]) -> anyhow::Result<Self> {
        let store = app.open_store()?;
        let title = format!("fleet start: {}", app.config.root().display());
        let journal = Journal::create(store as SharedStore, Some(title)).await?;
        let mut draft = WorkUnitDraft::new(WorkUnitKind::PrimaryAgent);
        draft.label = Some(FLEET_LABEL.into());
        draft.agent = Some(FLEET_LABEL.into());
        let (turn, root) = journal.start_turn(None, draft).await?;
        Ok(Self {
            supervisor: supervisor.clone(),
            runner: SpecialistRunner::new(supervisor.clone()),
            specs: specs
                .iter()
                .map(|s| (s.name.clone(), Arc::new(s.clone())))
                .collect(),
            journal,
            turn,
            root,
        })
    }

    /// Ends the session's turn: what it did stays in the store.
    async fn close(&self) -> anyhow::Result<()> {
        self.journal
            .set_state(self.root, WorkUnitState::Completed, None)
            .await?;
        self.journal
            .execute(Command::CompleteTurn {
                turn_id: self.turn,
                state: TurnState::Completed,
            })
            .await?;
        self.journal.flush().await?;
        Ok(())
    }
}

/// The label and agent of a `fleet start` session's root unit (`fleet runs` shows its kind).
pub(crate) const FLEET_LABEL: &str = "fleet";

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
    let supervisor = specialists::supervisor(app, provider)?;
    let root = app.config.root().to_owned();
    let state: Shared = Arc::default();
    for spec in &specs.specs {
        let plan = match specialists::plan(spec, &root)? {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("fleet: agent not started: {e}");
                continue;
            }
        };
        // As root, workers run as nobody: what they may write is handed to their group.
        for done in specialists::prepare(spec, &plan)? {
            lock(&state).note(format!("{}: {done}", spec.name));
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
    if lock(&state).agents.is_empty() {
        return Err(UsageError(format!(
            "no agent of {} could be started (see above)",
            dir.display()
        ))
        .into());
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
    let session = Arc::new(Session::open(app, &supervisor, &specs.specs).await?);
    let _pid = crate::run::pid_file(&app.runs_dir(), session.journal.thread_id());
    {
        let mut s = lock(&state);
        s.note(said.clone());
        let agents = s.agents.len();
        s.note(format!(
            "{agents} agents supervised; send work with: fleet send AGENT \"task\""
        ));
        s.note(format!(
            "this session is run {} in the store: fleet trace {0}",
            session.journal.thread_id().short()
        ));
    }

    let events = tokio::spawn(follow_events(session.clone(), state.clone(), headless));
    let serving = tokio::spawn(serve(listener, session.clone(), state.clone(), headless));
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
    session.close().await?;
    outcome?;
    Ok(exit::OK)
}

async fn follow_events(session: Arc<Session>, state: Shared, headless: bool) {
    let mut events = session.supervisor.subscribe();
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
                    let line = format!("{agent}: PAUSED: {reason}");
                    // In the store too, on the session's unit: `fleet trace` shows it.
                    // Recorded at once; durable with the next write (the future only waits).
                    drop(session.journal.activity(
                        session.root,
                        ActivityKind::Log {
                            level: LogLevel::Warn,
                            message: line.clone(),
                        },
                    ));
                    line
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

async fn serve(listener: UnixListener, session: Arc<Session>, state: Shared, headless: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let session = session.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _ = handle(stream, &session, state, headless).await;
        });
    }
}

async fn handle(
    stream: UnixStream,
    session: &Session,
    state: Shared,
    headless: bool,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    tokio::io::AsyncReadExt::take(BufReader::new(read), 1 << 20)
        .read_line(&mut line)
        .await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply::refused(format!(
            "not a request ({e}): send one line {{\"agent\": \"...\", \"task\": \"...\"}}"
        )),
        Ok(request) => run_task(session, &state, request, headless).await,
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await
}

async fn run_task(session: &Session, state: &Shared, request: Request, headless: bool) -> Reply {
    let say = |line: String| {
        let mut s = lock(state);
        s.note(line.clone());
        if headless {
            println!("{} {line}", render::clock());
        }
    };
    let Some(spec) = session.specs.get(&request.agent).cloned() else {
        let known: Vec<&str> = session.specs.keys().map(String::as_str).collect();
        return Reply::refused(format!(
            "no agent {:?} in this fleet; it has: {}",
            request.agent,
            known.join(", ")
        ));
    };
    let id = {
        let mut s = lock(state);
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
    let call = AgentCall {
        agent: Some(spec),
        label: Some(format!("task {id}: {}", render::fit(&request.task, 50))),
        ..AgentCall::new(request.task)
    };
    let ctx = CallContext::new(session.journal.clone(), session.root);
    let result = session
        .runner
        .run_with_input(call, request.input, ctx)
        .await;
    let supervisor = &session.supervisor;
    let spent = supervisor
        .spent(&agent)
        .map(|s| s.spent.usd)
        .unwrap_or_default();
    let paused = supervisor.paused(&agent);
    let (reply, line) = {
        let mut s = lock(state);
        let view = s.agents.entry(agent.clone()).or_default();
        view.running = view.running.saturating_sub(1);
        if paused.is_some() {
            view.paused.clone_from(&paused);
        }
        match result {
            Ok(done) => {
                view.done += 1;
                view.last = render::fit(done.text.lines().next().unwrap_or_default(), 60);
                let line = format!(
                    "{agent}: task {id} done: {} model turns, {}; {agent} has spent {spent} of {}",
                    done.model_requests, done.cost.usd, view.budget
                );
                (
                    Reply {
                        ok: true,
                        text: Some(done.text),
                        error: None,
                        paused: false,
                    },
                    line,
                )
            }
            Err(e) => {
                view.failed += 1;
                let error = match &paused {
                    None => e.to_string(),
                    Some(reason) => {
                        let advice = format!(
                            "agent {agent} is paused: {reason}. Resume it in `fleet start`'s \
                             screen (select it, press r), or raise its cost_budget in \
                             agents/{agent}.yaml and start the fleet again"
                        );
                        if matches!(e, AgentError::Budget(_)) {
                            advice
                        } else {
                            format!("{e}\n{advice}")
                        }
                    }
                };
                view.last = render::fit(&e.to_string(), 60);
                (
                    Reply {
                        ok: false,
                        text: None,
                        error: Some(error),
                        paused: paused.is_some(),
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

/// The input of `fleet send --input JSON|@FILE --test-command COMMAND`: an object, with the
/// test command (split as a shell would) as its `test_command`.
pub(crate) fn task_input(
    input: Option<&str>,
    test_command: Option<&str>,
) -> Result<Option<Value>, UsageError> {
    let mut value = match input {
        None => None,
        Some(text) => {
            let (text, place) = match text.strip_prefix('@') {
                Some(file) => (
                    std::fs::read_to_string(file)
                        .map_err(|e| UsageError(format!("--input @{file}: cannot read it: {e}")))?,
                    format!("--input @{file}"),
                ),
                None => (text.to_owned(), "--input".to_owned()),
            };
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                UsageError(format!(
                    "{place} is not JSON ({e}): give an object, e.g. --input '{{\"test_command\": [\"make\", \"test\"]}}'"
                ))
            })?;
            if !value.is_object() {
                return Err(UsageError(format!(
                    "{place} is not a JSON object: give one, e.g. --input '{{\"files\": [\"src/lib.rs\"]}}'"
                )));
            }
            Some(value)
        }
    };
    if let Some(command) = test_command {
        let words = shlex::split(command)
            .filter(|w| !w.is_empty())
            .ok_or_else(|| {
                UsageError(format!(
                    "--test-command {command:?}: not a command (empty, or a quote left open): \
                     give the program and its arguments, e.g. --test-command \"python3 -m unittest -q\""
                ))
            })?;
        let object = value.get_or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(map) = object.as_object_mut() {
            map.insert("test_command".into(), Value::from(words));
        }
    }
    Ok(value)
}

/// `fleet send`.
pub(crate) fn send(app: &App, agent: &str, task: &str, input: Option<Value>) -> anyhow::Result<u8> {
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
            input,
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
            Ok(if reply.paused {
                exit::BUDGET
            } else {
                exit::FAILED
            })
        }
    })
}

mod tui;
