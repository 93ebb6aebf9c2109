//! The `fleet` command: the CLI interface plus glue over fleet's library crates.
//!
//! It parses, builds a validated config, wires the library crates and renders; every behaviour
//! it shows lives in a library crate.

// The CLI's job is to print; libraries never do.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

mod app;
mod ask;
mod bench_model;
mod config;
mod fleet;
mod init;
mod inspect;
mod live;
mod render;
mod run;
mod specialists;

/// Exit codes, documented in `fleet --help`.
pub(crate) mod exit {
    /// It worked.
    pub(crate) const OK: u8 = 0;
    /// The workflow failed, or the input is invalid (agent specs with errors, say).
    pub(crate) const FAILED: u8 = 1;
    /// The command line is wrong.
    pub(crate) const USAGE: u8 = 2;
    /// The configuration is wrong (a config file, a provider without its key).
    pub(crate) const CONFIG: u8 = 3;
    /// A budget ran out before the work was done.
    pub(crate) const BUDGET: u8 = 4;
    /// Interrupted (Ctrl-C or `fleet stop`); the run can be resumed.
    pub(crate) const INTERRUPTED: u8 = 130;
}

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the workflow failed, or the input is invalid
  2    usage error (a wrong flag or argument)
  3    configuration error (a config file, a provider without its key)
  4    a budget ran out
  130  interrupted (Ctrl-C or `fleet stop`); `fleet run --resume RUN_ID` goes on

Configuration: defaults < ~/.config/fleet/config.toml < fleet.toml (nearest above) < environment < flags.
`fleet config show` prints the effective values and where each came from.";

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "Run fleets of LLM agents: workflows, sandboxed specialists, every token and dollar accounted for.",
    after_help = EXIT_CODES,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow to completion and print its result.
    #[command(after_help = "\
Examples:
  fleet run review-code --args '{\"path\": \"src\"}'
  fleet run ./my-workflow.js --args @args.json --budget-usd 2
  fleet run --resume c962c6e2
  fleet run hello --json | jq .")]
    Run(RunArgs),
    /// List runs, newest first.
    #[command(after_help = "Example:\n  fleet runs --limit 5")]
    Runs {
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show a run's state, calls, tokens and cost (default: the newest run).
    #[command(after_help = "Example:\n  fleet status c962c6e2")]
    Status {
        /// The run (its id, the short id `fleet runs` shows, or any unique start or end of it).
        run: Option<String>,
    },
    /// Stop a run going on in another `fleet run`; it can be resumed.
    #[command(after_help = "Example:\n  fleet stop c962c6e2")]
    Stop {
        /// The run (its id, the short id `fleet runs` shows, or any unique start or end of it).
        run: String,
    },
    /// Draw a run's work-unit tree: state, agent, model, tokens, prompt-cache share, dollars,
    /// duration, and why calls failed or came back null.
    #[command(after_help = "Example:\n  fleet trace c962c6e2")]
    Trace {
        /// The run (its id, the short id `fleet runs` shows, or any unique start or end of it; default: the newest run).
        run: Option<String>,
    },
    /// What was spent, by model: for one run, since a date, or in all.
    #[command(
        after_help = "Examples:\n  fleet cost\n  fleet cost --run 01a1fd32\n  fleet cost --since 2026-11-01"
    )]
    Cost {
        /// Only this run.
        #[arg(long, conflicts_with = "since")]
        run: Option<String>,
        /// Only since this date (YYYY-MM-DD, local midnight) or timestamp (RFC 3339).
        #[arg(long)]
        since: Option<String>,
    },
    /// One turn of a primary agent that can delegate to the project's specialists.
    #[command(
        after_help = "Example:\n  fleet ask \"find the slowest test and ask patch-bot to speed it up\""
    )]
    Ask {
        /// The task.
        task: String,
        /// The primary agent's model (default: ask.model, claude-sonnet-4-5).
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        provider: ProviderArgs,
        /// Write the thread's events as JSON lines and the answer last.
        #[arg(long)]
        json: bool,
    },
    /// The workflows fleet can find here: built-ins, ~/.fleet/workflows, .fleet/ and .claude/workflows.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Work with the agents declared in `agents/*.yaml`.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Print a JSON Schema fleet publishes.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Make this directory a fleet project: fleet.toml, agents/, .fleet/workflows/hello.js.
    #[command(after_help = "Example:\n  mkdir demo && cd demo && fleet init && fleet run hello")]
    Init,
    /// Start the project's specialists under the supervisor and watch them until you quit.
    #[command(after_help = "\
