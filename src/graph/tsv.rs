//! Plain triples files: `head<TAB>relation<TAB>tail`, one per line, optional header.

use super::lines::lines;
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

/// Parses triples from bytes; `path` is only used in messages.
pub fn parse_triples(
    bytes: &[u8],
    path: &Path,
    on_invalid: OnInvalid,
) -> Result<TripleBatch, ParseError> {
    let mut entities = Interner::new();
    let mut relations = Interner::new();
    let mut triples = Vec::new();
    let mut batch = TripleBatch::default();
    let mut first = true;
    for line in lines(bytes) {
        let result = line.and_then(|line| {
            let fields = split_triple(line.text).map_err(|m| (line.number, m))?;
            Ok((line.number, fields))
        });
        let fields = match result {
            Ok((_, fields)) => fields,
            Err((line, message)) => match on_invalid {
                OnInvalid::Fail => {
                    return Err(ParseError::Line {
                        path: path.to_owned(),
                        line,
                        message,
                    });
                }
                OnInvalid::Skip => {
                    first = false;
                    batch.skipped.push(LineError {
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
        batch.lines_read += 1;
        triples.push([
            entities.intern(fields[0]),
            relations.intern(fields[1]),
            entities.intern(fields[2]),
        ]);
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

    #[test]
    fn header_only_on_first_line() {
        let b = parse("a\tr\tb\nhead\trelation\ttail\n", OnInvalid::Fail).expect("valid");
        assert_eq!(b.triples.len(), 2);
    }
}
