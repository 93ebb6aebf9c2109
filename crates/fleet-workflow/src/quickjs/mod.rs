//! The QuickJS engine (`rquickjs`): each run gets a fresh runtime and context on its own
//! thread, with a capped heap and an interrupt handler that enforces the CPU limit and stops.
//!
//! The thread runs an event loop, as Deno polls its ops on the isolate's thread: it executes
//! the script's pending jobs, polls the host futures (agent calls, nested workflows being
//! opened) that were woken, resolves the promises of those that finished, and parks when
//! there is nothing to do until a waker calls. A host future is polled first inside the
//! primitive that made it, so work that needs no waiting (a journaled answer, an instant
//! runner) settles without a thread hop, and an agent call costs no task spawn and no
//! cross-thread wake-up unless it waits on something another thread does (the disk, the
//! network). The primitive then also polls what that first poll woke on this thread (a call
//! that ended admits the next), so a script starting many calls in one loop keeps the first
//! ones moving while it starts the rest. `parallel()` and `pipeline()` run on a native
//! loop ([`gather`]): an `agent()` promise they are handed passes its result on (into the
//! results, or to a pipeline's next stage) when it settles, with no promise reaction in
//! between. The futures still use the caller's tokio runtime for timers and I/O; a busy
//! script never holds up the runtime, though it delays the progress of calls woken from other
//! threads until its next await.
//!
//! Why this file (about 800 lines) reads best whole: the run's state, its event loop and the
//! natives that feed it share one invariant (everything happens on the run's thread, in the
//! order the loop decides), and each native's borrow of that state is only safe read beside the
//! loop that holds it. The parts that stand alone live beside it: `gather`, `heap`, `queue` (the
//! wake-ups) and `errors`.

mod errors;
mod gather;
mod heap;
mod queue;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use fleet_core::activity::LogLevel;
use fleet_core::sync::BoxFuture;
use rquickjs::context::EvalOptions;
use rquickjs::function::Opt;
use rquickjs::{CatchResultExt, Context, Ctx, Exception, Function, Object, Persistent, Runtime};
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub(crate) use self::errors::clean_stack;
use self::errors::{caught, compile_error};
use self::gather::{Gather, Slot, identity};
use self::heap::{CappedAllocator, HeapGauge};
use self::queue::{DRIVING, NOT_POLLING, RunQueue, TaskWaker, Woken};
use crate::engine::{
    ChildWorkflow, EngineRun, FrameId, HostResult, Rejection, ScriptEngine, ScriptFailure,
    ScriptLimits,
};
use crate::script::Script;

const PRELUDE: &str = include_str!("prelude.js");
/// Wraps the body so that top-level `await` and `return` work. It sits on line 1, so only
/// line-1 columns move, and [`fix_columns`] moves them back.
const PREFIX: &str = "(async function(){";
const SUFFIX: &str = "\n})()";

/// The QuickJS [`ScriptEngine`].
#[derive(Debug, Clone, Copy, Default)]
pub struct QuickJs;

impl ScriptEngine for QuickJs {
    fn name(&self) -> &'static str {
        "quickjs"
    }

    fn run(&self, run: EngineRun) -> BoxFuture<'static, Result<Option<Value>, ScriptFailure>> {
        let handle = Handle::try_current();
        Box::pin(async move {
            let handle = handle.map_err(|_| {
                ScriptFailure::Engine("QuickJs::run must be called within a tokio runtime".into())
            })?;
            let (done, result) = oneshot::channel();
            std::thread::Builder::new()
                .name("fleet-js".into())
                .stack_size(run.limits.stack_bytes.saturating_add(8 << 20))
                .spawn(move || {
                    let _ = done.send(execute(run, &handle));
                })
                .map_err(|e| ScriptFailure::Engine(format!("cannot start a script thread: {e}")))?;
            result.await.unwrap_or_else(|_| {
                Err(ScriptFailure::Engine(
                    "the script thread ended without a result".into(),
                ))
            })
        })
    }
}

