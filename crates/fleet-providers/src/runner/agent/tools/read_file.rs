//! `read_file`: a file of the workdir, as text, up to 256 KiB.

use fleet_core::provider::ToolSpec;
use fleet_core::sync::BoxFuture;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, resolve, spec, str_arg};

const MAX_READ: usize = 256 * 1024;

pub(super) struct ReadFile;

impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "read_file",
            "Read a UTF-8 text file. Lines are numbered from 1; use offset/limit for long files.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Path relative to the working directory"},
                "offset": {"type": "integer", "minimum": 1, "description": "First line (from 1)"},
                "limit": {"type": "integer", "minimum": 1, "description": "Most lines"}
            }, "required": ["path"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let path = match str_arg(&input, "path").and_then(|p| resolve(&ctx.workdir, p)) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let text = match tokio::fs::read(&path).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => return ToolOutput::error(format!("{}: {e}", path.display())),
            };
            let offset = input
                .get("offset")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let limit = input
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            let mut out = String::new();
            for (n, line) in (1u64..)
                .zip(text.lines())
                .skip((offset - 1) as usize)
                .take(limit as usize)
            {
                if out.len() > MAX_READ {
                    out.push_str(&format!(
                        "… (cut at {MAX_READ} bytes; read on with offset={n})\n"
                    ));
                    break;
                }
                out.push_str(&format!("{n:>6}\t{line}\n"));
            }
            ToolOutput::ok(out)
        })
    }
}
