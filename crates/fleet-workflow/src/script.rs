//! Workflow scripts: the `meta` header, read statically (never executed), and the checks a
//! script passes before it may run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::lex::{Kind, LexError, Lexer, Token, line_col};

/// A phase a workflow's header declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhaseMeta {
    /// Its title.
    pub title: String,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The model it suggests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A workflow's `meta` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Meta {
    /// The workflow's name (how `fleet run` and `workflow()` find it).
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its phases, when declared well.
    pub phases: Vec<PhaseMeta>,
    /// When to use it.
    #[serde(rename = "whenToUse", skip_serializing_if = "Option::is_none")]
    pub when_to_use: Option<String>,
    /// A display title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A script that parsed: its header and the body to run.
#[derive(Debug, Clone)]
pub struct Script {
    /// Where it came from: a file path, or `builtin:<name>`.
    pub origin: String,
    /// The header.
    pub meta: Meta,
    /// The header as JSON (what the script sees as `meta`).
    pub meta_json: Value,
    /// The whole source.
    pub source: Arc<str>,
    /// Byte range of the header statement (blanked out before running).
    pub header: std::ops::Range<usize>,
}

/// A script that cannot run, with the place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    /// The file (or `builtin:<name>`).
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )
    }
}

impl Script {
    /// Reads and parses the script at `path`.
    ///
    /// # Errors
    /// [`ScriptError`] for an unreadable file or a bad header or body.
    pub fn load(path: &Path) -> Result<Self, ScriptError> {
        let origin = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|e| ScriptError {
            origin: origin.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the script: {e}"),
        })?;
        Self::parse(origin, source)
    }

    /// Parses `source`; `origin` names it in errors.
    ///
    /// # Errors
    /// [`ScriptError`] at the header's or the body's first problem.
    pub fn parse(
        origin: impl Into<String>,
        source: impl Into<Arc<str>>,
    ) -> Result<Self, ScriptError> {
        let origin = origin.into();
        let source: Arc<str> = source.into();
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(&source, offset);
            ScriptError {
                origin: origin.clone(),
                line,
                column,
                message,
            }
        };
        let mut header = HeaderParser::new(&source);
        let (meta_json, range) = header.parse().map_err(|e| at(e.at, e.message))?;
        let meta = interpret(&meta_json).map_err(|message| at(range.start, message))?;
        scan_body(&source, range.end).map_err(|e| at(e.at, e.message))?;
        Ok(Self {
            origin,
            meta,
            meta_json,
            source,
            header: range,
        })
    }

    /// The source with the header blanked (newlines kept, so every line and column of the body
    /// stays where it was).
    #[must_use]
    pub fn body(&self) -> String {
        let mut out = String::with_capacity(self.source.len());
        out.push_str(&self.source[..self.header.start]);
        for c in self.source[self.header.clone()].chars() {
            out.push(if c == '\n' || c == '\r' { c } else { ' ' });
        }
        out.push_str(&self.source[self.header.end..]);
        out
    }

    /// The file the script came from, if any.
    #[must_use]
    pub fn path(&self) -> Option<PathBuf> {
        (!self.origin.starts_with("builtin:")).then(|| PathBuf::from(&self.origin))
    }
}

fn interpret(meta: &Value) -> Result<Meta, String> {
    let Value::Object(map) = meta else {
        return Err("`meta` must be an object literal: `export const meta = { name: '…', description: '…' }`".into());
    };
    let required = |key: &str| match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("`meta.{key}` must be a non-empty string")),
        None => Err(format!(
            "`meta.{key}` is missing; add `{key}: '…'` to the header"
        )),
    };
    let optional = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let phases = match map.get("phases") {
        Some(Value::Array(items)) => items.iter().filter_map(phase).collect(),
        _ => Vec::new(),
    };
    Ok(Meta {
        name: required("name")?,
        description: required("description")?,
        phases,
        when_to_use: optional("whenToUse"),
        title: optional("title"),
    })
}

