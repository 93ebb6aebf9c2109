//! Token usage, kept by kind so that every kind can be priced on its own.

use serde::{Deserialize, Serialize};

/// Tokens used by one or more model requests.
///
/// `input` counts only the input tokens that were neither written to nor read from the prompt
/// cache: the two providers disagree on this, so use [`TokenUsage::from_anthropic`] or
/// [`TokenUsage::from_openai`] to build it from their figures.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default)]
pub struct TokenUsage {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens (reasoning tokens included).
    pub output: u64,
    /// Input tokens written to the prompt cache with the 5-minute lifetime.
    pub cache_write: u64,
    /// Input tokens written to the prompt cache with the 1-hour lifetime.
    pub cache_write_1h: u64,
    /// Input tokens served from the prompt cache.
    pub cache_read: u64,
}

impl TokenUsage {
    /// From Anthropic's figures, where `input_tokens` EXCLUDES cache writes and reads.
    #[must_use]
    pub fn from_anthropic(
        input_tokens: u64,
        output_tokens: u64,
        cache_creation: u64,
        cache_creation_1h: u64,
        cache_read: u64,
    ) -> Self {
        Self {
            input: input_tokens,
            output: output_tokens,
            cache_write: cache_creation.saturating_sub(cache_creation_1h),
            cache_write_1h: cache_creation_1h,
            cache_read,
        }
    }

    /// From OpenAI's figures, where `prompt_tokens`/`input_tokens` INCLUDES the cached tokens.
    #[must_use]
    pub fn from_openai(input_tokens: u64, output_tokens: u64, cached_tokens: u64) -> Self {
        Self {
            input: input_tokens.saturating_sub(cached_tokens),
            output: output_tokens,
            cache_write: 0,
            cache_write_1h: 0,
            cache_read: cached_tokens.min(input_tokens),
        }
    }

    /// Every input token, cached or not.
    #[must_use]
    pub fn total_input(&self) -> u64 {
        self.input + self.cache_write + self.cache_write_1h + self.cache_read
    }

    /// Input plus output.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total_input() + self.output
    }

    /// The share of input served from the prompt cache, in `0.0..=1.0` (0 when there was none).
    #[must_use]
    pub fn cache_hit_ratio(&self) -> f64 {
        match self.total_input() {
            0 => 0.0,
            total => self.cache_read as f64 / total as f64,
        }
    }

    /// True when no token of any kind was used.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::Add for TokenUsage {
    type Output = Self;
    fn add(mut self, rhs: Self) -> Self {
        self += rhs;
        self
    }
}

impl std::ops::AddAssign for TokenUsage {
    fn add_assign(&mut self, rhs: Self) {
        self.input = self.input.saturating_add(rhs.input);
        self.output = self.output.saturating_add(rhs.output);
        self.cache_write = self.cache_write.saturating_add(rhs.cache_write);
        self.cache_write_1h = self.cache_write_1h.saturating_add(rhs.cache_write_1h);
        self.cache_read = self.cache_read.saturating_add(rhs.cache_read);
    }
}

impl std::iter::Sum for TokenUsage {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_conventions_meet() {
        // Anthropic: 100 uncached + 2000 cache read + 300 cache write (of which 100 for 1 h).
        let a = TokenUsage::from_anthropic(100, 50, 300, 100, 2000);
        assert_eq!(
            a,
            TokenUsage {
                input: 100,
                output: 50,
                cache_write: 200,
                cache_write_1h: 100,
                cache_read: 2000
            }
        );
        assert_eq!(a.total_input(), 2400);
        // OpenAI: prompt_tokens 2100 of which 2000 cached.
        let o = TokenUsage::from_openai(2100, 50, 2000);
        assert_eq!(
            o,
            TokenUsage {
                input: 100,
                output: 50,
                cache_write: 0,
                cache_write_1h: 0,
                cache_read: 2000
            }
        );
        assert!((o.cache_hit_ratio() - 2000.0 / 2100.0).abs() < 1e-12);
        // A server that reports more cached than input does not underflow.
        assert_eq!(TokenUsage::from_openai(10, 0, 20).total_input(), 10);
    }

    #[test]
    fn old_json_without_cache_fields_decodes() {
        let u: TokenUsage = serde_json::from_str(r#"{"input":3,"output":4}"#).unwrap();
        assert_eq!(u.total(), 7);
        assert_eq!(TokenUsage::default().cache_hit_ratio(), 0.0);
    }
}
