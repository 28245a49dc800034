//! A recorded model's checkpoint as a directory on this host. Models recorded since migration
//! 0016 keep every checkpoint file in the database, so a model trained on one host (a GPU box)
//! loads on any host that reaches the database (a small VM serving it): the directory the
//! files were written to is used while every file in it matches its stored checksum (the host
//! that trained it); otherwise the files are materialised from the database into
//! `<data-dir>/cache/models/<id>`. Older models (storage 'directory') are read where they
//! were written.

use super::{Result, TrainingError, blocking};
use crate::model::checkpoint;
use crate::store::{ModelInfo, Storage, Store, StoredFile};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A recorded model with a directory on this host that holds its checkpoint.
#[derive(Debug, Clone)]
pub struct LocalCheckpoint {
    pub info: ModelInfo,
    dir: PathBuf,
    /// Every file was just checked against the database's checksums: loading need not hash
    /// the weights again.
    verified: bool,
}

impl LocalCheckpoint {
    /// The checkpoint directory (`save_ensemble`'s layout: `member-<i>/`, `calibration.json`,
    /// `priors.json`, `valid.tsv`, curves).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether every file was checked against the database's checksums on the way here.
    pub fn verified(&self) -> bool {
        self.verified
    }
}

/// Where model `id`'s checkpoint is materialised under `data_dir`.
pub fn cache_dir(data_dir: &Path, id: i64) -> PathBuf {
    data_dir.join("cache").join("models").join(id.to_string())
}

/// A directory on this host holding `info`'s checkpoint: the recorded path when its files
/// match the database's (or the model predates checkpoints in the database), else the cache
/// under `data_dir`, written from the database when it is missing or stale. Every file read
/// from the database is checked against its stored checksum; a mismatch is an error naming
/// the model and the file.
pub async fn local_checkpoint(
    store: &Store,
    data_dir: &Path,
    info: ModelInfo,
) -> Result<LocalCheckpoint> {
    if info.storage == Storage::Directory {
        let dir = PathBuf::from(&info.path);
        return Ok(LocalCheckpoint {
            info,
            dir,
            verified: false,
        });
    }
    let id = info.id;
    let files = store.checkpoint_files(id).await?;
    if files.is_empty() {
        return Err(TrainingError::NoCheckpointFiles { id });
    }
    for f in &files {
        if !safe_name(&f.name) {
            return Err(TrainingError::BadFileName {
                id,
                name: f.name.clone(),
            });
        }
    }
    let recorded = PathBuf::from(&info.path);
    if recorded.is_dir() {
        if blocking(|| matches(&recorded, &files)) {
            return Ok(LocalCheckpoint {
                info,
                dir: recorded,
                verified: true,
            });
        }
        tracing::warn!(
            model = id,
            path = %recorded.display(),
            "the checkpoint directory differs from the database's copy: using the database's"
        );
    }
    let cache = cache_dir(data_dir, id);
    if cache.is_dir() && blocking(|| matches(&cache, &files)) {
        return Ok(LocalCheckpoint {
            info,
            dir: cache,
            verified: true,
        });
    }
    materialise(store, id, &files, &cache).await?;
    tracing::info!(model = id, path = %cache.display(), "checkpoint written from the database");
    Ok(LocalCheckpoint {
        info,
        dir: cache,
        verified: true,
    })
}

/// A stored name that stays inside the directory it is joined to: '/'-separated plain
/// components (a database edited by hand must not write elsewhere).
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Whether every stored file is in `dir` with its stored checksum.
fn matches(dir: &Path, files: &[StoredFile]) -> bool {
    files
        .iter()
        .all(|f| checkpoint::checksum(&dir.join(&f.name)).is_ok_and(|sum| sum == f.checksum))
}

/// Writes the files into a temporary directory beside `cache`, checking each against its
/// stored checksum, then renames it into place: a crash leaves a stray temporary directory
/// (swept by a later materialisation), never a half-written cache.
async fn materialise(store: &Store, id: i64, files: &[StoredFile], cache: &Path) -> Result<()> {
    let parent = cache.parent().unwrap_or(Path::new("."));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |cause| TrainingError::Io { path, cause }
    };
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    sweep_stale(parent, std::time::SystemTime::now());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = parent.join(format!(".{id}.tmp-{}-{nanos}", std::process::id()));
    let written = write_files(store, id, files, &tmp).await;
    let placed = written.and_then(|()| {
        // Another process may have put a whole cache there meanwhile: keep it (a reader may
        // be in it). Otherwise a stale one (files that no longer match) gives way.
        if cache.is_dir() && blocking(|| matches(cache, files)) {
            return Ok(());
        }
        match std::fs::remove_dir_all(cache) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io(cache)(e)),
            _ => {}
        }
        match std::fs::rename(&tmp, cache) {
            Ok(()) => Ok(()),
            // Another process put it there first: theirs will do if it is whole.
            Err(_) if blocking(|| matches(cache, files)) => Ok(()),
            Err(e) => Err(io(cache)(e)),
        }
    });
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    placed
}