Keys: ↑/↓ select an agent, r resume a paused agent, q quit.
Send work from another terminal with `fleet send AGENT \"task\"`.

Examples:
  fleet start
  fleet start --headless > fleet.log")]
    Start {
        /// Log what happens as lines instead of drawing the screen.
        #[arg(long)]
        headless: bool,
        #[command(flatten)]
        provider: ProviderArgs,
    },
    /// Give a task to an agent of the fleet `fleet start` is running here, and print its answer.
    #[command(after_help = "\
Exits 4 when the agent is paused (its budget or the fleet's is used up).

Examples:
  fleet send doc-bot \"document the public items in src/lib.rs\"
  fleet send patch-bot \"make the failing test pass\" --test-command \"python3 -m unittest -q\"
  fleet send test-writer-bot \"pin down parse()\" --input @task.json")]
    Send {
        /// The agent, by its spec's name.
        agent: String,
        /// The task.
        task: String,
        /// The task's structured input: a JSON object, or @FILE to read one.
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// The command that runs the project's tests (program and arguments, quoted as in a
        /// shell), for patch-bot and test-writer-bot; the input's `test_command`.
        #[arg(long, value_name = "COMMAND")]
        test_command: Option<String>,
    },
    /// Show the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  fleet completions bash > ~/.local/share/bash-completion/completions/fleet"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Which provider and model.
#[derive(Args, Clone, Default)]
pub(crate) struct ProviderArgs {
    /// The provider: anthropic, openai, openai-responses, offline or scripted; `fleet run`
    /// also takes `fake`, the benchmarks' model, in a fleet built with `--features bench`
    /// (answers `ok:` and the prompt's last 8 characters after one scheduler hop, or
    /// FLEET_FAKE_LATENCY_MS; reports what it saw).
    #[arg(long)]
    pub(crate) provider: Option<String>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// A workflow's name (see `fleet workflows list`) or a path to a .js file; optional with
    /// --resume.
    #[arg(required_unless_present = "resume")]
    pub(crate) workflow: Option<String>,
    /// The workflow's arguments: JSON, @file.json, or any other text as a string (as Claude
    /// Code passes them: --args wave1).
    #[arg(long, value_name = "JSON | @FILE")]
    pub(crate) args: Option<String>,
    /// Resume this run: finished calls are served from its journal.
    #[arg(long, value_name = "RUN_ID")]
    pub(crate) resume: Option<String>,
    /// With --resume: stop reusing at the first call that differs from the journal.
    #[arg(long, requires = "resume")]
    pub(crate) strict_resume: bool,
    #[command(flatten)]
    pub(crate) provider: ProviderArgs,
    /// The model of agent calls that name none.
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// The run's output-token budget.
    #[arg(long, value_name = "N")]
    pub(crate) budget_tokens: Option<u64>,
    /// The run's dollar budget.
    #[arg(long, value_name = "USD", value_parser = parse_dollars)]
    pub(crate) budget_usd: Option<f64>,
    /// Agent calls in flight at once.
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub(crate) concurrency: Option<u64>,
    /// Most agent() calls in the run (default 1000, as Claude Code).
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub(crate) max_calls: Option<u64>,
    /// Fail the run (exit 1) if any agent() call comes back null, not only when all do.
    #[arg(long)]
    pub(crate) fail_on_null: bool,
    /// Write the event stream as JSON lines and the result last.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_positive(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number ≥ 1")),
    }
}

fn parse_dollars(s: &str) -> Result<f64, String> {
    match s.trim_start_matches('$').parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not an amount of dollars ≥ 0 (e.g. 2.50)")),
    }
}

