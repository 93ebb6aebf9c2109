//! `--provider fake`: the benchmarks' model, in a `fleet` built with the `bench` feature
//! (`cargo build -p fleet-cli --features bench`, which `cargo bench -p fleet-cli` needs). The
//! shipped binary has neither the model nor its measuring; asked for it, it says how to get it.

use std::sync::Arc;
use std::time::Duration;

use fleet_core::agent::DynAgentRunner;

use crate::app::App;

#[cfg(feature = "bench")]
mod model {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use fleet_core::agent::DynAgentRunner;
    use fleet_workflow::testkit::FakeModel;

    use crate::app::App;
    use crate::config::ConfigError;

    /// The fake model of one run.
    pub(crate) struct BenchModel(FakeModel);

    impl BenchModel {
        /// With `FLEET_FAKE_LATENCY_MS` (a latency per call instead of one scheduler hop) and
        /// `FLEET_FAKE_STALL_AFTER` (calls after that many never answer).
        pub(crate) fn from_env(app: &App) -> anyhow::Result<Self> {
            let number = |name: &str| -> anyhow::Result<Option<u64>> {
                app.env(name)
                    .map(|v| {
                        v.trim().parse::<u64>().map_err(|_| {
                            ConfigError(format!(
                                "{name}={v:?} is not a whole number; set it to one, or unset it"
                            ))
                        })
                    })
                    .transpose()
                    .map_err(Into::into)
            };
            Ok(Self(FakeModel {
                latency: number("FLEET_FAKE_LATENCY_MS")?.map(Duration::from_millis),
                stall_after: number("FLEET_FAKE_STALL_AFTER")?,
                ..FakeModel::new()
            }))
        }

        pub(crate) fn runner(&self) -> Arc<dyn DynAgentRunner> {
            Arc::new(self.0.clone())
        }

        /// What the benchmarks read: what the model saw, and what this process took.
        pub(crate) fn report(&self, cap: usize, workload: Duration) {
            let stats = &self.0.stats;
            eprintln!(
                "fake model: {} calls answered, at most {} in flight (cap {cap}); workload {:.2} ms; peak RSS {:.1} MiB before the store closes",
                stats.calls.load(Ordering::SeqCst),
                stats.peak.load(Ordering::SeqCst),
                workload.as_secs_f64() * 1e3,
                peak_rss_mib().unwrap_or(f64::NAN),
            );
        }
    }

    /// This process's peak resident set (`VmHWM`), in MiB.
    fn peak_rss_mib() -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

#[cfg(not(feature = "bench"))]
mod model {
    use std::sync::Arc;
    use std::time::Duration;

    use fleet_core::agent::DynAgentRunner;

    use crate::app::App;
    use crate::config::ConfigError;

    /// Not in this build: there is no such model to have.
    pub(crate) enum BenchModel {}

    impl BenchModel {
        pub(crate) fn from_env(_: &App) -> anyhow::Result<Self> {
            Err(ConfigError(
                "provider \"fake\" (the benchmarks' model) is not in this build of fleet: build it with `cargo build -p fleet-cli --features bench`, or pick another provider"
                    .into(),
            )
            .into())
        }

        pub(crate) fn runner(&self) -> Arc<dyn DynAgentRunner> {
            match *self {}
        }

        pub(crate) fn report(&self, _: usize, _: Duration) {
            match *self {}
        }
    }
}

pub(crate) use self::model::BenchModel;

// The two builds offer the same calls.
const _: fn(&App) -> anyhow::Result<BenchModel> = BenchModel::from_env;
const _: fn(&BenchModel) -> Arc<dyn DynAgentRunner> = BenchModel::runner;
const _: fn(&BenchModel, usize, Duration) = BenchModel::report;