/// What wakes the loop.
enum Wake {
    /// A host future for promise `id` finished.
    Settled { id: u64, result: HostResult },
    /// A nested workflow for promise `id` is ready to start (or could not be opened).
    Child {
        id: u64,
        child: Result<ChildWorkflow, Rejection>,
    },
}

struct Pending {
    ctx: usize,
    resolve: Persistent<Function<'static>>,
    reject: Persistent<Function<'static>>,
    /// The promise object's [`identity`].
    object: u64,
    /// Where the call's result goes, when a `gather()` took the promise.
    slot: Option<Slot>,
}

type Settlement = Result<Option<String>, (String, String)>;

/// A host future in flight, and its waker.
struct Task {
    future: BoxFuture<'static, Wake>,
    waker: Waker,
}

/// State shared by the natives of every context of one run (all on the run's thread).
struct State {
    run_host: Arc<dyn crate::engine::Host>,
    queue: Arc<RunQueue>,
    limits: ScriptLimits,
    next_id: Cell<u64>,
    in_flight: Cell<usize>,
    pending: RefCell<FxHashMap<u64, Pending>>,
    /// The host promises not yet settled, by the promise object's [`identity`].
    by_object: RefCell<FxHashMap<u64, u64>>,
    gathers: RefCell<FxHashMap<u32, Gather>>,
    next_gather: Cell<u32>,
    /// Why the run must end, for a native that catches exceptions: those are not its to
    /// catch.
    guards: Guards,
    settled: RefCell<Vec<(usize, Settlement)>>,
    /// Host futures that finished, to settle.
    ready: RefCell<Vec<Wake>>,
    /// Host futures that wait, by task number (a slab: finished ones leave `None`).
    tasks: RefCell<Vec<Option<Task>>>,
    /// Free task numbers.
    free: RefCell<Vec<usize>>,
    /// Scratch for [`State::poll_local`] (kept for its allocation).
    next: Cell<Vec<usize>>,
    /// Scratch for [`State::spawn`] (kept for its allocation).
    yielded: Cell<Vec<usize>>,
}

