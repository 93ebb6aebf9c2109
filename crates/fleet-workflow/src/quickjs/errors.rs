//! Errors a script raises, located: the line and column in the user's file of a compile error
//! or an uncaught exception, and stacks cleaned of the wrapper fleet adds.

use rquickjs::{CaughtError, Ctx};

use crate::engine::ScriptFailure;
use crate::lex::line_col;
use crate::script::{Script, ScriptError};

use super::PREFIX;

pub(super) fn caught(ctx: &Ctx<'_>, e: rquickjs::Error) -> String {
    match e {
        rquickjs::Error::Exception => ctx.catch().into_exception().map_or_else(
            || "an exception".to_owned(),
            |e| e.message().unwrap_or_default(),
        ),
        other => other.to_string(),
    }
}

/// The place and message of a body that does not compile.
pub(super) fn compile_error(script: &Script, error: CaughtError<'_>) -> ScriptFailure {
    let (message, stack) = match &error {
        CaughtError::Exception(e) => (
            e.message().unwrap_or_default(),
            e.stack().unwrap_or_default(),
        ),
        other => (other.to_string(), String::new()),
    };
    let stack = fix_columns(&stack, &script.origin);
    let (line, column) =
        locate(&stack, &script.origin).unwrap_or_else(|| line_col(&script.source, 0));
    ScriptFailure::Compile(ScriptError {
        origin: script.origin.clone(),
        line,
        column,
        message,
    })
}

/// The first `origin:line:column` in a stack.
pub(super) fn locate(stack: &str, origin: &str) -> Option<(usize, usize)> {
    let needle = format!("{origin}:");
    let at = stack.find(&needle)? + needle.len();
    let mut parts = stack[at..].splitn(3, ':');
    let line = parts.next()?.parse().ok()?;
    let column: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((line, column.parse().ok()?))
}

/// The script's own frames of a stack: the prelude's and the wrapper's call are dropped, and
/// line-1 columns are moved back to where they are in the file.
pub(crate) fn clean_stack(stack: &str, origin: &str) -> String {
    let kept: Vec<&str> = stack
        .lines()
        .filter(|l| !l.contains("<fleet prelude>") && !l.contains("at <eval> ("))
        .collect();
    fix_columns(&kept.join("\n"), origin)
}

/// Undoes the wrapper's shift of line-1 columns in a stack.
pub(super) fn fix_columns(stack: &str, origin: &str) -> String {
    let needle = format!("{origin}:1:");
    let mut out = String::with_capacity(stack.len());
    let mut rest = stack;
    while let Some(at) = rest.find(&needle) {
        let after = at + needle.len();
        out.push_str(&rest[..after]);
        let digits: String = rest[after..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let column: usize = digits.parse().unwrap_or(0);
        out.push_str(&column.saturating_sub(PREFIX.len()).max(1).to_string());
        rest = &rest[after + digits.len()..];
    }
    out.push_str(rest);
    out
}
