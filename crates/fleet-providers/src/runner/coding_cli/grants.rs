//! What an agent may do, as a CLI's permission requests are answered.

use fleet_core::agent::AgentCall;
use fleet_core::spec::{Capability, PermissionMode};

/// What an agent may do, from its spec's capabilities, tools and permission mode (or the
/// call's own capabilities): the answers to a CLI's permission requests.
#[derive(Debug, Clone)]
pub(crate) struct Grants {
    pub(crate) agent: String,
    capabilities: Vec<Capability>,
    tools: Vec<String>,
    pub(crate) mode: PermissionMode,
}

impl Grants {
    pub(crate) fn of(call: &AgentCall) -> Self {
        let spec = call.agent.as_deref();
        Self {
            agent: spec.map_or_else(|| "the agent".to_owned(), |s| s.name.clone()),
            capabilities: call
                .capabilities
                .clone()
                .or_else(|| spec.map(|s| s.capabilities.clone()))
                .unwrap_or_default(),
            tools: spec.map(|s| s.tools.clone()).unwrap_or_default(),
            mode: spec
                .and_then(|s| s.permission_mode)
                .unwrap_or(PermissionMode::Default),
        }
    }

    pub(crate) fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
            || (capability == Capability::WriteFiles
                && matches!(self.mode, PermissionMode::AcceptEdits))
    }

    /// The capability a Claude Code tool needs (`None`: harmless bookkeeping any agent may do).
    fn claude_needs(tool: &str) -> Option<Capability> {
        Some(match tool {
            "Read" | "Glob" | "Grep" | "LS" | "NotebookRead" => Capability::ReadFiles,
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => Capability::WriteFiles,
            "Bash" | "BashOutput" | "KillBash" | "KillShell" | "Monitor" => Capability::RunCommands,
            "Agent" | "Task" => Capability::SpawnSubagents,
            "TodoWrite" | "ToolSearch" | "ExitPlanMode" | "EnterPlanMode" => return None,
            // Anything else (web, MCP, scheduling, …) must be named in the spec's `tools`.
            _ => Capability::RunCommands,
        })
    }

    /// The Claude Code tools the agent may use without being asked (`--allowedTools`).
    pub(crate) fn claude_allowed(&self) -> Vec<String> {
        let mut tools: Vec<String> = [
            "Read",
            "Glob",
            "Grep",
            "LS",
            "NotebookRead",
            "Write",
            "Edit",
            "MultiEdit",
            "NotebookEdit",
            "Bash",
            "BashOutput",
            "KillShell",
            "Agent",
            "Task",
        ]
        .into_iter()
        .filter(|t| {
            Self::claude_needs(t).is_some_and(|c| self.has(c))
                && !(self.mode == PermissionMode::Plan && Self::changes_things(t))
        })
        .map(str::to_owned)
        .collect();
        tools.extend(self.tools.iter().cloned());
        tools
    }

    fn changes_things(tool: &str) -> bool {
        matches!(
            Self::claude_needs(tool),
            Some(Capability::WriteFiles | Capability::RunCommands)
        )
    }

    /// Whether the agent may use Claude Code's `tool`; the refusal says why and what to grant.
    pub(crate) fn claude_tool(&self, tool: &str) -> Result<(), String> {
        if self.tools.iter().any(|t| t == tool) {
            return Ok(());
        }
        if self.mode == PermissionMode::Plan && Self::changes_things(tool) {
            return Err(format!(
                "fleet: {} is in plan mode and may not use {tool}; propose a plan instead",
                self.agent
            ));
        }
        match Self::claude_needs(tool) {
            None => Ok(()),
            Some(c) if self.has(c) => Ok(()),
            Some(c) => Err(format!(
                "fleet: {} may not use {tool}: its spec does not grant the `{}` capability \
                 (add it to `capabilities`, or name the tool in `tools`)",
                self.agent,
                capability_name(c)
            )),
        }
    }

    /// Whether the agent may run a command; the refusal says why.
    pub(crate) fn command(&self, command: &str) -> Result<(), String> {
        if self.mode == PermissionMode::Plan || !self.has(Capability::RunCommands) {
            return Err(format!(
                "fleet: {} may not run `{command}`: {}",
                self.agent,
                if self.mode == PermissionMode::Plan {
                    "it is in plan mode".to_owned()
                } else {
                    "its spec does not grant the `run_commands` capability".to_owned()
                }
            ));
        }
        Ok(())
    }

    /// Whether the agent may change files; the refusal says why.
    pub(crate) fn file_change(&self) -> Result<(), String> {
        if self.mode == PermissionMode::Plan || !self.has(Capability::WriteFiles) {
            return Err(format!(
                "fleet: {} may not change files: {}",
                self.agent,
                if self.mode == PermissionMode::Plan {
                    "it is in plan mode".to_owned()
                } else {
                    "its spec does not grant the `write_files` capability".to_owned()
                }
            ));
        }
        Ok(())
    }
}

fn capability_name(c: Capability) -> &'static str {
    match c {
        Capability::ReadFiles => "read_files",
        Capability::WriteFiles => "write_files",
        Capability::RunCommands => "run_commands",
        Capability::SpawnSubagents => "spawn_subagents",
        _ => "unknown",
    }
}
