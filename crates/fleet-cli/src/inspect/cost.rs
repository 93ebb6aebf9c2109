//! `fleet cost`: spend by model, for a run or since a date.

use std::fmt::Write as _;

use anyhow::Context;
use fleet_core::Timestamp;
use fleet_core::store::EventStore;

use crate::app::{App, UsageError};
use crate::exit;
use crate::render::{self, Paint};

use super::unconfirmed;

/// `fleet cost`.
pub(crate) fn cost(app: &App, run: Option<&str>, since: Option<&str>) -> anyhow::Result<u8> {
    let Some(store) = app.existing_store()? else {
        app.say("nothing spent yet: no store at this project")?;
        return Ok(exit::OK);
    };
    let s = app.style;
    // (model, calls, input, output, cache read, cost, unpriced)
    let mut rows: Vec<(String, u64, u64, u64, u64, f64, u64)> = Vec::new();
    let title;
    let unsure;
    if let Some(run) = run {
        let id = app.resolve_run(&store, run)?;
        let rt = App::runtime()?;
        let thread = rt
            .block_on(store.snapshot(id))?
            .context("the run has no events")?;
        let mut by: std::collections::BTreeMap<
            String,
            (u64, fleet_core::usage::TokenUsage, f64, u64),
        > = Default::default();
        for unit in thread.work_units.values() {
            if unit.usage.total() == 0 {
                continue;
            }
            let e = by
                .entry(unit.model.clone().unwrap_or_else(|| "-".into()))
                .or_default();
            e.0 += 1;
            e.1 += unit.usage;
            e.2 += unit.cost.usd.dollars();
            e.3 += unit.cost.unpriced;
        }
        for (model, (n, u, usd, unpriced)) in by {
            rows.push((
                model,
                n,
                u.input + u.cache_write + u.cache_write_1h + u.cache_read,
                u.output,
                u.cache_read,
                usd,
                unpriced,
            ));
        }
        title = format!("run {}", id.short());
        unsure = unconfirmed(&thread);
    } else {
        let since_ts = since.map(parse_since).transpose()?;
        let open = store.unconfirmed(since_ts)?;
        unsure = (
            open.iter().map(|(_, _, usd)| usd.dollars()).sum(),
            open.len(),
        );
        for m in store.usage_by_model(since_ts)? {
            let u = m.usage;
            rows.push((
                m.model.unwrap_or_else(|| "-".into()),
                m.records,
                u.input + u.cache_write + u.cache_write_1h + u.cache_read,
                u.output,
                u.cache_read,
                m.cost.usd.dollars(),
                m.cost.unpriced,
            ));
        }
        title = since.map_or_else(|| "all runs".to_owned(), |d| format!("since {d}"));
    }
    let mut out = format!("{} {}\n\n", s.paint(Paint::Bold, "spend:"), title);
    out.push_str(&s.paint(
        Paint::Bold,
        &format!(
            "{:<24} {:>8} {:>9} {:>9} {:<10} {:>10}",
            "model", "records", "input", "output", "cache", "cost"
        ),
    ));
    out.push('\n');
    let (mut total, mut any_unpriced) = (0.0, false);
    let max = rows.iter().map(|r| r.5).fold(0.0, f64::max);
    for (model, n, input, output, cache, usd, unpriced) in &rows {
        total += usd;
        any_unpriced |= *unpriced > 0;
        #[allow(clippy::cast_precision_loss)]
        let ratio = if *input == 0 {
            0.0
        } else {
            *cache as f64 / *input as f64
        };
        // A bar of this model's share of the spend.
        let width = if max > 0.0 {
            (usd / max * 20.0).round()
        } else {
            0.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bar = "▇".repeat(width as usize);
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>9} {:>9} {} {:>10} {}{}",
            render::fit(model, 24),
            n,
            render::tokens(*input),
            render::tokens(*output),
            s.cache_bar(ratio),
            render::dollars(*usd),
            s.paint(Paint::Cyan, &bar),
            if *unpriced > 0 {
                " (some unpriced)"
            } else {
                ""
            }
        );
    }
    if rows.is_empty() {
        out.push_str("(no usage recorded)\n");
    }
    let _ = writeln!(
        out,
        "{:<24} {:>61}",
        s.paint(Paint::Bold, "total"),
        render::dollars(total)
    );
    if unsure.1 > 0 {
        let _ = writeln!(
            out,
            "{:<24} {:>61}",
            s.paint(Paint::Bold, "unconfirmed"),
            format!("up to {}", render::dollars(unsure.0))
        );
        let _ = writeln!(
            out,
            "{} call(s) were in flight when their process ended: the provider may have billed them, so the bill counts their reservations apart",
            unsure.1
        );
    }
    if any_unpriced {
        out.push_str("some usage had no price: add the model to the price table\n");
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// `2026-11-01` (local midnight) or an RFC 3339 timestamp.
fn parse_since(text: &str) -> anyhow::Result<Timestamp> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = text.parse().map_err(|_| {
        UsageError(format!(
            "--since {text:?}: not a date; write YYYY-MM-DD (e.g. 2026-11-01) or an RFC 3339 time"
        ))
    })?;
    Ok(date
        .to_zoned(jiff::tz::TimeZone::system())
        .context("that date does not exist here")?
        .timestamp())
}
