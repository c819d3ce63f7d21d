//! `doctor`: connection, server, schema, clock, round trip and tasks, one verdict each.

use asynctasq_core::DriverError;
use asynctasq_core::Registry;
use asynctasq_core::driver::{Capability, Driver};
use asynctasq_core::envelope::unix_millis;
use asynctasq_core::error::error_chain;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `doctor`: whether the backend answers, what it runs, whether its schema is current, how
/// fast it answers, whether its clock agrees with this host's, and what it offers. Returns
/// whether all is well; prints one line per check.
pub(crate) async fn doctor(connect: impl std::future::Future<Output = anyhow::Result<Arc<dyn Driver>>>, registry: &Registry) -> bool {
    let t = Instant::now();
    let driver = match connect.await {
        Ok(d) => {
            verdict(GOOD, "ok", format_args!("connect: {} answered in {}", d.name(), ms(t.elapsed())));
            d
        }
        Err(e) => {
            verdict(BAD, "FAIL", format_args!("connect: {e:#}"));
            return false;
        }
    };
    let mut healthy = true;
    let mut schema_current = true;
    let before = SystemTime::now();
    let info = driver.server_info().await;
    let after = SystemTime::now();
    match info {
        Ok(info) => {
            match &info.version {
                Some(v) => verdict(GOOD, "ok", format_args!("server: {v}")),
                None => verdict(NOTE, "note", format_args!("server: {} does not report its version", driver.name())),
            }
            if let Some(schema) = &info.schema {
                if schema.pending.is_empty() {
                    verdict(GOOD, "ok", format_args!("migrations: all {} applied", schema.applied.len()));
                } else {
                    (healthy, schema_current) = (false, false);
                    let names: Vec<String> = schema.pending.iter().map(|(v, d)| format!("{v:04} {d}")).collect();
                    verdict(
                        BAD,
                        "FAIL",
                        format_args!(
                            "migrations: {} pending ({}); run `{}`",
                            names.len(),
                            names.join(", "),
                            crate::this_command("migrate")
                        ),
                    );
                }
            }
            match info.clock_ms {
                Some(server) => {
                    let (b, a) = (unix_millis(before) as i64, unix_millis(after) as i64);
                    let skew = server as i64 - (a + b) / 2;
                    let text = format!(
                        "clock: the server's is {} {} this host's (±{})",
                        ms(Duration::from_millis(skew.unsigned_abs())),
                        if skew >= 0 { "ahead of" } else { "behind" },
                        ms(Duration::from_millis(((a - b) / 2 + 1) as u64))
                    );
                    match skew.unsigned_abs() {
                        0..=250 => verdict(GOOD, "ok", format_args!("{text}")),
                        251..=2000 => {
                            verdict(NOTE, "note", format_args!("{text}; keep hosts in sync (NTP): leases and delays use each host's clock"))
                        }
                        _ => {
                            healthy = false;
                            verdict(BAD, "FAIL", format_args!("{text}; leases and delays use each host's clock: sync this host (NTP)"));
                        }
                    }
                }
                None => verdict(NOTE, "note", format_args!("clock: {} has no clock to compare (same host or not reported)", driver.name())),
            }
        }
        Err(DriverError::Unsupported(_)) => {
            verdict(NOTE, "note", format_args!("server: {} reports no version or clock", driver.name()));
        }
        Err(e) => {
            healthy = false;
            verdict(BAD, "FAIL", format_args!("server: {}", error_chain(&e)));
        }
    }
    if !schema_current {
        verdict(NOTE, "note", format_args!("round trip, queues: not checked until the schema is migrated"));
        return false;
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        if let Err(e) = driver.stats("asynctasq-doctor").await {
            verdict(BAD, "FAIL", format_args!("round trip: {}", error_chain(&e)));
            healthy = false;
            break;
        }
        times.push(t.elapsed());
    }
    times.sort();
    if let Some(best) = times.first() {
        verdict(GOOD, "ok", format_args!("round trip: {} median, {} best of {}", ms(times[times.len() / 2]), ms(*best), times.len()));
    }
    match driver.queues().await {
        Ok(q) => verdict(GOOD, "ok", format_args!("queues: {} known", q.len())),
        Err(e) => {
            verdict(BAD, "FAIL", format_args!("queues: {}", error_chain(&e)));
            healthy = false;
        }
    }
    let lacks: Vec<String> = Capability::ALL.into_iter().filter(|c| !driver.supports(*c)).map(|c| format!("{c:?}")).collect();
    if lacks.is_empty() {
        verdict(GOOD, "ok", format_args!("capabilities: all"));
    } else {
        verdict(NOTE, "note", format_args!("capabilities: lacks {} (see the README's backend notes)", lacks.join(", ")));
    }
    if registry.is_empty() {
        verdict(NOTE, "note", format_args!("tasks: none registered in this binary (a worker needs your binary: asynctasq_cli::main())"));
    } else {
        verdict(GOOD, "ok", format_args!("tasks: {} registered", registry.len()));
    }
    healthy
}

/// Styles of `doctor`'s verdicts. `anstream` drops them when stdout is not a terminal or
/// `NO_COLOR` is set (and keeps them with `CLICOLOR_FORCE`).
pub(crate) const GOOD: anstyle::Style = anstyle::AnsiColor::Green.on_default().bold();

pub(crate) const BAD: anstyle::Style = anstyle::AnsiColor::Red.on_default().bold();

pub(crate) const NOTE: anstyle::Style = anstyle::AnsiColor::Yellow.on_default();

/// Prints one `doctor` line: a verdict in its colour, then the finding.
pub(crate) fn verdict(style: anstyle::Style, word: &str, finding: std::fmt::Arguments<'_>) {
    // A closed stdout only loses the rest of the report; the checks and the exit code stand.
    let _ = crate::output::styled(format_args!("{style}{word:<5}{style:#} {finding}"));
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
