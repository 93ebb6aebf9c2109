//! Errors in files people write, located to the line, column and field.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a file a person wrote: where it is and what to do about it.
///
/// Displayed as `file:line:column: field.path: message`, the form editors and terminals turn
/// into links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (as given by the caller; may be relative).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// The field path, e.g. `sandbox.allowed_syscalls[2]`; empty for the whole document.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about a whole file (no position), such as one that cannot be read.
    #[must_use]
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column.max(1))?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one file, at least one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The problems, in the order of the file.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A step in a field path: a key of a mapping or an index of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

/// Writes a path the way people write it in YAML terms: `sandbox.allowed_syscalls[2]`.
pub(crate) fn display_path(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

pub(crate) use crate::sync::did_you_mean;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_clickable() {
        let d = Diagnostic {
            file: "agents/doc-bot.yaml".into(),
            line: 7,
            column: 3,
            field: "sandbox.allowed_syscalls[2]".into(),
            message: "unknown syscall \"opn\" (did you mean \"open\"?)".into(),
        };
        assert_eq!(
            d.to_string(),
            "agents/doc-bot.yaml:7:3: sandbox.allowed_syscalls[2]: unknown syscall \"opn\" (did you mean \"open\"?)"
        );
        assert_eq!(
            Diagnostic::whole_file(Path::new("a.yaml"), "empty").to_string(),
            "a.yaml: empty"
        );
    }

    #[test]
    fn paths_display_as_written() {
        let p = [
            PathSeg::Key("sandbox".into()),
            PathSeg::Key("writable".into()),
            PathSeg::Index(0),
        ];
        assert_eq!(display_path(&p), "sandbox.writable[0]");
    }
}
