//! The pins file in the cache (`pins.json`): every fetched file's sha256, size, when its sum
//! was pinned and when it was last fetched, and the local copies known to hold exactly those
//! bytes (path, size and modification time), so that a second fetch trusts them without
//! hashing again. Written whole to a temporary file and renamed, so a crash never leaves half
//! a file; each update re-reads it first, so separate fetches of different datasets keep each
//! other's entries.

use super::FetchError;
use super::catalog::{Dataset, FileSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The file's name inside the cache directory.
pub const FILE_NAME: &str = "pins.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    /// Keyed by `dataset/version/file`.
    #[serde(default)]
    pub files: BTreeMap<String, Pin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub sha256: String,
    pub size: u64,
    /// When this sum was first recorded (RFC 3339); kept while later fetches match it.
    pub pinned_at: String,
    /// When the file was last downloaded or copied (RFC 3339).
    pub fetched_at: String,
    /// The URL or path the last copy came from.
    pub source: String,
    /// Local copies verified to hold these bytes, by path.
    #[serde(default)]
    pub copies: BTreeMap<String, Stamp>,
}

/// What a local file looked like when it was verified: if it still looks the same, it is
/// trusted without hashing (a second fetch is instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub modified_ns: u64,
}

impl Stamp {
    /// The stamp of the file at `path`, or `None` when it does not exist (or has no time).
    pub fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        Some(Stamp {
            size: meta.len(),
            modified_ns: u64::try_from(modified.as_nanos()).unwrap_or(u64::MAX),
        })
    }
}

pub fn key(dataset: &Dataset, file: &FileSpec) -> String {
    format!("{}/{}/{}", dataset.name, dataset.version, file.name)
}

pub fn path_key(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .to_string_lossy()
        .into_owned()
}

impl Pins {
    /// Reads the pins file; a missing one is empty.
    pub fn load(path: &Path) -> Result<Pins, FetchError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pins::default()),
            Err(e) => {
                return Err(FetchError::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        serde_json::from_str(&text).map_err(|e| FetchError::Pins {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Re-reads the file, applies `change`, and writes it back atomically.
    pub fn update(path: &Path, change: impl FnOnce(&mut Pins)) -> Result<(), FetchError> {
        let mut pins = Pins::load(path)?;
        change(&mut pins);
        let io = |p: &Path| {
            let p = p.to_owned();
            move |e| FetchError::Io { path: p, source: e }
        };
        let text = serde_json::to_string_pretty(&pins).map_err(|e| FetchError::Pins {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
        std::fs::write(&tmp, text + "\n").map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_other_entries_and_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE_NAME);
        assert!(
            Pins::load(&path)
                .expect("missing is empty")
                .files
                .is_empty()
        );
        let pin = |sha: &str| Pin {
            sha256: sha.into(),
            size: 3,
            pinned_at: "2026-01-01T00:00:00Z".into(),
            fetched_at: "2026-01-01T00:00:00Z".into(),
            source: "http://x".into(),
            copies: BTreeMap::from([(
                "/a".into(),
                Stamp {
                    size: 3,
                    modified_ns: 7,
                },
            )]),
        };
        Pins::update(&path, |p| {
            p.files.insert("a/1/x".into(), pin("aa"));
        })
        .expect("first");
        Pins::update(&path, |p| {
            p.files.insert("b/1/y".into(), pin("bb"));
        })
        .expect("second");
        let got = Pins::load(&path).expect("load");
        assert_eq!(got.files.len(), 2);
        assert_eq!(got.files["a/1/x"], pin("aa"));
        std::fs::write(&path, "{ not json").expect("write");
        let err = Pins::load(&path).expect_err("an error").to_string();
        assert!(err.contains("pins.json"), "{err}");
    }

    #[test]
    fn a_stamp_changes_when_the_file_does() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("f");
        assert_eq!(Stamp::of(&f), None);
        std::fs::write(&f, "abc").expect("write");
        let first = Stamp::of(&f).expect("stamp");
        assert_eq!(first.size, 3);
        std::fs::write(&f, "abcd").expect("write");
        assert_ne!(Stamp::of(&f), Some(first));
    }
}
