//! Plain triples files: `head<TAB>relation<TAB>tail`, one per line, optional header.

use super::lines::numbered_lines;
use super::{EntityRecord, Interner, LineError, OnInvalid, ParseError, TripleBatch};
use std::path::Path;

const ROLES: [&str; 3] = ["head", "relation", "tail"];

/// Headers we recognise on the first line, compared case-insensitively.
const HEADERS: [[&str; 3]; 4] = [
    ["head", "relation", "tail"],
    ["subject", "predicate", "object"],
    ["h", "r", "t"],
    ["source", "relation", "target"],
];

pub fn is_header(fields: &[&str]) -> bool {
    fields.len() == 3
        && HEADERS.iter().any(|h| {
            h.iter()
                .zip(fields)
                .all(|(a, b)| a.eq_ignore_ascii_case(b.trim()))
        })
}

/// Splits one data line into its three non-empty, trimmed fields.
pub fn split_triple(text: &str) -> Result<[&str; 3], String> {
    let mut fields = [""; 3];
    let mut n = 0;
    let mut extra_nonempty = false;
    for field in text.split('\t') {
        let field = field.trim_matches(' ');
        if n < 3 {
            fields[n] = field;
        } else {
            extra_nonempty |= !field.is_empty();
        }
        n += 1;
    }
    // Trailing tabs after the third column are blanks, not columns.
    if n > 3 && !extra_nonempty {
        n = 3;
    }
    if n != 3 {
        return Err(format!(
            "expected 3 tab-separated columns (head, relation, tail), found {n}"
        ));
    }
    if let Some(i) = fields.iter().position(|f| f.is_empty()) {
        return Err(format!("empty {} field", ROLES[i]));
    }
    Ok(fields)
}

/// Reads a triples file. With [`OnInvalid::Fail`] the first bad line is an error naming it.
pub fn read_triples(path: &Path, on_invalid: OnInvalid) -> Result<TripleBatch, ParseError> {
    let bytes = super::lines::read_input(path)?;
    parse_triples(&bytes, path, on_invalid)
}

/// Files at least this large are parsed in pieces on several threads.
const PARALLEL_FROM: usize = 8 << 20;

/// Parses triples from bytes; `path` is only used in messages.
pub fn parse_triples(
    bytes: &[u8],
    path: &Path,
    on_invalid: OnInvalid,
) -> Result<TripleBatch, ParseError> {
    let pieces = if bytes.len() >= PARALLEL_FROM {
        rayon::current_num_threads().clamp(1, 16)
    } else {
        1
    };
    parse_in_pieces(bytes, path, on_invalid, pieces)
}

/// One piece's parse: its own interners (first-seen order within the piece), triples in its
/// ids, and how it ended.
#[derive(Default)]
struct Piece {
    entities: Interner,
    relations: Interner,
    triples: Vec<[u32; 3]>,
    lines_read: u64,
    skipped: Vec<LineError>,
    failed: Option<ParseError>,
}

/// Splits the file at line ends into `pieces` parsed in parallel (2M lines: 0.8 s on one
/// thread), then merges them in file order, so ids, the first bad line and the skipped lines
/// come out as a single pass gives them.
fn parse_in_pieces(
    bytes: &[u8],
    path: &Path,
    on_invalid: OnInvalid,
    pieces: usize,
) -> Result<TripleBatch, ParseError> {
    use rayon::prelude::*;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // Piece boundaries just after a newline, with the number of lines before each.
    let mut bounds = vec![(0usize, 0u64)];
    let target = body.len() / pieces.max(1) + 1;
    let mut start = 0;
    let mut before = 0u64;
    while bounds.len() < pieces {
        let Some(cut) = memchr::memchr(b'\n', body.get(start + target..).unwrap_or(&[]))
            .map(|i| start + target + i + 1)
        else {
            break;
        };
        before += memchr::memchr_iter(b'\n', &body[start..cut]).count() as u64;
        bounds.push((cut, before));
        start = cut;
    }
    let parsed: Vec<Piece> = bounds
        .par_iter()
        .enumerate()
        .map(|(i, &(from, before))| {
            let to = bounds.get(i + 1).map_or(body.len(), |b| b.0);
            parse_piece(&body[from..to], before, i == 0, path, on_invalid)
        })
        .collect();

    let mut entities = Interner::new();
    let mut relations = Interner::new();
    let mut batch = TripleBatch::default();
    let mut triples = Vec::with_capacity(parsed.iter().map(|p| p.triples.len()).sum());
    for piece in parsed {
        if let Some(e) = piece.failed {
            return Err(e);
        }
        // A piece's ids to the file's, interning its keys in the piece's first-seen order.
        let remap = |local: Interner, global: &mut Interner| -> Vec<u32> {
            local.into_keys().iter().map(|k| global.intern(k)).collect()
        };
        let e_map = remap(piece.entities, &mut entities);
        let r_map = remap(piece.relations, &mut relations);
        triples.extend(
            piece
                .triples
                .iter()
                .map(|&[h, r, t]| [e_map[h as usize], r_map[r as usize], e_map[t as usize]]),
        );
        batch.lines_read += piece.lines_read;
        batch.skipped.extend(piece.skipped);
    }
    batch.duplicates = super::sort_dedup(&mut triples);
    batch.entities = entities
        .into_keys()
        .into_iter()
        .map(|k| EntityRecord {
            key: k.into(),
            ..EntityRecord::default()
        })
        .collect();
    batch.relations = relations.into_keys().into_iter().map(Into::into).collect();
    batch.triples = triples;
    Ok(batch)
}

