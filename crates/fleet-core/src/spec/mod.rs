//! Agent specs: the specialists declared in `agents/<name>.yaml`.
//!
//! ```
//! use fleet_core::spec::AgentSpec;
//! use std::path::Path;
//!
//! let yaml = "name: doc-bot\nrole: adds doc comments to changed items\nmodel: claude-haiku-4-5\n";
//! let spec = AgentSpec::from_yaml(Path::new("agents/doc-bot.yaml"), yaml)?;
//! assert_eq!(spec.name, "doc-bot");
//! assert!(!spec.sandbox.network);
//! # Ok::<(), fleet_core::Diagnostics>(())
//! ```

mod syscalls;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::syscalls::SYSCALLS_X86_64;
use crate::diagnostic::{Diagnostic, Diagnostics, PathSeg, did_you_mean};
use crate::money::Usd;
use crate::yaml::{CompiledSchema, Document};

/// The cost budget an agent gets when its spec names none: low, never unlimited.
pub const DEFAULT_COST_BUDGET: Usd = Usd::from_nanos(1_000_000_000);

/// One specialist agent, as declared in `agents/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "fleet agent spec",
    description = "A specialist agent declared in agents/<name>.yaml."
)]
pub struct AgentSpec {
    /// The agent's name: lowercase letters, digits, `-` and `_`; the file must be `<name>.yaml`.
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"),
        extend("x-expected" = "a name of lowercase letters, digits, '-' and '_' (at most 64), such as \"doc-bot\"")
    )]
    pub name: String,
    /// What the agent is for, in a sentence; shown to a primary agent that may delegate to it.
    #[schemars(length(min = 1))]
    pub role: String,
    /// The model id, e.g. `claude-haiku-4-5` or `gpt-5-mini`.
    #[schemars(length(min = 1))]
    pub model: String,
    /// Who runs the agent: `claude-code` (the `claude` CLI), `codex` (`codex app-server`) or
    /// `codex-exec` (`codex exec --json`) run it as a coding-agent CLI whose subagents join the
    /// tree; any other value (or none) runs it on fleet's own agent loop with the provider
    /// configured for the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// A longer description; defaults to `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Most output tokens per model request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// Reasoning effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    /// Most US dollars the agent may spend in all; it is paused when it reaches this.
    /// Without it the agent gets a low default ($1), never an unlimited budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_budget: Option<Usd>,
    /// Tool names the agent may use, beyond those its capabilities grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// What the agent's built-in tools may do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    /// How a coding-agent CLI (`provider: claude-code` or `codex`) asks before acting; by
    /// default it asks fleet, which answers from `capabilities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
    /// Most tool calls in one task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tool_calls: Option<u32>,
    /// Most time for one task: seconds, or a duration such as `90s`, `5m`, `1h 30m`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "timeout_serde"
    )]
    #[schemars(
        with = "Option<TimeoutSchema>",
        extend("x-expected" = "seconds, or a duration such as \"90s\", \"5m\" or \"1h 30m\"")
    )]
    pub timeout: Option<Duration>,
    /// Shorthand for `sandbox.allowed_syscalls`: the two lists are merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_syscalls: Vec<String>,
    /// How the agent's worker process is confined.
    #[serde(default)]
    pub sandbox: SandboxSpec,
    /// The program that serves the agent's tasks, and its arguments, e.g.
    /// `[python3, workers/lint_bot.py]`: started under the agent's sandbox and spoken to over
    /// stdin/stdout (JSON-RPC, `docs/ipc.schema.json`), its model turns through the
    /// supervisor's gateway. A program with a `/` is under the project unless absolute, a bare
    /// name is looked up on the workers' `PATH` (`/usr/local/bin:/usr/bin:/bin`); an argument
    /// naming a file of the project is passed as that file's absolute path. Without it, fleet's own worker serves the agent: the sample roles
    /// for `patch-bot`, `test-writer-bot` and `doc-bot`, the agent loop for any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub worker: Vec<String>,
}

/// Reasoning effort, as in Claude Code's workflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Effort {
    /// Least reasoning.
    Low,
    /// Some reasoning.
    Medium,
    /// Much reasoning.
    High,
    /// More than high.
    Xhigh,
    /// The most the model allows.
    Max,
}

/// What an agent's built-in tools may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Capability {
    /// Read files, list directories, search text.
    ReadFiles,
    /// Write and edit files (inside the writable paths).
    WriteFiles,
    /// Run commands (confined by the sandbox).
    RunCommands,
    /// Start background subagents.
    SpawnSubagents,
}