impl State {
    /// A promise in context `ctx_index`, settled when `work` (given the promise's id) reports.
    fn promise<'js, F>(
        &self,
        ctx: &Ctx<'js>,
        ctx_index: usize,
        work: impl FnOnce(u64) -> F,
    ) -> rquickjs::Result<rquickjs::Value<'js>>
    where
        F: Future<Output = Wake> + Send + 'static,
    {
        let (promise, resolve, reject) = ctx.promise()?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let promise = promise.into_value();
        let object = identity(&promise);
        self.by_object.borrow_mut().insert(object, id);
        self.pending.borrow_mut().insert(
            id,
            Pending {
                ctx: ctx_index,
                resolve: Persistent::save(ctx, resolve),
                reject: Persistent::save(ctx, reject),
                object,
                slot: None,
            },
        );
        self.spawn(work(id));
        Ok(promise)
    }

    /// Starts host work: polls it once here, and keeps it to poll again when it is woken.
    fn spawn(&self, work: impl Future<Output = Wake> + Send + 'static) {
        // Those that yielded before this call have had their turn of the script.
        let mut yielded = self.yielded.take();
        self.queue.take_list(&mut yielded, |w| &mut w.yielded);
        self.in_flight.set(self.in_flight.get() + 1);
        let task = self.free.borrow_mut().pop().unwrap_or_else(|| {
            let mut tasks = self.tasks.borrow_mut();
            tasks.push(None);
            tasks.len() - 1
        });
        let waker = Waker::from(Arc::new(TaskWaker {
            task,
            queue: self.queue.clone(),
        }));
        self.poll(
            task,
            Task {
                future: Box::pin(work),
                waker,
            },
        );
        // What that poll woke on this thread, and what yielded before it, goes on now, not
        // after the script's current job: a script that starts a thousand calls in one loop
        // has the first ones answered, recorded and replaced by the next while it starts the
        // rest, so the store's writer has their events all along instead of in one burst at
        // the end.
        let budget = self.poll_local(LIFO_POLLS);
        self.poll_each(&yielded, budget);
        yielded.clear();
        self.yielded.set(yielded);
    }

    /// Polls `task` (number `id`): keeps it when it waits, else queues its outcome.
    fn poll(&self, id: usize, mut task: Task) {
        let mut cx = std::task::Context::from_waker(&task.waker);
        self.queue.polling.store(id, Ordering::Relaxed);
        let poll = task.future.as_mut().poll(&mut cx);
        self.queue.polling.store(NOT_POLLING, Ordering::Relaxed);
        match poll {
            Poll::Ready(wake) => {
                self.ready.borrow_mut().push(wake);
                self.free.borrow_mut().push(id);
            }
            Poll::Pending => {
                if let Some(slot) = self.tasks.borrow_mut().get_mut(id) {
                    *slot = Some(task);
                }
            }
        }
    }

    /// Polls every woken task; a task woken by another's poll on this thread is polled
    /// right after it, up to [`LIFO_POLLS`] times a round (a task that keeps waking itself,
    /// or two that wake each other, then wait for the next round like the rest, and the
    /// script's promises are settled in between).
    fn poll_woken(&self, woken: &mut Vec<usize>) {
        self.queue.take(woken);
        self.poll_each(woken, LIFO_POLLS);
        woken.clear();
    }

    /// Polls each of `tasks`, each followed by what it woke on this thread (at most `budget`
    /// of those in all).
    fn poll_each(&self, tasks: &[usize], mut budget: u32) {
        for &id in tasks {
            self.poll_id(id);
            budget = self.poll_local(budget);
        }
    }

    /// Polls the tasks woken on this thread, the latest first, at most `budget` of them;
    /// returns what is left of the budget. Those it leaves are polled in the next round.
    fn poll_local(&self, mut budget: u32) -> u32 {
        let mut next = self.next.take();
        while budget > 0 {
            self.queue.take_list(&mut next, |w| &mut w.local);
            let Some(id) = next.pop() else { break };
            budget -= 1;
            self.poll_id(id);
        }
        self.queue.requeue(&mut next);
        self.next.set(next);
        budget
    }

    fn poll_id(&self, id: usize) {
        // A task woken twice, or after it finished, is not there (or is another task, which
        // a spurious poll does not harm).
        let task = self.tasks.borrow_mut().get_mut(id).and_then(Option::take);
        if let Some(task) = task {
            self.poll(id, task);
        }
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[derive(Clone)]
struct Guards {
    gauge: Arc<HeapGauge>,
    stop: Arc<AtomicBool>,
    cpu_out: Arc<AtomicBool>,
    cpu_start: Duration,
    limits: ScriptLimits,
}

impl Guards {
    /// Why the run must end now, if it must.
    fn fatal(&self) -> Option<ScriptFailure> {
        if self.gauge.tripped.load(Ordering::Relaxed) {
            return Some(ScriptFailure::HeapLimit(self.limits.heap_bytes));
        }
        // The interrupt handler measures the thread's CPU time while the script runs.
        if self.cpu_out.load(Ordering::Relaxed) {
            return Some(ScriptFailure::CpuLimit(self.limits.cpu));
        }
        if self.stop.load(Ordering::Relaxed) {
            return Some(ScriptFailure::Stopped);
        }
        None
    }
}

fn engine_error(e: impl std::fmt::Display) -> ScriptFailure {
    ScriptFailure::Engine(e.to_string())
}

fn execute(run: EngineRun, handle: &Handle) -> Result<Option<Value>, ScriptFailure> {
    // Host work polled on this thread may use the runtime (timers, spawns).
    let _runtime = handle.enter();
    let limits = run.limits;
    let gauge = Arc::new(HeapGauge::default());
    let rt = Runtime::new_with_alloc(CappedAllocator::new(limits.heap_bytes, gauge.clone()))
        .map_err(engine_error)?;
    rt.set_max_stack_size(limits.stack_bytes);
    // QuickJS collects cycles every 256 KiB of allocation by default, which a fan-out of
    // promises crosses many times; reference counting frees the rest as it goes.
    rt.set_gc_threshold((limits.heap_bytes / 8).clamp(256 << 10, 8 << 20));
    let guards = Guards {
        gauge,
        stop: Arc::new(AtomicBool::new(false)),
        cpu_out: Arc::new(AtomicBool::new(false)),
        cpu_start: thread_cpu(),
        limits,
    };
    {
        let (gauge, stop, cpu_out, start) = (
            guards.gauge.clone(),
            guards.stop.clone(),
            guards.cpu_out.clone(),
            guards.cpu_start,
        );
        rt.set_interrupt_handler(Some(Box::new(move || {
            if stop.load(Ordering::Relaxed) || gauge.tripped.load(Ordering::Relaxed) {
                return true;
            }
            if thread_cpu().saturating_sub(start) > limits.cpu {
                cpu_out.store(true, Ordering::Relaxed);
                return true;
            }
            false
        })));
    }
    let queue = Arc::new(RunQueue {
        woken: Mutex::new(Woken::default()),
        thread: std::thread::current(),
        stop: AtomicBool::new(false),
        polling: AtomicUsize::new(NOT_POLLING),
    });
    let watcher = {
        let (stop, flag, queue) = (run.stop.clone(), guards.stop.clone(), queue.clone());
        handle.spawn(async move {
            stop.cancelled().await;
            flag.store(true, Ordering::Relaxed);
            queue.stop.store(true, Ordering::Relaxed);
            queue.thread.unpark();
        })
    };
    let state = Rc::new(State {
        run_host: run.host.clone(),
        queue,
        limits,
        next_id: Cell::new(0),
        in_flight: Cell::new(0),
        pending: RefCell::new(FxHashMap::default()),
        by_object: RefCell::new(FxHashMap::default()),
        gathers: RefCell::new(FxHashMap::default()),
        next_gather: Cell::new(0),
        guards: guards.clone(),
        settled: RefCell::new(Vec::new()),
        ready: RefCell::new(Vec::new()),
        tasks: RefCell::new(Vec::new()),
        free: RefCell::new(Vec::new()),
        next: Cell::new(Vec::new()),
        yielded: Cell::new(Vec::new()),
    });
    let mut contexts: Vec<(Context, FrameId, Option<u64>)> = Vec::new();
    DRIVING.with(|driving| driving.set(Arc::as_ptr(&state.queue) as usize));
    let outcome = event_loop(&rt, &state, &guards, &mut contexts, &run);
    watcher.abort();
    // Host work still in flight is dropped here, on the thread that polled it.
    state.tasks.borrow_mut().clear();
    DRIVING.with(|driving| driving.set(0));
    // Drop the saved resolvers while their runtime is locked.
    if let Some((context, ..)) = contexts.first() {
        context.with(|ctx| {
            for (_, p) in state.pending.borrow_mut().drain() {
                let _ = p.resolve.restore(&ctx);
                let _ = p.reject.restore(&ctx);
            }
            state.gathers.borrow_mut().clear();
        });
    }
    outcome
}

fn event_loop(
    rt: &Runtime,
    state: &Rc<State>,
    guards: &Guards,
    contexts: &mut Vec<(Context, FrameId, Option<u64>)>,
    run: &EngineRun,
) -> Result<Option<Value>, ScriptFailure> {
    let mut woken = Vec::new();
    start_frame(rt, state, contexts, &run.script, run.args.as_ref(), 0, None)
        .map_err(|failure| guards.fatal().unwrap_or(failure))?;
    loop {
        loop {
            match rt.execute_pending_job() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    return Err(guards
                        .fatal()
                        .unwrap_or_else(|| engine_error(format!("a promise job failed: {e}"))));
                }
            }
        }
        if let Some(fatal) = guards.fatal() {
            return Err(fatal);
        }
        let settled: Vec<_> = state.settled.borrow_mut().drain(..).collect();
        for (ctx_index, settlement) in settled {
            let Some((_, frame, parent)) = contexts.get(ctx_index).cloned() else {
                continue;
            };
            match parent {
                None => return top_level_result(settlement),
                Some(parent_id) => finish_child(state, frame, parent_id, settlement),
            }
        }
        if rt.is_job_pending() {
            continue;
        }
        state.poll_woken(&mut woken);
        let mut wakes = std::mem::take(&mut *state.ready.borrow_mut());
        while wakes.is_empty() {
            if state.queue.stop.load(Ordering::Relaxed) {
                return Err(ScriptFailure::Stopped);
            }
            if state.in_flight.get() == 0 {
                return Err(ScriptFailure::NeverSettles);
            }
            wait_for_wake(&state.queue);
            state.poll_woken(&mut woken);
            wakes = std::mem::take(&mut *state.ready.borrow_mut());
        }
        for wake in wakes {
            match wake {
                Wake::Settled { id, result } => {
                    state.in_flight.set(state.in_flight.get().saturating_sub(1));
                    settle(state, contexts, id, result)?;
                }
                Wake::Child { id, child } => {
                    state.in_flight.set(state.in_flight.get().saturating_sub(1));
                    match child {
                        Ok(child) => {
                            let started = start_frame(
                                rt,
                                state,
                                contexts,
                                &child.script,
                                child.args.as_ref(),
                                child.frame,
                                Some(id),
                            );
                            if let Err(failure) = started {
                                if let Some(fatal) = guards.fatal() {
                                    return Err(fatal);
                                }
                                let message = failure.to_string();
                                finish_child(state, child.frame, id, Err((message, String::new())));
                            }
                        }
                        Err(message) => settle(state, contexts, id, Err(message))?,
                    }
                }
            }
        }
    }
}

