//! Line splitting shared by the TSV readers: BOM, CRLF, trailing blanks and UTF-8 checks in one place;
//! and reading a file whole, decompressed when its name says so.

use super::ParseError;
use std::io::Read;
use std::path::Path;

/// A file's bytes, decompressed by its last extension: `.gz` (gzip, several members
/// allowed, as `bgzip` writes), `.bz2`, `.zst`; anything else as it is. Every reader of
/// graph files goes through here, so `.tsv.gz` works wherever `.tsv` does. A corrupt
/// stream is an error naming the file.
pub fn read_input(path: &Path) -> Result<Vec<u8>, ParseError> {
    let file = std::fs::File::open(path).map_err(|cause| ParseError::Io {
        path: path.to_owned(),
        cause,
    })?;
    decompress(std::io::BufReader::new(file), path, path)
}

/// Reads `from` whole, decompressed by the compression `name` declares; errors carry `path`
/// (a file, or `archive.tar.gz:member` for a tarball's member).
pub fn decompress(from: impl Read, name: &Path, path: &Path) -> Result<Vec<u8>, ParseError> {
    let io = |cause: std::io::Error| ParseError::Io {
        path: path.to_owned(),
        cause,
    };
    let mut out = Vec::new();
    let compressed = |e: std::io::Error, what: &str| ParseError::File {
        path: path.to_owned(),
        message: format!("not a valid {what} file: {e}"),
    };
    match compression(name) {
        Some("gz") => flate2::read::MultiGzDecoder::new(from)
            .read_to_end(&mut out)
            .map_err(|e| compressed(e, "gzip"))?,
        Some("bz2") => bzip2::read::MultiBzDecoder::new(from)
            .read_to_end(&mut out)
            .map_err(|e| compressed(e, "bzip2"))?,
        Some("zst") => ruzstd::decoding::StreamingDecoder::new(from)
            .map_err(|e| compressed(std::io::Error::other(e.to_string()), "zstd"))?
            .read_to_end(&mut out)
            .map_err(|e| compressed(e, "zstd"))?,
        _ => {
            let mut from = from;
            from.read_to_end(&mut out).map_err(io)?
        }
    };
    Ok(out)
}

/// The compression a file name declares (`gz`, `bz2`, `zst`), if any.
pub fn compression(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "gz" | "gzip" => Some("gz"),
        "bz2" => Some("bz2"),
        "zst" | "zstd" => Some("zst"),
        _ => None,
    }
}

/// The file's name without a compression extension (`edges.csv.gz` -> `edges.csv`), for
/// decisions made on the inner format.
pub fn inner_name(path: &Path) -> std::path::PathBuf {
    match compression(path) {
        Some(_) => path.with_extension(""),
        None => path.to_owned(),
    }
}

/// A non-blank line of a text file, with its 1-based number.
pub(crate) struct Line<'a> {
    pub number: u64,
    pub text: &'a str,
}

/// Splits `bytes` into lines, yielding `Err((line, message))` for a line that is not UTF-8.
///
/// The BOM is dropped, `\r\n` is accepted, trailing spaces are removed (tabs are kept: they
/// delimit columns), and blank lines are skipped.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = Result<Line<'_>, (u64, String)>> + '_ {
    numbered_lines(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes), 0)
}

/// [`lines`] of a piece of a file that starts after line `before` (no BOM is looked for): the
/// readers that split a large file at line ends number each piece's lines as the whole's.
pub(crate) fn numbered_lines(
    body: &[u8],
    before: u64,
) -> impl Iterator<Item = Result<Line<'_>, (u64, String)>> + '_ {
    let mut rest = body;
    let mut number = before;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            number += 1;
            let (raw, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            let mut end = raw.len();
            while end > 0 {
                match raw[end - 1] {
                    b'\r' | b' ' => end -= 1,
                    _ => break,
                }
            }
            let raw = &raw[..end];
            if raw.is_empty() {
                continue;
            }
            return Some(match std::str::from_utf8(raw) {
                Ok(text) => Ok(Line { number, text }),
                Err(e) => Err((
                    number,
                    format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1),
                )),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8]) -> Vec<Result<(u64, String), (u64, String)>> {
        lines(input)
            .map(|r| r.map(|l| (l.number, l.text.to_owned())))
            .collect()
    }

    #[test]
    fn bom_crlf_blank_and_trailing_blanks() {
        let got = collect(b"\xEF\xBB\xBFa\tb\r\n\r\n  \nc\td  \n");
        assert_eq!(got, vec![Ok((1, "a\tb".into())), Ok((4, "c\td".into()))]);
    }

    #[test]
    fn tabs_kept_as_column_separators() {
        let got = collect(b"a\t\t\n");
        assert_eq!(got, vec![Ok((1, "a\t\t".into()))]);
    }

    #[test]
    fn invalid_utf8_names_line() {
        let got = collect(b"ok\nbad\xFF\n");
        assert_eq!(
            got[1],
            Err((2, "invalid UTF-8 at byte 4 of the line".into()))
        );
    }
}
