//! Features files: a header row, then one entity per line with its SMILES, sequence and/or
//! numeric vector. `id<TAB>smiles`, `id<TAB>sequence` and `id<TAB>f0<TAB>...<TAB>f31` (as
//! `synth_kg.py --features 32` writes) are the common shapes; one file may hold all three.
//! A `.csv` file is split on commas (no quoting: no value of these kinds contains one).

use super::lines::lines;
use super::{FeatureRecord, FeatureValue, ParseError, TripleBatch};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every feature kind, as stored and written in headers (`vector` has float columns instead).
pub const KINDS: [&str; 3] = ["smiles", "sequence", "vector"];

/// A parsed features file: records in file order, each with the line it was read from, so
/// that problems found later (an entity the graph lacks) can still be located.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureFile {
    pub path: PathBuf,
    pub records: Vec<FeatureRecord>,
    /// The line of each record, parallel to `records`.
    pub lines: Vec<u64>,
}

impl FeatureFile {
    /// The line that gave `entity` its values.
    pub fn line_of(&self, entity: &str) -> Option<u64> {
        self.records
            .iter()
            .position(|r| r.entity == entity)
            .map(|i| self.lines[i])
    }

    /// Moves the records into `batch` by batch-local entity index: for a file imported
    /// together with the graph file that defines its entities (`graph_file` names it in the
    /// error for a key it lacks).
    pub fn attach(self, batch: &mut TripleBatch, graph_file: &Path) -> Result<(), ParseError> {
        let index: HashMap<&str, u32> = batch
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.as_str(), i as u32))
            .collect();
        let mut features = Vec::with_capacity(self.records.len());
        for (record, line) in self.records.into_iter().zip(self.lines) {
            let Some(&i) = index.get(record.entity.as_str()) else {
                return Err(ParseError::Line {
                    path: self.path,
                    line,
                    message: format!(
                        "entity `{}` is not in {} (features never create entities)",
                        record.entity,
                        graph_file.display()
                    ),
                });
            };
            features.push((i, record.value));
        }
        drop(index);
        batch.features.extend(features);
        Ok(())
    }
}

/// Why `value` cannot be stored, if it cannot: the one rule the parser and the store share,
/// so that values from prompts and submissions are held to what files are.
pub fn check(value: &FeatureValue) -> Result<(), String> {
    match value {
        FeatureValue::Smiles(s) | FeatureValue::Sequence(s) => {
            if s.is_empty() {
                Err(format!("empty {}", value.kind()))
            } else if s.chars().any(char::is_whitespace) {
                Err(format!("a {} holds no whitespace: `{s}`", value.kind()))
            } else {
                Ok(())
            }
        }
        FeatureValue::Vector(v) => {
            if v.is_empty() {
                Err("empty vector".into())
            } else if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                Err(format!("vector value {} is {}", i + 1, v[i]))
            } else {
                Ok(())
            }
        }
    }
}

/// What one header column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Smiles,
    Sequence,
    /// The n-th element of the vector.
    Float(usize),
}

/// Reads a features file; see [`parse_features`].
pub fn read_features(path: &Path) -> Result<FeatureFile, ParseError> {
    let bytes = super::lines::read_input(path)?;
    parse_features(&bytes, path)
}

