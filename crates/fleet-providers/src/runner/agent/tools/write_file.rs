//! `write_file`: writes a file of the workdir.

use fleet_core::provider::ToolSpec;
use fleet_core::sync::BoxFuture;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, resolve, spec, str_arg};

pub(super) struct WriteFile;

impl Tool for WriteFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "write_file",
            "Create or overwrite a text file (parent directories are created).",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let (path, content) = match (
                str_arg(&input, "path").and_then(|p| resolve(&ctx.workdir, p)),
                str_arg(&input, "content"),
            ) {
                (Ok(p), Ok(c)) => (p, c.to_owned()),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            if let Some(parent) = path.parent()
                && let Err(e) = tokio::fs::create_dir_all(parent).await
            {
                return ToolOutput::error(format!("{}: {e}", parent.display()));
            }
            match tokio::fs::write(&path, content.as_bytes()).await {
                Ok(()) => ToolOutput::ok(format!(
                    "wrote {} bytes to {}",
                    content.len(),
                    path.display()
                )),
                Err(e) => ToolOutput::error(format!("{}: {e}", path.display())),
            }
        })
    }
}
