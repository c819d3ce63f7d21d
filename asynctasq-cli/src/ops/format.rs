//! What the commands share: tables, counts, confirmations, progress bars, the queues to act on.

use anyhow::{Context, bail};
use asynctasq_core::driver::Driver;
use asynctasq_core::envelope::{unix_millis, validate_queue_name};
use comfy_table::{CellAlignment, Table, presets};
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, SystemTime};

/// The queues named, or every queue the backend knows when none is.
pub(crate) async fn queues_or_all(driver: &dyn Driver, named: &[String]) -> anyhow::Result<Vec<String>> {
    for q in named {
        validate_queue_name(q).with_context(|| format!("invalid queue name `{q}`"))?;
    }
    if !named.is_empty() {
        return Ok(named.to_vec());
    }
    driver.queues().await.context("listing queues")
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    t
}

pub(crate) fn align_numbers(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// A count with thousands separators.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Asks to go on with `what`, unless `yes`; without a terminal to ask on, refuses.
pub(crate) fn confirm(what: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to {what} without --yes (no terminal to confirm on)");
    }
    eprint!("{what}? [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// A progress bar on stderr for a bulk operation over `total` tasks: drawn only on a terminal
/// and only when there are enough tasks for it to matter.
pub(crate) fn progress(total: u64, verb: &'static str) -> indicatif::ProgressBar {
    if total < 1000 {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} tasks ({rate}, {eta} left)")
        .map(|s| {
            s.progress_chars("=> ").with_key("rate", |p: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                write!(w, "{}/s", count(p.per_sec() as u64)).unwrap_or(())
            })
        })
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(total).with_style(style).with_message(verb)
}

/// A Unix-ms time as a readable age ("3m ago").
pub(crate) fn ago(ms: u64) -> String {
    let now = unix_millis(SystemTime::now());
    if ms == 0 {
        return "-".into();
    }
    let secs = now.saturating_sub(ms) / 1000;
    format!("{} ago", humantime::format_duration(Duration::from_secs(secs)))
}

/// `ms` (Unix milliseconds) from now: `in 5m` ahead, `5m ago` behind.
pub(crate) fn from_now(ms: u64) -> String {
    let now = unix_millis(SystemTime::now());
    if ms > now { format!("in {}", humantime::format_duration(Duration::from_secs((ms - now).div_ceil(1000)))) } else { ago(ms) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!((count(0), count(999), count(1000), count(1_234_567)), ("0".into(), "999".into(), "1,000".into(), "1,234,567".into()));
    }
}
