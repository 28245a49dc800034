//! Node and edge tables in whatever column layout a publisher chose (CSV or TSV, quoted or
//! not, with or without a header), read through the `csv` crate and a [`ColumnMap`]; and the
//! presets that make the published biomedical graphs import without one.
//!
//! One reader serves every layout so that the rules people rely on hold everywhere: every bad
//! row is located (file, line, column), an entity's category may not change between rows or
//! files (the error names both places), and a triple repeated by several sources is one
//! triple with each source recorded.

use super::lines::{decompress, inner_name};
use super::{
    EdgeSources, EntityRecord, Interner, LineError, OnInvalid, ParseError, TripleBatch, read_input,
};
use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A column named in a map: by its header name, or by 1-based number in a headerless file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Name(String),
    Number(usize),
}

/// A value taken from one column, or from several joined by `:` (entity keys where ids repeat
/// across sources, as PrimeKG's type, source and id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field(pub Vec<Column>);

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|c| match c {
                Column::Name(n) => n.clone(),
                Column::Number(n) => n.to_string(),
            })
            .collect();
        f.write_str(&parts.join("+"))
    }
}

/// Which columns feed which part of the graph. Unset keys fall back to KGX's column names
/// (`subject`, `predicate`, `object`; `id`, `name`, `category`) where the file has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColumnMap {
    pub subject: Option<Field>,
    pub predicate: Option<Field>,
    pub object: Option<Field>,
    pub subject_category: Option<Field>,
    pub subject_name: Option<Field>,
    pub object_category: Option<Field>,
    pub object_name: Option<Field>,
    /// Who asserts the edge; a cell may list several, separated by `|`.
    pub source: Option<Field>,
    /// The nodes table's key, name and category columns.
    pub id: Option<Field>,
    pub name: Option<Field>,
    pub category: Option<Field>,
    /// Where no column gives a category: the key's text before this separator
    /// (DRKG's `Compound::DB00001` is a `Compound`).
    pub category_from_key: Option<String>,
}

/// The keys a map may set, in the order `--help` lists them.
pub const MAP_KEYS: &[&str] = &[
    "subject",
    "predicate",
    "object",
    "subject_category",
    "subject_name",
    "object_category",
    "object_name",
    "source",
    "id",
    "name",
    "category",
    "category_from_key",
];

/// A map that cannot be used, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MapError {
    /// The key (`subject`, ...) the problem is about, or the whole entry when it has none.
    pub key: String,
    pub message: String,
}

impl ColumnMap {
    /// Parses `subject=x_id,object=y_id,predicate=relation,category=kind`; a value joins
    /// several columns with `+`, and a number names a column of a headerless file.
    pub fn parse(spec: &str) -> Result<Self, MapError> {
        let mut map = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((key, value)) = entry.split_once('=') else {
                return Err(MapError {
                    key: entry.into(),
                    message: format!("`{entry}` is not KEY=COLUMN"),
                });
            };
            map.set(key.trim(), value.trim())?;
        }
        Ok(map)
    }

    /// Sets one key; an unknown key or an empty value is an error naming it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), MapError> {
        let err = |message: String| MapError {
            key: key.into(),
            message,
        };
        if key == "category_from_key" {
            if value.is_empty() {
                return Err(err(
                    "`category_from_key` needs a separator, e.g. `::`".into()
                ));
            }
            self.category_from_key = Some(value.into());
            return Ok(());
        }
        let columns: Vec<Column> = value
            .split('+')
            .map(str::trim)
            .map(|c| match c.parse::<usize>() {
                Ok(n) => Column::Number(n),
                Err(_) => Column::Name(c.into()),
            })
            .collect();
        if columns
            .iter()
            .any(|c| matches!(c, Column::Name(n) if n.is_empty()) || *c == Column::Number(0))
        {
            return Err(err(format!(
                "`{key}={value}`: name a column (or several joined by `+`; numbers count from 1)"
            )));
        }
        let slot = match key {
            "subject" => &mut self.subject,
            "predicate" => &mut self.predicate,
            "object" => &mut self.object,
            "subject_category" => &mut self.subject_category,
            "subject_name" => &mut self.subject_name,
            "object_category" => &mut self.object_category,
            "object_name" => &mut self.object_name,
            "source" => &mut self.source,
            "id" => &mut self.id,
            "name" => &mut self.name,
            "category" => &mut self.category,
            _ => {
                return Err(err(format!(
                    "unknown map key `{key}` (keys: {})",
                    MAP_KEYS.join(", ")
                )));
            }
        };
        *slot = Some(Field(columns));
        Ok(())
    }

    /// `self` with every key `over` sets replaced: a user's `--map` on top of a preset.
    pub fn overridden_by(&self, over: &ColumnMap) -> ColumnMap {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        ColumnMap {
            subject: pick(&self.subject, &over.subject),
            predicate: pick(&self.predicate, &over.predicate),
            object: pick(&self.object, &over.object),
            subject_category: pick(&self.subject_category, &over.subject_category),
            subject_name: pick(&self.subject_name, &over.subject_name),
            object_category: pick(&self.object_category, &over.object_category),
            object_name: pick(&self.object_name, &over.object_name),
            source: pick(&self.source, &over.source),
            id: pick(&self.id, &over.id),
            name: pick(&self.name, &over.name),
            category: pick(&self.category, &over.category),
            category_from_key: pick(&self.category_from_key, &over.category_from_key),
        }
    }
}