/// Removes what a killed materialisation left beside the caches: `.<id>.tmp-<pid>-<nanos>`
/// directories whose process is gone from this host, or that are over an hour old (a data
/// directory shared between hosts, or a process id taken again). Best effort: a directory
/// another process removes first, or one that cannot be removed, is left to the next sweep.
fn sweep_stale(parent: &Path, now: std::time::SystemTime) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.starts_with('.'))
            .and_then(|n| n.split_once(".tmp-"))
            .and_then(|(_, rest)| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        let gone = pid != std::process::id()
            && Path::new("/proc/self").exists()
            && !Path::new("/proc").join(pid.to_string()).exists();
        if gone || age > std::time::Duration::from_secs(3600) {
            tracing::info!(path = %entry.path().display(), "removing a stray checkpoint cache");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn write_files(store: &Store, id: i64, files: &[StoredFile], tmp: &Path) -> Result<()> {
    for f in files {
        let bytes = store.checkpoint_file(id, &f.name).await?;
        let (bytes, sum) = blocking(move || {
            let sum = blake3::hash(&bytes).to_hex().to_string();
            (bytes, sum)
        });
        if sum != f.checksum {
            return Err(TrainingError::AlteredFile {
                id,
                name: f.name.clone(),
            });
        }
        let path = tmp.join(&f.name);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |cause| TrainingError::Io { path, cause }
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        }
        tokio::fs::write(&path, bytes).await.map_err(io(&path))?;
    }
    Ok(())
}

/// Every file under a checkpoint directory, as the name to store ('/'-separated, relative to
/// `dir`) and its path, sorted by name.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut pending = vec![(String::new(), dir.to_owned())];
    while let Some((prefix, at)) = pending.pop() {
        let io = |cause| TrainingError::Io {
            path: at.clone(),
            cause,
        };
        for entry in std::fs::read_dir(&at).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(TrainingError::Io {
                    path,
                    cause: std::io::Error::new(ErrorKind::InvalidData, "a name that is not UTF-8"),
                });
            };
            let name = format!("{prefix}{file_name}");
            let kind = entry.file_type().map_err(io)?;
            if kind.is_dir() {
                pending.push((format!("{name}/"), path));
            } else if kind.is_file() {
                out.push((name, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_temporary_caches_of_dead_processes_and_old_ones_are_swept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let me = std::process::id();
        // No process has an id above the kernel's maximum (2^22).
        let names = [
            format!(".7.tmp-{}-1", 1u32 << 30),
            format!(".7.tmp-{me}-2"),
            "7".to_owned(),
            ".7.tmp-notapid-3".to_owned(),
        ];
        for n in &names {
            std::fs::create_dir_all(dir.path().join(n).join("member-0")).expect("mkdir");
        }
        sweep_stale(dir.path(), std::time::SystemTime::now());
        let left = |n: &str| dir.path().join(n).exists();
        assert!(
            !left(&names[0]),
            "a dead process's temporary directory stays"
        );
        assert!(left(&names[1]) && left(&names[2]) && left(&names[3]));
        // Two hours later even a live process's is stale.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(7200);
        sweep_stale(dir.path(), later);
        assert!(!left(&names[1]));
        assert!(left(&names[2]), "a cache is never swept");
    }

    #[test]
    fn stored_names_stay_inside_the_directory() {
        for ok in ["calibration.json", "member-0/weights.bpk", "a/b/c"] {
            assert!(safe_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/",
            "a\\b",
            "a\0b",
        ] {
            assert!(!safe_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn files_are_listed_recursively_by_relative_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("member-1")).expect("mkdir");
        for name in ["valid.tsv", "member-1/weights.bpk", "calibration.json"] {
            std::fs::write(dir.path().join(name), name).expect("write");
        }
        let names: Vec<String> = checkpoint_files(dir.path())
            .expect("list")
            .into_iter()
            .map(|(n, p)| {
                assert_eq!(std::fs::read_to_string(p).expect("read"), n);
                n
            })
            .collect();
        assert_eq!(
            names,
            ["calibration.json", "member-1/weights.bpk", "valid.tsv"]
        );
    }
}
