//! KGX-style TSV: a `nodes.tsv` (id, category, name, any order, extra columns kept as
//! attributes) and an `edges.tsv` (subject, predicate, object, any order; who asserts each
//! edge from its `primary_knowledge_source`, else `knowledge_source`, else `provided_by`).

use super::lines::{Line, lines};
use super::{EdgeSources, EntityRecord, Interner, LineError, OnInvalid, ParseError, TripleBatch};
use std::collections::HashMap;
use std::path::Path;

/// Column positions found in a header line.
struct Header {
    names: Vec<String>,
    positions: HashMap<String, usize>,
}

impl Header {
    fn parse(path: &Path, line: &Line<'_>, required: &[&str]) -> Result<Self, ParseError> {
        let names: Vec<String> = line
            .text
            .split('\t')
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        let mut positions = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            if positions.insert(name.clone(), i).is_some() {
                return Err(ParseError::Line {
                    path: path.to_owned(),
                    line: line.number,
                    message: format!("column `{name}` appears twice in the header"),
                });
            }
        }
        for col in required {
            if !positions.contains_key(*col) {
                return Err(ParseError::Line {
                    path: path.to_owned(),
                    line: line.number,
                    message: format!("header has no `{col}` column (found: {})", names.join(", ")),
                });
            }
        }
        Ok(Self { names, positions })
    }

    fn col(&self, name: &str) -> Option<usize> {
        self.positions.get(name).copied()
    }

    /// Splits a data line into exactly as many fields as the header has.
    fn fields<'a>(&self, text: &'a str) -> Result<Vec<&'a str>, String> {
        let mut fields: Vec<&str> = text.split('\t').map(|f| f.trim_matches(' ')).collect();
        while fields.len() > self.names.len() && fields.last() == Some(&"") {
            fields.pop();
        }
        if fields.len() != self.names.len() {
            return Err(format!(
                "expected {} tab-separated columns as in the header, found {}",
                self.names.len(),
                fields.len()
            ));
        }
        Ok(fields)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ParseError> {
    super::lines::read_input(path)
}

/// Which columns of a nodes file hold features (header names, as written in the workflow's
/// `graph.node_features`): embeddings computed elsewhere, kept beside the nodes.
#[derive(
    Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct NodeFeatureColumns {
    /// Columns that together form each node's vector, in order (all empty: no vector).
    #[serde(default)]
    pub vector: Vec<String>,
    /// A column of SMILES.
    #[serde(default)]
    pub smiles: Option<String>,
    /// A column of protein or nucleic-acid sequences.
    #[serde(default)]
    pub sequence: Option<String>,
}

