//! Money: exact amounts of US dollars.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of US dollars, held exactly as a whole number of nano-dollars (10⁻⁹ USD).
///
/// Exact integers keep budgets exact under concurrency: sums do not drift the way floating point
/// does, so a hard cap compares the same way every time. In JSON it is written as a number of
/// dollars (`0.0125`), which round-trips exactly up to about nine million dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

const NANOS_PER_DOLLAR: i64 = 1_000_000_000;

impl Usd {
    /// Zero dollars.
    pub const ZERO: Self = Self(0);

    /// From a whole number of nano-dollars.
    #[must_use]
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// From dollars, rounded to the nearest nano-dollar; `None` for NaN or amounts beyond ±9.2e9.
    #[must_use]
    pub fn from_dollars(dollars: f64) -> Option<Self> {
        let nanos = (dollars * NANOS_PER_DOLLAR as f64).round();
        (nanos.is_finite() && nanos.abs() < i64::MAX as f64).then_some(Self(nanos as i64))
    }

    /// The amount in nano-dollars.
    #[must_use]
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// The amount in dollars (for display and JSON).
    #[must_use]
    pub fn dollars(self) -> f64 {
        self.0 as f64 / NANOS_PER_DOLLAR as f64
    }

    /// `self - other`, never below zero.
    #[must_use]
    pub fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0).max(0))
    }
}

impl std::ops::Add for Usd {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl std::ops::AddAssign for Usd {
    fn add_assign(&mut self, rhs: Self) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl std::ops::Sub for Usd {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }
}

impl std::iter::Sum for Usd {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, |a, b| a + b)
    }
}

impl fmt::Display for Usd {
    /// `$1.23`, with more digits for small amounts so that a cent-fraction is never shown as $0.00.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.dollars();
        let digits = match d.abs() {
            x if x == 0.0 || x >= 1.0 || self.0 % 10_000_000 == 0 => 2,
            x if x >= 0.01 => 4,
            _ => 6,
        };
        write!(f, "${d:.digits$}")
    }
}

impl Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let dollars = f64::deserialize(deserializer)?;
        Self::from_dollars(dollars).ok_or_else(|| {
            serde::de::Error::custom(format!("{dollars} is not an amount of dollars"))
        })
    }
}

impl schemars::JsonSchema for Usd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Usd".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0,
            "description": "US dollars",
            "x-expected": "a number of dollars like 2.50"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_trip_exactly() {
        for d in [
            0.0,
            0.000_000_025,
            0.0125,
            1.5,
            1_234.567_891_234,
            9_000_000.000_000_001,
        ] {
            let usd = Usd::from_dollars(d).unwrap();
            let json = serde_json::to_string(&usd).unwrap();
            let back: Usd = serde_json::from_str(&json).unwrap();
            assert_eq!(back, usd, "{d} -> {json}");
        }
        assert_eq!(Usd::from_dollars(f64::NAN), None);
    }

    #[test]
    fn display_keeps_small_amounts_visible() {
        assert_eq!(Usd::from_nanos(0).to_string(), "$0.00");
        assert_eq!(Usd::from_dollars(12.3).unwrap().to_string(), "$12.30");
        assert_eq!(Usd::from_dollars(0.0125).unwrap().to_string(), "$0.0125");
        assert_eq!(
            Usd::from_dollars(0.000_042).unwrap().to_string(),
            "$0.000042"
        );
    }
}

/// A running total of cost: the dollars of the priced usage, and how many usage records could not
/// be priced because their model's price is unknown.
///
/// An unknown price is never counted as $0: the total says it is incomplete.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct Cost {
    /// Dollars of the usage that had a price.
    pub usd: Usd,
    /// Usage records without a price.
    pub unpriced: u64,
}

impl Cost {
    /// Adds one usage record's price (`None` when unknown).
    pub fn add(&mut self, price: Option<Usd>) {
        match price {
            Some(usd) => self.usd += usd,
            None => self.unpriced += 1,
        }
    }

    /// True when every record had a price.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.unpriced == 0
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, rhs: Self) {
        self.usd += rhs.usd;
        self.unpriced += rhs.unpriced;
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unpriced {
            0 => write!(f, "{}", self.usd),
            n if self.usd == Usd::ZERO => write!(f, "unknown ({n} unpriced)"),
            n => write!(f, "{} + unknown ({n} unpriced)", self.usd),
        }
    }
}
