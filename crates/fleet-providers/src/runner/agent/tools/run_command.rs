//! `run_command`: runs a program through the agent's command sandbox.

use std::time::Duration;

use fleet_core::exec::{CommandRequest, CommandSandbox};
use fleet_core::provider::ToolSpec;
use fleet_core::sync::BoxFuture;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, spec};

pub(super) struct RunCommand;

impl Tool for RunCommand {
    fn spec(&self) -> ToolSpec {
        spec(
            "run_command",
            "Run a program (no shell unless you run one) in the working directory and get its exit status and output.",
            json!({"type": "object", "properties": {
                "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                         "description": "Program and arguments, e.g. [\"cargo\", \"test\"]"},
                "timeout_ms": {"type": "integer", "minimum": 1}
            }, "required": ["argv"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let Some(commands) = &ctx.commands else {
                return ToolOutput::error("no command runner is configured");
            };
            let argv: Vec<String> = input
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let Some((program, args)) = argv.split_first() else {
                return ToolOutput::error("argv must name a program");
            };
            let mut request = CommandRequest::new(program.clone(), args.to_vec(), &ctx.workdir);
            if let Some(ms) = input.get("timeout_ms").and_then(Value::as_u64) {
                request.timeout = Duration::from_millis(ms);
            }
            let result = tokio::select! {
                () = ctx.call.cancel.cancelled() => return ToolOutput::error("cancelled"),
                r = commands.run(request) => r,
            };
            match result {
                Ok(out) => {
                    let status = match (out.code, out.signal, out.timed_out) {
                        (_, _, true) => "killed after its timeout".to_owned(),
                        (Some(code), _, _) => format!("exit {code}"),
                        (None, Some(sig), _) => format!("killed by signal {sig}"),
                        (None, None, _) => "ended".to_owned(),
                    };
                    let mut text = format!(
                        "{status}\n--- stdout\n{}\n--- stderr\n{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                    if out.dropped > 0 {
                        text.push_str(&format!("\n({} bytes of output dropped)", out.dropped));
                    }
                    ToolOutput {
                        content: text,
                        is_error: !out.success(),
                    }
                }
                Err(e) => ToolOutput::error(e.to_string()),
            }
        })
    }
}
