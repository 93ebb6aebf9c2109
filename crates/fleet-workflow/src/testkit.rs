//! Agent runners for tests and benchmarks.
//!
//! [`FakeModel`] is the benchmarks' fake model: it answers `"ok:" + <last 8 chars of the
//! prompt>` with 20 input / 5 output tokens after one scheduler hop (or after a fixed latency),
//! records the call as a real runner does, and counts calls and the peak number in flight.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use fleet_core::agent::{AgentCall, AgentError, AgentOutcome, AgentRunner, CallContext};
use fleet_core::budget::{Amount, BudgetError, Demand};
use fleet_core::command::WorkUnitDraft;
use fleet_core::money::{Cost, Usd};
use fleet_core::usage::TokenUsage;
use fleet_core::work_unit::{WorkUnitKind, WorkUnitState};

/// What the fake model has seen.
#[derive(Debug, Default)]
pub struct FakeStats {
    /// Calls answered.
    pub calls: AtomicU64,
    /// Calls begun.
    pub started: AtomicU64,
    /// Calls in flight now.
    pub in_flight: AtomicUsize,
    /// The most calls ever in flight at once.
    pub peak: AtomicUsize,
}

/// The benchmarks' fake model, as an [`AgentRunner`].
#[derive(Debug, Clone, Default)]
pub struct FakeModel {
    /// Counters.
    pub stats: Arc<FakeStats>,
    /// Sleep this long per call instead of yielding once.
    pub latency: Option<Duration>,
    /// When set, a call whose prompt contains this fails with a provider error (resolves null).
    pub fail_on: Option<String>,
    /// When set, calls after this many never answer (they wait until cancelled): a process
    /// killed while they wait has exactly this many calls finished.
    pub stall_after: Option<u64>,
}

impl FakeModel {
    /// A fake model that answers after one scheduler hop.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake model that takes `latency` per call.
    #[must_use]
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency: Some(latency),
            ..Self::default()
        }
    }

    /// The answer to `prompt`.
    #[must_use]
    pub fn answer(prompt: &str) -> String {
        let start = prompt.char_indices().rev().nth(7).map_or(0, |(at, _)| at);
        format!("ok:{}", &prompt[start..])
    }
}

impl AgentRunner for FakeModel {
    async fn run(&self, call: AgentCall, ctx: CallContext) -> Result<AgentOutcome, AgentError> {
        let unit = match ctx.work_unit {
            Some(unit) => {
                ctx.journal
                    .set_state(unit, WorkUnitState::Running, None)
                    .await?;
                unit
            }
            None => {
                let mut draft = WorkUnitDraft::new(WorkUnitKind::DelegatedAgent);
                draft.label = Some(call.display_label());
                ctx.journal.start_work_unit(ctx.parent, draft).await?
            }
        };
        let now = self.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.peak.fetch_max(now, Ordering::SeqCst);
        let ticket = self.stats.started.fetch_add(1, Ordering::SeqCst);
        let stall = self.stall_after.is_some_and(|after| ticket >= after);
        // It writes 5 tokens, or fewer when the call or its budget allows fewer.
        let demand = Demand {
            max_output_tokens: call.max_tokens.map_or(5, |m| u64::from(m).min(5)),
            min_output_tokens: 1,
            priced: None,
        };
        let admitted = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => None,
            admitted = ctx.budgets.admit(&ctx.charge_to, demand) => Some(admitted),
        };
        let usage = TokenUsage {
            input: 20,
            output: match &admitted {
                Some(Ok(reservation)) => reservation.amount().output_tokens,
                _ => 0,
            },
            ..TokenUsage::default()
        };
        let waited = admitted.is_some()
            && tokio::select! {
                () = async {
                    match self.latency {
                        _ if stall => std::future::pending().await,
                        Some(latency) => precise_sleep(latency).await,
                        None => tokio::task::yield_now().await,
                    }
                } => true,
                () = ctx.cancel.cancelled() => false,
            };
        let reservation = admitted.unwrap_or(Err(BudgetError::Unknown));
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        let failure = if !waited {
            Some(AgentError::Cancelled)
        } else if let Err(e) = &reservation {
            Some(AgentError::Budget(e.clone()))
        } else if self
            .fail_on
            .as_deref()
            .is_some_and(|f| call.prompt.contains(f))
        {
            Some(AgentError::Provider(
                fleet_core::provider::ProviderError::Transport {
                    provider: "fake".into(),
                    message: "connection reset".into(),
                },
            ))
        } else {
            None
        };
        if let Some(error) = failure {
            let state = if matches!(error, AgentError::Cancelled) {
                WorkUnitState::Cancelled
            } else {
                WorkUnitState::Failed
            };
            ctx.journal
                .set_state(unit, state, Some(error.to_string()))
                .await?;
            return Err(error);
        }
        if let Ok(reservation) = reservation {
            reservation.settle(Amount {
                output_tokens: usage.output,
                usd: Usd::ZERO,
            });
        }
        self.stats.calls.fetch_add(1, Ordering::SeqCst);
        ctx.journal
            .usage(unit, "fake", usage, Some(Usd::ZERO))
            .await?;
        ctx.journal
            .set_state(unit, WorkUnitState::Completed, None)
            .await?;
        let text = Self::answer(&call.prompt);
        let output = call
            .schema
            .as_ref()
            .map(|_| serde_json::json!({ "answer": text }));
        let mut cost = Cost::default();
        cost.add(Some(Usd::ZERO));
        Ok(AgentOutcome {
            work_unit_id: unit,
            text,
            output,
            model: "fake".into(),
            usage,
            cost,
            model_requests: 1,
            tool_calls: 0,
        })
    }
}

