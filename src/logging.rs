//! Logging setup: `RUST_LOG` wins; otherwise `-v` raises the level. Logs go to stderr so that
//! stdout stays clean for results, coloured only when stderr is a terminal: escape codes in a
//! log file or a pipe are noise to whoever reads or greps it.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,hypograph={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(std::io::stderr().is_terminal(), |v| {
            std::env::var_os(v)
        }))
        .with_writer(std::io::stderr);
    // A second init (tests calling the CLI in-process) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Whether log lines get ANSI colours: only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (no-color.org).
fn colour(terminal: bool, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    terminal && env("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A memory figure of this process from `/proc/self/status` (`VmHWM` peak, `VmRSS` current),
/// in bytes, where the platform tells (Linux).
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Peak resident memory of this process.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let unset = |_: &str| None;
        let set = |_: &str| Some("1".into());
        let empty = |_: &str| Some(std::ffi::OsString::new());
        assert!(colour(true, unset));
        assert!(colour(true, empty));
        assert!(!colour(true, set));
        assert!(!colour(false, unset));
    }
}