/// Parks the run's thread until a host future is woken or the run is stopped. Agent calls
/// often finish within microseconds of each other, so it first yields its core a few times
/// (letting the runtime's workers and the store's writer finish what the calls wait on)
/// before parking, which costs a futex round trip on each side.
fn wait_for_wake(queue: &RunQueue) {
    let ready = || queue.stop.load(Ordering::Relaxed) || !queue.is_empty();
    for _ in 0..SPIN_YIELDS {
        if ready() {
            return;
        }
        std::thread::yield_now();
    }
    // A wake-up between the check and the park leaves the park's token set: park returns.
    if !ready() {
        std::thread::park();
    }
}

const SPIN_YIELDS: u32 = 16;

/// How many tasks woken on the run's thread are polled out of turn in one round.
const LIFO_POLLS: u32 = 64;

fn top_level_result(settlement: Settlement) -> Result<Option<Value>, ScriptFailure> {
    match settlement {
        Ok(None) => Ok(None),
        Ok(Some(json)) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| engine_error(format!("the result is not valid JSON: {e}"))),
        Err((message, stack)) => Err(ScriptFailure::Threw { message, stack }),
    }
}

/// A nested workflow settled: record it, then settle the parent's `workflow()` promise.
fn finish_child(state: &State, frame: FrameId, parent_id: u64, settlement: Settlement) {
    let result: HostResult = match settlement {
        Ok(None) => Ok(Value::Null),
        Ok(Some(json)) => serde_json::from_str(&json).map_err(|e| Rejection::new(e.to_string())),
        Err((message, stack)) => Err(Rejection::new(if stack.is_empty() {
            message
        } else {
            format!("{message}\n{stack}")
        })),
    };
    let close = state
        .run_host
        .close_workflow(frame, result.as_ref().map_err(Rejection::message));
    state.spawn(async move {
        close.await;
        Wake::Settled {
            id: parent_id,
            result,
        }
    });
}

