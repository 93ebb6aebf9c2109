//! `agent()` options and the content key that journals a call's result for resume.

use fleet_core::money::Usd;
use fleet_core::spec::{Capability, Effort};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The options of one `agent()` call, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CallOptions {
    pub label: Option<String>,
    pub phase: Option<String>,
    pub schema: Option<Value>,
    pub model: Option<String>,
    pub effort: Option<Effort>,
    pub isolation: Option<String>,
    pub agent_type: Option<String>,
    pub capabilities: Option<Vec<Capability>>,
    pub max_tool_calls: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub budget_tokens: Option<u64>,
    pub budget_usd: Option<Usd>,
    /// Options nobody knows, to warn about.
    pub unknown: Vec<String>,
}

const EFFORTS: &str = "low, medium, high, xhigh, max";

fn string(key: &str, value: &Value) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("agent(): `{key}` must be a string"))
}

fn count(key: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .ok_or_else(|| format!("agent(): `{key}` must be a whole number ≥ 0"))
}

impl CallOptions {
    /// Reads `opts` (a JSON object); unknown keys are collected, not refused.
    pub(crate) fn parse(opts: Option<&Value>) -> Result<Self, String> {
        let mut out = Self::default();
        let Some(opts) = opts else {
            return Ok(out);
        };
        let Value::Object(map) = opts else {
            return Err("agent(): options must be an object".into());
        };
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            match key.as_str() {
                "label" => out.label = Some(string(key, value)?),
                "phase" => out.phase = Some(string(key, value)?),
                "model" => out.model = Some(string(key, value)?),
                "agentType" => out.agent_type = Some(string(key, value)?),
                "isolation" => {
                    let isolation = string(key, value)?;
                    if isolation != "worktree" {
                        return Err(format!(
                            "agent(): `isolation` must be 'worktree', got '{isolation}'"
                        ));
                    }
                    out.isolation = Some(isolation);
                }
                "effort" => {
                    let name = string(key, value)?;
                    out.effort =
                        Some(serde_json::from_value(Value::String(name.clone())).map_err(
                            |_| format!("agent(): `effort` must be one of {EFFORTS}, got '{name}'"),
                        )?);
                }
                "schema" => {
                    let root_is_object = value.get("type").and_then(Value::as_str)
                        == Some("object")
                        || (value.is_object() && value.get("properties").is_some());
                    if !root_is_object {
                        return Err(
                            "agent(): `schema` must be a JSON Schema whose root is an object ({ type: 'object', properties: { … } })"
                                .into(),
                        );
                    }
                    out.schema = Some(value.clone());
                }
                "capabilities" => {
                    let items = value
                        .as_array()
                        .ok_or("agent(): `capabilities` must be an array such as ['read_files']")?;
                    let mut caps = Vec::with_capacity(items.len());
                    for item in items {
                        caps.push(serde_json::from_value(item.clone()).map_err(|_| {
                            format!(
                                "agent(): unknown capability {item}; known: read_files, write_files, run_commands, spawn_subagents"
                            )
                        })?);
                    }
                    out.capabilities = Some(caps);
                }
                "max_tool_calls" => {
                    out.max_tool_calls = Some(
                        u32::try_from(count(key, value)?)
                            .map_err(|_| "agent(): `max_tool_calls` is too large".to_owned())?,
                    );
                }
                "timeout_ms" => out.timeout_ms = Some(count(key, value)?),
                "budget" => match value {
                    Value::Object(budget) => {
                        for (k, v) in budget {
                            match k.as_str() {
                                "tokens" => out.budget_tokens = Some(count("budget.tokens", v)?),
                                "usd" => {
                                    out.budget_usd = Some(
                                        v.as_f64()
                                            .and_then(Usd::from_dollars)
                                            .ok_or("agent(): `budget.usd` must be a number ≥ 0")?,
                                    );
                                }
                                other => out.unknown.push(format!("budget.{other}")),
                            }
                        }
                    }
                    other => out.budget_tokens = Some(count("budget", other)?),
                },
                _ => out.unknown.push(key.clone()),
            }
        }
        Ok(out)
    }

    /// SHA-256 over the canonical JSON of what determines the call's result. `label`, `phase`
    /// and the limits are not part of it.
    pub(crate) fn base_key(&self, prompt: &str) -> String {
        // The canonical JSON of {prompt, schema, model, effort, isolation, agentType,
        // capabilities}, written in sorted key order without building the object: this runs
        // once per call and the prompt can be large.
        let mut out = Vec::with_capacity(prompt.len() + 128);
        out.extend_from_slice(b"{\"agentType\":");
        write_json(&mut out, &self.agent_type);
        out.extend_from_slice(b",\"capabilities\":");
        write_structured(&mut out, &self.capabilities);
        out.extend_from_slice(b",\"effort\":");
        write_structured(&mut out, &self.effort);
        out.extend_from_slice(b",\"isolation\":");
        write_json(&mut out, &self.isolation);
        out.extend_from_slice(b",\"model\":");
        write_json(&mut out, &self.model);
        out.extend_from_slice(b",\"prompt\":");
        write_json(&mut out, prompt);
        out.extend_from_slice(b",\"schema\":");
        match &self.schema {
            Some(schema) => write_canonical(&mut out, schema),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        hex(&Sha256::digest(&out))
    }
}

