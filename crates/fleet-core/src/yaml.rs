//! Loading YAML that people write: every error located and explained.
//!
//! The text is read into a tree that remembers where each node stands, checked against the
//! type's JSON Schema (so that every problem is reported at once, each at its line and column),
//! and only then turned into the Rust type.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use crate::diagnostic::{Diagnostic, Diagnostics, PathSeg, did_you_mean, display_path};

/// A YAML node with the place it was written.
type Located = Spanned<Node>;

enum Node {
    Scalar(Value),
    Seq(Vec<Located>),
    Map(Vec<(Spanned<String>, Located)>),
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

fn key_text(key: &Spanned<String>) -> String {
    key.value.clone()
}

fn to_json(node: &Located) -> Value {
    match &node.value {
        Node::Scalar(v) => v.clone(),
        Node::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
    }
}

/// The node at `path`, or the deepest one on the way there.
fn locate<'n>(mut node: &'n Located, path: &[PathSeg]) -> &'n Located {
    for seg in path {
        let next = match (&node.value, seg) {
            (Node::Map(entries), PathSeg::Key(k)) => entries
                .iter()
                .find(|(key, _)| key_text(key) == *k)
                .map(|(_, v)| v),
            (Node::Seq(items), PathSeg::Index(i)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node
}

/// The key node of `key` inside the mapping at `path`, for pointing at an unknown field itself.
fn locate_key<'n>(root: &'n Located, path: &[PathSeg], key: &str) -> Option<&'n Spanned<String>> {
    match &locate(root, path).value {
        Node::Map(entries) => entries
            .iter()
            .find(|(k, _)| key_text(k) == key)
            .map(|(k, _)| k),
        _ => None,
    }
}

fn at(file: &Path, loc: Location, path: &[PathSeg], message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: loc.line(),
        column: loc.column(),
        field: display_path(path),
        message,
    }
}

fn pointer_to_path(pointer: &str) -> Vec<PathSeg> {
    pointer
        .split('/')
        .skip(1)
        .map(|raw| {
            let seg = raw.replace("~1", "/").replace("~0", "~");
            match seg.parse::<usize>() {
                Ok(i) => PathSeg::Index(i),
                Err(_) => PathSeg::Key(seg),
            }
        })
        .collect()
}

/// Follows local `$ref`s (`#/$defs/Name`) and the one non-null branch of an `anyOf`/`oneOf`, as
/// schemars writes nested structs and `Option`s. A choice among several branches (an enum) is
/// left as it is.
fn resolve<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(target) => node = target,
                None => return node,
            }
        } else if let Some(branches) = node
            .get("anyOf")
            .or_else(|| node.get("oneOf"))
            .and_then(Value::as_array)
        {
            let mut real = branches
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"));
            match (real.next(), real.next()) {
                (Some(only), None) => node = only,
                _ => return node,
            }
        } else {
            return node;
        }
    }
    node
}

/// The schema node for the value at `path`.
fn schema_at<'s>(schema: &'s Value, path: &[PathSeg]) -> Option<&'s Value> {
    let mut node = resolve(schema, schema);
    for seg in path {
        let next = match seg {
            PathSeg::Key(k) => node.get("properties").and_then(|p| p.get(k)),
            PathSeg::Index(_) => node.get("items"),
        }?;
        node = resolve(schema, next);
    }
    Some(node)
}

/// The values an enumeration at `path` allows (empty when it is not one).
fn allowed_values(schema: &Value, path: &[PathSeg]) -> Vec<String> {
    let Some(node) = schema_at(schema, path) else {
        return Vec::new();
    };
    let consts = |n: &Value| -> Vec<Value> {
        match (n.get("const"), n.get("enum").and_then(Value::as_array)) {
            (Some(c), _) => vec![c.clone()],
            (None, Some(values)) => values.clone(),
            (None, None) => Vec::new(),
        }
    };
    let mut values = consts(node);
    for key in ["oneOf", "anyOf"] {
        for branch in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            values.extend(consts(resolve(schema, branch)));
        }
    }
    values
        .iter()
        .filter(|v| !v.is_null())
        .map(Value::to_string)
        .collect()
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A value for a message: JSON, shortened when long.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// The field names the schema allows for the mapping at `path`, to suggest the one meant.
fn fields_at(schema: &Value, path: &[PathSeg]) -> Vec<String> {
    schema_at(schema, path)
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// A JSON Schema and its compiled validator.
pub(crate) struct CompiledSchema {
    schema: Value,
    validator: Result<jsonschema::Validator, String>,
}

impl CompiledSchema {
    pub(crate) fn new(schema: Value) -> Self {
        let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string());
        Self { schema, validator }
    }
}

