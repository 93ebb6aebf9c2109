//! How one agent's workers are started and kept: [`WorkerPlan`], from an agent spec.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fleet_core::ipc::TaskLimits;
use fleet_core::money::Usd;
use fleet_core::sandbox::SandboxPolicy;
use fleet_core::spec::AgentSpec;
use serde_json::Value;

/// How one agent's workers are started and kept.
#[derive(Debug, Clone)]
pub struct WorkerPlan {
    /// The agent's name.
    pub agent: String,
    /// Its spec, sent with `initialize`.
    pub spec: Value,
    /// The one model its turns may use through the gateway (its spec's); `None` allows any
    /// priced model.
    pub model: Option<String>,
    /// The worker program and its arguments.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The sandbox it runs in.
    pub policy: SandboxPolicy,
    /// Its workspace (one of the policy's writable paths).
    pub workspace: PathBuf,
    /// Limits per task, sent with `initialize`.
    pub limits: TaskLimits,
    /// Workers kept running even when idle.
    pub min: usize,
    /// Most workers at once (and so most tasks at once).
    pub max: usize,
    /// How long a worker beyond `min` may stay idle.
    pub idle_timeout: Duration,
    /// How many times a task whose worker died is tried again on a fresh worker.
    pub task_retries: u32,
    /// The first pause before replacing a worker that died; it doubles with each death in a
    /// row, up to 5 s.
    pub restart_backoff: Duration,
    /// Most dollars the agent may spend in all (its spec's `cost_budget`, else
    /// [`DEFAULT_COST_BUDGET`]); it is paused when it reaches this.
    pub cost_budget: Usd,
    /// What happens to the task running when the agent goes over budget.
    pub over_budget: OverBudget,
}

/// The budget of an agent whose spec sets none: low, never unlimited.
pub const DEFAULT_COST_BUDGET: Usd = Usd::from_nanos(1_000_000_000);

/// What happens to the task that takes an agent over its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverBudget {
    /// It may finish; no new task starts.
    #[default]
    FinishTask,
    /// It is cancelled at once.
    CancelTask,
}

impl WorkerPlan {
    /// The plan of an agent spec: its name, spec, limits and `cost_budget` (or the default),
    /// with one to four workers of `program`.
    #[must_use]
    pub fn for_spec(
        spec: &fleet_core::spec::AgentSpec,
        program: impl Into<PathBuf>,
        policy: SandboxPolicy,
    ) -> Self {
        let mut plan = Self::new(spec.name.clone(), program, policy);
        plan.spec = serde_json::to_value(spec).unwrap_or(Value::Null);
        plan.model = Some(spec.model.clone());
        plan.cost_budget = spec.cost_budget.unwrap_or(DEFAULT_COST_BUDGET);
        plan.limits = TaskLimits {
            max_tokens: spec.max_tokens,
            max_tool_calls: spec.max_tool_calls,
            timeout_ms: spec
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        };
        plan
    }

    /// The plan of an agent spec in `project`: sandboxed per its spec (relative writable
    /// paths under `project`), served by its spec's `worker:` program (a bare name looked up on
    /// the workers' `PATH`), or by `program args…` (fleet's own worker) when it names none.
    ///
    /// # Errors
    /// The spec's worker program cannot be found.
    pub fn for_project(
        spec: &AgentSpec,
        project: &Path,
        program: &Path,
        args: &[OsString],
    ) -> Result<Self, PlanError> {
        let policy = SandboxPolicy::from_spec(&spec.sandbox, project);
        let Some((own, own_args)) = spec.worker.split_first() else {
            let mut plan = Self::for_spec(spec, program, policy);
            plan.args = args.to_vec();
            return Ok(plan);
        };
        let path = policy
            .env
            .iter()
            .find(|(name, _)| name == "PATH")
            .map(|(_, value)| value.clone())
            .unwrap_or_default();
        let found =
            find_program(own, project, &path).ok_or_else(|| PlanError::NoWorkerProgram {
                agent: spec.name.clone(),
                program: own.clone(),
                looked: if own.contains('/') {
                    project.join(own).display().to_string()
                } else {
                    format!("the workers' PATH, {path}")
                },
            })?;
        let mut plan = Self::for_spec(spec, found, policy);
        plan.args = own_args
            .iter()
            .map(|arg| {
                let file = project.join(arg);
                if Path::new(arg).is_relative() && file.is_file() {
                    file.into_os_string()
                } else {
                    OsString::from(arg)
                }
            })
            .collect();
        Ok(plan)
    }

