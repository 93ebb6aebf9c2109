//! `edit_file`: applies a hunk patch to a file of the workdir.

use fleet_core::provider::ToolSpec;
use fleet_core::sync::BoxFuture;
use serde_json::{Value, json};

use super::super::patch;
use super::{Tool, ToolContext, ToolOutput, resolve, spec, str_arg};

pub(super) struct EditFile;

impl Tool for EditFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "edit_file",
            "Edit a text file with a patch: hunks separated by '@@' lines; in a hunk, lines start with ' ' (context), '-' (remove) or '+' (add). Each hunk's old text must occur exactly once.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "patch": {"type": "string"}
            }, "required": ["path", "patch"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let (path, patch_text) = match (
                str_arg(&input, "path").and_then(|p| resolve(&ctx.workdir, p)),
                str_arg(&input, "patch"),
            ) {
                (Ok(p), Ok(c)) => (p, c.to_owned()),
                (Err(e), _) | (_, Err(e)) => return e,
            };
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) => return ToolOutput::error(format!("{}: {e}", path.display())),
            };
            match patch::apply(&text, &patch_text) {
                Ok(new) => match tokio::fs::write(&path, new.as_bytes()).await {
                    Ok(()) => ToolOutput::ok(format!("patched {}", path.display())),
                    Err(e) => ToolOutput::error(format!("{}: {e}", path.display())),
                },
                Err(e) => ToolOutput::error(format!("{}: {e}", path.display())),
            }
        })
    }
}