fn settle(
    state: &State,
    contexts: &[(Context, FrameId, Option<u64>)],
    id: u64,
    result: HostResult,
) -> Result<(), ScriptFailure> {
    let Some(pending) = state.pending.borrow_mut().remove(&id) else {
        return Ok(());
    };
    state.by_object.borrow_mut().remove(&pending.object);
    let Some((context, ..)) = contexts.get(pending.ctx) else {
        return Ok(());
    };
    context.with(|ctx| -> Result<(), ScriptFailure> {
        let resolve = pending.resolve.restore(&ctx).map_err(engine_error)?;
        let reject = pending.reject.restore(&ctx).map_err(engine_error)?;
        let settled = match result {
            Ok(value) => {
                let value = to_js(&ctx, &value).map_err(engine_error)?;
                resolve
                    .call::<_, ()>((value.clone(),))
                    .map_err(engine_error)?;
                Ok(value)
            }
            Err(rejection) => {
                let error = Exception::from_message(ctx.clone(), rejection.message())
                    .map_err(engine_error)?
                    .into_value();
                reject
                    .call::<_, ()>((error.clone(),))
                    .map_err(engine_error)?;
                Err(error)
            }
        };
        let Some(slot) = pending.slot else {
            return Ok(());
        };
        // The gather takes the result itself, without a promise reaction per call.
        state.deliver(&ctx, slot, settled).map_err(|e| {
            state
                .guards
                .fatal()
                .unwrap_or_else(|| engine_error(caught(&ctx, e)))
        })
    })
}