/// How a coding-agent CLI asks before it acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PermissionMode {
    /// Every tool the CLI does not trust by itself is asked about, and fleet answers from the
    /// agent's capabilities.
    Default,
    /// The agent only plans: it may read, and its request to leave plan mode is refused and its
    /// plan recorded as the turn's proposed plan, for a person or the workflow to approve.
    Plan,
    /// File edits are accepted without asking; other tools are asked about as in `default`.
    AcceptEdits,
    /// Nothing is asked (the CLI's own `bypassPermissions`; use only inside a sandbox).
    Bypass,
}

/// The sandbox block of an agent spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSpec {
    /// The named baseline system-call allowlist.
    pub profile: SyscallProfile,
    /// System calls added to the baseline; checked when the spec is loaded.
    pub allowed_syscalls: Vec<String>,
    /// Allow AF_INET/AF_INET6 sockets.
    pub network: bool,
    /// Allow the worker to start processes.
    pub subprocesses: bool,
    /// Paths the worker may write (relative ones are under the project); everything else is
    /// read-only or hidden.
    pub writable: Vec<PathBuf>,
    /// Whether Landlock must confine the filesystem.
    pub landlock: LandlockMode,
    /// Log system calls outside the allowlist instead of refusing them, to help write
    /// `allowed_syscalls` for a new worker.
    pub learn: bool,
}

impl Default for SandboxSpec {
    fn default() -> Self {
        Self {
            profile: SyscallProfile::Default,
            allowed_syscalls: Vec::new(),
            network: false,
            subprocesses: false,
            writable: vec![PathBuf::from("workspace")],
            landlock: LandlockMode::Required,
            learn: false,
        }
    }
}

/// A named baseline system-call allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyscallProfile {
    /// Memory, file I/O, event loop, time and AF_UNIX IPC: what ordinary workers and
    /// interpreters need.
    Default,
}

/// Whether Landlock must confine the worker's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LandlockMode {
    /// The agent does not start where Landlock is unavailable.
    Required,
    /// Use Landlock where the kernel has it, and say so where it does not.
    BestEffort,
    /// Do not use Landlock.
    Off,
}

/// The schema of `timeout`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TimeoutSchema {
    Seconds(#[schemars(range(min = 1))] u64),
    Text(#[schemars(length(min = 1))] String),
}

mod timeout_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Seconds(s)) => Ok(Some(Duration::from_secs(s))),
            Some(Raw::Text(t)) => parse_duration(&t)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
        let bad = || {
            format!(
                "invalid duration \"{text}\": expected seconds or a duration such as \"90s\", \"5m\", \"1h 30m\""
            )
        };
        let signed: jiff::SignedDuration = text.trim().parse().map_err(|_| bad())?;
        Duration::try_from(signed)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(bad)
    }
}

/// `sandbox.writable` entries that reach outside the project: `/` (or anything that is the
/// whole filesystem) always, and with `landlock: off` any path outside the project, since then
/// nothing confines the worker's writes to the paths it names.
fn writable_outside(doc: &Document<'_>) -> Vec<Diagnostic> {
    use serde_json::Value;
    let Some(sandbox) = doc.json().get("sandbox") else {
        return Vec::new();
    };
    let landlock_off = sandbox.get("landlock").and_then(Value::as_str) == Some("off");
    let mut problems = Vec::new();
    for (i, entry) in sandbox
        .get("writable")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(text) = entry.as_str() else { continue };
        let path = Path::new(text);
        let whole = path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::CurDir
            )
        }) && path.has_root();
        let escapes = path.has_root()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        let message = if whole {
            format!(
                "\"{text}\" makes the whole filesystem writable, which no worker needs: name the directories under the project it writes (such as \"workspace\")"
            )
        } else if landlock_off && escapes {
            format!(
                "\"{text}\" is outside the project, and with `landlock: off` nothing confines the worker's writes: name a path under the project, or set `landlock: required`"
            )
        } else {
            continue;
        };
        problems.push(doc.error_at(
            &[
                PathSeg::Key("sandbox".into()),
                PathSeg::Key("writable".into()),
                PathSeg::Index(i),
            ],
            message,
        ));
    }
    problems
}