/// The features that `columns` name in a nodes file, one record per node and kind, with the
/// line each came from (so that `FeatureFile::attach` and the store can locate problems). A
/// column missing from the header, a vector with some cells empty, or a cell that is not a
/// finite number is an error naming the file, line and column.
pub fn node_features(
    nodes_path: &Path,
    columns: &NodeFeatureColumns,
) -> Result<super::features::FeatureFile, ParseError> {
    use super::{FeatureRecord, FeatureValue};
    let nodes = read(nodes_path)?;
    let mut it = lines(&nodes);
    let header = match it.next() {
        Some(Ok(line)) => Header::parse(nodes_path, &line, &["id"])?,
        Some(Err((line, message))) => {
            return Err(ParseError::Line {
                path: nodes_path.to_owned(),
                line,
                message,
            });
        }
        None => {
            return Err(ParseError::File {
                path: nodes_path.to_owned(),
                message: "empty file: a header with an `id` column is required".into(),
            });
        }
    };
    let find = |name: &str| {
        header
            .col(&name.trim().to_ascii_lowercase())
            .ok_or_else(|| ParseError::File {
                path: nodes_path.to_owned(),
                message: format!(
                    "no column `{name}` for node features; the header has: {}",
                    header.names.join(", ")
                ),
            })
    };
    let vector: Vec<(usize, &str)> = columns
        .vector
        .iter()
        .map(|c| find(c).map(|i| (i, c.as_str())))
        .collect::<Result<_, _>>()?;
    let smiles = columns.smiles.as_deref().map(find).transpose()?;
    let sequence = columns.sequence.as_deref().map(find).transpose()?;
    let id_col = header.col("id").unwrap_or_default();
    let mut out = super::features::FeatureFile {
        path: nodes_path.to_owned(),
        records: Vec::new(),
        lines: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for line in it {
        let line = line.map_err(|(line, message)| ParseError::Line {
            path: nodes_path.to_owned(),
            line,
            message,
        })?;
        let bad = |message: String| ParseError::Line {
            path: nodes_path.to_owned(),
            line: line.number,
            message,
        };
        let fields = header.fields(line.text).map_err(bad)?;
        let id = fields[id_col];
        if id.is_empty() || !seen.insert(id.to_owned()) {
            continue; // the graph read reports these
        }
        let mut push = |value: FeatureValue| {
            out.records.push(FeatureRecord {
                entity: id.to_owned(),
                value,
            });
            out.lines.push(line.number);
        };
        if !vector.is_empty() {
            let cells: Vec<&str> = vector.iter().map(|(i, _)| fields[*i]).collect();
            if cells.iter().any(|c| !c.is_empty()) {
                let mut v = Vec::with_capacity(cells.len());
                for (cell, (_, name)) in cells.iter().zip(&vector) {
                    match cell.parse::<f32>() {
                        Ok(x) if x.is_finite() => v.push(x),
                        _ if cell.is_empty() => {
                            return Err(bad(format!(
                                "column `{name}`: empty, but other vector columns of `{id}` are set"
                            )));
                        }
                        _ => {
                            return Err(bad(format!(
                                "column `{name}`: `{cell}` is not a finite number"
                            )));
                        }
                    }
                }
                push(FeatureValue::Vector(v));
            }
        }
        if let Some(c) = smiles.filter(|&c| !fields[c].is_empty()) {
            push(FeatureValue::Smiles(fields[c].to_owned()));
        }
        if let Some(c) = sequence.filter(|&c| !fields[c].is_empty()) {
            push(FeatureValue::Sequence(fields[c].to_owned()));
        }
    }
    Ok(out)
}

/// The edges-file columns that name who asserts an edge, in order of preference: KGX's
/// standard `primary_knowledge_source`, then its older `knowledge_source` and `provided_by`.
/// Only the first present is read; a cell may hold several sources, `|`-separated.
pub const SOURCE_COLUMNS: [&str; 3] = [
    "primary_knowledge_source",
    "knowledge_source",
    "provided_by",
];

/// Collects a line's problem, or fails the whole read, per `on_invalid`.
fn reject(
    path: &Path,
    on_invalid: OnInvalid,
    skipped: &mut Vec<LineError>,
    line: u64,
    message: String,
) -> Result<(), ParseError> {
    match on_invalid {
        OnInvalid::Fail => Err(ParseError::Line {
            path: path.to_owned(),
            line,
            message,
        }),
        OnInvalid::Skip => {
            skipped.push(LineError {
                file: path.to_owned(),
                line,
                message,
            });
            Ok(())
        }
    }
}

/// Reads a nodes file and its edges file into one batch.
pub fn read_kgx(
    nodes_path: &Path,
    edges_path: &Path,
    on_invalid: OnInvalid,
) -> Result<TripleBatch, ParseError> {
    let nodes = read(nodes_path)?;
    let edges = read(edges_path)?;
    parse_kgx(&nodes, nodes_path, &edges, edges_path, on_invalid)
}

/// Parses KGX nodes and edges; the paths are only used in messages.
pub fn parse_kgx(
    nodes: &[u8],
    nodes_path: &Path,
    edges: &[u8],
    edges_path: &Path,
    on_invalid: OnInvalid,
) -> Result<TripleBatch, ParseError> {
    let mut batch = TripleBatch::default();
    let mut ids = Interner::new();
    let mut defined_on: Vec<u64> = Vec::new();

    let mut it = lines(nodes);
    let header = match it.next() {
        None => {
            return Err(ParseError::File {
                path: nodes_path.to_owned(),
                message: "empty file: a header with an `id` column is required".into(),
            });
        }
        Some(Err((line, message))) => {
            return Err(ParseError::Line {
                path: nodes_path.to_owned(),
                line,
                message,
            });
        }
        Some(Ok(line)) => Header::parse(nodes_path, &line, &["id"])?,
    };
    let (id_col, cat_col, name_col) = (
        header.col("id").unwrap_or_default(),
        header.col("category"),
        header.col("name"),
    );
    for line in it {
        let parsed = line.and_then(|line| {
            let fields = header.fields(line.text).map_err(|m| (line.number, m))?;
            if fields[id_col].is_empty() {
                return Err((line.number, "empty id field".to_string()));
            }
            Ok((line.number, fields))
        });
        let (number, fields) = match parsed {
            Ok(p) => p,
            Err((line, message)) => {
                reject(nodes_path, on_invalid, &mut batch.skipped, line, message)?;
                continue;
            }
        };
        let mut record = EntityRecord {
            key: fields[id_col].to_owned(),
            category: cat_col.map(|c| fields[c].to_owned()).unwrap_or_default(),
            name: name_col.map(|c| fields[c].to_owned()).unwrap_or_default(),
            attributes: serde_json::Map::new(),
        };
        for (i, value) in fields.iter().enumerate() {
            if Some(i) != cat_col && Some(i) != name_col && i != id_col && !value.is_empty() {
                record
                    .attributes
                    .insert(header.names[i].clone(), (*value).into());
            }
        }
        let before = ids.len();
        let id = ids.intern(&record.key) as usize;
        if id < before {
            batch.lines_read += 1;
            if batch.entities[id] == record {
                batch.duplicates += 1;
            } else {
                let message = format!(
                    "node `{}` is already defined differently on line {}",
                    record.key, defined_on[id]
                );
                reject(nodes_path, on_invalid, &mut batch.skipped, number, message)?;
            }
            continue;
        }
        batch.lines_read += 1;
        batch.entities.push(record);
        defined_on.push(number);
    }

    let mut relations = Interner::new();
    let mut it = lines(edges);
    let header = match it.next() {
        None => {
            return Err(ParseError::File {
                path: edges_path.to_owned(),
                message:
                    "empty file: a header with subject, predicate and object columns is required"
                        .into(),
            });
        }
        Some(Err((line, message))) => {
            return Err(ParseError::Line {
                path: edges_path.to_owned(),
                line,
                message,
            });
        }
        Some(Ok(line)) => Header::parse(edges_path, &line, &["subject", "predicate", "object"])?,
    };
    let cols = ["subject", "predicate", "object"].map(|c| header.col(c).unwrap_or_default());
    let source_col = SOURCE_COLUMNS.iter().find_map(|c| header.col(c));
    let mut sources = EdgeSources::default();
    let nodes_name = nodes_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "the nodes file".into());
    for line in it {
        let parsed = line.and_then(|line| {
            let fields = header.fields(line.text).map_err(|m| (line.number, m))?;
            let [s, p, o] = cols.map(|c| fields[c]);
            for (value, role) in [(s, "subject"), (p, "predicate"), (o, "object")] {
                if value.is_empty() {
                    return Err((line.number, format!("empty {role} field")));
                }
            }
            let mut ends = [0u32; 2];
            for (slot, (value, role)) in ends.iter_mut().zip([(s, "subject"), (o, "object")]) {
                *slot = ids.get(value).ok_or_else(|| {
                    (
                        line.number,
                        format!("{role} `{value}` is not in {nodes_name}"),
                    )
                })?;
            }
            let source = source_col.map_or("", |c| fields[c]);
            Ok(([ends[0], relations.intern(p), ends[1]], source))
        });
        match parsed {
            Ok((t, source)) => {
                batch.lines_read += 1;
                batch.triples.push(t);
                sources.add_cell(t, source);
            }
            Err((line, message)) => {
                reject(edges_path, on_invalid, &mut batch.skipped, line, message)?;
            }
        }
    }
    batch.duplicates += super::sort_dedup(&mut batch.triples);
    batch.relations = relations.into_keys().into_iter().map(Into::into).collect();
    sources.finish(&mut batch);
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(nodes: &str, edges: &str, on: OnInvalid) -> Result<TripleBatch, String> {
        parse_kgx(
            nodes.as_bytes(),
            Path::new("nodes.tsv"),
            edges.as_bytes(),
            Path::new("edges.tsv"),
            on,
        )
        .map_err(|e| e.to_string())
    }

    const NODES: &str =
        "name\tid\tcategory\tsource\nAspirin\tC:1\tCompound\tdrugbank\nPain\tD:1\tDisease\t\n";

    #[test]
    fn columns_in_any_order_and_extras_as_attributes() {
        let b = parse(
            NODES,
            "object\tsubject\tpredicate\nD:1\tC:1\ttreats\n",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(b.entities[0].key, "C:1");
        assert_eq!(b.entities[0].category, "Compound");
        assert_eq!(b.entities[0].name, "Aspirin");
        assert_eq!(b.entities[0].attributes["source"], "drugbank");
        assert!(b.entities[1].attributes.is_empty());
        assert_eq!(b.triples, vec![[0, 0, 1]]);
        assert_eq!(b.relations, vec!["treats"]);
    }

    #[test]
    fn unknown_subject_is_named() {
        let err = parse(
            NODES,
            "subject\tpredicate\tobject\nC:9\ttreats\tD:1\n",
            OnInvalid::Fail,
        );
        assert_eq!(
            err.err().as_deref(),
            Some("edges.tsv:2: subject `C:9` is not in nodes.tsv")
        );
    }

    #[test]
    fn missing_column_and_conflicting_node() {
        let err = parse("id\tname\n", "subject\tpredicate\n", OnInvalid::Fail);
        assert_eq!(
            err.err().as_deref(),
            Some("edges.tsv:1: header has no `object` column (found: subject, predicate)")
        );
        let err = parse(
            "id\tname\nA\tx\nA\ty\n",
            "subject\tpredicate\tobject\n",
            OnInvalid::Fail,
        );
        assert_eq!(
            err.err().as_deref(),
            Some("nodes.tsv:3: node `A` is already defined differently on line 2")
        );
    }

    #[test]
    fn skip_invalid_reports_lines() {
        let b = parse(
            NODES,
            "subject\tpredicate\tobject\nC:9\ttreats\tD:1\nC:1\ttreats\tD:1\nC:1\ttreats\tD:1\n",
            OnInvalid::Skip,
        )
        .expect("skips");
        assert_eq!(b.triples.len(), 1);
        assert_eq!(b.duplicates, 1);
        assert_eq!(
            b.skipped,
            vec![LineError {
                file: "edges.tsv".into(),
                line: 2,
                message: "subject `C:9` is not in nodes.tsv".into()
            }]
        );
    }

    #[test]
    fn sources_from_the_first_source_column_present() {
        let b = parse(
            NODES,
            "subject\tpredicate\tobject\tprimary_knowledge_source\tprovided_by\n\
             C:1\ttreats\tD:1\tinfores:b\tignored\n\
             C:1\ttreats\tD:1\tinfores:a | infores:b\tignored\n\
             D:1\tcauses\tC:1\t\tignored\n",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(b.triples, vec![[0, 0, 1], [1, 1, 0]]);
        assert_eq!(b.duplicates, 1);
        assert_eq!(b.sources, vec!["infores:b", "infores:a"]);
        // One edge on two rows: one triple with both sources; the third has none.
        assert_eq!(b.edge_sources, vec![([0, 0, 1], 0), ([0, 0, 1], 1)]);

        let b = parse(
            NODES,
            "subject\tpredicate\tobject\tprovided_by\nC:1\ttreats\tD:1\tinfores:c\n",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(b.sources, vec!["infores:c"]);
        assert_eq!(b.edge_sources, vec![([0, 0, 1], 0)]);

        let b = parse(
            NODES,
            "subject\tpredicate\tobject\nC:1\ttreats\tD:1\n",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert!(b.sources.is_empty() && b.edge_sources.is_empty());
    }
}