/// Sleeps for `duration` to within a few microseconds. tokio's timer rounds every deadline up
/// to the next whole millisecond and fires on a millisecond tick, which over the 63 waves of the
/// 50 ms `fanout-lat50` workload adds more delay than the overhead being measured; one thread
/// wakes the sleepers instead. It parks until shortly before the next deadline and yields its
/// core until the deadline: a parked thread's timed wake-up is itself late by 80 µs (median;
/// 150 µs p90) on the 2-core VM the benchmarks run on, which is the kernel's, not the caller's.
pub async fn precise_sleep(duration: Duration) {
    let deadline = Instant::now() + duration;
    let Some(alarm) = alarm_thread() else {
        return tokio::time::sleep(duration).await;
    };
    std::future::poll_fn(|cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        let mut sleepers = SLEEPERS.lock().unwrap_or_else(PoisonError::into_inner);
        match sleepers.iter_mut().find(|(_, w)| w.will_wake(cx.waker())) {
            Some(entry) => entry.0 = deadline,
            None => sleepers.push((deadline, cx.waker().clone())),
        }
        drop(sleepers);
        alarm.unpark();
        Poll::Pending
    })
    .await;
}

/// How long before the next deadline the waking thread stops parking and yields instead.
const EARLY: Duration = Duration::from_micros(200);

/// The sleepers' deadlines.
static SLEEPERS: Mutex<Vec<(Instant, Waker)>> = Mutex::new(Vec::new());

/// The thread that wakes the sleepers (`None`: it could not be started).
fn alarm_thread() -> Option<&'static std::thread::Thread> {
    static THREAD: OnceLock<Option<std::thread::Thread>> = OnceLock::new();
    THREAD
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("fleet-fake-alarm".into())
                .spawn(ring)
                .ok()
                .map(|handle| handle.thread().clone())
        })
        .as_ref()
}

fn ring() {
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        let next = {
            let mut sleepers = SLEEPERS.lock().unwrap_or_else(PoisonError::into_inner);
            sleepers.retain(|(deadline, waker)| {
                if *deadline <= now {
                    due.push(waker.clone());
                    false
                } else {
                    true
                }
            });
            sleepers.iter().map(|(deadline, _)| *deadline).min()
        };
        for waker in due {
            waker.wake();
        }
        match next {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left > EARLY {
                    std::thread::park_timeout(left - EARLY);
                } else {
                    std::thread::yield_now();
                }
            }
            None => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FakeModel;

    #[test]
    fn the_answer_is_ok_and_the_prompts_last_eight_characters() {
        assert_eq!(FakeModel::answer("hello world!"), "ok:o world!");
        assert_eq!(FakeModel::answer("short"), "ok:short");
        assert_eq!(FakeModel::answer(""), "ok:");
        assert_eq!(FakeModel::answer("12345678"), "ok:12345678");
        // Characters, not bytes.
        assert_eq!(FakeModel::answer("préfixe: déjà vu é"), "ok:éjà vu é");
    }
}