/// Parses a features file; `path` names it in errors and decides the separator (`.csv`:
/// commas, otherwise tabs). The first bad line fails the whole file.
pub fn parse_features(bytes: &[u8], path: &Path) -> Result<FeatureFile, ParseError> {
    let sep = if super::lines::inner_name(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        ','
    } else {
        '\t'
    };
    let at = |line: u64, message: String| ParseError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let mut out = FeatureFile {
        path: path.to_owned(),
        ..FeatureFile::default()
    };
    let mut columns: Vec<(Column, String)> = Vec::new();
    let mut width = 0;
    let mut seen: HashMap<String, u64> = HashMap::new();
    for line in lines(bytes) {
        let line = line.map_err(|(n, m)| at(n, m))?;
        let mut cells = cells(line.text, sep);
        if columns.is_empty() {
            columns = header(&cells).map_err(|m| at(line.number, m))?;
            width = columns
                .iter()
                .filter(|c| matches!(c.0, Column::Float(_)))
                .count();
            continue;
        }
        while cells.len() > columns.len() && cells.last().is_some_and(|c| c.1.is_empty()) {
            cells.pop();
        }
        if cells.len() != columns.len() {
            let sep_name = if sep == ',' { "comma" } else { "tab" };
            return Err(at(
                line.number,
                format!(
                    "expected {} {sep_name}-separated columns as in the header, found {}",
                    columns.len(),
                    cells.len()
                ),
            ));
        }
        let cell_error = |i: usize, message: String| ParseError::Cell {
            path: path.to_owned(),
            line: line.number,
            column: line.text[..cells[i].0].chars().count() as u64 + 1,
            message: format!("field {} (`{}`): {message}", i + 1, columns[i].1),
        };
        let id = cells[0].1;
        if id.is_empty() {
            return Err(cell_error(0, "empty id".into()));
        }
        if let Some(first) = seen.insert(id.to_owned(), line.number) {
            return Err(at(
                line.number,
                format!("`{id}` already appears on line {first}"),
            ));
        }
        let mut vector: Vec<f32> = Vec::with_capacity(width);
        let mut first_empty = None;
        let before = out.records.len();
        for (i, (column, _)) in columns.iter().enumerate().skip(1) {
            let text = cells[i].1;
            let value = match column {
                Column::Id => continue,
                Column::Float(_) => {
                    if text.is_empty() {
                        first_empty.get_or_insert(i);
                    } else {
                        vector.push(float(text).map_err(|m| cell_error(i, m))?);
                    }
                    continue;
                }
                _ if text.is_empty() => continue,
                Column::Smiles => FeatureValue::Smiles(text.to_owned()),
                Column::Sequence => FeatureValue::Sequence(text.to_owned()),
            };
            check(&value).map_err(|m| cell_error(i, m))?;
            out.records.push(FeatureRecord {
                entity: id.to_owned(),
                value,
            });
        }
        match first_empty {
            // A row may leave the whole vector empty (an entity with only a SMILES), not part.
            Some(i) if !vector.is_empty() => {
                return Err(cell_error(
                    i,
                    format!(
                        "empty, but {} other fields of the vector have values",
                        vector.len()
                    ),
                ));
            }
            Some(_) => {}
            None if width > 0 => out.records.push(FeatureRecord {
                entity: id.to_owned(),
                value: FeatureValue::Vector(vector),
            }),
            None => {}
        }
        if out.records.len() == before {
            return Err(at(line.number, format!("`{id}` has no feature value")));
        }
        out.lines.resize(out.records.len(), line.number);
    }
    if columns.is_empty() {
        return Err(ParseError::File {
            path: path.to_owned(),
            message: "empty file: expected a header such as `id<TAB>smiles`".into(),
        });
    }
    Ok(out)
}

/// A line's cells, trimmed of spaces, each with its byte offset in the line.
fn cells(text: &str, sep: char) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    for cell in text.split(sep) {
        let trimmed = cell.trim_start_matches(' ');
        out.push((
            start + cell.len() - trimmed.len(),
            trimmed.trim_end_matches(' '),
        ));
        start += cell.len() + sep.len_utf8();
    }
    out
}