/// The journal key of the `occurrence`-th call (from 0) with `base` key.
pub(crate) fn call_key(base: &str, occurrence: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(base.as_bytes());
    hasher.update(b"#");
    // The occurrence in decimal, written without a String.
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut n = occurrence;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    hasher.update(&digits[at..]);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
    // Only ASCII digits went in.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `value` as serde_json writes it: for strings and scalars that is canonical.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Appends `value` as canonical JSON by way of a [`Value`], for types that may hold maps.
fn write_structured<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    write_canonical(out, &serde_json::to_value(value).unwrap_or(Value::Null));
}

/// Appends `value` as JSON with object keys sorted at every level, no whitespace.
fn write_canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, key.as_str());
                out.push(b':');
                write_canonical(out, item);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item);
            }
            out.push(b']');
        }
        scalar => write_json(out, scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_key_ignores_label_phase_limits_and_key_order() {
        let a = CallOptions::parse(Some(&json!({
            "label": "a", "phase": "p", "model": "m", "timeout_ms": 5,
            "schema": {"type": "object", "properties": {"x": {"type": "string"}, "a": {}}}
        })))
        .unwrap();
        let b = CallOptions::parse(Some(&json!({
            "model": "m",
            "schema": {"properties": {"a": {}, "x": {"type": "string"}}, "type": "object"}
        })))
        .unwrap();
        assert_eq!(a.base_key("p"), b.base_key("p"));
        assert_ne!(a.base_key("p"), a.base_key("q"));
        let c = CallOptions::parse(Some(&json!({"model": "other"}))).unwrap();
        assert_ne!(c.base_key("p"), b.base_key("p"));
        assert_ne!(call_key("k", 0), call_key("k", 1));
        assert_eq!(call_key("k", 0).len(), 64);
    }

    #[test]
    fn the_key_is_the_sha256_of_the_canonical_spec() {
        // Journals written by earlier versions must still resume: the hashed text is fixed.
        let opts = CallOptions::parse(Some(&json!({
            "agentType": "doc-bot", "capabilities": ["read_files"], "effort": "high",
            "isolation": "worktree", "model": "m",
            "schema": {"type": "object", "properties": {"b\"": {"type": "string"}, "a": [1.5, null]}}
        })))
        .unwrap();
        let text = r#"{"agentType":"doc-bot","capabilities":["read_files"],"effort":"high","isolation":"worktree","model":"m","prompt":"say \"hi\"\n","schema":{"properties":{"a":[1.5,null],"b\"":{"type":"string"}},"type":"object"}}"#;
        assert_eq!(
            opts.base_key("say \"hi\"\n"),
            hex(&Sha256::digest(text.as_bytes()))
        );
        let bare = r#"{"agentType":null,"capabilities":null,"effort":null,"isolation":null,"model":null,"prompt":"p","schema":null}"#;
        assert_eq!(
            CallOptions::default().base_key("p"),
            hex(&Sha256::digest(bare.as_bytes()))
        );
        assert_eq!(call_key("ab", 12), hex(&Sha256::digest(b"ab#12")));
        assert_eq!(call_key("ab", 0), hex(&Sha256::digest(b"ab#0")));
        assert_eq!(
            call_key("ab", u32::MAX),
            hex(&Sha256::digest(b"ab#4294967295"))
        );
        assert_eq!(hex(&[0x00, 0x9f, 0xa0]), "009fa0");
    }

    #[test]
    fn bad_options_are_named_and_unknown_ones_collected() {
        let err = |v: Value| CallOptions::parse(Some(&v)).unwrap_err();
        assert!(err(json!({"effort": "huge"})).contains("low, medium, high, xhigh, max"));
        assert!(err(json!({"schema": {"type": "array"}})).contains("root is an object"));
        assert!(err(json!({"capabilities": ["fly"]})).contains("unknown capability \"fly\""));
        assert!(err(json!({"timeout_ms": -1})).contains("whole number"));
        let ok = CallOptions::parse(Some(
            &json!({"colour": "red", "budget": {"tokens": 5, "usd": 0.5}}),
        ))
        .unwrap();
        assert_eq!(ok.unknown, vec!["colour".to_owned()]);
        assert_eq!(
            (ok.budget_tokens, ok.budget_usd),
            (Some(5), Usd::from_dollars(0.5))
        );
    }
}