/// How a table's bytes are split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableOptions {
    /// `None`: from the file name (`.csv` is comma-separated, anything else tab-separated).
    pub delimiter: Option<u8>,
    /// Whether the first row names the columns.
    pub header: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            header: true,
        }
    }
}

/// A `--delimiter` / `graph.delimiter` value: one ASCII character, or `tab`.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        d if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
        d => Err(format!("`{d}` is not one ASCII character or `tab`")),
    }
}

/// Whether a path's name says it is a table rather than plain triples: `.csv` (compressed or
/// not) or a tarball.
pub fn implied_by_name(path: &Path) -> bool {
    let inner = inner_name(path);
    inner
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        || is_tar(path)
}

/// How a graph file is read: the one list `import --format`, a workflow's `graph.format` and
/// `simulate --format` choose from (none given: decided from the path and its first line).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `head<TAB>relation<TAB>tail` lines, optional header.
    Triples,
    /// KGX nodes.tsv + edges.tsv.
    Kgx,
    /// Any edge table (CSV or TSV, quoted or not), with a map naming its columns.
    Table,
    /// Hetionet v1.0: nodes TSV (`id name kind`) and edges SIF (`source metaedge target`).
    Hetionet,
    /// PrimeKG's kg.csv (entity keys `type:source:id`).
    Primekg,
    /// DRKG's headerless drkg.tsv, or drkg.tar.gz.
    Drkg,
    /// The Monarch KG: KGX nodes/edges TSV, or monarch-kg.tar.gz.
    Monarch,
}

impl Format {
    /// The published layout this format names, if it is one.
    pub fn preset(self) -> Option<Preset> {
        match self {
            Format::Hetionet => Some(Preset::Hetionet),
            Format::Primekg => Some(Preset::Primekg),
            Format::Drkg => Some(Preset::Drkg),
            Format::Monarch => Some(Preset::Monarch),
            Format::Triples | Format::Kgx | Format::Table => None,
        }
    }
}

/// The published graphs hypograph reads without a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Hetionet v1.0: `id name kind` nodes TSV and the gzipped `source metaedge target` SIF;
    /// relations are the metaedge abbreviations (`CtD` = Compound treats Disease).
    Hetionet,
    /// PrimeKG's `kg.csv`: both ends' id, type, name and source on every row; entity keys are
    /// `type:source:id`, since ids repeat across sources.
    Primekg,
    /// DRKG's headerless `drkg.tsv` (`Type::ID`, relation, `Type::ID`), alone or in
    /// `drkg.tar.gz`; categories are the keys' prefixes.
    Drkg,
    /// The Monarch KG: KGX nodes and edges TSV, alone or in `monarch-kg.tar.gz`.
    Monarch,
}

impl Preset {
    pub const ALL: [Preset; 4] = [
        Preset::Hetionet,
        Preset::Primekg,
        Preset::Drkg,
        Preset::Monarch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Hetionet => "hetionet",
            Preset::Primekg => "primekg",
            Preset::Drkg => "drkg",
            Preset::Monarch => "monarch",
        }
    }

    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The column map and layout of the preset's edge table (and nodes table, if any).
    pub fn layout(self) -> (ColumnMap, TableOptions) {
        let mut map = ColumnMap::default();
        let set = |map: &mut ColumnMap, k: &str, v: &str| {
            map.set(k, v).expect("preset maps use known keys");
        };
        let mut opts = TableOptions::default();
        match self {
            Preset::Hetionet => {
                for (k, v) in [
                    ("subject", "source"),
                    ("predicate", "metaedge"),
                    ("object", "target"),
                    ("id", "id"),
                    ("name", "name"),
                    ("category", "kind"),
                ] {
                    set(&mut map, k, v);
                }
                opts.delimiter = Some(b'\t');
            }
            Preset::Primekg => {
                for (k, v) in [
                    ("subject", "x_type+x_source+x_id"),
                    ("subject_category", "x_type"),
                    ("subject_name", "x_name"),
                    ("predicate", "relation"),
                    ("object", "y_type+y_source+y_id"),
                    ("object_category", "y_type"),
                    ("object_name", "y_name"),
                ] {
                    set(&mut map, k, v);
                }
                opts.delimiter = Some(b',');
            }
            Preset::Drkg => {
                for (k, v) in [
                    ("subject", "1"),
                    ("predicate", "2"),
                    ("object", "3"),
                    ("category_from_key", "::"),
                ] {
                    set(&mut map, k, v);
                }
                opts = TableOptions {
                    delimiter: Some(b'\t'),
                    header: false,
                };
            }
            Preset::Monarch => {}
        }
        (map, opts)
    }

    /// How the preset's files are recognised inside a directory or tarball: (edges, nodes).
    fn members(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Preset::Hetionet => (&["edges.sif", "edges.tsv"], &["nodes.tsv"]),
            Preset::Primekg => (&["kg.csv"], &[]),
            Preset::Drkg => (&["drkg.tsv"], &[]),
            Preset::Monarch => (&["edges.tsv"], &["nodes.tsv"]),
        }
    }
}