/// The header's columns: `id` first, then `smiles`, `sequence` (by name, at most once each)
/// and vector elements (any other name, in order).
fn header(cells: &[(usize, &str)]) -> Result<Vec<(Column, String)>, String> {
    if !cells[0].1.eq_ignore_ascii_case("id") {
        return Err(format!(
            "the first line must be a header starting with `id` (then `smiles`, `sequence` or \
             vector columns such as f0, f1, ...), found `{}`",
            cells[0].1
        ));
    }
    let mut out = vec![(Column::Id, "id".to_owned())];
    let mut names = std::collections::HashSet::new();
    names.insert("id".to_owned());
    let mut floats = 0;
    for (i, (_, name)) in cells.iter().enumerate().skip(1) {
        if name.is_empty() {
            return Err(format!("header field {} has no name", i + 1));
        }
        let lower = name.to_ascii_lowercase();
        let column = match lower.as_str() {
            "smiles" => Column::Smiles,
            "sequence" => Column::Sequence,
            _ => {
                floats += 1;
                Column::Float(floats - 1)
            }
        };
        if !names.insert(lower) {
            return Err(format!("column `{name}` appears twice in the header"));
        }
        out.push((column, (*name).to_owned()));
    }
    if out.len() == 1 {
        return Err("the header names no feature column after `id`".into());
    }
    Ok(out)
}

