//! `agent()` options and the content key that journals a call's result for resume.

use std::fmt::Write as _;

use fleet_core::spec::{Capability, Effort};
use serde_json::{Map, Value, json};
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
    pub budget_usd: Option<f64>,
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
                                            .filter(|f| *f >= 0.0)
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
        let spec = json!({
            "prompt": prompt,
            "schema": self.schema,
            "model": self.model,
            "effort": self.effort,
            "isolation": self.isolation,
            "agentType": self.agent_type,
            "capabilities": self.capabilities,
        });
        hex(&Sha256::digest(canonical(&spec).as_bytes()))
    }
}

/// The journal key of the `occurrence`-th call (from 0) with `base` key.
pub(crate) fn call_key(base: &str, occurrence: u32) -> String {
    hex(&Sha256::digest(format!("{base}#{occurrence}").as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// JSON with object keys sorted at every level, no whitespace.
pub(crate) fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // serde_json's map keeps insertion order only with `preserve_order`; sorting by hand makes
    // the key independent of that feature.
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!((ok.budget_tokens, ok.budget_usd), (Some(5), Some(0.5)));
    }
}