fn to_js<'js>(ctx: &Ctx<'js>, value: &Value) -> rquickjs::Result<rquickjs::Value<'js>> {
    match value {
        Value::Null => Ok(rquickjs::Value::new_null(ctx.clone())),
        Value::Bool(b) => Ok(rquickjs::Value::new_bool(ctx.clone(), *b)),
        Value::String(s) => Ok(rquickjs::String::from_str(ctx.clone(), s)?.into_value()),
        other => ctx.json_parse(other.to_string()),
    }
}

/// Creates a context for `script`, installs the realm and runs the body up to its first
/// `await`.
fn start_frame(
    rt: &Runtime,
    state: &Rc<State>,
    contexts: &mut Vec<(Context, FrameId, Option<u64>)>,
    script: &Script,
    args: Option<&Value>,
    frame: FrameId,
    parent: Option<u64>,
) -> Result<(), ScriptFailure> {
    let context = Context::full(rt).map_err(engine_error)?;
    let ctx_index = contexts.len();
    contexts.push((context.clone(), frame, parent));
    context.with(|ctx| -> Result<(), ScriptFailure> {
        let settle = install(&ctx, state, ctx_index, frame, script, args).map_err(|e| {
            engine_error(format!(
                "cannot set up the script realm: {}",
                caught(&ctx, e)
            ))
        })?;
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(script.origin.clone());
        let source = format!("{PREFIX}{}{SUFFIX}", script.body());
        let promise: rquickjs::Value = ctx
            .eval_with_options(source, options)
            .catch(&ctx)
            .map_err(|e| compile_error(script, e))?;
        settle
            .call::<_, ()>((promise,))
            .map_err(|e| engine_error(caught(&ctx, e)))
    })
}

fn level(name: &str) -> LogLevel {
    match name {
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        "debug" => LogLevel::Debug,
        _ => LogLevel::Info,
    }
}

/// Parses JSON handed over by the prelude; an empty string is "none given".
fn parse_json(ctx: &Ctx<'_>, what: &str, json: &str) -> rquickjs::Result<Option<Value>> {
    if json.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(json)
        .map(Some)
        .map_err(|e| Exception::throw_type(ctx, &format!("{what} is not JSON: {e}")))
}

