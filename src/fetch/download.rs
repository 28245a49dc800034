//! Resumable HTTP download into a `.part` file. A `.part` that exists (a dropped connection, or
//! a run that was killed) is continued with `Range: bytes=N-`: a 206 answer is appended, a 200
//! answer (a server that ignores ranges) starts again from zero. A dropped connection is
//! retried with exponential backoff, resuming where it stopped; failures only count while no
//! bytes arrive, so a long download on a flaky line still finishes. Client errors (404, 403)
//! are final at once.
//!
//! A resume must continue the same file, not splice a newer one onto an older start: the
//! validator of the response a `.part` began with (a strong `ETag`, else `Last-Modified`) is
//! kept beside it in `<part>.validator` and sent as `If-Range`, so a server whose file changed
//! answers with the whole new file. A `.part` without a validator is only continued when the
//! file's sum is known beforehand (a splice would fail the check); otherwise it starts over.

use super::{FetchError, Progress};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, LAST_MODIFIED, RANGE,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts after the first one that may fail in a row without any byte arriving.
    pub retries: u32,
    /// The first wait; each further failure in a row doubles it (up to 30 s).
    pub backoff: Duration,
}

/// What one download did.
#[derive(Debug, Clone, Copy)]
pub struct Downloaded {
    /// Bytes the `.part` file held before this download started (0: a fresh one).
    pub resumed_from: u64,
}

pub fn client() -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .user_agent(concat!("hypograph/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // Between two reads of the body, not for the whole file.
        .read_timeout(Duration::from_secs(120))
        // Sums are of the bytes as published: never let a transfer encoding rewrite them,
        // even if another dependency turns decompression on.
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .no_zstd()
        .build()
        .map_err(|e| FetchError::Client(e.to_string()))
}

/// What identifies one version of a remote file, as `If-Range` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Validator {
    ETag(String),
    LastModified(String),
}

impl Validator {
    /// A response's validator: its `ETag` when strong (`If-Range` takes no weak one), else its
    /// `Last-Modified`.
    fn of(headers: &HeaderMap) -> Option<Validator> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        match text(ETAG) {
            Some(tag) if !tag.is_empty() && !tag.starts_with("W/") => {
                Some(Validator::ETag(tag.to_owned()))
            }
            _ => text(LAST_MODIFIED)
                .filter(|d| !d.is_empty())
                .map(|d| Validator::LastModified(d.to_owned())),
        }
    }

    fn value(&self) -> &str {
        match self {
            Validator::ETag(v) | Validator::LastModified(v) => v,
        }
    }

    /// Whether a 206 answer says it is another version than this one.
    fn contradicted_by(&self, headers: &HeaderMap) -> bool {
        match (self, Validator::of(headers)) {
            (Validator::ETag(a), Some(Validator::ETag(b))) => *a != b,
            (Validator::LastModified(a), Some(Validator::LastModified(b))) => *a != b,
            _ => false,
        }
    }

    fn path(part: &Path) -> PathBuf {
        PathBuf::from(format!("{}.validator", part.display()))
    }

    /// The validator kept beside `part`; none when absent or unreadable.
    fn load(part: &Path) -> Option<Validator> {
        let text = std::fs::read_to_string(Self::path(part)).ok()?;
        let (kind, value) = text.trim_end_matches('\n').split_once('\n')?;
        match kind {
            "etag" => Some(Validator::ETag(value.to_owned())),
            "last-modified" => Some(Validator::LastModified(value.to_owned())),
            _ => None,
        }
    }

    /// Keeps `v` beside `part` (or removes what was kept, for a response without one).
    fn store(part: &Path, v: Option<&Validator>) -> Result<(), FetchError> {
        let path = Self::path(part);
        match v {
            Some(v) => {
                let kind = match v {
                    Validator::ETag(_) => "etag",
                    Validator::LastModified(_) => "last-modified",
                };
                std::fs::write(&path, format!("{kind}\n{}\n", v.value()))
                    .map_err(|e| io_error(&path, e))
            }
            None => forget(part),
        }
    }
}

/// Removes what is kept beside `part` (once it is renamed into place or discarded).
pub fn forget(part: &Path) -> Result<(), FetchError> {
    let path = Validator::path(part);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(&path, e)),
        _ => Ok(()),
    }
}

