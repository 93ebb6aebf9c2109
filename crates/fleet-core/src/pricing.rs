//! Prices: what a model's tokens cost, from a dated, overridable table.
//!
//! ```
//! use fleet_core::pricing::PriceTable;
//! use fleet_core::usage::TokenUsage;
//!
//! let prices = PriceTable::builtin()?;
//! let usage = TokenUsage::from_anthropic(1_000, 500, 0, 0, 10_000);
//! let cost = prices.cost("claude-sonnet-4-5-20250929", &usage).expect("a listed model");
//! assert_eq!(cost.to_string(), "$0.0135"); // 1000×3 + 10000×0.3 + 500×15, per million
//! assert!(prices.cost("my-own-model", &usage).is_none()); // unknown, never $0
//! # Ok::<(), fleet_core::Diagnostics>(())
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostics;
use crate::money::Usd;
use crate::usage::TokenUsage;
use crate::yaml::{CompiledSchema, Document};

/// The table fleet ships, as a YAML data file.
pub const BUILTIN_PRICES_YAML: &str = include_str!("../data/prices.yaml");

/// What one model's tokens cost, in nano-dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// Uncached input.
    pub input: Usd,
    /// Cache writes with the 5-minute lifetime.
    pub cache_write: Usd,
    /// Cache writes with the 1-hour lifetime.
    pub cache_write_1h: Usd,
    /// Cache reads.
    pub cache_read: Usd,
    /// Output.
    pub output: Usd,
}

impl ModelPrice {
    /// The price of a model that costs nothing (a local server, the offline provider).
    pub const FREE: Self = Self {
        input: Usd::ZERO,
        cache_write: Usd::ZERO,
        cache_write_1h: Usd::ZERO,
        cache_read: Usd::ZERO,
        output: Usd::ZERO,
    };

    /// What `usage` costs at this price.
    #[must_use]
    pub fn cost(&self, usage: &TokenUsage) -> Usd {
        let part = |tokens: u64, per_million: Usd| -> i128 {
            i128::from(tokens) * i128::from(per_million.nanos())
        };
        let total = part(usage.input, self.input)
            + part(usage.cache_write, self.cache_write)
            + part(usage.cache_write_1h, self.cache_write_1h)
            + part(usage.cache_read, self.cache_read)
            + part(usage.output, self.output);
        // Round half up to whole nano-dollars.
        let nanos = (total + 500_000) / 1_000_000;
        Usd::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// The most a request can cost: `prompt_tokens` of uncached input and `max_output` tokens
    /// of output (admission reserves this before a call is made).
    #[must_use]
    pub fn worst_case(&self, prompt_tokens: u64, max_output: u64) -> Usd {
        // Cache writes can cost more than plain input; reserve at the dearest input rate.
        let input_rate = self.input.max(self.cache_write).max(self.cache_write_1h);
        ModelPrice {
            input: input_rate,
            ..*self
        }
        .cost(&TokenUsage {
            input: prompt_tokens,
            output: max_output,
            ..TokenUsage::default()
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    /// The date the prices were checked.
    as_of: String,
    entries: Vec<PriceEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    #[schemars(length(min = 1))]
    models: Vec<String>,
    #[schemars(range(min = 0.0))]
    input: f64,
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    cache_write: Option<f64>,
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    cache_write_1h: Option<f64>,
    #[schemars(range(min = 0.0))]
    cache_read: f64,
    #[schemars(range(min = 0.0))]
    output: f64,
    #[serde(default)]
    source: Option<String>,
}

/// Model ids mapped to prices.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    as_of: String,
    prices: HashMap<String, ModelPrice>,
}

/// The key a model id is looked up by: lowercase, without a `provider/` prefix, a date suffix
/// (`-20250929`, `-2025-08-07`, `@20250929`) or `-latest`.
#[must_use]
pub fn normalize_model_id(model: &str) -> String {
    let mut id = model.trim().to_ascii_lowercase();
    if let Some((_, rest)) = id.rsplit_once('/') {
        id = rest.to_owned();
    }
    if let Some(stripped) = id.strip_suffix("-latest") {
        id = stripped.to_owned();
    }
    let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((head, tail)) = id.rsplit_once(['-', '@']) {
        if is_digits(tail, 8) {
            id = head.to_owned();
        } else if is_digits(tail, 2) {
            // -YYYY-MM-DD
            let parts: Vec<&str> = id.rsplitn(4, '-').collect();
            if parts.len() == 4
                && is_digits(parts[0], 2)
                && is_digits(parts[1], 2)
                && is_digits(parts[2], 4)
            {
                id = parts[3].to_owned();
            }
        }
    }
    id
}

fn schema() -> &'static CompiledSchema {
    static SCHEMA: OnceLock<CompiledSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        CompiledSchema::new(serde_json::Value::from(schemars::schema_for!(PriceFile)))
    })
}

