//! `list_dir`: the entries of a directory of the workdir.

use fleet_core::provider::ToolSpec;
use fleet_core::sync::BoxFuture;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, resolve, spec};

pub(super) struct ListDir;

impl Tool for ListDir {
    fn spec(&self) -> ToolSpec {
        spec(
            "list_dir",
            "List a directory: one entry a line, directories ending in '/'.",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "Directory relative to the working directory (default '.')"}
            }}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let rel = input.get("path").and_then(Value::as_str).unwrap_or(".");
            let path = match resolve(&ctx.workdir, rel) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let mut entries = match tokio::fs::read_dir(&path).await {
                Ok(e) => e,
                Err(e) => return ToolOutput::error(format!("{rel}: {e}")),
            };
            let mut names = Vec::new();
            while let Ok(Some(entry)) = entries.next_entry().await {
                let mut name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                    name.push('/');
                }
                names.push(name);
            }
            names.sort();
            ToolOutput::ok(names.join("\n"))
        })
    }
}