/// What to read: an edge table (with its nodes table) in a layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSource {
    /// A file, a directory holding the files, or a `.tar.gz` / `.tgz` / `.tar` holding them.
    pub edges: PathBuf,
    pub nodes: Option<PathBuf>,
    pub preset: Option<Preset>,
    /// Keys set here replace the preset's.
    pub map: ColumnMap,
    pub options: Option<TableOptions>,
}

/// One input file's bytes and the name its errors carry (`archive.tar.gz:member`).
struct Input {
    bytes: Vec<u8>,
    path: PathBuf,
}

fn is_tar(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}

/// Whether a file name matches one of a preset's member patterns (compression ignored).
fn matches(name: &str, patterns: &[&str]) -> bool {
    let inner = inner_name(Path::new(name));
    let inner = inner.to_string_lossy().to_ascii_lowercase();
    patterns.iter().any(|p| inner.ends_with(p))
}

/// Reads the members of a tarball whose names match each pattern list, in one pass; each
/// decompressed by its own name (`nodes.tsv.gz` inside `kg.tar.gz`). Several members matching
/// one list is an error naming them, as in a directory.
fn tar_members(path: &Path, wanted: &[&[&str]]) -> Result<Vec<Option<Input>>, ParseError> {
    let io = |cause: std::io::Error| ParseError::Io {
        path: path.to_owned(),
        cause,
    };
    let bad = |e: std::io::Error| ParseError::File {
        path: path.to_owned(),
        message: format!("not a valid tar archive: {e}"),
    };
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let reader: Box<dyn Read> = if path
        .to_string_lossy()
        .to_ascii_lowercase()
        .ends_with(".tar")
    {
        Box::new(file)
    } else {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    let mut found: Vec<Option<Input>> = wanted.iter().map(|_| None).collect();
    let mut names: Vec<Vec<String>> = wanted.iter().map(|_| Vec::new()).collect();
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(slot) = wanted
            .iter()
            .position(|patterns| !patterns.is_empty() && matches(&name, patterns))
        else {
            continue;
        };
        names[slot].push(name.clone());
        if names[slot].len() > 1 {
            // Read no further than the name: the member is refused anyway.
            continue;
        }
        let member = PathBuf::from(format!("{}:{name}", path.display()));
        found[slot] = Some(Input {
            bytes: decompress(entry, Path::new(&name), &member)?,
            path: member,
        });
    }
    for (slot, hits) in names.iter().enumerate() {
        if hits.len() > 1 {
            return Err(ParseError::File {
                path: path.to_owned(),
                message: format!(
                    "several members match `*{}`: {}; unpack it and name the file instead",
                    wanted[slot].join("` / `*"),
                    hits.join(", ")
                ),
            });
        }
    }
    Ok(found)
}