#[derive(Subcommand)]
enum WorkflowsCommand {
    /// Every workflow fleet can find, with where it came from.
    List,
    /// A workflow's header: description, phases, arguments, source.
    #[command(after_help = "Example:\n  fleet workflows show review-code")]
    Show {
        /// Its name.
        name: String,
    },
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// The agents in DIR (default: the project's agents/) with model, budget and capabilities.
    List {
        /// The directory of agent specs.
        dir: Option<PathBuf>,
    },
    /// Check every spec in DIR and report every problem with its place.
    ///
    /// Example: fleet agents validate agents/
    Validate {
        /// The directory of agent specs (default: the project's agents/).
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// The JSON Schema of `agents/<name>.yaml` (also at `docs/agent-spec.schema.json`).
    AgentSpec,
    /// The JSON Schema of the supervisor–worker protocol (also at `docs/ipc.schema.json`).
    Ipc,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Every setting's effective value (secrets redacted) and where it came from.
    Show,
}

/// The hidden subcommand that makes `fleet` the sandbox helper (see `fleet_sandbox::helper_main`).
pub(crate) const SANDBOX_HELPER: &str = "__sandbox-helper";

/// The hidden subcommand that makes `fleet` a specialist worker serving the sample roles
/// (`fleet_specialists::Samples`).
pub(crate) const WORKER: &str = "__worker";

fn main() -> ExitCode {
    // Before anything allocates much: see its docs for why (a fifth of a fan-out's script
    // thread went to growing and trimming heaps). Not glibc: nothing to tune.
    // `FLEET_MALLOC_DEFAULTS=1` keeps glibc's defaults (freed memory goes back sooner).
    if std::env::var_os("FLEET_MALLOC_DEFAULTS").is_none() {
        let _ = fleet_workflow::tune_malloc();
    }
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(a) if a == SANDBOX_HELPER => fleet_sandbox::helper_main(args.collect()),
        Some(a) if a == WORKER => return fleet_specialists::main(fleet_specialists::Samples),
        _ => {}
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`fleet … | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(exit::OK);
            }
            let code = if e.downcast_ref::<config::ConfigError>().is_some()
                || e.downcast_ref::<fleet_core::provider::ProviderError>()
                    .is_some_and(|p| {
                        matches!(p, fleet_core::provider::ProviderError::Config { .. })
                    }) {
                exit::CONFIG
            } else if e.downcast_ref::<app::UsageError>().is_some() {
                exit::USAGE
            } else {
                exit::FAILED
            };
            eprintln!("fleet: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    use config::Overrides;
    let overrides = match &cli.command {
        Command::Run(a) => Overrides {
            provider: a.provider.provider.clone(),
            model: a.model.clone(),
            concurrency: a.concurrency,
            max_calls: a.max_calls,
            budget_usd: a.budget_usd,
            budget_tokens: a.budget_tokens,
            fail_on_null: a.fail_on_null,
            ..Overrides::default()
        },
        Command::Ask {
            model, provider, ..
        } => Overrides {
            provider: provider.provider.clone(),
            ask_model: model.clone(),
            ..Overrides::default()
        },
        Command::Start { provider, .. } => Overrides {
            provider: provider.provider.clone(),
            ..Overrides::default()
        },
        _ => Overrides::default(),
    };
    let app = app::App::load(&overrides)?;
    match cli.command {
        Command::Run(args) => run::run(&app, args),
        Command::Ask { task, json, .. } => ask::ask(&app, &task, json),
        Command::Runs { limit } => inspect::runs(&app, limit),
        Command::Status { run } => inspect::status(&app, run.as_deref()),
        Command::Stop { run } => inspect::stop(&app, &run),
        Command::Trace { run } => inspect::trace(&app, run.as_deref()),
        Command::Cost { run, since } => inspect::cost(&app, run.as_deref(), since.as_deref()),
        Command::Workflows(WorkflowsCommand::List) => inspect::workflows_list(&app),
        Command::Workflows(WorkflowsCommand::Show { name }) => inspect::workflows_show(&app, &name),
        Command::Agents(AgentsCommand::List { dir }) => inspect::agents_list(&app, dir),
        Command::Agents(AgentsCommand::Validate { dir }) => inspect::agents_validate(&app, dir),
        Command::Schema(which) => {
            let schema = match which {
                SchemaCommand::AgentSpec => fleet_core::spec::agent_spec_schema(),
                SchemaCommand::Ipc => fleet_core::ipc::ipc_schema(),
            };
            app.say(&serde_json::to_string_pretty(&schema)?)?;
            Ok(exit::OK)
        }
        Command::Init => init::init(&app),
        Command::Start { headless, .. } => fleet::start(&app, headless),
        Command::Send {
            agent,
            task,
            input,
            test_command,
        } => {
            let input = fleet::task_input(input.as_deref(), test_command.as_deref())?;
            fleet::send(&app, &agent, &task, input)
        }
        Command::Config(ConfigCommand::Show) => {
            app.say(app.config.show(&app.store_path()).trim_end())?;
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fleet", &mut std::io::stdout());
            Ok(exit::OK)
        }
    }
}
