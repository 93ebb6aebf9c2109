//! The patch format of the `edit_file` tool.
//!
//! A patch is one or more hunks separated by lines starting with `@@`. In a hunk, lines start
//! with ` ` (context, kept), `-` (removed) or `+` (added). The old text of a hunk (its context
//! and removed lines) must occur exactly once in the file; it is replaced by the new text (its
//! context and added lines). Hunks apply in order, each to the result of the one before.
//!
//! ```text
//! @@
//!  fn main() {
//! -    println!("hi");
//! +    println!("hello");
//!  }
//! ```

/// A patch that does not apply, with the hunk and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hunk {hunk}: {message}")]
pub struct PatchError {
    /// The hunk (from 1).
    pub hunk: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Applies `patch` to `text`.
///
/// # Errors
/// [`PatchError`] naming the hunk that is malformed, not found, or found more than once.
pub fn apply(text: &str, patch: &str) -> Result<String, PatchError> {
    let mut hunks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in patch.lines() {
        if line.starts_with("@@") {
            if hunks.last().is_some_and(|h| !h.is_empty()) {
                hunks.push(Vec::new());
            }
            continue;
        }
        if let Some(last) = hunks.last_mut() {
            last.push(line);
        }
    }
    hunks.retain(|h| !h.is_empty());
    if hunks.is_empty() {
        return Err(PatchError {
            hunk: 1,
            message: "the patch has no lines; give lines starting with ' ', '-' or '+'".into(),
        });
    }
    let mut text = text.to_owned();
    for (i, hunk) in hunks.iter().enumerate() {
        let number = i + 1;
        let mut old = String::new();
        let mut new = String::new();
        for line in hunk {
            let (marker, rest) = line.split_at(line.len().min(1));
            match marker {
                " " | "" => {
                    old.push_str(rest);
                    old.push('\n');
                    new.push_str(rest);
                    new.push('\n');
                }
                "-" => {
                    old.push_str(rest);
                    old.push('\n');
                }
                "+" => {
                    new.push_str(rest);
                    new.push('\n');
                }
                _ => {
                    return Err(PatchError {
                        hunk: number,
                        message: format!(
                            "line {line:?} must start with ' ' (context), '-' (remove) or '+' (add)"
                        ),
                    });
                }
            }
        }
        if old.is_empty() {
            // Pure addition: append to the end of the file.
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&new);
            continue;
        }
        // The file's last line may lack its newline.
        let haystack_owned;
        let haystack = if text.ends_with('\n') {
            text.as_str()
        } else {
            haystack_owned = format!("{text}\n");
            haystack_owned.as_str()
        };
        let count = haystack.matches(&old).count();
        if count != 1 {
            let first = old.lines().next().unwrap_or_default();
            return Err(PatchError {
                hunk: number,
                message: if count == 0 {
                    format!(
                        "its old text (starting {first:?}) is not in the file; read the file again and copy the lines exactly"
                    )
                } else {
                    format!(
                        "its old text (starting {first:?}) occurs {count} times; add context lines so it occurs once"
                    )
                },
            });
        }
        let mut replaced = haystack.replacen(&old, &new, 1);
        if !text.ends_with('\n') && replaced.ends_with('\n') {
            replaced.pop();
        }
        text = replaced;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "fn main() {\n    println!(\"hi\");\n}\n\nfn other() {}\n";

    #[test]
    fn replaces_a_unique_hunk_and_keeps_the_rest() {
        let patch = "@@\n fn main() {\n-    println!(\"hi\");\n+    println!(\"hello\");\n+    println!(\"world\");\n }\n";
        assert_eq!(
            apply(FILE, patch),
            Ok("fn main() {\n    println!(\"hello\");\n    println!(\"world\");\n}\n\nfn other() {}\n".into())
        );
    }

    #[test]
    fn several_hunks_and_pure_additions() {
        let patch = "@@\n-fn other() {}\n+fn other() -> u8 { 1 }\n@@\n+// end\n";
        assert_eq!(
            apply(FILE, patch),
            Ok("fn main() {\n    println!(\"hi\");\n}\n\nfn other() -> u8 { 1 }\n// end\n".into())
        );
    }

    #[test]
    fn missing_ambiguous_and_malformed_hunks_are_named() {
        assert!(
            apply(FILE, "@@\n-nope\n")
                .is_err_and(|e| e.hunk == 1 && e.message.contains("not in the file"))
        );
        assert!(
            apply(FILE, "@@\n }\n@@\n-}\n")
                .is_err_and(|e| e.hunk == 1 && e.message.contains("occurs 2 times"))
        );
        assert!(
            apply(FILE, "@@\n fn main() {\n*bad\n")
                .is_err_and(|e| e.message.contains("must start with"))
        );
        assert!(apply(FILE, "").is_err());
    }

    #[test]
    fn a_file_without_a_final_newline_keeps_it_that_way() {
        assert_eq!(apply("a\nb", "@@\n-b\n+c\n"), Ok("a\nc".into()));
    }
}
