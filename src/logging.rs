//! Logging setup: `RUST_LOG` wins; otherwise `-v` raises the level. Logs go to stderr so that
//! stdout stays clean for results, coloured only when stderr is a terminal: escape codes in a
//! log file or a pipe are noise to whoever reads or greps it. When stderr is not a terminal
//! (a daemon, CI, `run > log`), progress lines (`hypograph::progress` at `info`: a line per
//! training epoch, throttled lines within long work) are written even without `-v`: there is
//! no bar there to show that the work moves.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(verbose: u8, format: LogFormat) {
    let terminal = std::io::stderr().is_terminal();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_filter(verbose, terminal)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour(terminal, |v| std::env::var_os(v)))
        .with_writer(std::io::stderr);
    // A second init (tests calling the CLI in-process) is harmless: keep the first.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The filter without `RUST_LOG`: `-v` raises hypograph's level; off a terminal, progress
/// lines are on at the default level too.
fn default_filter(verbose: u8, terminal: bool) -> String {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    if verbose == 0 && !terminal {
        format!("warn,hypograph={level},{}=info", crate::progress::TARGET)
    } else {
        format!("warn,hypograph={level}")
    }
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
    fn progress_lines_reach_a_log_file_without_v() {
        assert_eq!(
            default_filter(0, false),
            "warn,hypograph=warn,hypograph::progress=info"
        );
        assert_eq!(default_filter(0, true), "warn,hypograph=warn");
        assert_eq!(default_filter(1, false), "warn,hypograph=info");
        assert_eq!(default_filter(2, true), "warn,hypograph=debug");
    }

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