/// Installs the realm and primitives in `ctx`; returns the prelude's `settle(promise)`.
fn install<'js>(
    ctx: &Ctx<'js>,
    state: &Rc<State>,
    ctx_index: usize,
    frame: FrameId,
    script: &Script,
    args: Option<&Value>,
) -> rquickjs::Result<Function<'js>> {
    let h = Object::new(ctx.clone())?;
    h.set("maxItems", state.limits.max_items as f64)?;
    let st = state.clone();
    h.set(
        "agent",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, prompt: String, opts: String| {
                let opts = parse_json(&ctx, "agent() options", &opts)?;
                match st.run_host.agent(frame, prompt, opts) {
                    Err(rejection) => Err(Exception::throw_message(&ctx, rejection.message())),
                    Ok(call) => st.promise(&ctx, ctx_index, move |id| async move {
                        Wake::Settled {
                            id,
                            result: call.await,
                        }
                    }),
                }
            },
        )?,
    )?;
    let st = state.clone();
    h.set(
        "workflow",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, reference: String, args: String| {
                let reference =
                    parse_json(&ctx, "workflow() reference", &reference)?.unwrap_or(Value::Null);
                let args = parse_json(&ctx, "workflow() args", &args)?;
                match st.run_host.open_workflow(frame, reference, args) {
                    Err(rejection) => Err(Exception::throw_message(&ctx, rejection.message())),
                    Ok(open) => st.promise(&ctx, ctx_index, move |id| async move {
                        Wake::Child {
                            id,
                            child: open.await,
                        }
                    }),
                }
            },
        )?,
    )?;
    let st = state.clone();
    h.set(
        "gather",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  n: u32,
                  start: Function<'js>,
                  failed: Function<'js>,
                  attach: Function<'js>,
                  items: Opt<rquickjs::Array<'js>>,
                  stages: Opt<rquickjs::Array<'js>>| {
                let pipeline = items.0.zip(stages.0);
                gather::gather(&st, &ctx, n, &start, (failed, attach), pipeline)
            },
        )?,
    )?;
    let st = state.clone();
    h.set(
        "slot",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  gather: u32,
                  index: u32,
                  stage: u32,
                  fulfilled: bool,
                  value: rquickjs::Value<'js>| {
                let slot = Slot {
                    gather,
                    index,
                    stage,
                };
                st.deliver(&ctx, slot, if fulfilled { Ok(value) } else { Err(value) })
            },
        )?,
    )?;
    let st = state.clone();
    h.set(
        "phase",
        Function::new(ctx.clone(), move |title: String| {
            st.run_host.phase(frame, title);
        })?,
    )?;
    let st = state.clone();
    h.set(
        "log",
        Function::new(ctx.clone(), move |message: String, lvl: Opt<String>| {
            let lvl = lvl.0.as_deref().map_or(LogLevel::Info, level);
            st.run_host.log(frame, lvl, message);
        })?,
    )?;
    let st = state.clone();
    h.set(
        "budget",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let view = st.run_host.budget();
            let array = rquickjs::Array::new(ctx.clone())?;
            let null = || rquickjs::Value::new_null(ctx.clone());
            let number = |n: f64| rquickjs::Value::new_float(ctx.clone(), n);
            array.set(0, view.tokens_total.map_or_else(null, |t| number(t as f64)))?;
            array.set(1, number(view.tokens_spent as f64))?;
            array.set(2, view.usd_total.map_or_else(null, |u| number(u.dollars())))?;
            array.set(3, number(view.usd_spent.dollars()))?;
            rquickjs::Result::Ok(array)
        })?,
    )?;
    let st = state.clone();
    h.set(
        "done",
        Function::new(ctx.clone(), move |json: String| {
            let json = (!json.is_empty()).then_some(json);
            st.settled.borrow_mut().push((ctx_index, Ok(json)));
        })?,
    )?;
    let st = state.clone();
    let origin = script.origin.clone();
    h.set(
        "fail",
        Function::new(ctx.clone(), move |message: String, stack: String| {
            let stack = clean_stack(&stack, &origin);
            st.settled
                .borrow_mut()
                .push((ctx_index, Err((message, stack))));
        })?,
    )?;
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = true;
    options.filename = Some("<fleet prelude>".into());
    let prelude: Function = ctx.eval_with_options(PRELUDE, options)?;
    let meta = script.meta_json.to_string();
    let args = args.map(Value::to_string).unwrap_or_default();
    prelude.call((h, meta, args))
}