fn phase(item: &Value) -> Option<PhaseMeta> {
    let Value::Object(map) = item else {
        return None;
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(PhaseMeta {
        title: text("title")?,
        detail: text("detail"),
        model: text("model"),
    })
}

/// Finds `import` in the body: scripts cannot load modules.
fn scan_body(source: &str, from: usize) -> Result<(), LexError> {
    let mut lexer = Lexer::new(source);
    let mut prev: Option<Token> = None;
    let mut pending_import: Option<Token> = None;
    while let Some(token) = lexer.next_token()? {
        if let Some(import) = pending_import.take()
            && lexer.text(token) != ":"
        {
            return Err(LexError {
                at: import.start,
                message: "`import` is not available in workflow scripts: pass data in with `args`, run another workflow with `workflow()`".into(),
            });
        }
        let member = prev.is_some_and(|p| matches!(lexer.text(p), "." | "?."));
        if token.start >= from
            && token.kind == Kind::Ident
            && lexer.text(token) == "import"
            && !member
        {
            pending_import = Some(token);
        }
        prev = Some(token);
    }
    match pending_import {
        Some(import) => Err(LexError {
            at: import.start,
            message: "`import` is not available in workflow scripts".into(),
        }),
        None => Ok(()),
    }
}

struct HeaderParser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    len: usize,
    last_end: usize,
}

const FORBIDDEN_KEYS: &[&str] = &["__proto__", "constructor", "prototype"];
const MAX_DEPTH: usize = 64;

fn fail<T>(at: usize, message: impl Into<String>) -> Result<T, LexError> {
    Err(LexError {
        at,
        message: message.into(),
    })
}

