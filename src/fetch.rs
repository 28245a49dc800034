//! Getting the public graphs: `fetch` downloads a dataset of the [`catalog`] (or copies it
//! from a local path), checks every file's SHA-256 against the published sum or the sum pinned
//! on first use, and keeps it in a cache so that a second fetch is instant.
//!
//! Files go to `<cache>/<dataset>/<version>/<file>` (or `--to DIR`); the cache's
//! [`pins`] file records each file's sum, size and fetch time. Nothing is kept as good
//! before its sum matched: bytes arrive in `<file>.part` and are renamed only afterwards.

pub mod catalog;
mod download;
pub mod pins;
mod verify;

pub use catalog::{Dataset, FileSpec, SumSource};
pub use download::Retry;

use pins::{Pin, Pins, Stamp};
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{dataset}: {file} is not in the cache yet (`hypograph fetch {dataset}` fetches it)")]
    NotCached { dataset: String, file: String },
    #[error("unknown dataset {name:?} (known: {known})")]
    UnknownDataset { name: String, known: String },
    #[error("catalog {path}: {message}")]
    Catalog { path: PathBuf, message: String },
    #[error("pins file {path}: {message} (move it away to start over; every sum is pinned again)")]
    Pins { path: PathBuf, message: String },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: {message}")]
    Network { url: String, message: String },
    #[error("starting the HTTP client: {0}")]
    Client(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        file: String,
        expected: u64,
        got: u64,
    },
    /// A file whose sum is not the published or pinned one; it was not kept.
    #[error("{0}")]
    Checksum(Box<Mismatch>),
    #[error("{file} is not in {from} (and not in the cache)")]
    MissingFrom { file: String, from: PathBuf },
    #[error("no cache directory: set HYPOGRAPH_CACHE, XDG_CACHE_HOME or HOME")]
    NoCacheDir,
}

/// A refused file: which, what its sum should have been and why, what it was, from where.
#[derive(Debug)]
pub struct Mismatch {
    pub dataset: String,
    pub file: String,
    pub expected: String,
    pub got: String,
    /// When the expected sum was pinned; `None` for a published sum.
    pub pinned_at: Option<String>,
    /// The URL or path the refused bytes came from.
    pub origin: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match &self.pinned_at {
            None => "published".to_owned(),
            Some(at) => format!("pinned on first use at {at}"),
        };
        write!(
            f,
            "{}: checksum mismatch: expected sha256 {} ({why}), got {} from {}; the file was \
             not kept",
            self.file, self.expected, self.got, self.origin
        )?;
        if self.pinned_at.is_some() {
            write!(
                f,
                ". If the publisher changed the file on purpose, accept the new one with \
                 `hypograph fetch {} --repin`",
                self.dataset
            )?;
        }
        Ok(())
    }
}

/// Where the bytes come from and where they go.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Holds the pins file, and the files themselves unless `to` is set.
    pub cache_dir: PathBuf,
    /// Put the files here instead of the cache.
    pub to: Option<PathBuf>,
    /// A file or directory holding the dataset's files by name: no network at all.
    pub from: Option<PathBuf>,
    /// Fetch `MIRROR/<dataset>/<file name>` instead of the publisher's URL.
    pub mirror: Option<String>,
    /// Accept a changed file on a pinned-on-first-use sum, and pin its new sum.
    pub repin: bool,
    /// Use only what the cache holds: a file it lacks is `NotCached`, with no request made
    /// (`validate` checks a workflow's `graph.fetch` without downloading).
    pub offline: bool,
    pub retry: Retry,
}

impl FetchOptions {
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            to: None,
            from: None,
            mirror: None,
            repin: false,
            offline: false,
            retry: Retry {
                retries: 5,
                backoff: Duration::from_millis(500),
            },
        }
    }
}