/// System calls that `allowed_syscalls` may never add, with the reason and the right switch.
/// The checks the schema cannot make, on the document as written (so that they are reported
/// with the schema's errors, not after them).
fn beyond_the_schema(doc: &Document<'_>, file: &Path) -> Vec<Diagnostic> {
    use serde_json::Value;
    let json = doc.json();
    let mut problems = Vec::new();
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if let Some(name) = json.get("name").and_then(Value::as_str)
        && !stem.is_empty()
        && stem != name
    {
        problems.push(doc.error_at(
            &[PathSeg::Key("name".into())],
            format!(
                "the agent is named \"{name}\" but its file is \"{stem}\": rename one so they match"
            ),
        ));
    }
    for outer in [None, Some("sandbox")] {
        let list = match outer {
            None => json.get("allowed_syscalls"),
            Some(o) => json.get(o).and_then(|b| b.get("allowed_syscalls")),
        };
        for (i, name) in list
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(name) = name.as_str()
                && let Err(message) = check_syscall_name(name)
            {
                let mut path: Vec<PathSeg> =
                    outer.map(|o| PathSeg::Key(o.into())).into_iter().collect();
                path.push(PathSeg::Key("allowed_syscalls".into()));
                path.push(PathSeg::Index(i));
                problems.push(doc.error_at(&path, message.to_string()));
            }
        }
    }
    problems.extend(writable_outside(doc));
    if let Some(text) = json.get("timeout").and_then(Value::as_str)
        && !text.is_empty()
        && let Err(message) = timeout_serde::parse_duration(text)
    {
        problems.push(doc.error_at(&[PathSeg::Key("timeout".into())], message));
    }
    problems
}

fn refusal(name: &str) -> Option<&'static str> {
    Some(match name {
        "clone" | "clone3" | "fork" | "vfork" => {
            "starts processes: set `sandbox.subprocesses: true` instead (threads are always allowed)"
        }
        "socket" => {
            "opens network sockets: set `sandbox.network: true` instead (local socket pairs are always allowed)"
        }
        "memfd_create" => {
            "makes memory files, which execute whatever the filesystem rules say, and is never allowed"
        }
        "ptrace" | "process_vm_readv" | "process_vm_writev" => {
            "reads or controls other processes and is never allowed"
        }
        "io_uring_setup" | "io_uring_enter" | "io_uring_register" => {
            "bypasses the system-call filter and is never allowed"
        }
        "bpf" | "perf_event_open" | "userfaultfd" => {
            "exposes the kernel to attack and is never allowed"
        }
        "unshare" | "setns" | "mount" | "umount2" | "move_mount" | "open_tree"
        | "open_tree_attr" | "fsopen" | "fsconfig" | "fsmount" | "fspick" | "mount_setattr"
        | "pivot_root" | "chroot" => "changes namespaces or mounts and is never allowed",
        "add_key" | "request_key" | "keyctl" => "touches the kernel keyrings and is never allowed",
        "init_module" | "finit_module" | "delete_module" | "kexec_load" | "kexec_file_load"
        | "reboot" => "loads kernel code or reboots and is never allowed",
        "name_to_handle_at" | "open_by_handle_at" => {
            "escapes filesystem confinement and is never allowed"
        }
        _ => return None,
    })
}

/// An `allowed_syscalls` entry the sandbox cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyscallNameError {
    /// A system call the sandbox never allows, whatever the spec says.
    #[error("\"{name}\" {why}")]
    Refused {
        /// The entry.
        name: String,
        /// Why it is never allowed.
        why: &'static str,
    },
    /// No Linux system call has that name.
    #[error("unknown syscall \"{name}\"{}", match closest {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => ": expected a Linux system call name such as \"openat\"".to_owned(),
    })]
    Unknown {
        /// The entry.
        name: String,
        /// The closest known name, when one is close.
        closest: Option<&'static str>,
    },
}

/// Checks one `allowed_syscalls` entry: known to the kernel and not one the sandbox refuses.
///
/// # Errors
/// What is wrong, and what to do instead.
pub fn check_syscall_name(name: &str) -> Result<(), SyscallNameError> {
    if let Some(why) = refusal(name) {
        return Err(SyscallNameError::Refused {
            name: name.to_owned(),
            why,
        });
    }
    if SYSCALLS_X86_64.iter().any(|(n, _)| *n == name) {
        return Ok(());
    }
    Err(SyscallNameError::Unknown {
        name: name.to_owned(),
        closest: did_you_mean(name, SYSCALLS_X86_64.iter().map(|(n, _)| *n)),
    })
}