impl PriceTable {
    /// The table fleet ships.
    ///
    /// # Errors
    /// Never in a released build (a test parses the shipped file); typed for honesty.
    pub fn builtin() -> Result<Self, Diagnostics> {
        Self::from_yaml(Path::new("<builtin prices.yaml>"), BUILTIN_PRICES_YAML)
    }

    /// The shipped table, parsed once per process and shared.
    #[must_use]
    pub fn shipped() -> std::sync::Arc<Self> {
        static PRICES: std::sync::OnceLock<std::sync::Arc<PriceTable>> = std::sync::OnceLock::new();
        // The shipped file is checked against the schema by a test, so it is read here without
        // compiling the schema: that alone took a process's first run 1.5 ms and touched a
        // megabyte of code it never used again. Were the file broken, every model would be
        // "unknown", never free.
        std::sync::Arc::clone(PRICES.get_or_init(|| {
            std::sync::Arc::new(
                serde_saphyr::from_str::<PriceFile>(BUILTIN_PRICES_YAML)
                    .map(Self::from_file)
                    .unwrap_or_default(),
            )
        }))
    }

    /// Reads a price file (same format as the shipped one).
    ///
    /// # Errors
    /// Every problem in the file, located.
    pub fn from_yaml(file: &Path, text: &str) -> Result<Self, Diagnostics> {
        let doc = Document::parse(file, text).map_err(|d| Diagnostics(vec![d]))?;
        Ok(Self::from_file(doc.check(schema())?))
    }

    fn from_file(parsed: PriceFile) -> Self {
        let usd = |per_million: f64| Usd::from_dollars(per_million).unwrap_or(Usd::ZERO);
        let mut prices = HashMap::new();
        for entry in &parsed.entries {
            let input = usd(entry.input);
            let price = ModelPrice {
                input,
                cache_write: entry.cache_write.map_or(input, usd),
                cache_write_1h: entry
                    .cache_write_1h
                    .or(entry.cache_write)
                    .map_or(input, usd),
                cache_read: usd(entry.cache_read),
                output: usd(entry.output),
            };
            for model in &entry.models {
                prices.insert(normalize_model_id(model), price);
            }
        }
        Self {
            as_of: parsed.as_of,
            prices,
        }
    }

    /// This table with `overrides` on top: their models replace or join these.
    #[must_use]
    pub fn with_overrides(mut self, overrides: Self) -> Self {
        self.prices.extend(overrides.prices);
        if !overrides.as_of.is_empty() {
            self.as_of = format!("{} (overrides {})", self.as_of, overrides.as_of);
        }
        self
    }

    /// Sets one model's price (for a local server, use [`ModelPrice::FREE`]).
    pub fn set(&mut self, model: &str, price: ModelPrice) {
        self.prices.insert(normalize_model_id(model), price);
    }

    /// The date the prices were checked.
    #[must_use]
    pub fn as_of(&self) -> &str {
        &self.as_of
    }