    /// The plans of every valid spec in `agents_dir` (`agents/*.yaml`), each as
    /// [`WorkerPlan::for_project`] makes it; and the problems of the files that are not valid
    /// (each at its file, line and column) or whose worker cannot be found.
    ///
    /// # Errors
    /// `agents_dir` exists but cannot be read.
    pub fn from_dir(
        agents_dir: &Path,
        project: &Path,
        program: &Path,
        args: &[OsString],
    ) -> std::io::Result<(Vec<Self>, Vec<String>)> {
        let set = fleet_core::spec::SpecSet::load_dir(agents_dir)?;
        let mut problems: Vec<String> = set.errors.iter().map(ToString::to_string).collect();
        let mut plans = Vec::new();
        for spec in &set.specs {
            match Self::for_project(spec, project, program, args) {
                Ok(plan) => plans.push(plan),
                Err(e) => problems.push(e.to_string()),
            }
        }
        Ok((plans, problems))
    }

    /// A plan with one to four workers, idle ones stopped after a minute, one retry.
    #[must_use]
    pub fn new(
        agent: impl Into<String>,
        program: impl Into<PathBuf>,
        policy: SandboxPolicy,
    ) -> Self {
        let workspace = policy.writable.first().cloned().unwrap_or_default();
        Self {
            agent: agent.into(),
            spec: Value::Null,
            model: None,
            program: program.into(),
            args: Vec::new(),
            policy,
            workspace,
            limits: TaskLimits::default(),
            min: 0,
            max: 4,
            idle_timeout: Duration::from_secs(60),
            task_retries: 1,
            restart_backoff: Duration::from_millis(100),
            cost_budget: DEFAULT_COST_BUDGET,
            over_budget: OverBudget::FinishTask,
        }
    }
}

/// Why an agent's workers cannot be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The spec's `worker:` program is not where it says.
    #[error(
        "agent {agent}: its worker program `{program}` is not found (looked in {looked}): \
         fix `worker:` in its spec (a path under the project, an absolute path, or a program on the workers' PATH)"
    )]
    NoWorkerProgram {
        /// The agent.
        agent: String,
        /// The program its spec names.
        program: String,
        /// Where it was looked for.
        looked: String,
    },
}

/// `program` as a spec names it: a path (under `project` unless absolute) when it has a `/`,
/// else the first executable file of that name on `path` (the workers' `PATH`, which is
/// where they would look).
fn find_program(program: &str, project: &Path, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = project.join(program);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_agents_become_plans_with_their_budgets_and_sandboxes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let (plans, problems) = WorkerPlan::from_dir(
            &root.join("agents"),
            Path::new("/srv/project"),
            Path::new("/usr/bin/fleet"),
            &["__worker".into()],
        )
        .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = plans.iter().map(|p| p.agent.as_str()).collect();
        assert_eq!(names, ["doc-bot", "patch-bot", "test-writer-bot"]);
        let patch = &plans[1];
        assert_eq!(patch.cost_budget, Usd::from_dollars(2.0).unwrap());
        assert_eq!(patch.workspace, Path::new("/srv/project/workspace"));
        assert!(patch.policy.subprocesses);
        assert_eq!(patch.limits.max_tool_calls, Some(60));
        assert_eq!(patch.limits.timeout_ms, Some(600_000));
        assert_eq!(patch.spec["name"], "patch-bot");
        assert_eq!(patch.program, Path::new("/usr/bin/fleet"));
        assert_eq!(patch.args, [OsString::from("__worker")]);
    }

    fn spec(worker: &str) -> AgentSpec {
        let yaml =
            format!("name: lint-bot\nrole: lints\nmodel: claude-haiku-4-5\nworker: {worker}\n");
        AgentSpec::from_yaml(Path::new("agents/lint-bot.yaml"), &yaml).unwrap()
    }

    #[test]
    fn a_spec_names_its_own_worker_program() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("workers")).unwrap();
        std::fs::write(project.path().join("workers/lint.py"), "").unwrap();
        let fleet = Path::new("/usr/bin/fleet");
        let plan = WorkerPlan::for_project(
            &spec("[sh, workers/lint.py, --fast]"),
            project.path(),
            fleet,
            &["__worker".into()],
        )
        .unwrap();
        assert!(
            plan.program.ends_with("sh") && plan.program.is_absolute(),
            "{plan:?}"
        );
        assert_eq!(
            plan.args,
            [
                project.path().join("workers/lint.py").into_os_string(),
                OsString::from("--fast")
            ]
        );
        let err = WorkerPlan::for_project(&spec("[./bin/nope]"), project.path(), fleet, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lint-bot") && err.contains("./bin/nope") && err.contains("fix `worker:`"),
            "{err}"
        );
        let err =
            WorkerPlan::for_project(&spec("[no-such-program-here]"), project.path(), fleet, &[])
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("looked in the workers' PATH, /usr/local/bin:/usr/bin:/bin"),
            "{err}"
        );
    }
}