/// One vector element: a finite number that fits an `f32`.
fn float(text: &str) -> Result<f32, String> {
    let x: f32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if x.is_finite() {
        Ok(x)
    } else if x.is_nan() || text.to_ascii_lowercase().contains("inf") {
        Err(format!("`{text}` is not a finite number"))
    } else {
        Err(format!("`{text}` is out of range for a 32-bit float"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, input: &str) -> Result<Vec<(u64, String, FeatureValue)>, String> {
        let f = parse_features(input.as_bytes(), Path::new(name)).map_err(|e| e.to_string())?;
        assert_eq!(f.records.len(), f.lines.len());
        Ok(f.lines
            .into_iter()
            .zip(f.records)
            .map(|(l, r)| (l, r.entity, r.value))
            .collect())
    }

    fn v(x: &[f32]) -> FeatureValue {
        FeatureValue::Vector(x.to_vec())
    }

    #[test]
    fn vectors_smiles_and_sequences() {
        let got = parse("f.tsv", "id\tf0\tf1\na\t1\t-2.5\r\n\nb\t0.25\t1e-3\n").expect("valid");
        assert_eq!(
            got,
            vec![
                (2, "a".into(), v(&[1.0, -2.5])),
                (4, "b".into(), v(&[0.25, 0.001])),
            ]
        );
        let got = parse("f.tsv", "ID\tSMILES\nc\tCCO\n").expect("valid");
        assert_eq!(
            got,
            vec![(2, "c".into(), FeatureValue::Smiles("CCO".into()))]
        );
        let got = parse("f.tsv", "id\tsequence\np\tMKV\n").expect("valid");
        assert_eq!(
            got,
            vec![(2, "p".into(), FeatureValue::Sequence("MKV".into()))]
        );
    }

    #[test]
    fn one_file_may_mix_kinds_and_leave_a_kind_out() {
        let got = parse(
            "f.csv",
            "id,smiles,sequence,x,y\nc,CCO,,1,2\np,,MKV,,\nq,,,3,4,\n",
        )
        .expect("valid");
        assert_eq!(
            got,
            vec![
                (2, "c".into(), FeatureValue::Smiles("CCO".into())),
                (2, "c".into(), v(&[1.0, 2.0])),
                (3, "p".into(), FeatureValue::Sequence("MKV".into())),
                (4, "q".into(), v(&[3.0, 4.0])),
            ]
        );
    }

    #[test]
    fn bad_input_is_located() {
        let cases = [
            (
                "",
                "f.tsv: empty file: expected a header such as `id<TAB>smiles`",
            ),
            (
                "name\tsmiles\n",
                "f.tsv:1: the first line must be a header starting with `id` (then `smiles`, \
                 `sequence` or vector columns such as f0, f1, ...), found `name`",
            ),
            (
                "id\n",
                "f.tsv:1: the header names no feature column after `id`",
            ),
            (
                "id\tf0\tF0\n",
                "f.tsv:1: column `F0` appears twice in the header",
            ),
            ("id\tf0\t\tf2\n", "f.tsv:1: header field 3 has no name"),
            (
                "id\tf0\tf1\na\t1\n",
                "f.tsv:2: expected 3 tab-separated columns as in the header, found 2",
            ),
            (
                "id\tf0\tf1\na\t1\t2\t3\n",
                "f.tsv:2: expected 3 tab-separated columns as in the header, found 4",
            ),
            (
                "id\tf0\tf1\na\t1\tx2\n",
                "f.tsv:2:5: field 3 (`f1`): `x2` is not a number",
            ),
            (
                "id\tf0\tf1\na\tNaN\t1\n",
                "f.tsv:2:3: field 2 (`f0`): `NaN` is not a finite number",
            ),
            (
                "id\tf0\tf1\na\t1\t-inf\n",
                "f.tsv:2:5: field 3 (`f1`): `-inf` is not a finite number",
            ),
            (
                "id\tf0\na\t1e39\n",
                "f.tsv:2:3: field 2 (`f0`): `1e39` is out of range for a 32-bit float",
            ),
            (
                "id\tf0\tf1\na\t\t1\n",
                "f.tsv:2:3: field 2 (`f0`): empty, but 1 other fields of the vector have values",
            ),
            ("id\tf0\na\t\n", "f.tsv:2: `a` has no feature value"),
            (
                "id\tf0\na\t1\nb\t2\na\t3\n",
                "f.tsv:4: `a` already appears on line 2",
            ),
            ("id\tf0\n\t1\n", "f.tsv:2:1: field 1 (`id`): empty id"),
            (
                "id\tsmiles\nc\tC CO\n",
                "f.tsv:2:3: field 2 (`smiles`): a smiles holds no whitespace: `C CO`",
            ),
        ];
        for (input, want) in cases {
            let got = parse_features(input.as_bytes(), Path::new("f.tsv"))
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(got, Err(want.to_owned()), "{input:?}");
        }
        let e = parse_features(b"id\tf0\nb\xFF\t1\n", Path::new("f.tsv")).expect_err("not UTF-8");
        assert_eq!(
            e.to_string(),
            "f.tsv:2: invalid UTF-8 at byte 2 of the line"
        );
    }

    #[test]
    fn a_wide_vector_keeps_its_order_and_width() {
        let header: Vec<String> = (0..32).map(|i| format!("f{i}")).collect();
        let row: Vec<String> = (0..32).map(|i| format!("{}", i as f32 / 4.0)).collect();
        let text = format!("id\t{}\nE::1\t{}\n", header.join("\t"), row.join("\t"));
        let got = parse("features.tsv", &text).expect("valid");
        let want: Vec<f32> = (0..32).map(|i| i as f32 / 4.0).collect();
        assert_eq!(got, vec![(2, "E::1".into(), FeatureValue::Vector(want))]);
    }

    #[test]
    fn attach_maps_keys_to_batch_indexes_or_names_the_line() {
        let mut batch = TripleBatch {
            entities: ["a", "b"]
                .map(|k| super::super::EntityRecord {
                    key: k.into(),
                    ..Default::default()
                })
                .to_vec(),
            ..TripleBatch::default()
        };
        let f = parse_features(b"id\tsmiles\nb\tCC\n", Path::new("f.tsv")).expect("valid");
        assert_eq!(f.line_of("b"), Some(2));
        f.attach(&mut batch, Path::new("g.tsv")).expect("known");
        assert_eq!(batch.features, vec![(1, FeatureValue::Smiles("CC".into()))]);
        let f = parse_features(b"id\tsmiles\nb\tCC\nz\tC\n", Path::new("f.tsv")).expect("valid");
        let e = f
            .attach(&mut batch, Path::new("g.tsv"))
            .expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "f.tsv:3: entity `z` is not in g.tsv (features never create entities)"
        );
    }

    #[test]
    fn check_rejects_what_no_file_could_hold() {
        assert!(check(&FeatureValue::Vector(vec![1.0, f32::NAN])).is_err());
        assert!(check(&FeatureValue::Vector(vec![])).is_err());
        assert!(check(&FeatureValue::Smiles(String::new())).is_err());
        assert!(check(&FeatureValue::Sequence("MK V".into())).is_err());
        assert!(check(&FeatureValue::Vector(vec![0.0, -1.5])).is_ok());
    }
}