    /// The price of `model`, or `None` when it is not known.
    #[must_use]
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.prices.get(&normalize_model_id(model))
    }

    /// What `usage` on `model` cost, or `None` when the model's price is not known.
    #[must_use]
    pub fn cost(&self, model: &str, usage: &TokenUsage) -> Option<Usd> {
        self.price(model).map(|p| p.cost(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_lose_their_dates() {
        for (given, key) in [
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
            ("gpt-5-2025-08-07", "gpt-5"),
            ("openai/gpt-5-mini", "gpt-5-mini"),
            ("Claude-Opus-4-1", "claude-opus-4-1"),
            ("claude-sonnet-4-latest", "claude-sonnet-4"),
            ("claude-sonnet-4-5", "claude-sonnet-4-5"),
            ("gpt-4.1", "gpt-4.1"),
        ] {
            assert_eq!(normalize_model_id(given), key, "{given}");
        }
    }

    #[test]
    fn the_shared_table_is_the_checked_one() {
        // `shipped()` reads the file without the schema check that `builtin()` makes.
        let (checked, shared) = (PriceTable::builtin().unwrap(), PriceTable::shipped());
        assert_eq!(shared.as_of(), checked.as_of());
        assert!(checked.prices.len() > 10);
        assert_eq!(shared.prices, checked.prices);
    }

    #[test]
    fn the_shipped_table_has_the_published_figures() {
        let t = PriceTable::builtin().unwrap();
        assert_eq!(t.as_of(), "2026-11-01");
        let d = |x: f64| Usd::from_dollars(x).unwrap();
        let opus = t.price("claude-opus-4-7").unwrap();
        assert_eq!(
            (
                opus.input,
                opus.cache_write,
                opus.cache_write_1h,
                opus.cache_read,
                opus.output
            ),
            (d(5.0), d(6.25), d(10.0), d(0.5), d(25.0))
        );
        let old_opus = t.price("claude-opus-4-1-20250805").unwrap();
        assert_eq!(old_opus.output, d(75.0));
        let mini = t.price("gpt-5-mini").unwrap();
        assert_eq!(
            (mini.input, mini.cache_read, mini.output),
            (d(0.25), d(0.025), d(2.0))
        );
        // OpenAI has no cache-write price: writes are priced as input.
        assert_eq!(mini.cache_write, mini.input);
        for m in [
            "claude-sonnet-4",
            "claude-sonnet-5",
            "claude-haiku-4-5",
            "gpt-5.1",
            "o3",
            "o4-mini",
            "gpt-4.1",
        ] {
            assert!(t.price(m).is_some(), "{m}");
        }
        assert!(t.price("llama3.1:8b").is_none());
    }

    #[test]
    fn anthropic_and_openai_cost_formulas() {
        let t = PriceTable::builtin().unwrap();
        // Anthropic: 1M uncached input, 1M 5-min writes, 1M 1-h writes, 1M reads, 1M output.
        let u = TokenUsage {
            input: 1_000_000,
            cache_write: 1_000_000,
            cache_write_1h: 1_000_000,
            cache_read: 1_000_000,
            output: 1_000_000,
        };
        assert_eq!(
            t.cost("claude-sonnet-4-5", &u).unwrap(),
            Usd::from_dollars(3.0 + 3.75 + 6.0 + 0.3 + 15.0).unwrap()
        );
        // OpenAI: 10,000 prompt tokens of which 8,000 cached, 1,000 output on gpt-5.
        let o = TokenUsage::from_openai(10_000, 1_000, 8_000);
        let expected = (2_000.0 * 1.25 + 8_000.0 * 0.125 + 1_000.0 * 10.0) / 1e6;
        assert_eq!(
            t.cost("gpt-5", &o).unwrap(),
            Usd::from_dollars(expected).unwrap()
        );
        // Tiny amounts are not rounded away: 20 cached tokens on gpt-5-mini = 500 nano-dollars.
        assert_eq!(
            t.cost(
                "gpt-5-mini",
                &TokenUsage {
                    cache_read: 20,
                    ..TokenUsage::default()
                }
            )
            .unwrap(),
            Usd::from_nanos(500)
        );
    }

    #[test]
    fn worst_case_uses_the_dearest_input_rate() {
        let t = PriceTable::builtin().unwrap();
        let p = t.price("claude-haiku-4-5").unwrap();
        // 1000 prompt tokens at the 1-h write rate ($2/M) + 4000 output at $5/M.
        assert_eq!(
            p.worst_case(1_000, 4_000),
            Usd::from_dollars(0.002 + 0.02).unwrap()
        );
    }

    #[test]
    fn overrides_replace_and_extend() {
        let mine = "as_of: 2026-11-20\nentries:\n  - models: [gpt-5]\n    input: 1.0\n    cache_read: 0.1\n    output: 8.0\n  - models: [my-model]\n    input: 0\n    cache_read: 0\n    output: 0\n";
        let t = PriceTable::builtin()
            .unwrap()
            .with_overrides(PriceTable::from_yaml(Path::new("prices.yaml"), mine).unwrap());
        assert_eq!(
            t.price("gpt-5").unwrap().output,
            Usd::from_dollars(8.0).unwrap()
        );
        assert_eq!(
            t.cost(
                "my-model",
                &TokenUsage {
                    input: 5,
                    ..TokenUsage::default()
                }
            ),
            Some(Usd::ZERO)
        );
        assert!(t.as_of().contains("2026-11-20"));
    }

    #[test]
    fn bad_price_files_are_located() {
        let bad = "as_of: x\nentries:\n  - models: [a]\n    input: -1\n    cache_read: 0\n    output: 0\n    colour: red\n";
        let err = PriceTable::from_yaml(Path::new("p.yaml"), bad).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("p.yaml:4:12: entries[0].input:"), "{text}");
        assert!(
            text.contains("p.yaml:7:5: entries[0].colour: unknown field \"colour\""),
            "{text}"
        );
    }
}