/// The JSON Schema of an agent spec, as committed at `docs/agent-spec.schema.json`.
#[must_use]
pub fn agent_spec_schema() -> serde_json::Value {
    serde_json::Value::from(schemars::schema_for!(AgentSpec))
}

fn schema() -> &'static CompiledSchema {
    static SCHEMA: OnceLock<CompiledSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| CompiledSchema::new(agent_spec_schema()))
}

impl AgentSpec {
    /// Reads a spec from YAML text; `file` names it in errors and must be `<name>.yaml`.
    ///
    /// # Errors
    /// Every problem found, each with file, line, column, field path and what is expected.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, Diagnostics> {
        let doc = Document::parse(file, text).map_err(|d| Diagnostics(vec![d]))?;
        // Every problem in one pass: what the schema finds, and beside it what only fleet can
        // tell (a name that is not the file's, a system call that does not exist, a duration
        // that does not parse), each read off the document itself rather than the typed spec.
        let mut problems = beyond_the_schema(&doc, file);
        let mut spec: Self = match doc.check(schema()) {
            Ok(spec) if problems.is_empty() => spec,
            Ok(_) => return Err(Diagnostics(problems)),
            Err(Diagnostics(more)) => {
                problems.extend(more);
                problems.sort_by_key(|d| (d.line, d.column));
                problems.dedup();
                return Err(Diagnostics(problems));
            }
        };
        // One list, in the sandbox block, so that consumers have one place to read.
        let shorthand = std::mem::take(&mut spec.allowed_syscalls);
        for name in shorthand {
            if !spec.sandbox.allowed_syscalls.contains(&name) {
                spec.sandbox.allowed_syscalls.push(name);
            }
        }
        Ok(spec)
    }

    /// Reads a spec file.
    ///
    /// # Errors
    /// As [`AgentSpec::from_yaml`], or one diagnostic when the file cannot be read.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        use std::io::Read;
        let whole = |message: String| Diagnostics(vec![Diagnostic::whole_file(path, message)]);
        let file = std::fs::File::open(path).map_err(|e| whole(format!("cannot read: {e}")))?;
        // Read one byte past the limit, so a file that grows while it is read is caught too.
        let mut bytes = Vec::new();
        file.take(MAX_SPEC_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| whole(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_SPEC_BYTES {
            return Err(whole(format!(
                "is larger than {} KiB, the most an agent spec may be: a spec names a role, a model and limits; put long instructions in the worker's own files",
                MAX_SPEC_BYTES / 1024
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            whole(format!(
                "is not UTF-8 text (at byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Self::from_yaml(path, &text)
    }

    /// The budget the agent runs under: its `cost_budget`, or [`DEFAULT_COST_BUDGET`].
    #[must_use]
    pub fn effective_cost_budget(&self) -> Usd {
        self.cost_budget.unwrap_or(DEFAULT_COST_BUDGET)
    }
}

/// The largest agent spec file [`AgentSpec::load`] reads: 256 KiB.
pub const MAX_SPEC_BYTES: u64 = 256 * 1024;

/// The specs of a directory: all the valid ones, and every problem with the others.
#[derive(Debug, Default)]
pub struct SpecSet {
    /// Valid specs, sorted by name.
    pub specs: Vec<AgentSpec>,
    /// Every problem in every invalid file, by file then position.
    pub errors: Vec<Diagnostic>,
}

impl SpecSet {
    /// Loads every `*.yaml` and `*.yml` file in `dir` (not recursively). A missing directory
    /// gives an empty set.
    ///
    /// # Errors
    /// Only when `dir` exists but cannot be listed; problems with single files are collected in
    /// [`SpecSet::errors`].
    pub fn load_dir(dir: &Path) -> std::io::Result<Self> {
        let mut set = Self::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(set),
            Err(e) => return Err(e),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        paths.sort();
        let mut files: Vec<(String, PathBuf)> = Vec::new();
        for path in paths {
            match AgentSpec::load(&path) {
                Ok(spec) => {
                    if let Some((_, first)) = files.iter().find(|(n, _)| *n == spec.name) {
                        set.errors.push(Diagnostic::whole_file(
                            &path,
                            format!(
                                "an agent named \"{}\" is already declared in {}",
                                spec.name,
                                first.display()
                            ),
                        ));
                        continue;
                    }
                    files.push((spec.name.clone(), path));
                    set.specs.push(spec);
                }
                Err(ds) => set.errors.extend(ds.0),
            }
        }
        set.specs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(set)
    }

    /// The spec named `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&AgentSpec> {
        self.specs.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests;
