//! `command`: a program that reads one JSON hypothesis per line on stdin and writes one JSON
//! verdict per line on stdout. A timeout kills it and everything it started; what it answered
//! before dying counts, what it did not fails with the exit status and the end of its stderr.

use super::{Hypothesis, PluginError, Submission, WireVerdict, sort_answers};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The most a program may write to stdout, and to stderr, for one batch: beyond it the
/// program is killed and the batch's unanswered hypotheses fail, rather than the engine's
/// memory filling with a runaway program's output.
pub const OUTPUT_LIMIT: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct CommandPlugin {
    /// Program and arguments.
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub cost: f64,
    /// Working directory (the manifest's or workflow's directory).
    pub dir: Option<std::path::PathBuf>,
}

/// The last `n` bytes of a program's stderr, for failure reasons.
fn tail(bytes: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(n)..]);
    s.trim().replace('\n', " | ")
}

/// How a program's turn ended.
enum End {
    Exited(Option<ExitStatus>),
    TimedOut,
    /// It wrote more than [`OUTPUT_LIMIT`] to this stream.
    TooMuch(&'static str),
}

/// Kills the program and everything it started: it leads its own process group, so a shell's
/// children (which would otherwise run on and hold the pipes open) die with it. Called before
/// the program is reaped, so the group id cannot have been reused.
fn kill_all(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        // Never 1: `kill(-1)` would signal every process there is.
        .filter(|&id| id > 1)
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
}

impl CommandPlugin {
    pub async fn submit(&self, batch: &[Hypothesis]) -> Result<Submission, PluginError> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| PluginError::Failed("no command given".into()))?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| PluginError::Failed(format!("cannot start `{program}`: {e}")))?;
        let mut input = String::new();
        for h in batch {
            let line = serde_json::to_string(h)
                .map_err(|e| PluginError::Failed(format!("encoding a hypothesis: {e}")))?;
            input.push_str(&line);
            input.push('\n');
        }
        let mut stdin = child.stdin.take();
        // Never awaited: a program that does not read its input must not hold up the timeout.
        let writer = tokio::spawn(async move {
            if let Some(s) = stdin.as_mut() {
                // A program that exits without reading its input is not an error here.
                let _ = s.write_all(input.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let stderr_full = Arc::new(tokio::sync::Notify::new());
        let err_reader = {
            let full = stderr_full.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if let Some(e) = stderr {
                    let _ = e.take(OUTPUT_LIMIT as u64 + 1).read_to_end(&mut buf).await;
                    if buf.len() > OUTPUT_LIMIT {
                        full.notify_one();
                    }
                }
                buf
            })
        };
        let mut answers = Vec::new();
        let mut garbage = Vec::new();
        let read = async {
            if let Some(out) = stdout {
                let mut out = BufReader::new(out.take(OUTPUT_LIMIT as u64 + 1));
                let mut line = Vec::new();
                let (mut n, mut total) = (0usize, 0usize);
                loop {
                    line.clear();
                    match out.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => total += k,
                    }
                    if total > OUTPUT_LIMIT {
                        return End::TooMuch("stdout");
                    }
                    n += 1;
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<WireVerdict>(&text) {
                        Ok(v) => answers.push(v),
                        Err(e) => garbage.push(format!(
                            "stdout line {n} is not a verdict ({e}): {}",
                            text.trim_end().chars().take(80).collect::<String>()
                        )),
                    }
                }
            }
            End::Exited(child.wait().await.ok())
        };
        let watched = async {
            tokio::select! {
                end = read => end,
                () = stderr_full.notified() => End::TooMuch("stderr"),
            }
        };
        let end = tokio::time::timeout(self.timeout, watched)
            .await
            .unwrap_or(End::TimedOut);
        if !matches!(end, End::Exited(Some(_))) {
            // Kill first, then reap: nothing waits on a program that may never finish.
            kill_all(&mut child);
            let _ = child.wait().await;
        }
        writer.abort();
        let err = tokio::time::timeout(Duration::from_secs(2), err_reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut sub = sort_answers(batch, answers, self.cost);
        sub.rejected.extend(garbage);
        let answered: std::collections::HashSet<i64> =
            sub.verdicts.iter().map(|v| v.hypothesis).collect();
        let why = match end {
            End::TimedOut => format!(
                "`{program}` timed out after {:?} and was killed",
                self.timeout
            ),
            End::Exited(None) => format!("`{program}` could not be waited for and was killed"),
            End::TooMuch(stream) => format!(
                "`{program}` wrote more than {} MiB to {stream} and was killed",
                OUTPUT_LIMIT >> 20
            ),
            End::Exited(Some(s)) if !s.success() => format!("`{program}` exited with {s}"),
            End::Exited(Some(_)) => format!("`{program}` gave no verdict for it"),
        };
        let stderr = tail(&err, 300);
        let reason = if stderr.is_empty() {
            why
        } else {
            format!("{why}; stderr: {stderr}")
        };
        sub.failed = batch
            .iter()
            .filter(|h| !answered.contains(&h.id))
            .map(|h| (h.id, reason.clone()))
            .collect();
        // A command answers now or never.
        sub.pending.clear();
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(script: &str, timeout_ms: u64) -> CommandPlugin {
        CommandPlugin {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
            cost: 1.0,
            dir: None,
        }
    }

    fn batch(n: i64) -> Vec<Hypothesis> {
        (1..=n)
            .map(|i| Hypothesis::bare(i, "a", "r", &format!("t{i}")))
            .collect()
    }

    #[tokio::test]
    async fn answers_line_by_line() {
        // Echo a confirmed verdict for each input line's id.
        let p = plugin(
            r#"while read -r line; do id=$(echo "$line" | sed 's/.*"id":\([0-9]*\).*/\1/'); echo "{\"hypothesis\": $id, \"verdict\": \"confirmed\", \"confidence\": 0.9}"; done"#,
            10_000,
        );
        let s = p.submit(&batch(3)).await.expect("submit");
        assert_eq!(s.verdicts.len(), 3);
        assert!(s.failed.is_empty() && s.rejected.is_empty(), "{s:?}");
    }

    #[tokio::test]
    async fn a_crash_mid_batch_fails_only_the_unanswered() {
        let p = plugin(
            r#"echo '{"hypothesis": 1, "verdict": "refuted"}'; echo 'assay robot jammed' >&2; exit 3"#,
            10_000,
        );
        let s = p.submit(&batch(3)).await.expect("submit");
        assert_eq!(s.verdicts.len(), 1);
        assert_eq!(s.failed.len(), 2);
        assert!(
            s.failed[0].1.contains("exited with exit status: 3"),
            "{:?}",
            s.failed
        );
        assert!(
            s.failed[0].1.contains("assay robot jammed"),
            "{:?}",
            s.failed
        );
    }

    #[tokio::test]
    async fn garbage_lines_are_rejected_and_the_rest_kept() {
        let p = plugin(
            r#"echo 'not json'; echo '{"hypothesis": 2, "verdict": "confirmed"}'; echo '{"hypothesis": 3, "verdict": "maybe"}'"#,
            10_000,
        );
        let s = p.submit(&batch(3)).await.expect("submit");
        assert_eq!(s.verdicts.len(), 1);
        assert_eq!(s.rejected.len(), 2, "{:?}", s.rejected);
        assert!(s.rejected[0].contains("stdout line 1"), "{:?}", s.rejected);
        assert_eq!(s.failed.len(), 2, "hypotheses 1 and 3 fail with a reason");
    }

    #[tokio::test]
    async fn a_program_that_never_exits_is_killed() {
        let p = plugin(
            r#"echo '{"hypothesis": 1, "verdict": "confirmed"}'; exec sleep 1000"#,
            500,
        );
        let started = std::time::Instant::now();
        let s = p.submit(&batch(2)).await.expect("submit");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(s.verdicts.len(), 1, "the answer before the hang counts");
        assert!(s.failed[0].1.contains("timed out"), "{:?}", s.failed);
    }

    /// Far more input than a pipe holds, to a program that never reads it: the timeout must
    /// not wait for the input to be written.
    #[tokio::test]
    async fn a_program_that_never_reads_a_large_batch_is_killed_on_time() {
        let p = plugin("exec sleep 60", 500);
        let mut big = batch(40);
        for h in &mut big {
            h.head_name = "x".repeat(100_000);
        }
        let started = std::time::Instant::now();
        let s = tokio::time::timeout(Duration::from_secs(30), p.submit(&big))
            .await
            .expect("the timeout fired")
            .expect("submit");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(s.failed.len(), 40);
        assert!(s.failed[0].1.contains("timed out"), "{:?}", s.failed[0]);
    }

    #[tokio::test]
    async fn output_beyond_the_limit_kills_the_program_with_a_clear_reason() {
        for stream in ["stdout", "stderr"] {
            let redirect = if stream == "stderr" { ">&2" } else { "" };
            let p = plugin(
                &format!("head -c 20000000 /dev/zero | tr '\\0' x {redirect}; exec sleep 60"),
                20_000,
            );
            let started = std::time::Instant::now();
            let s = p.submit(&batch(1)).await.expect("submit");
            assert!(started.elapsed() < Duration::from_secs(15), "{stream}");
            assert!(
                s.failed[0]
                    .1
                    .contains(&format!("wrote more than 16 MiB to {stream}")),
                "{:?}",
                s.failed[0].1.chars().take(200).collect::<String>()
            );
        }
    }

    #[tokio::test]
    async fn a_missing_program_fails_the_batch() {
        let p = CommandPlugin {
            argv: vec!["/nonexistent/assay".into()],
            timeout: Duration::from_secs(1),
            cost: 0.0,
            dir: None,
        };
        let e = p.submit(&batch(1)).await.expect_err("no program");
        assert!(matches!(e, PluginError::Failed(m) if m.contains("cannot start")));
    }
}
