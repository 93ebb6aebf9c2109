//! `fleet runs`: every run in the store, newest first.

use std::fmt::Write as _;

use fleet_core::id::ThreadId;

use crate::app::App;
use crate::exit;
use crate::render::{self, Paint};

use super::{info, paint_state, threads, when};

/// `fleet runs`.
pub(crate) fn runs(app: &App, limit: usize) -> anyhow::Result<u8> {
    let Some(store) = app.existing_store()? else {
        app.say("no runs yet: `fleet run hello` starts one")?;
        return Ok(exit::OK);
    };
    let mut ids = store.thread_ids()?;
    // UUIDv7 ids sort by creation: newest first.
    ids.sort_by(|a, b| b.cmp(a));
    let width = short_width(&ids);
    let total = ids.len();
    ids.truncate(limit);
    let rt = App::runtime()?;
    let threads = rt.block_on(threads(&store, &ids))?;
    let mut out = app.style.paint(
        Paint::Bold,
        &format!(
            "{:<width$}  {:<8} {:<22} {:<11} {:<16} {:>7} {:>6} {:>7} {:>9}",
            "run", "kind", "name", "state", "started", "time", "calls", "tokens", "cost"
        ),
    );
    out.push('\n');
    let mut unsure = (0.0, 0, 0);
    for thread in &threads {
        let i = info(app, thread);
        let marked = if i.unconfirmed.1 > 0 {
            unsure = (
                unsure.0 + i.unconfirmed.0,
                unsure.1 + i.unconfirmed.1,
                unsure.2 + 1,
            );
            format!("{}*", render::dollars(i.usd))
        } else {
            render::dollars(i.usd)
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<8} {:<22} {} {:<16} {:>7} {:>6} {:>7} {:>9}",
            short_id(i.id, width),
            i.kind,
            render::fit(&i.name, 22),
            paint_state(app, &i.state),
            when(i.started),
            render::duration_ms(i.wall_ms),
            i.calls,
            render::tokens(i.tokens),
            marked,
        );
    }
    if unsure.1 > 0 {
        let _ = writeln!(
            out,
            "* {} run(s) also owe up to {} unconfirmed: {} call(s) were in flight when their process ended, and the provider may have billed them (fleet cost RUN)",
            unsure.2,
            render::dollars(unsure.0),
            unsure.1
        );
    }
    if total > ids.len() {
        let _ = writeln!(
            out,
            "… {} older (--limit {total} shows all)",
            total - ids.len()
        );
    }
    app.say(out.trim_end())?;
    Ok(exit::OK)
}

/// How much of the end of every run id tells the runs apart (at least the 8 digits of
/// [`ThreadId::short`]; more, as git does, in a store where two share them).
fn short_width(ids: &[ThreadId]) -> usize {
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    (8..36)
        .find(|&n| {
            let mut ends: Vec<&str> = texts.iter().map(|t| &t[t.len() - n..]).collect();
            ends.sort_unstable();
            ends.windows(2).all(|w| w[0] != w[1])
        })
        .unwrap_or(36)
}

/// The last `width` characters of `id`.
fn short_id(id: ThreadId, width: usize) -> String {
    let text = id.to_string();
    text[text.len().saturating_sub(width)..].to_owned()
}
