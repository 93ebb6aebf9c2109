//! `search_text`: lines of the workdir's files that contain a text.

use std::path::Path;

use fleet_core::provider::ToolSpec;
use fleet_core::sync::BoxFuture;
use serde_json::{Value, json};

use super::{Tool, ToolContext, ToolOutput, resolve, spec, str_arg};

pub(super) struct SearchText;

const MAX_MATCHES: usize = 200;

const SKIP_DIRS: [&str; 4] = [".git", "target", "node_modules", ".fleet"];

fn search(root: &Path, dir: &Path, needle: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        if out.len() >= MAX_MATCHES {
            return;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !SKIP_DIRS.iter().any(|s| entry.file_name() == *s) {
                search(root, &path, needle, out);
            }
        } else if kind.is_file()
            && let Ok(text) = std::fs::read_to_string(&path)
        {
            let shown = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            for (n, line) in (1..).zip(text.lines()) {
                if line.contains(needle) {
                    out.push(format!("{shown}:{n}: {}", line.trim()));
                    if out.len() >= MAX_MATCHES {
                        return;
                    }
                }
            }
        }
    }
}

impl Tool for SearchText {
    fn spec(&self) -> ToolSpec {
        spec(
            "search_text",
            "Find lines containing a literal string in the files under a path (skips .git, target, node_modules). Answers file:line: text.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string", "minLength": 1},
                "path": {"type": "string", "description": "Where to search (default '.')"}
            }, "required": ["pattern"]}),
        )
    }
    fn call<'a>(&'a self, input: Value, ctx: &'a ToolContext) -> BoxFuture<'a, ToolOutput> {
        Box::pin(async move {
            let pattern = match str_arg(&input, "pattern") {
                Ok(p) if !p.is_empty() => p.to_owned(),
                Ok(_) => return ToolOutput::error("pattern must not be empty"),
                Err(e) => return e,
            };
            let rel = input.get("path").and_then(Value::as_str).unwrap_or(".");
            let path = match resolve(&ctx.workdir, rel) {
                Ok(p) => p,
                Err(e) => return e,
            };
            let root = ctx.workdir.clone();
            let found = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                if path.is_file() {
                    search(&root, path.parent().unwrap_or(&root), &pattern, &mut out);
                    let name = path
                        .strip_prefix(&root)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    out.retain(|l| l.starts_with(&format!("{name}:")));
                } else {
                    search(&root, &path, &pattern, &mut out);
                }
                out
            })
            .await
            .unwrap_or_default();
            if found.is_empty() {
                ToolOutput::ok("no matches")
            } else {
                let more = if found.len() >= MAX_MATCHES {
                    "\n… (more matches; narrow the path)"
                } else {
                    ""
                };
                ToolOutput::ok(found.join("\n") + more)
            }
        })
    }
}