/// Downloads `url` into `part`, continuing what it already holds when the server shows it is
/// the same file (or, with `sum_known`, when the caller's checksum will show it).
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    expected_size: Option<u64>,
    sum_known: bool,
    retry: Retry,
    progress: &dyn Progress,
) -> Result<Downloaded, FetchError> {
    let mut resumed_from = part_len(part)?;
    let mut failures = 0u32;
    loop {
        let mut have = part_len(part)?;
        if have > 0 && !sum_known && Validator::load(part).is_none() {
            // Nothing could show that the rest belongs to the same file as these bytes.
            tracing::warn!(part = %part.display(), "no validator for the partial download: starting it over");
            truncate(part)?;
            (have, resumed_from) = (0, 0);
        }
        if have > 0 && expected_size == Some(have) {
            // Whole already: a run stopped between the last byte and the checksum.
            progress.begin(expected_size, have);
            return Ok(Downloaded { resumed_from });
        }
        if expected_size.is_some_and(|n| have > n) {
            truncate(part)?;
            continue;
        }
        let mut restarted = false;
        let result = attempt(
            client,
            url,
            part,
            have,
            expected_size,
            progress,
            &mut restarted,
        )
        .await;
        if restarted {
            resumed_from = 0;
        }
        match result {
            Ok(()) => return Ok(Downloaded { resumed_from }),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Again { error, progressed }) => {
                // Bytes that cannot be resumed (no validator) are no progress: they go again.
                let kept = progressed && (sum_known || Validator::load(part).is_some());
                failures = if kept { 1 } else { failures + 1 };
                if failures > retry.retries {
                    return Err(error);
                }
                let wait = retry
                    .backoff
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(Duration::from_secs(30));
                tracing::warn!(error = %error, wait_ms = wait.as_millis() as u64, "download interrupted, retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

enum Failure {
    /// Worth another try (network trouble, 5xx, a short body).
    Again {
        error: FetchError,
        progressed: bool,
    },
    Final(FetchError),
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    have: u64,
    expected_size: Option<u64>,
    progress: &dyn Progress,
    restarted: &mut bool,
) -> Result<(), Failure> {
    let network = |e: reqwest::Error, progressed| Failure::Again {
        error: FetchError::Network {
            url: url.to_owned(),
            message: error_chain(&e.without_url()),
        },
        progressed,
    };
    let io = |e| Failure::Final(io_error(part, e));
    let mut req = client.get(url).header(ACCEPT_ENCODING, "identity");
    let validator = if have > 0 {
        Validator::load(part)
    } else {
        None
    };
    if have > 0 {
        req = req.header(RANGE, format!("bytes={have}-"));
        if let Some(v) = &validator {
            req = req.header(IF_RANGE, v.value());
        }
    }
    let mut resp = req.send().await.map_err(|e| network(e, false))?;
    let status = resp.status();
    let (start, total) = match status {
        StatusCode::PARTIAL_CONTENT => {
            let range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range);
            let changed = validator
                .as_ref()
                .is_some_and(|v| v.contradicted_by(resp.headers()));
            match range {
                Some((start, total)) if start == have && !changed => (have, total),
                // Not the range asked for, or of another version: start again from zero.
                _ => {
                    truncate(part).map_err(Failure::Final)?;
                    return Err(Failure::Again {
                        error: FetchError::Network {
                            url: url.to_owned(),
                            message: if changed {
                                "the file changed since the download began".into()
                            } else {
                                "answered a different range than requested".into()
                            },
                        },
                        progressed: false,
                    });
                }
            }
        }
        StatusCode::OK => {
            // The whole file (again): its validator is what a later resume must match.
            Validator::store(part, Validator::of(resp.headers()).as_ref())
                .map_err(Failure::Final)?;
            *restarted = have > 0;
            (0, resp.content_length())
        }
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            // The part may already hold the whole file (`bytes */N`); otherwise start over.
            let total = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes */"))
                .and_then(|n| n.trim().parse::<u64>().ok());
            if total == Some(have) {
                progress.begin(total, have);
                return Ok(());
            }
            truncate(part).map_err(Failure::Final)?;
            return Err(Failure::Again {
                error: FetchError::Http {
                    url: url.to_owned(),
                    status: status.as_u16(),
                },
                progressed: false,
            });
        }
        s if s.is_server_error()
            || s == StatusCode::TOO_MANY_REQUESTS
            || s == StatusCode::REQUEST_TIMEOUT =>
        {
            return Err(Failure::Again {
                error: FetchError::Http {
                    url: url.to_owned(),
                    status: s.as_u16(),
                },
                progressed: false,
            });
        }
        s => {
            return Err(Failure::Final(FetchError::Http {
                url: url.to_owned(),
                status: s.as_u16(),
            }));
        }
    };
    if let (Some(want), Some(got)) = (expected_size, total)
        && want != got
    {
        return Err(Failure::Final(FetchError::SizeMismatch {
            file: url.to_owned(),
            expected: want,
            got,
        }));
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(part)
        .await
        .map_err(io)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    progress.begin(total, start);
    let mut written = 0u64;
    let ended = loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                out.write_all(&bytes).await.map_err(io)?;
                written += bytes.len() as u64;
                progress.advance(bytes.len() as u64);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    // Whatever arrived stays in the part, for the next attempt (or the next run) to continue.
    out.flush().await.map_err(io)?;
    out.get_ref().sync_all().await.map_err(io)?;
    if let Err(e) = ended {
        return Err(network(e, written > 0));
    }
    if let Some(total) = total
        && start + written < total
    {
        return Err(Failure::Again {
            error: FetchError::Network {
                url: url.to_owned(),
                message: format!(
                    "connection closed after {} of {total} bytes",
                    start + written
                ),
            },
            progressed: written > 0,
        });
    }
    Ok(())
}

/// `bytes START-END/TOTAL` → (START, TOTAL if stated).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

fn part_len(part: &Path) -> Result<u64, FetchError> {
    match std::fs::metadata(part) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error(part, e)),
    }
}

fn truncate(part: &Path) -> Result<(), FetchError> {
    std::fs::File::create(part)
        .map(drop)
        .map_err(|e| io_error(part, e))
}

fn io_error(path: &Path, e: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.to_owned(),
        source: e,
    }
}

/// The error with its causes ("error sending request: connection refused"), since reqwest's
/// own message alone often hides the reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(content_range("bytes 5-9/10"), Some((5, Some(10))));
        assert_eq!(content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(content_range("bytes */10"), None);
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