/// A document read and located, ready to be checked and converted.
pub(crate) struct Document<'f> {
    file: &'f Path,
    root: Located,
    json: Value,
}

impl<'f> Document<'f> {
    /// Parses YAML text. A syntax error is returned located.
    pub(crate) fn parse(file: &'f Path, text: &str) -> Result<Self, Diagnostic> {
        let mut options = serde_saphyr::Options::default();
        // `no`, `y`, `on` stay strings: only `true`/`false` are booleans.
        options.strict_booleans = true;
        options.with_snippet = false;
        let root: Located = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let loc = e.location().unwrap_or(Location::UNKNOWN);
            let message = e.without_snippet().to_string();
            // The message may carry its own position prefix; keep only the explanation.
            let message = message.lines().next().unwrap_or_default().to_owned();
            at(file, loc, &[], format!("invalid YAML: {message}"))
        })?;
        let json = to_json(&root);
        Ok(Self { file, root, json })
    }

    /// The document as JSON.
    pub(crate) fn json(&self) -> &Value {
        &self.json
    }

    /// A diagnostic at the node `path` points to.
    pub(crate) fn error_at(&self, path: &[PathSeg], message: String) -> Diagnostic {
        at(
            self.file,
            locate(&self.root, path).referenced,
            path,
            message,
        )
    }

    /// Every way the document breaks `schema`, each located; then the typed value.
    pub(crate) fn check<T: DeserializeOwned>(
        &self,
        schema: &CompiledSchema,
    ) -> Result<T, Diagnostics> {
        let validator = schema.validator.as_ref().map_err(|e| {
            // The schema is generated from fleet's own types: failing to compile is a bug in
            // fleet, still reported rather than panicking.
            Diagnostics(vec![Diagnostic::whole_file(
                self.file,
                format!("internal error: the schema does not compile: {e}"),
            )])
        })?;
        let mut problems: Vec<Diagnostic> = validator
            .iter_errors(&self.json)
            .flat_map(|e| self.explain(&e, &schema.schema))
            .collect();
        if problems.is_empty() {
            match serde_path_to_error::deserialize::<_, T>(&self.json) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let path: Vec<PathSeg> = e
                        .path()
                        .iter()
                        .filter_map(|seg| match seg {
                            serde_path_to_error::Segment::Seq { index } => {
                                Some(PathSeg::Index(*index))
                            }
                            serde_path_to_error::Segment::Map { key } => {
                                Some(PathSeg::Key(key.clone()))
                            }
                            serde_path_to_error::Segment::Enum { variant } => {
                                Some(PathSeg::Key(variant.clone()))
                            }
                            serde_path_to_error::Segment::Unknown => None,
                        })
                        .collect();
                    problems.push(self.error_at(&path, e.into_inner().to_string()));
                }
            }
        }
        problems.sort_by_key(|d| (d.line, d.column));
        problems.dedup();
        Err(Diagnostics(problems))
    }

    /// One schema error in the user's words: where, what was expected, what was found. An
    /// error about unknown fields is one diagnostic per field.
    fn explain(&self, error: &jsonschema::ValidationError<'_>, schema: &Value) -> Vec<Diagnostic> {
        use jsonschema::error::ValidationErrorKind as K;
        let path = pointer_to_path(error.instance_path().as_str());
        let found = shown(error.instance());
        let expected = |fallback: String| match expected_at(schema, &path) {
            Some(what) => format!("expected {what}, found {found}"),
            None => fallback,
        };
        let message = match error.kind() {
            K::AdditionalProperties { unexpected } => {
                let fields = fields_at(schema, &path);
                return unexpected
                    .iter()
                    .map(|key| {
                        let hint = match did_you_mean(key, fields.iter().map(String::as_str)) {
                            Some(s) => format!(" (did you mean \"{s}\"?)"),
                            None => format!("; expected one of: {}", fields.join(", ")),
                        };
                        let mut key_path = path.clone();
                        key_path.push(PathSeg::Key(key.clone()));
                        let loc = locate_key(&self.root, &path, key)
                            .map_or_else(|| locate(&self.root, &path).referenced, |k| k.referenced);
                        at(
                            self.file,
                            loc,
                            &key_path,
                            format!("unknown field \"{key}\"{hint}"),
                        )
                    })
                    .collect();
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let mut field_path = path.clone();
                field_path.push(PathSeg::Key(name.to_owned()));
                return vec![at(
                    self.file,
                    locate(&self.root, &path).referenced,
                    &field_path,
                    format!("missing required field \"{name}\""),
                )];
            }
            K::AnyOf { .. } | K::OneOfNotValid { .. } | K::Enum { .. } | K::Constant { .. } => {
                let allowed = allowed_values(schema, &path);
                if allowed.is_empty() {
                    expected(error.to_string())
                } else {
                    format!("{found} is not one of {}", one_of(&allowed))
                }
            }
            K::Type { .. }
            | K::Minimum { .. }
            | K::Maximum { .. }
            | K::ExclusiveMinimum { .. }
            | K::ExclusiveMaximum { .. }
            | K::MinLength { .. }
            | K::MaxLength { .. }
            | K::MinItems { .. }
            | K::Pattern { .. } => expected(error.to_string()),
            _ => error.to_string(),
        };
        vec![self.error_at(&path, message)]
    }
}

