//! Durations as people write them in workflows, manifests and on the command line ("500ms",
//! "30s", "15m", "72h", "7d"), bounded so that adding one to the present never overflows.

use std::time::Duration;

/// The longest duration accepted: about 100 years. Anything longer is a typo, and the bound
/// is what makes `now + d` safe wherever a parsed duration becomes a deadline or a timer
/// (chrono's `DateTime` ends in the year 262143, `chrono::Duration` at `i64::MAX` ms;
/// `std`/tokio `Instant`s at `i64::MAX` seconds).
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// "500ms", "30s", "15m", "72h", "7d", or a bare number of seconds; at most [`MAX`].
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 15m, 72h, 7d)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}` (ms, s, m, h, d)"
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a duration"));
    }
    // Compared as seconds before converting: `Duration::from_secs_f64` panics past u64 seconds.
    if secs > MAX.as_secs_f64() {
        return Err(format!(
            "`{s}` is too long (at most {}d, about 100 years)",
            MAX.as_secs() / 86_400
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let cases = [
            ("72h", Some(Duration::from_secs(72 * 3600))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2", Some(Duration::from_secs(2))),
            (" 7d ", Some(Duration::from_secs(7 * 86_400))),
            ("1.5m", Some(Duration::from_secs(90))),
            ("36500d", Some(MAX)),
            ("3 weeks", None),
            ("-1s", None),
            ("h", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).ok(), want, "{text}");
        }
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        for text in [
            "36501d",
            "99999999999h",
            "99999999999999999999999h",
            "1797693134862315700000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000d",
        ] {
            let e = parse(text).expect_err(text);
            assert!(
                e.contains("too long") || e.contains("not a duration"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_longest_duration_fits_every_clock() {
        // What the engine does with a stage's timeout, and what tokio does with a latency.
        let max = chrono::Duration::from_std(MAX).expect("fits chrono::Duration");
        assert!(chrono::Utc::now().checked_add_signed(max).is_some());
        assert!(std::time::Instant::now().checked_add(MAX).is_some());
    }
}