/// `$HYPOGRAPH_CACHE`, else `$XDG_CACHE_HOME/hypograph`, else `~/.cache/hypograph`.
/// The catalog in force: the file `HYPOGRAPH_FETCH_CATALOG` names (mirrors, tests), else
/// the built-in table. `hypograph fetch --catalog` and a workflow's `graph.fetch` agree on it.
pub fn catalog_in_force() -> Result<Vec<Dataset>, FetchError> {
    match std::env::var_os("HYPOGRAPH_FETCH_CATALOG") {
        Some(p) if !p.is_empty() => catalog::load(Path::new(&p)),
        _ => Ok(catalog::builtin()),
    }
}

pub fn default_cache_dir() -> Result<PathBuf, FetchError> {
    cache_dir_from(|k| std::env::var_os(k))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, FetchError> {
    let set = |k| {
        var(k)
            .filter(|v: &OsString| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = set("HYPOGRAPH_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = set("XDG_CACHE_HOME") {
        return Ok(dir.join("hypograph"));
    }
    set("HOME")
        .map(|h| h.join(".cache").join("hypograph"))
        .ok_or(FetchError::NoCacheDir)
}

/// Progress of one fetch, for a bar or nothing. Called in order: `begin` (again when a
/// download restarts or resumes), `advance` for each chunk, `verifying`, `end`.
pub trait Progress: Send + Sync {
    /// A file starts (or restarts): `total` bytes if known, `done` already there.
    fn begin(&self, _total: Option<u64>, _done: u64) {}
    fn advance(&self, _bytes: u64) {}
    /// The file is named before its bytes move.
    fn file(&self, _name: &str) {}
    /// Hashing a file already on disk.
    fn verifying(&self, _name: &str, _size: u64) {}
    fn end(&self) {}
}

/// No progress shown.
pub struct Quiet;
impl Progress for Quiet {}

/// What a fetch left on disk, for the import to read.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub dataset: String,
    pub version: String,
    /// The import format that reads these files.
    pub format: String,
    pub licence: String,
    pub dir: PathBuf,
    pub files: Vec<FetchedFile>,
}

impl Fetched {
    /// The files read with their format's reader: one file (a tarball, `kg.csv`) as it is,
    /// several found by name in their directory. `hypograph fetch` and a workflow's
    /// `graph.fetch` import through here.
    pub fn read(&self) -> Result<crate::graph::TripleBatch, crate::graph::ParseError> {
        use crate::graph::table::{ColumnMap, Preset, TableSource, read_table};
        let preset = Preset::from_name(&self.format).ok_or_else(|| {
            crate::graph::ParseError::File {
                path: self.dir.clone(),
                message: format!(
                    "the catalog names format `{}`, which no reader knows (known: hetionet, primekg, drkg, monarch)",
                    self.format
                ),
            }
        })?;
        let edges = match self.files.as_slice() {
            [one] => one.path.clone(),
            _ => self.dir.clone(),
        };
        read_table(
            &TableSource {
                edges,
                nodes: None,
                preset: Some(preset),
                map: ColumnMap::default(),
                options: None,
            },
            crate::graph::OnInvalid::Fail,
        )
    }

    /// `hetionet v1.0: FILE sha256 SUM, ...`: what a version made from these files says.
    pub fn describe(&self) -> String {
        let sums: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("{} sha256 {}", f.name, f.sha256))
            .collect();
        format!("{} {}: {}", self.dataset, self.version, sums.join(", "))
    }

    /// The provenance a version made from these files keeps (`kind` names who imported them).
    pub fn provenance(&self, kind: &str) -> serde_json::Value {
        serde_json::json!({
            "kind": kind,
            "dataset": self.dataset,
            "version": self.version,
            "format": self.format,
            "licence": self.licence,
            "files": self.files.iter().map(|f| serde_json::json!({
                "name": f.name, "sha256": f.sha256, "bytes": f.bytes, "sum": f.sum,
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FetchedFile {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub sum: SumState,
    pub origin: Origin,
}

/// What the file's sum was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SumState {
    /// The catalog's published sum.
    Published,
    /// No sum was known (or `--repin`): this one is now recorded.
    PinnedNow,
    /// The sum pinned by an earlier fetch.
    AlreadyPinned,
}

/// Where this run got the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Already there and verified: nothing was transferred.
    Cache,
    /// Downloaded; `resumed_from` bytes came from an earlier, interrupted download.
    Download { url: String, resumed_from: u64 },
    /// Copied from `--from`.
    Copy { from: PathBuf },
}

/// The sum a file must have, and why.
enum Expected {
    Published(String),
    Pinned(Pin),
    /// Pinned on first use, and this is the first use (or `--repin`).
    Nothing,
}

impl Expected {
    fn sha(&self) -> Option<&str> {
        match self {
            Expected::Published(s) => Some(s),
            Expected::Pinned(p) => Some(&p.sha256),
            Expected::Nothing => None,
        }
    }
}

/// Fetches every file of `dataset`, verified, into the cache (or `opts.to`).
pub async fn fetch(
    dataset: &Dataset,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<Fetched, FetchError> {
    let dir = opts
        .to
        .clone()
        .unwrap_or_else(|| opts.cache_dir.join(&dataset.name).join(&dataset.version));
    // Absolute, so that `Fetched` paths stay valid for whoever reads them, from anywhere.
    let dir = std::path::absolute(&dir).map_err(|e| io(&dir, e))?;
    create_dir(&opts.cache_dir)?;
    create_dir(&dir)?;
    let pins_path = opts.cache_dir.join(pins::FILE_NAME);
    let mut client = None;
    let mut files = Vec::with_capacity(dataset.files.len());
    for spec in &dataset.files {
        let key = pins::key(dataset, spec);
        let pin = Pins::load(&pins_path)?.files.remove(&key);
        let expected = match (spec.sum, &spec.sha256) {
            (SumSource::Published, Some(sha)) => Expected::Published(sha.clone()),
            (SumSource::Published, None) => {
                return Err(FetchError::Catalog {
                    path: PathBuf::from("(built-in)"),
                    message: format!("{}: a published sum needs its sha256", spec.name),
                });
            }
            (SumSource::PinnedOnFirstUse, _) => match pin.clone() {
                Some(p) if !opts.repin => Expected::Pinned(p),
                _ => Expected::Nothing,
            },
        };
        let dest = dir.join(&spec.name);
        progress.file(&spec.name);
        let got = match cached(&dest, &expected, pin.as_ref(), progress).await? {
            Some(sha) => Got {
                sha,
                bytes: std::fs::metadata(&dest).map_err(|e| io(&dest, e))?.len(),
                origin: Origin::Cache,
            },
            None if opts.offline => {
                return Err(FetchError::NotCached {
                    dataset: dataset.name.clone(),
                    file: spec.name.clone(),
                });
            }
            None => obtain(dataset, spec, &dest, &expected, opts, &mut client, progress).await?,
        };
        progress.end();
        let sum = match &expected {
            Expected::Published(_) => SumState::Published,
            Expected::Pinned(_) => SumState::AlreadyPinned,
            Expected::Nothing if pin.as_ref().is_some_and(|p| p.sha256 == got.sha) => {
                SumState::AlreadyPinned
            }
            Expected::Nothing => SumState::PinnedNow,
        };
        record(&pins_path, &key, &dest, &got, pin.as_ref())?;
        files.push(FetchedFile {
            name: spec.name.clone(),
            path: dest,
            sha256: got.sha,
            bytes: got.bytes,
            sum,
            origin: got.origin,
        });
    }
    Ok(Fetched {
        dataset: dataset.name.clone(),
        version: dataset.version.clone(),
        format: dataset.format.clone(),
        licence: dataset.licence.clone(),
        dir,
        files,
    })
}

struct Got {
    sha: String,
    bytes: u64,
    origin: Origin,
}

/// The sum of `dest` if it already holds the expected bytes: trusted without hashing when the
/// pins file verified this very copy (same size and modification time), hashed otherwise.
/// Without an expected sum (first use, `--repin`) nothing on disk is trusted.
async fn cached(
    dest: &Path,
    expected: &Expected,
    pin: Option<&Pin>,
    progress: &dyn Progress,
) -> Result<Option<String>, FetchError> {
    let Some(want) = expected.sha() else {
        return Ok(None);
    };
    let Some(stamp) = Stamp::of(dest) else {
        return Ok(None);
    };
    if let Some(pin) = pin
        && pin.sha256 == want
        && pin.copies.get(&pins::path_key(dest)) == Some(&stamp)
    {
        return Ok(Some(want.to_owned()));
    }
    progress.verifying(&dest.to_string_lossy(), stamp.size);
    let (sha, _) = hash(dest).await?;
    if sha == want {
        Ok(Some(sha))
    } else {
        tracing::warn!(path = %dest.display(), expected = want, got = %sha, "cached file differs from its sum, fetching it again");
        Ok(None)
    }
}

/// Downloads or copies one file into `<dest>.part`, checks it, and renames it to `dest`.
async fn obtain(
    dataset: &Dataset,
    spec: &FileSpec,
    dest: &Path,
    expected: &Expected,
    opts: &FetchOptions,
    client: &mut Option<reqwest::Client>,
    progress: &dyn Progress,
) -> Result<Got, FetchError> {
    let part = PathBuf::from(format!("{}.part", dest.display()));
    if let Some(from) = &opts.from {
        let src = from_path(from, dataset, spec)?;
        let src = std::path::absolute(&src).unwrap_or(src);
        progress.begin(std::fs::metadata(&src).ok().map(|m| m.len()), 0);
        let (sha, bytes) = copy(&src, &part, progress).await?;
        let origin = Origin::Copy { from: src.clone() };
        check(
            dataset,
            spec,
            expected,
            &part,
            &sha,
            bytes,
            &src.to_string_lossy(),
        )?;
        rename(&part, dest)?;
        return Ok(Got { sha, bytes, origin });
    }
    let url = match &opts.mirror {
        Some(m) => format!("{}/{}/{}", m.trim_end_matches('/'), dataset.name, spec.name),
        None => spec.url.clone(),
    };
    if client.is_none() {
        *client = Some(download::client()?);
    }
    let Some(http) = client.as_ref() else {
        unreachable!("set above")
    };
    let sum_known = expected.sha().is_some();
    let download = || {
        download::download(
            http, &url, &part, spec.size, sum_known, opts.retry, progress,
        )
    };
    let mut done = download().await?;
    let mut retried = false;
    loop {
        progress.verifying(&spec.name, spec.size.unwrap_or(0));
        let (sha, bytes) = hash(&part).await?;
        match check(dataset, spec, expected, &part, &sha, bytes, &url) {
            Ok(()) => {
                rename(&part, dest)?;
                download::forget(&part)?;
                return Ok(Got {
                    sha,
                    bytes,
                    origin: Origin::Download {
                        url,
                        resumed_from: done.resumed_from,
                    },
                });
            }
            // A part left by an earlier run may hold the start of an older file: one clean
            // download before the mismatch counts.
            Err(_) if done.resumed_from > 0 && !retried => {
                tracing::warn!(file = %spec.name, "resumed download does not match, downloading it whole");
                retried = true;
                done = download().await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Checks size and sum of the finished `.part`; a mismatch removes it.
fn check(
    dataset: &Dataset,
    spec: &FileSpec,
    expected: &Expected,
    part: &Path,
    sha: &str,
    bytes: u64,
    source: &str,
) -> Result<(), FetchError> {
    let discard = || {
        let _ = std::fs::remove_file(part);
        let _ = download::forget(part);
    };
    if let Some(want) = spec.size
        && want != bytes
    {
        discard();
        return Err(FetchError::SizeMismatch {
            file: spec.name.clone(),
            expected: want,
            got: bytes,
        });
    }
    let (want, pinned_at) = match expected {
        Expected::Published(want) => (want, None),
        Expected::Pinned(pin) => (&pin.sha256, Some(pin.pinned_at.clone())),
        Expected::Nothing => return Ok(()),
    };
    if want == sha {
        return Ok(());
    }
    discard();
    Err(FetchError::Checksum(Box::new(Mismatch {
        dataset: dataset.name.clone(),
        file: spec.name.clone(),
        expected: want.clone(),
        got: sha.to_owned(),
        pinned_at,
        origin: source.to_owned(),
    })))
}

/// The file of `spec` under `--from`: `DIR/<name>`, or the file itself when its name matches
/// (or the dataset has only one file).
fn from_path(from: &Path, dataset: &Dataset, spec: &FileSpec) -> Result<PathBuf, FetchError> {
    let missing = || FetchError::MissingFrom {
        file: spec.name.clone(),
        from: from.to_owned(),
    };
    if from.is_dir() {
        let p = from.join(&spec.name);
        return if p.is_file() { Ok(p) } else { Err(missing()) };
    }
    if !from.exists() {
        return Err(io(from, std::io::Error::from(std::io::ErrorKind::NotFound)));
    }
    let same_name = from.file_name().is_some_and(|n| *n == *spec.name);
    if same_name || dataset.files.len() == 1 {
        Ok(from.to_owned())
    } else {
        Err(missing())
    }
}

/// Records the verified file in the pins file: its sum (pinned now unless it matches the old
/// pin), size, fetch time and this copy's stamp.
fn record(
    pins_path: &Path,
    key: &str,
    dest: &Path,
    got: &Got,
    old: Option<&Pin>,
) -> Result<(), FetchError> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stamp = Stamp::of(dest)
        .ok_or_else(|| io(dest, std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    let same = old.filter(|p| p.sha256 == got.sha);
    let (source, fetched_at) = match &got.origin {
        Origin::Cache => (
            same.map(|p| p.source.clone()).unwrap_or_default(),
            same.map(|p| p.fetched_at.clone()).unwrap_or(now.clone()),
        ),
        Origin::Download { url, .. } => (url.clone(), now.clone()),
        Origin::Copy { from } => (from.to_string_lossy().into_owned(), now.clone()),
    };
    let mut pin = Pin {
        sha256: got.sha.clone(),
        size: got.bytes,
        pinned_at: same.map(|p| p.pinned_at.clone()).unwrap_or(now),
        fetched_at,
        source,
        // Copies verified against another sum no longer hold the pinned bytes.
        copies: same.map(|p| p.copies.clone()).unwrap_or_default(),
    };
    pin.copies.insert(pins::path_key(dest), stamp);
    if same.is_some_and(|p| *p == pin) {
        return Ok(());
    }
    Pins::update(pins_path, |pins| {
        pins.files.insert(key.to_owned(), pin);
    })
}

/// `verify::copy_hashing` on the blocking pool, reporting progress meanwhile.
async fn copy(
    from: &Path,
    to: &Path,
    progress: &dyn Progress,
) -> Result<(String, u64), FetchError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let copied = std::sync::Arc::new(AtomicU64::new(0));
    let (from, to, count) = (from.to_owned(), to.to_owned(), copied.clone());
    let mut job = std::pin::pin!(blocking(move || verify::copy_hashing(&from, &to, &count)));
    let mut shown = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            done = &mut job => return done,
            _ = tick.tick() => {
                let now = copied.load(Ordering::Relaxed);
                progress.advance(now.saturating_sub(shown));
                shown = now;
            }
        }
    }
}

/// SHA-256 of a possibly large file, on the blocking pool.
async fn hash(path: &Path) -> Result<(String, u64), FetchError> {
    let p = path.to_owned();
    blocking(move || verify::sha256_file(&p).map_err(|e| (p.clone(), e))).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, (PathBuf, std::io::Error)> + Send + 'static,
) -> Result<T, FetchError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|(p, e)| io(&p, e)),
        Err(e) => Err(FetchError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        }),
    }
}

fn create_dir(dir: &Path) -> Result<(), FetchError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
}

fn rename(from: &Path, to: &Path) -> Result<(), FetchError> {
    std::fs::rename(from, to).map_err(|e| io(to, e))
}

fn io(path: &Path, e: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.to_owned(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let all = &[
            ("HYPOGRAPH_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_dir_from(env(all)).ok(), Some(PathBuf::from("/c")));
        assert_eq!(
            cache_dir_from(env(&[("HYPOGRAPH_CACHE", ""), ("XDG_CACHE_HOME", "/x")])).ok(),
            Some(PathBuf::from("/x/hypograph"))
        );
        assert_eq!(
            cache_dir_from(env(&[("HOME", "/h")])).ok(),
            Some(PathBuf::from("/h/.cache/hypograph"))
        );
        assert!(matches!(
            cache_dir_from(env(&[])),
            Err(FetchError::NoCacheDir)
        ));
    }

    fn dataset(sum: SumSource, sha: Option<String>) -> Dataset {
        Dataset {
            name: "t".into(),
            version: "1".into(),
            homepage: String::new(),
            licence: "CC0 1.0".into(),
            citation: String::new(),
            format: "drkg".into(),
            note: String::new(),
            files: vec![FileSpec {
                name: "a.tsv".into(),
                url: "http://127.0.0.1:9/a.tsv".into(),
                size: None,
                sha256: sha,
                sum,
            }],
        }
    }

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn published_sums_decide_and_repin_cannot_override_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::write(src.join("a.tsv"), "abc").expect("write");
        let mut opts = FetchOptions::new(dir.path().join("cache"));
        opts.from = Some(src.clone());

        let good = dataset(SumSource::Published, Some(ABC.into()));
        let got = fetch(&good, &opts, &Quiet)
            .await
            .expect("published sum matches");
        assert_eq!(got.files[0].sum, SumState::Published);
        assert_eq!(got.files[0].sha256, ABC);

        let wrong = "0".repeat(64);
        let mut bad = dataset(SumSource::Published, Some(wrong.clone()));
        bad.name = "u".into();
        opts.repin = true;
        let err = fetch(&bad, &opts, &Quiet)
            .await
            .expect_err("an error")
            .to_string();
        assert!(err.contains(&wrong) && err.contains(ABC), "{err}");
        let kept = dir.path().join("cache/u/1");
        assert!(!kept.join("a.tsv").exists() && !kept.join("a.tsv.part").exists());
        let pins = Pins::load(&dir.path().join("cache").join(pins::FILE_NAME)).expect("pins");
        assert!(pins.files.contains_key("t/1/a.tsv"));
        assert!(
            !pins.files.contains_key("u/1/a.tsv"),
            "a refused file is not recorded"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_cached_file_that_changed_on_disk_is_fetched_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("a.tsv");
        std::fs::write(&src, "abc").expect("write");
        let mut opts = FetchOptions::new(dir.path().join("cache"));
        opts.from = Some(src.clone());
        let d = dataset(SumSource::PinnedOnFirstUse, None);
        let first = fetch(&d, &opts, &Quiet).await.expect("first");
        assert_eq!(first.files[0].sum, SumState::PinnedNow);
        let second = fetch(&d, &opts, &Quiet).await.expect("second");
        assert_eq!(second.files[0].origin, Origin::Cache);
        assert_eq!(second.files[0].sum, SumState::AlreadyPinned);
        // Damage the cached copy: it is no longer trusted, and a good copy replaces it.
        std::fs::write(&first.files[0].path, "abxy").expect("damage");
        let third = fetch(&d, &opts, &Quiet).await.expect("third");
        assert!(matches!(third.files[0].origin, Origin::Copy { .. }));
        assert_eq!(std::fs::read(&third.files[0].path).expect("read"), b"abc");
    }
}