impl<'a> HeaderParser<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            lexer: Lexer::new(src),
            peeked: None,
            len: src.len(),
            last_end: 0,
        }
    }

    fn next(&mut self) -> Result<Option<Token>, LexError> {
        let token = match self.peeked.take() {
            Some(t) => Some(t),
            None => self.lexer.next_token()?,
        };
        if let Some(t) = token {
            self.last_end = t.end;
        }
        Ok(token)
    }

    fn peek(&mut self) -> Result<Option<Token>, LexError> {
        if self.peeked.is_none() {
            self.peeked = self.lexer.next_token()?;
        }
        Ok(self.peeked)
    }

    fn text(&self, t: Token) -> &'a str {
        self.lexer.text(t)
    }

    fn expect(&mut self, what: &str) -> Result<Token, LexError> {
        match self.next()? {
            Some(t) => Ok(t),
            None => fail(self.len, format!("the header ends early: expected {what}")),
        }
    }

    fn parse(&mut self) -> Result<(Value, std::ops::Range<usize>), LexError> {
        let shape = "a workflow starts with `export const meta = { name: '…', description: '…' }`";
        let mut start = None;
        for word in ["export", "const", "meta", "="] {
            let Some(token) = self.next()? else {
                return fail(self.len, format!("expected `{word}`: {shape}"));
            };
            if self.text(token) != word {
                return fail(
                    token.start,
                    format!("expected `{word}`, found `{}`: {shape}", self.text(token)),
                );
            }
            start.get_or_insert(token.start);
        }
        let value = self.value(0)?;
        if let Some(t) = self.peek()?
            && self.text(t) == ";"
        {
            self.next()?;
        }
        Ok((value, start.unwrap_or(0)..self.last_end))
    }

    fn value(&mut self, depth: usize) -> Result<Value, LexError> {
        let token = self.expect("a value")?;
        if depth > MAX_DEPTH {
            return fail(token.start, "the header nests too deeply");
        }
        let text = self.text(token);
        match (token.kind, text) {
            (Kind::Punct, "{") => self.object(depth),
            (Kind::Punct, "[") => self.array(depth),
            (Kind::Punct, "-") => {
                let number = self.expect("a number after `-`")?;
                if number.kind != Kind::Number {
                    return fail(number.start, "only a number may follow `-` in the header");
                }
                Ok(negate(number_value(self.text(number), number.start)?))
            }
            (Kind::Number, _) => number_value(text, token.start),
            (Kind::Str, _) => Ok(Value::String(unquote(text, token.start)?)),
            (Kind::Template, _) => Ok(Value::String(unquote(text, token.start)?)),
            (Kind::TemplateHead, _) => fail(
                token.start,
                "template strings in the header cannot use `${}`: the header is read without running the script",
            ),
            (Kind::Ident, "true") => Ok(Value::Bool(true)),
            (Kind::Ident, "false") => Ok(Value::Bool(false)),
            (Kind::Ident, "null") => Ok(Value::Null),
            (Kind::Ident, "new") => fail(
                token.start,
                "`new` is not allowed in the header: use literals only",
            ),
            (Kind::Ident, _) => {
                let what = match self.peek()? {
                    Some(t) if self.text(t) == "(" => "calls are",
                    _ => "identifiers are",
                };
                fail(
                    token.start,
                    format!(
                        "`{text}`: {what} not allowed in the header, which is read without running the script; use a literal"
                    ),
                )
            }
            (Kind::Punct, "...") => fail(token.start, "spreads are not allowed in the header"),
            _ => fail(
                token.start,
                format!("unexpected `{text}` in the header: expected a literal"),
            ),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, LexError> {
        let mut items = Vec::new();
        loop {
            if let Some(t) = self.peek()?
                && self.text(t) == "]"
            {
                self.next()?;
                return Ok(Value::Array(items));
            }
            items.push(self.value(depth + 1)?);
            let sep = self.expect("`,` or `]`")?;
            match self.text(sep) {
                "," => {}
                "]" => return Ok(Value::Array(items)),
                other => return fail(sep.start, format!("expected `,` or `]`, found `{other}`")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, LexError> {
        let mut map = Map::new();
        loop {
            let key_token = self.expect("a key or `}`")?;
            let text = self.text(key_token);
            let key = match (key_token.kind, text) {
                (Kind::Punct, "}") => return Ok(Value::Object(map)),
                (Kind::Punct, "[") => {
                    return fail(
                        key_token.start,
                        "computed keys are not allowed in the header",
                    );
                }
                (Kind::Punct, "...") => {
                    return fail(key_token.start, "spreads are not allowed in the header");
                }
                (Kind::Ident, _) => text.to_owned(),
                (Kind::Str, _) => unquote(text, key_token.start)?,
                (Kind::Number, _) => text.to_owned(),
                _ => {
                    return fail(
                        key_token.start,
                        format!("unexpected `{text}`: expected a key"),
                    );
                }
            };
            if FORBIDDEN_KEYS.contains(&key.as_str()) {
                return fail(
                    key_token.start,
                    format!("the key `{key}` is not allowed in the header"),
                );
            }
            let colon = self.expect("`:`")?;
            match self.text(colon) {
                ":" => {}
                "(" => {
                    return fail(
                        key_token.start,
                        format!("`{key}`: methods are not allowed in the header"),
                    );
                }
                "," | "}" => {
                    return fail(
                        key_token.start,
                        format!(
                            "`{key}`: shorthand properties are identifiers, which are not allowed in the header; write `{key}: <literal>`"
                        ),
                    );
                }
                _ if key_token.kind == Kind::Ident
                    && matches!(key.as_str(), "get" | "set" | "async") =>
                {
                    return fail(
                        key_token.start,
                        "accessors and methods are not allowed in the header",
                    );
                }
                other => {
                    return fail(
                        colon.start,
                        format!("expected `:` after `{key}`, found `{other}`"),
                    );
                }
            }
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            let sep = self.expect("`,` or `}`")?;
            match self.text(sep) {
                "," => {}
                "}" => return Ok(Value::Object(map)),
                other => return fail(sep.start, format!("expected `,` or `}}`, found `{other}`")),
            }
        }
    }
}

fn negate(value: Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_i64()
            .and_then(i64::checked_neg)
            .map(Value::from)
            .or_else(|| {
                n.as_f64()
                    .and_then(|f| serde_json::Number::from_f64(-f))
                    .map(Value::Number)
            })
            .unwrap_or(Value::Null),
        other => other,
    }
}

fn number_value(text: &str, at: usize) -> Result<Value, LexError> {
    let clean = text.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find(|(prefix, _)| lower.starts_with(prefix));
    if let Some((prefix, radix)) = radix {
        return u64::from_str_radix(&lower[prefix.len()..], radix)
            .map(Value::from)
            .or_else(|_| fail(at, format!("`{text}` is not a number")));
    }
    if let Ok(int) = clean.parse::<i64>() {
        return Ok(Value::from(int));
    }
    match clean.parse::<f64>() {
        Ok(f) => Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Err(_) => fail(at, format!("`{text}` is not a number")),
    }
}

/// The value of a string or template literal token (quotes included).
fn unquote(text: &str, at: usize) -> Result<String, LexError> {
    let inner = &text[1..text.len().saturating_sub(1)];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            return fail(at, "a string ends in a lone backslash");
        };
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '0' => out.push('\0'),
            '\n' => {}
            'u' => {
                let hex: String = if chars.clone().next() == Some('{') {
                    chars.next();
                    chars.by_ref().take_while(|&c| c != '}').collect()
                } else {
                    chars.by_ref().take(4).collect()
                };
                let code = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                match code {
                    Some(c) => out.push(c),
                    None => return fail(at, format!("`\\u{hex}` is not a valid escape")),
                }
            }
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => return fail(at, format!("`\\x{hex}` is not a valid escape")),
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}
