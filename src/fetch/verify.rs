//! Streaming SHA-256 of files on disk (1 MiB at a time, never the whole file in memory), and
//! the copy that `--from` makes while hashing in the same pass.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const CHUNK: usize = 1 << 20;

/// Lowercase hex SHA-256 and length of the file at `path`.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex(&hasher.finalize()), total))
}

/// Copies `from` to `to` (created or truncated), returning the copy's SHA-256 and length;
/// `copied` counts the bytes as they go, for a progress bar on another thread.
pub fn copy_hashing(
    from: &Path,
    to: &Path,
    copied: &AtomicU64,
) -> Result<(String, u64), (std::path::PathBuf, std::io::Error)> {
    let mut src = std::fs::File::open(from).map_err(|e| (from.to_owned(), e))?;
    let mut dst = std::fs::File::create(to).map_err(|e| (to.to_owned(), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(|e| (from.to_owned(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n]).map_err(|e| (to.to_owned(), e))?;
        total += n as u64;
        copied.store(total, Ordering::Relaxed);
    }
    dst.sync_all().map_err(|e| (to.to_owned(), e))?;
    Ok((hex(&hasher.finalize()), total))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = dir.path().join("a");
        std::fs::write(&a, "abc").expect("write");
        let (sum, n) = sha256_file(&a).expect("hash");
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
        // Larger than one chunk, so the streaming path is exercised.
        let big: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &big).expect("write");
        let b = dir.path().join("b");
        let count = AtomicU64::new(0);
        let copied = copy_hashing(&a, &b, &count).expect("copy");
        assert_eq!(count.load(Ordering::Relaxed), big.len() as u64);
        assert_eq!(copied, sha256_file(&a).expect("hash"));
        assert_eq!(copied.0, hex(&Sha256::digest(&big)));
        assert_eq!(std::fs::read(&b).expect("read"), big);
    }
}
