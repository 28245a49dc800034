//! `command`: a program that reads one JSON hypothesis per line on stdin and writes one JSON
//! verdict per line on stdout. A timeout kills it; what it answered before dying counts, what it
//! did not fails with the exit status and the end of its stderr.

use super::{Hypothesis, PluginError, Submission, WireVerdict, sort_answers};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
        let writer = tokio::spawn(async move {
            if let Some(s) = stdin.as_mut() {
                // A program that exits without reading its input is not an error here.
                let _ = s.write_all(input.as_bytes()).await;
                let _ = s.shutdown().await;
            }
        });
        let stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let err_reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_end(&mut buf).await;
            }
            buf
        });
        let mut answers = Vec::new();
        let mut garbage = Vec::new();
        let read = async {
            if let Some(out) = stdout {
                let mut lines = BufReader::new(out).lines();
                let mut n = 0usize;
                while let Ok(Some(line)) = lines.next_line().await {
                    n += 1;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<WireVerdict>(&line) {
                        Ok(v) => answers.push(v),
                        Err(e) => garbage.push(format!(
                            "stdout line {n} is not a verdict ({e}): {}",
                            line.chars().take(80).collect::<String>()
                        )),
                    }
                }
            }
            child.wait().await
        };
        let status = tokio::time::timeout(self.timeout, read).await;
        let _ = writer.await;
        let status = match status {
            Ok(s) => s.ok(),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        };
        let err = tokio::time::timeout(Duration::from_secs(2), err_reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut sub = sort_answers(batch, answers, self.cost);
        sub.rejected.extend(garbage);
        let answered: std::collections::HashSet<i64> =
            sub.verdicts.iter().map(|v| v.hypothesis).collect();
        let why = match status {
            None => format!(
                "`{program}` timed out after {:?} and was killed",
                self.timeout
            ),
            Some(s) if !s.success() => format!("`{program}` exited with {s}"),
            Some(_) => format!("`{program}` gave no verdict for it"),
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