/// The file in `dir` matching the patterns (one only, else an error naming them).
fn find_in_dir(dir: &Path, patterns: &[&str]) -> Result<Option<PathBuf>, ParseError> {
    let io = |cause: std::io::Error| ParseError::Io {
        path: dir.to_owned(),
        cause,
    };
    let mut hits: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && matches(&name, patterns) {
            hits.push(entry.path());
        }
    }
    hits.sort();
    match hits.len() {
        0 | 1 => Ok(hits.pop()),
        _ => Err(ParseError::File {
            path: dir.to_owned(),
            message: format!(
                "several files match `*{}`: {}; name the file instead of the directory",
                patterns.join("` / `*"),
                hits.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

fn read_file(path: &Path) -> Result<Input, ParseError> {
    Ok(Input {
        bytes: read_input(path)?,
        path: path.to_owned(),
    })
}

/// The edge and node inputs of a source: files as given, or found by name inside a directory
/// or tarball.
fn inputs(src: &TableSource) -> Result<(Input, Option<Input>), ParseError> {
    let (edge_pats, node_pats): (&[&str], &[&str]) = match src.preset {
        Some(p) => p.members(),
        None => (&["edges.tsv", "edges.csv"], &["nodes.tsv", "nodes.csv"]),
    };
    let missing = |path: &Path, what: &str, pats: &[&str]| ParseError::File {
        path: path.to_owned(),
        message: format!("no {what} file (`*{}`) in it", pats.join("` or `*")),
    };
    let edges_path = &src.edges;
    let (edges, nodes_inside) = if edges_path.is_dir() {
        let e = find_in_dir(edges_path, edge_pats)?
            .ok_or_else(|| missing(edges_path, "edges", edge_pats))?;
        let n = match src.nodes {
            Some(_) => None,
            None if node_pats.is_empty() => None,
            None => find_in_dir(edges_path, node_pats)?,
        };
        (read_file(&e)?, n.map(|n| read_file(&n)).transpose()?)
    } else if is_tar(edges_path) {
        let mut found = tar_members(edges_path, &[edge_pats, node_pats])?;
        let n = found.pop().flatten();
        let e = found
            .pop()
            .flatten()
            .ok_or_else(|| missing(edges_path, "edges", edge_pats))?;
        (e, n)
    } else {
        (read_file(edges_path)?, None)
    };
    let nodes = match &src.nodes {
        Some(n) => Some(read_file(n)?),
        None => nodes_inside,
    };
    if matches!(src.preset, Some(Preset::Hetionet | Preset::Monarch)) && nodes.is_none() {
        return Err(ParseError::File {
            path: src.edges.clone(),
            message: format!(
                "the {} format needs its nodes file: give `--nodes FILE` or the directory holding both",
                src.preset.map_or("", Preset::name)
            ),
        });
    }
    Ok((edges, nodes))
}

/// Reads a source into one batch.
pub fn read_table(src: &TableSource, on_invalid: OnInvalid) -> Result<TripleBatch, ParseError> {
    let (edges, nodes) = inputs(src)?;
    if src.preset == Some(Preset::Monarch) && src.map == ColumnMap::default() {
        let nodes = nodes.expect("checked by inputs");
        return super::kgx::parse_kgx(
            &nodes.bytes,
            &nodes.path,
            &edges.bytes,
            &edges.path,
            on_invalid,
        );
    }
    let (preset_map, preset_opts) = src.preset.map(Preset::layout).unwrap_or_default();
    let map = preset_map.overridden_by(&src.map);
    let opts = src.options.unwrap_or(if src.preset.is_some() {
        preset_opts
    } else {
        TableOptions::default()
    });
    let mut builder = Builder::new(on_invalid);
    if let Some(nodes) = &nodes {
        builder.nodes(nodes, &map, opts)?;
    }
    builder.edges(&edges, &map, opts, nodes.as_ref().map(|n| n.path.as_path()))?;
    Ok(builder.finish())
}

/// The delimiter a file's name implies.
fn delimiter_for(path: &Path, opts: TableOptions) -> u8 {
    opts.delimiter.unwrap_or_else(|| {
        let inner = inner_name(path);
        match inner.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => b',',
            _ => b'\t',
        }
    })
}

/// Where an entity's category was first given: file index and line.
#[derive(Debug, Clone, Copy)]
struct Place {
    file: usize,
    line: u64,
}

/// Columns of one table resolved to positions.
struct Resolved {
    header: Vec<String>,
}

impl Resolved {
    fn position(&self, col: &Column, path: &Path, key: &str) -> Result<usize, ParseError> {
        match col {
            Column::Number(n) => {
                if self.header.is_empty() || *n <= self.header.len() {
                    Ok(n - 1)
                } else {
                    Err(ParseError::File {
                        path: path.to_owned(),
                        message: format!(
                            "map key `{key}` names column {n}, but rows have {} columns",
                            self.header.len()
                        ),
                    })
                }
            }
            Column::Name(name) => {
                let found = self.header.iter().position(|h| h == name).or_else(|| {
                    self.header
                        .iter()
                        .position(|h| h.eq_ignore_ascii_case(name))
                });
                found.ok_or_else(|| ParseError::File {
                    path: path.to_owned(),
                    message: if self.header.is_empty() {
                        format!(
                            "map key `{key}` names column `{name}`, but the file has no header: name columns by number (1, 2, ...)"
                        )
                    } else {
                        format!(
                            "map key `{key}` names column `{name}`, which the header lacks (columns: {})",
                            self.header.join(", ")
                        )
                    },
                })
            }
        }
    }

    fn field(&self, f: &Field, path: &Path, key: &str) -> Result<Vec<usize>, ParseError> {
        f.0.iter().map(|c| self.position(c, path, key)).collect()
    }

    /// `key`'s positions: the map's field, else a default column when the header has it.
    fn optional(
        &self,
        f: &Option<Field>,
        default: &[&str],
        path: &Path,
        key: &str,
    ) -> Result<Option<Vec<usize>>, ParseError> {
        match f {
            Some(f) => self.field(f, path, key).map(Some),
            None => Ok(default.iter().find_map(|d| {
                self.header
                    .iter()
                    .position(|h| h.eq_ignore_ascii_case(d))
                    .map(|p| vec![p])
            })),
        }
    }

    fn required(
        &self,
        f: &Option<Field>,
        default: &str,
        path: &Path,
        key: &str,
    ) -> Result<Vec<usize>, ParseError> {
        self.optional(f, &[default], path, key)?
            .ok_or_else(|| ParseError::File {
                path: path.to_owned(),
                message: if self.header.is_empty() {
                    format!("the file has no header: map `{key}` to a column number")
                } else {
                    format!(
                        "no `{default}` column: map `{key}` to one of {} (e.g. --map {key}=COLUMN)",
                        self.header.join(", ")
                    )
                },
            })
    }
}

/// A row's fields as text, with what a located error needs.
struct Row<'a> {
    fields: Vec<&'a str>,
    line: u64,
}

impl Row<'_> {
    /// The character column (from 1) where field `i` starts, as an editor counts it.
    fn column(&self, i: usize) -> u64 {
        1 + self.fields[..i.min(self.fields.len())]
            .iter()
            .map(|f| f.chars().count() as u64 + 1)
            .sum::<u64>()
    }
}

/// Accumulates a batch from one or more tables.
struct Builder {
    batch: TripleBatch,
    ids: Interner,
    relations: Interner,
    sources: EdgeSources,
    triples: Vec<[u32; 3]>,
    places: Vec<Option<Place>>,
    files: Vec<PathBuf>,
    on_invalid: OnInvalid,
    key: String,
}

/// A row-level problem: skipped under `--skip-invalid`, else the read's error.
enum Reject {
    Cell { column: u64, message: String },
    Line(String),
}

impl Builder {
    fn new(on_invalid: OnInvalid) -> Self {
        Self {
            batch: TripleBatch::default(),
            ids: Interner::new(),
            relations: Interner::new(),
            sources: EdgeSources::default(),
            triples: Vec::new(),
            places: Vec::new(),
            files: Vec::new(),
            on_invalid,
            key: String::new(),
        }
    }

    fn reject(&mut self, path: &Path, line: u64, r: Reject) -> Result<(), ParseError> {
        let (message, error) = match r {
            Reject::Line(message) => (
                message.clone(),
                ParseError::Line {
                    path: path.to_owned(),
                    line,
                    message,
                },
            ),
            Reject::Cell { column, message } => (
                format!("column {column}: {message}"),
                ParseError::Cell {
                    path: path.to_owned(),
                    line,
                    column,
                    message,
                },
            ),
        };
        match self.on_invalid {
            OnInvalid::Fail => Err(error),
            OnInvalid::Skip => {
                self.batch.skipped.push(LineError {
                    file: path.to_owned(),
                    line,
                    message,
                });
                Ok(())
            }
        }
    }

    /// Opens a table: the csv reader and the header (empty when the file has none).
    fn open(
        input: &Input,
        opts: TableOptions,
    ) -> Result<(csv::Reader<&[u8]>, Vec<String>), ParseError> {
        let body = input
            .bytes
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(&input.bytes);
        let delimiter = delimiter_for(&input.path, opts);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(opts.header)
            // TSV as the publishers write it is not quoted: a `"` in a name is a character.
            .quoting(delimiter != b'\t')
            .flexible(true)
            .from_reader(body);
        let header = if opts.header {
            let h = reader.byte_headers().map_err(|e| ParseError::File {
                path: input.path.clone(),
                message: e.to_string(),
            })?;
            if h.is_empty() {
                return Err(ParseError::File {
                    path: input.path.clone(),
                    message: "empty file: a header row is required".into(),
                });
            }
            h.iter()
                .map(|c| String::from_utf8_lossy(c).trim().to_string())
                .collect()
        } else {
            Vec::new()
        };
        Ok((reader, header))
    }

    /// Walks the rows of a table, handing each to `f` with its fields as text; rows whose
    /// width differs from the header's (or the first row's) or that are not UTF-8 are
    /// rejected here.
    fn rows<C>(
        &mut self,
        input: &Input,
        opts: TableOptions,
        resolve: impl FnOnce(&Resolved) -> Result<C, ParseError>,
        mut f: impl FnMut(&mut Self, &C, &Row<'_>) -> Result<(), Reject>,
    ) -> Result<(), ParseError> {
        let (mut reader, header) = Self::open(input, opts)?;
        let resolved = Resolved {
            header: header.clone(),
        };
        let cols = resolve(&resolved)?;
        let mut width = (!header.is_empty()).then_some(header.len());
        let mut record = csv::ByteRecord::new();
        loop {
            let more = match reader.read_byte_record(&mut record) {
                Ok(more) => more,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    self.reject(&input.path, line, Reject::Line(e.to_string()))?;
                    continue;
                }
            };
            if !more {
                break;
            }
            let line = record.position().map_or(0, |p| p.line());
            if record.len() == 1
                && record
                    .get(0)
                    .is_some_and(|f| f.iter().all(u8::is_ascii_whitespace))
            {
                continue;
            }
            let expected = *width.get_or_insert(record.len());
            if record.len() != expected {
                let message = format!(
                    "{} fields, expected {expected}{}",
                    record.len(),
                    if header.is_empty() {
                        " as on the first row"
                    } else {
                        " as in the header"
                    }
                );
                self.reject(&input.path, line, Reject::Line(message))?;
                continue;
            }
            let mut fields = Vec::with_capacity(record.len());
            let mut bad = None;
            for (i, raw) in record.iter().enumerate() {
                match std::str::from_utf8(raw) {
                    Ok(s) => fields.push(s.trim()),
                    Err(_) => {
                        bad = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = bad {
                let message = format!("field {} is not valid UTF-8", i + 1);
                self.reject(&input.path, line, Reject::Line(message))?;
                continue;
            }
            self.batch.lines_read += 1;
            let row = Row { fields, line };
            if let Err(r) = f(self, &cols, &row) {
                self.reject(&input.path, line, r)?;
            }
        }
        Ok(())
    }

    fn file_index(&mut self, path: &Path) -> usize {
        self.files.push(path.to_owned());
        self.files.len() - 1
    }

    /// The value of a (possibly composite) field; an empty part is the row's error.
    fn value(&mut self, row: &Row<'_>, cols: &[usize], what: &str) -> Result<(), Reject> {
        self.key.clear();
        for (i, &c) in cols.iter().enumerate() {
            let v = row.fields[c];
            if v.is_empty() {
                return Err(Reject::Cell {
                    column: row.column(c),
                    message: format!("empty {what}"),
                });
            }
            if i > 0 {
                self.key.push(':');
            }
            self.key.push_str(v);
        }
        Ok(())
    }

    /// A field's text: borrowed from the row when it is one column (the common case, and the
    /// one per-row allocations would slow down at millions of rows).
    fn optional_text<'a>(row: &Row<'a>, cols: &Option<Vec<usize>>) -> Cow<'a, str> {
        match cols.as_deref() {
            None | Some([]) => Cow::Borrowed(""),
            Some([c]) => Cow::Borrowed(row.fields[*c]),
            Some(cols) => Cow::Owned(
                cols.iter()
                    .map(|&c| row.fields[c])
                    .filter(|v| !v.is_empty())
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
        }
    }

    /// Defines or meets an entity (its key in `self.key`); a category that differs from
    /// the one given before is an error naming both places.
    fn entity(
        &mut self,
        category: &str,
        name: &str,
        place: Place,
        column: &dyn Fn() -> u64,
        node_row: bool,
    ) -> Result<u32, Reject> {
        let before = self.ids.len();
        let id = self.ids.intern(&self.key);
        if id as usize == before {
            self.batch.entities.push(EntityRecord {
                key: self.key.clone(),
                category: category.to_owned(),
                name: name.to_owned(),
                attributes: serde_json::Map::new(),
            });
            self.places
                .push((!category.is_empty() || node_row).then_some(place));
            return Ok(id);
        }
        let record = &mut self.batch.entities[id as usize];
        if !category.is_empty() && record.category != category {
            if record.category.is_empty() {
                record.category = category.to_owned();
                self.places[id as usize] = Some(place);
            } else {
                let first = self.places[id as usize].unwrap_or(place);
                return Err(Reject::Cell {
                    column: column(),
                    message: format!(
                        "entity `{}` has category `{category}` here but `{}` at {}:{}",
                        record.key,
                        record.category,
                        self.files[first.file].display(),
                        first.line
                    ),
                });
            }
        }
        if record.name.is_empty() && !name.is_empty() {
            record.name = name.to_owned();
        } else if node_row {
            self.batch.duplicates += 1;
        }
        Ok(id)
    }

    fn nodes(
        &mut self,
        input: &Input,
        map: &ColumnMap,
        opts: TableOptions,
    ) -> Result<(), ParseError> {
        let file = self.file_index(&input.path);
        let path = input.path.clone();
        let from_key = map.category_from_key.clone();
        self.rows(
            input,
            opts,
            |r| {
                Ok((
                    r.required(&map.id, "id", &path, "id")?,
                    r.optional(&map.name, &["name"], &path, "name")?,
                    r.optional(&map.category, &["category"], &path, "category")?,
                ))
            },
            |b, (id, name, category), row| {
                b.value(row, id, "id")?;
                let mut cat = Self::optional_text(row, category);
                if cat.is_empty() {
                    cat = Cow::Owned(category_of_key(&b.key, from_key.as_deref()));
                }
                let name = Self::optional_text(row, name);
                let place = Place {
                    file,
                    line: row.line,
                };
                let column = || category.as_ref().map_or(1, |c| row.column(c[0]));
                b.entity(&cat, &name, place, &column, true).map(|_| ())
            },
        )
    }

    fn edges(
        &mut self,
        input: &Input,
        map: &ColumnMap,
        opts: TableOptions,
        nodes: Option<&Path>,
    ) -> Result<(), ParseError> {
        struct Cols {
            s: Vec<usize>,
            p: Vec<usize>,
            o: Vec<usize>,
            sc: Option<Vec<usize>>,
            sn: Option<Vec<usize>>,
            oc: Option<Vec<usize>>,
            on: Option<Vec<usize>>,
            src: Option<Vec<usize>>,
        }
        let file = self.file_index(&input.path);
        let path = input.path.clone();
        let known_nodes = self.ids.len();
        let from_key = map.category_from_key.clone();
        let nodes = nodes.map(Path::to_owned);
        self.rows(
            input,
            opts,
            |r| {
                Ok(Cols {
                    s: r.required(&map.subject, "subject", &path, "subject")?,
                    p: r.required(&map.predicate, "predicate", &path, "predicate")?,
                    o: r.required(&map.object, "object", &path, "object")?,
                    sc: r.optional(&map.subject_category, &[], &path, "subject_category")?,
                    sn: r.optional(&map.subject_name, &[], &path, "subject_name")?,
                    oc: r.optional(&map.object_category, &[], &path, "object_category")?,
                    on: r.optional(&map.object_name, &[], &path, "object_name")?,
                    src: r.optional(&map.source, &super::kgx::SOURCE_COLUMNS, &path, "source")?,
                })
            },
            |b, c, row| {
                let place = Place {
                    file,
                    line: row.line,
                };
                let mut ends = [0u32; 2];
                for (i, (key_cols, cat_cols, name_cols, what)) in [
                    (&c.s, &c.sc, &c.sn, "subject"),
                    (&c.o, &c.oc, &c.on, "object"),
                ]
                .into_iter()
                .enumerate()
                {
                    b.value(row, key_cols, what)?;
                    let mut cat = Self::optional_text(row, cat_cols);
                    if cat.is_empty() {
                        cat = Cow::Owned(category_of_key(&b.key, from_key.as_deref()));
                    }
                    if let Some(nodes) = &nodes
                        && cat.is_empty()
                        && b.ids
                            .get(&b.key)
                            .is_none_or(|id| id as usize >= known_nodes)
                    {
                        return Err(Reject::Cell {
                            column: row.column(key_cols[0]),
                            message: format!(
                                "{what} `{}` is not in the nodes file {}",
                                b.key,
                                nodes.display()
                            ),
                        });
                    }
                    let column = || {
                        cat_cols
                            .as_ref()
                            .map_or(row.column(key_cols[0]), |cc| row.column(cc[0]))
                    };
                    let name = Self::optional_text(row, name_cols);
                    ends[i] = b.entity(&cat, &name, place, &column, false)?;
                }
                b.value(row, &c.p, "predicate")?;
                let r = b.relations.intern(&b.key);
                let triple = [ends[0], r, ends[1]];
                b.triples.push(triple);
                if let Some(src) = &c.src {
                    for &i in src {
                        b.sources.add_cell(triple, row.fields[i]);
                    }
                }
                Ok(())
            },
        )
    }

    fn finish(mut self) -> TripleBatch {
        self.batch.duplicates += super::sort_dedup(&mut self.triples);
        self.batch.triples = self.triples;
        self.batch.relations = self
            .relations
            .into_keys()
            .into_iter()
            .map(Into::into)
            .collect();
        self.sources.finish(&mut self.batch);
        self.batch
    }
}

/// The category a key's prefix names (`Compound::DB00001` -> `Compound`), if asked for.
fn category_of_key(key: &str, separator: Option<&str>) -> String {
    separator
        .and_then(|sep| key.split_once(sep))
        .map(|(c, _)| c.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        edges: &str,
        edges_name: &str,
        nodes: Option<(&str, &str)>,
        preset: Option<Preset>,
        map: &str,
        on: OnInvalid,
    ) -> Result<TripleBatch, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = dir.path().join(edges_name);
        std::fs::write(&e, edges).expect("write");
        let n = nodes.map(|(name, text)| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        });
        let src = TableSource {
            edges: e,
            nodes: n,
            preset,
            map: ColumnMap::parse(map).map_err(|e| e.to_string())?,
            options: None,
        };
        read_table(&src, on).map_err(|e| {
            e.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
    }

    fn triples(b: &TripleBatch) -> Vec<String> {
        b.triples
            .iter()
            .map(|&[h, r, t]| {
                format!(
                    "{} {} {}",
                    b.entities[h as usize].key, b.relations[r as usize], b.entities[t as usize].key
                )
            })
            .collect()
    }

    #[test]
    fn map_parses_composites_numbers_and_rejects_unknown_keys() {
        let m = ColumnMap::parse("subject=x_type+x_id, predicate=2,category_from_key=::")
            .expect("valid");
        assert_eq!(
            m.subject,
            Some(Field(vec![
                Column::Name("x_type".into()),
                Column::Name("x_id".into())
            ]))
        );
        assert_eq!(m.predicate, Some(Field(vec![Column::Number(2)])));
        assert_eq!(m.category_from_key.as_deref(), Some("::"));
        let e = ColumnMap::parse("subj=a").expect_err("unknown key");
        assert_eq!(e.key, "subj");
        assert!(e.message.contains("subject_category"), "{}", e.message);
        assert!(ColumnMap::parse("subject").is_err());
        assert!(ColumnMap::parse("subject=a+").is_err());
        assert!(ColumnMap::parse("subject=0").is_err());
    }

    #[test]
    fn csv_with_quotes_and_mapped_columns() {
        let b = parse(
            "x_id,x_type,rel,y_id,y_type,y_name\n\
             1,drug,treats,7,disease,\"cancer, lung\"\n\
             2,drug,treats,7,disease,\"cancer, lung\"\n",
            "kg.csv",
            None,
            None,
            "subject=x_id,subject_category=x_type,predicate=rel,object=y_id,object_category=y_type,object_name=y_name",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(triples(&b), ["1 treats 7", "2 treats 7"]);
        let seven = b.entities.iter().find(|e| e.key == "7").expect("7");
        assert_eq!(
            (seven.category.as_str(), seven.name.as_str()),
            ("disease", "cancer, lung")
        );
    }

    #[test]
    fn category_disagreement_names_both_places() {
        let err = parse(
            "source\tmetaedge\ttarget\nCompound::1\tCtD\tDisease::2\n",
            "edges.sif",
            Some((
                "nodes.tsv",
                "id\tname\tkind\nCompound::1\taspirin\tCompound\nDisease::2\tflu\tDisease\n",
            )),
            Some(Preset::Hetionet),
            "",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(triples(&err), ["Compound::1 CtD Disease::2"]);
        let e = parse(
            "x_id,x_type,relation,y_id,y_type\na,drug,r,b,disease\nb,gene,r,a,drug\n",
            "kg.csv",
            None,
            None,
            "subject=x_id,subject_category=x_type,object=y_id,object_category=y_type,predicate=relation",
            OnInvalid::Fail,
        )
        .expect_err("b is a disease, then a gene");
        assert_eq!(
            e,
            "kg.csv:3:3: entity `b` has category `gene` here but `disease` at kg.csv:2"
        );
    }

    #[test]
    fn nodes_and_edges_files_disagreeing_name_both_files() {
        let e = parse(
            "s,p,o,oc\nA,r,B,gene\n",
            "edges.csv",
            Some(("nodes.csv", "id,category\nA,drug\nB,disease\n")),
            None,
            "subject=s,predicate=p,object=o,object_category=oc",
            OnInvalid::Fail,
        )
        .expect_err("B disagrees");
        assert_eq!(
            e,
            "edges.csv:2:7: entity `B` has category `gene` here but `disease` at nodes.csv:3"
        );
    }

    #[test]
    fn bad_rows_are_located_or_skipped() {
        let e = parse(
            "subject,predicate,object\na,r,b\nc,,d\n",
            "e.csv",
            None,
            None,
            "",
            OnInvalid::Fail,
        )
        .expect_err("empty predicate");
        assert_eq!(e, "e.csv:3:3: empty predicate");
        let e = parse(
            "subject,predicate,object\na,r,b\nc,r\n",
            "e.csv",
            None,
            None,
            "",
            OnInvalid::Fail,
        )
        .expect_err("short row");
        assert_eq!(e, "e.csv:3: 2 fields, expected 3 as in the header");
        let b = parse(
            "subject,predicate,object\na,r,b\nc,r\n,r,x\n",
            "e.csv",
            None,
            None,
            "",
            OnInvalid::Skip,
        )
        .expect("skips");
        assert_eq!(triples(&b), ["a r b"]);
        assert_eq!(b.skipped.len(), 2);
        let e = parse(
            "a\tb\tc\n",
            "e.tsv",
            None,
            None,
            "subject=x",
            OnInvalid::Fail,
        )
        .expect_err("no column x");
        assert!(
            e.contains(
                "map key `subject` names column `x`, which the header lacks (columns: a, b, c)"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_endpoint_with_a_nodes_file_is_an_error() {
        let e = parse(
            "source\tmetaedge\ttarget\nCompound::1\tCtD\tDisease::9\n",
            "edges.sif",
            Some((
                "nodes.tsv",
                "id\tname\tkind\nCompound::1\taspirin\tCompound\n",
            )),
            Some(Preset::Hetionet),
            "",
            OnInvalid::Fail,
        )
        .expect_err("Disease::9 unknown");
        assert_eq!(
            e,
            "edges.sif:2:17: object `Disease::9` is not in the nodes file nodes.tsv"
        );
    }

    #[test]
    fn drkg_headerless_keys_give_categories_and_sources_accumulate() {
        let b = parse(
            "Compound::DB1\tDRUGBANK::treats::Compound:Disease\tDisease::MESH:D1\nGene::1\tGNBR::E::Gene:Gene\tGene::2\n",
            "drkg.tsv",
            None,
            Some(Preset::Drkg),
            "",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(b.triples.len(), 2);
        let cats: Vec<&str> = b.entities.iter().map(|e| e.category.as_str()).collect();
        assert_eq!(cats, ["Compound", "Disease", "Gene", "Gene"]);

        let b = parse(
            "subject,predicate,object,src\na,r,b,x|y\na,r,b,z\n",
            "e.csv",
            None,
            None,
            "source=src",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(b.triples.len(), 1);
        assert_eq!(b.duplicates, 1);
        assert_eq!(b.sources, ["x", "y", "z"]);
        assert_eq!(b.edge_sources.len(), 3);
    }

    #[test]
    fn primekg_keys_join_type_source_and_id() {
        let b = parse(
            "relation,display_relation,x_index,x_id,x_type,x_name,x_source,y_index,y_id,y_type,y_name,y_source\n\
             indication,indication,1,DB001,drug,Aspirin,DrugBank,2,5044,disease,\"headache, tension\",MONDO_grouped\n\
             protein_protein,ppi,3,1,gene/protein,A1BG,NCBI,4,1,gene/protein,A1BG,NCBI\n",
            "kg.csv",
            None,
            Some(Preset::Primekg),
            "",
            OnInvalid::Fail,
        )
        .expect("valid");
        assert_eq!(
            triples(&b),
            [
                "drug:DrugBank:DB001 indication disease:MONDO_grouped:5044",
                "gene/protein:NCBI:1 protein_protein gene/protein:NCBI:1",
            ]
        );
        assert_eq!(b.entities[1].name, "headache, tension");
    }

    #[test]
    fn tarballs_and_directories_are_searched_for_members() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tar_path = dir.path().join("kg.tar.gz");
        let file = std::fs::File::create(&tar_path).expect("create");
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, text) in [
            ("kg/README", "x"),
            (
                "kg/monarch-kg_nodes.tsv",
                "id\tcategory\tname\nA\tbiolink:Gene\tgene a\nB\tbiolink:Disease\tdisease b\n",
            ),
            (
                "kg/monarch-kg_edges.tsv",
                "subject\tpredicate\tobject\nA\tbiolink:related_to\tB\n",
            ),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, text.as_bytes())
                .expect("append");
        }
        tar.into_inner().expect("tar").finish().expect("gz");
        let src = TableSource {
            edges: tar_path,
            nodes: None,
            preset: Some(Preset::Monarch),
            map: ColumnMap::default(),
            options: None,
        };
        let b = read_table(&src, OnInvalid::Fail).expect("valid");
        assert_eq!(triples(&b), ["A biolink:related_to B"]);
        assert_eq!(b.entities[0].category, "biolink:Gene");

        let src = TableSource {
            edges: dir.path().to_owned(),
            preset: Some(Preset::Hetionet),
            ..src
        };
        let e = read_table(&src, OnInvalid::Fail).expect_err("no files");
        assert!(e.to_string().contains("no edges file"), "{e}");
    }
}
