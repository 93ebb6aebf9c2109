//! "Did you mean …?" for names that do not exist.

/// ` Did you mean '<closest>'?` when one of `known` is close to `name`, else nothing.
pub(crate) fn did_you_mean<'a>(known: impl IntoIterator<Item = &'a str>, name: &str) -> String {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(k, name), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" Did you mean '{k}'?"))
        .unwrap_or_default()
}
