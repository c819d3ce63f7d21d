//! Writing to stdout. A reader that goes away (`dead list | head -5`) ends the command quietly
//! with exit 0, as with other Unix tools, never a panic: `println!` panics on a closed pipe
//! because Rust ignores SIGPIPE.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Stdout was closed by its reader; `main` ends quietly on it.
#[derive(Debug)]
pub(crate) struct ClosedStdout;

impl fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for ClosedStdout {}

fn written(result: std::io::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Err(ClosedStdout.into()),
        other => Ok(other?),
    }
}

/// Writes one line to stdout.
pub(crate) fn line(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    written(writeln!(std::io::stdout().lock(), "{args}"))
}

/// Writes one line with styles to stdout (the styles only on a terminal, never with NO_COLOR).
pub(crate) fn styled(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    written(writeln!(anstream::stdout().lock(), "{args}"))
}

/// `println!` that returns [`ClosedStdout`] (with `?`) instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}
