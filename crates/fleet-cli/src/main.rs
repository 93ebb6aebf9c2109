//! The `fleet` command: the CLI interface plus glue over fleet's library crates.
//!
//! Every behaviour it shows lives in a library crate; this binary parses, wires and renders.

// The CLI's job is to print; libraries never do.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fleet_core::spec::{SpecSet, agent_spec_schema};

mod worker;

/// Exit codes, documented in `fleet --help`.
mod exit {
    pub(crate) const OK: u8 = 0;
    pub(crate) const INVALID: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
}

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "Run fleets of LLM agents: workflows, sandboxed specialists, every token and dollar accounted for.",
    after_help = "Exit codes: 0 success, 1 invalid input (e.g. agent specs with errors), 2 usage error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with the agents declared in `agents/*.yaml`.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// Print a JSON Schema fleet publishes.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Check every spec in DIR (default: agents) and report every problem with its place.
    ///
    /// Example: fleet agents validate agents/
    Validate {
        /// The directory of agent specs.
        #[arg(default_value = "agents")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// The JSON Schema of `agents/<name>.yaml` (also at `docs/agent-spec.schema.json`).
    AgentSpec,
    /// The JSON Schema of the supervisor–worker protocol (also at `docs/ipc.schema.json`).
    Ipc,
}

/// The hidden subcommand that makes `fleet` the sandbox helper (see `fleet_sandbox::helper_main`).
const SANDBOX_HELPER: &str = "__sandbox-helper";

/// The hidden subcommand that makes `fleet` a specialist worker (see `worker`).
const WORKER: &str = "__worker";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(a) if a == SANDBOX_HELPER => fleet_sandbox::helper_main(args.collect()),
        Some(a) if a == WORKER => return worker::main(),
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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A closed pipe (`fleet … | head`) is not an error.
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::from(exit::OK);
            }
            eprintln!("fleet: {e:#}");
            ExitCode::from(exit::INVALID)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Agents(AgentsCommand::Validate { dir }) => {
            let set =
                SpecSet::load_dir(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            for spec in &set.specs {
                writeln!(
                    out,
                    "ok       {:<20} {} ({})",
                    spec.name, spec.model, spec.role
                )?;
            }
            for d in &set.errors {
                writeln!(out, "error    {d}")?;
            }
            writeln!(
                out,
                "{} valid, {} problem(s) in {}",
                set.specs.len(),
                set.errors.len(),
                dir.display()
            )?;
            Ok(if set.errors.is_empty() {
                exit::OK
            } else {
                exit::INVALID
            })
        }
        Command::Schema(which) => {
            let schema = match which {
                SchemaCommand::AgentSpec => agent_spec_schema(),
                SchemaCommand::Ipc => fleet_core::ipc::ipc_schema(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&schema)?)?;
            Ok(exit::OK)
        }
    }
}