/// What the value at `path` must be, in words: the schema's `x-expected` where fleet wrote one
/// (`"a number of dollars like 2.50"`), else read off the schema's types and bounds (`"a whole
/// number ≥ 1"`, `"true or false"`).
fn expected_at(schema: &Value, path: &[PathSeg]) -> Option<String> {
    let mut node = schema;
    for seg in path {
        let here = resolve(schema, node);
        node = match seg {
            PathSeg::Key(k) => here.get("properties").and_then(|p| p.get(k)),
            PathSeg::Index(_) => here.get("items"),
        }?;
    }
    describe(schema, node, 0)
}

fn describe(root: &Value, node: &Value, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    if let Some(text) = node.get("x-expected").and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    if let Some(target) = node
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|p| root.pointer(p))
    {
        return describe(root, target, depth + 1);
    }
    if let Some(branches) = node
        .get("anyOf")
        .or_else(|| node.get("oneOf"))
        .and_then(Value::as_array)
    {
        let mut parts: Vec<String> = Vec::new();
        for branch in branches {
            if branch.get("type").and_then(Value::as_str) == Some("null") {
                continue;
            }
            let part = describe(root, branch, depth + 1)?;
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        return (!parts.is_empty()).then(|| one_of(&parts));
    }
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(Value::to_string)
            .collect();
        return Some(format!("one of {}", one_of(&values)));
    }
    if let Some(value) = node.get("const") {
        return Some(value.to_string());
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let at_least = |what: &str| match node.get("minimum").and_then(Value::as_f64) {
        Some(min) => format!("{what} ≥ {min}"),
        None => what.to_owned(),
    };
    let parts: Vec<String> = types
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "integer" => at_least("a whole number"),
            "number" => at_least("a number"),
            "boolean" => "true or false".to_owned(),
            "string" if node.get("pattern").is_some() => "text of the right form".to_owned(),
            "string" if node.get("minLength").and_then(Value::as_u64).unwrap_or(0) > 0 => {
                "non-empty text".to_owned()
            }
            "string" => "text".to_owned(),
            "array" => match node.get("items").and_then(|i| describe(root, i, depth + 1)) {
                Some(item) => format!("a list (of {item})"),
                None => "a list".to_owned(),
            },
            "object" => "a mapping of keys to values".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    (!parts.is_empty()).then(|| one_of(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_where_they_are() {
        let text = "a: 1\nb:\n  - x\n  - y: true\n";
        let doc = Document::parse(Path::new("t.yaml"), text).unwrap();
        assert_eq!(
            doc.json(),
            &serde_json::json!({"a": 1, "b": ["x", {"y": true}]})
        );
        let d = doc.error_at(
            &[
                PathSeg::Key("b".into()),
                PathSeg::Index(1),
                PathSeg::Key("y".into()),
            ],
            "bad".into(),
        );
        assert_eq!(d.to_string(), "t.yaml:4:8: b[1].y: bad");
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = Document::parse(Path::new("t.yaml"), "a: [1, 2\nb: 3\n")
            .err()
            .unwrap();
        assert!(err.line >= 1, "{err}");
        assert!(err.message.starts_with("invalid YAML: "), "{err}");
    }
}