/// Parses the lines of one piece (after line `before` of the file); only the file's first
/// piece may start with a header. Stops at the first bad line under [`OnInvalid::Fail`].
fn parse_piece(
    body: &[u8],
    before: u64,
    first_piece: bool,
    path: &Path,
    on_invalid: OnInvalid,
) -> Piece {
    let mut piece = Piece::default();
    let mut first = first_piece;
    for line in numbered_lines(body, before) {
        let result = line.and_then(|line| {
            let fields = split_triple(line.text).map_err(|m| (line.number, m))?;
            Ok((line.number, fields))
        });
        let fields = match result {
            Ok((_, fields)) => fields,
            Err((line, message)) => match on_invalid {
                OnInvalid::Fail => {
                    piece.failed = Some(ParseError::Line {
                        path: path.to_owned(),
                        line,
                        message,
                    });
                    return piece;
                }
                OnInvalid::Skip => {
                    first = false;
                    piece.skipped.push(LineError {
                        file: path.to_owned(),
                        line,
                        message,
                    });
                    continue;
                }
            },
        };
        if std::mem::take(&mut first) && is_header(&fields) {
            continue;
        }
        piece.lines_read += 1;
        piece.triples.push([
            piece.entities.intern(fields[0]),
            piece.relations.intern(fields[1]),
            piece.entities.intern(fields[2]),
        ]);
    }
    piece
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str, on: OnInvalid) -> Result<TripleBatch, String> {
        parse_triples(input.as_bytes(), Path::new("t.tsv"), on).map_err(|e| e.to_string())
    }

    #[test]
    fn header_duplicates_and_crlf() {
        let b = parse(
            "head\trelation\ttail\r\na\tr\tb\r\na\tr\tb\nb\tr\tc\n",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(b.triples, vec![[0, 0, 1], [1, 0, 2]]);
        assert_eq!(b.duplicates, 1);
        assert_eq!(b.lines_read, 3);
        assert_eq!(b.entities.len(), 3);
        let b = parse("b\tr\tc\na\tr\tb\n", OnInvalid::Fail).expect("valid");
        assert_eq!(b.triples, vec![[0, 0, 1], [2, 0, 0]], "sorted by batch ids");
    }

    #[test]
    fn bad_lines_name_their_number() {
        let cases = [
            (
                "a\tr\tb\na\tr\n",
                "t.tsv:2: expected 3 tab-separated columns (head, relation, tail), found 2",
            ),
            ("a\tr\tb\na\t\tb\n", "t.tsv:2: empty relation field"),
            (
                "a\tr\tb\tx\n",
                "t.tsv:1: expected 3 tab-separated columns (head, relation, tail), found 4",
            ),
            ("\n\n a \tr\t \n", "t.tsv:3: empty tail field"),
            ("a\tr\tb\t\t \n", "no error"),
        ];
        for (input, want) in cases {
            let got = parse(input, OnInvalid::Fail).err();
            assert_eq!(got.as_deref().unwrap_or("no error"), want, "{input:?}");
        }
    }

    #[test]
    fn skip_invalid_keeps_the_rest() {
        let b = parse("a\tr\tb\nbroken\nc\tr\td\n", OnInvalid::Skip).expect("skips");
        assert_eq!(b.triples.len(), 2);
        assert_eq!(b.skipped.len(), 1);
        assert_eq!(b.skipped[0].line, 2);
    }

    /// Pieces parsed in parallel give what one pass gives: ids in first-seen order, counts,
    /// the skipped lines in order with their numbers, and the first bad line.
    #[test]
    fn pieces_merge_as_one_pass() {
        use std::fmt::Write;
        let mut text = String::from("\u{feff}head\trelation\ttail\r\n");
        for i in 0..5_000u32 {
            let _ = write!(text, "e{}\tr{}\te{}\r\n", i % 997, i % 7, (i * 31) % 1_009);
            if i % 1_000 == 999 {
                text.push_str("broken line\n\n  \n");
            }
            if i % 1_500 == 0 {
                // A repeat of an earlier line: a duplicate.
                text.push_str("e0\tr0\te0\n");
            }
        }
        let path = Path::new("t.tsv");
        let one = parse_in_pieces(text.as_bytes(), path, OnInvalid::Skip, 1).expect("one");
        for pieces in [2, 3, 7, 64] {
            let many =
                parse_in_pieces(text.as_bytes(), path, OnInvalid::Skip, pieces).expect("many");
            assert_eq!(many.triples, one.triples, "{pieces} pieces");
            let keys = |b: &TripleBatch| -> Vec<String> {
                b.entities.iter().map(|e| e.key.clone()).collect()
            };
            assert_eq!(keys(&many), keys(&one));
            assert_eq!(many.relations, one.relations);
            assert_eq!(
                (many.lines_read, many.duplicates),
                (one.lines_read, one.duplicates)
            );
            let lines =
                |b: &TripleBatch| -> Vec<u64> { b.skipped.iter().map(|s| s.line).collect() };
            assert_eq!(lines(&many), lines(&one));
            let failed = parse_in_pieces(text.as_bytes(), path, OnInvalid::Fail, pieces)
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                failed.as_deref(),
                Some(
                    "t.tsv:1003: expected 3 tab-separated columns (head, relation, tail), found 1"
                )
            );
        }
        assert_eq!(one.skipped.len(), 5);
        assert_eq!(one.lines_read, 5_000 + 4);
    }

    #[test]
    fn header_only_on_first_line() {
        let b = parse("a\tr\tb\nhead\trelation\ttail\n", OnInvalid::Fail).expect("valid");
        assert_eq!(b.triples.len(), 2);
    }
}
