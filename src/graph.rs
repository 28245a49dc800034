//! The knowledge graph as data: parsed input files and the in-memory indexed view models train on.
//!
//! Nothing here knows about SQL or models: `store` turns these values into versions, and
//! `model` reads [`Graph`].

pub mod features;
mod intern;
pub mod kgx;
mod lines;
pub mod table;
pub use lines::{compression, read_input};
pub mod tsv;
mod view;

pub use intern::Interner;
pub use view::{Graph, GraphError, Triple};

use std::path::PathBuf;

/// One problem on one line of an input file; kept so `--skip-invalid` can report every skipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: PathBuf,
    pub line: u64,
    pub message: String,
}

/// Why an input file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    // Not a `source`: the message already carries it, and a chain would print it twice.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A problem with one field of a line; `column` counts characters from 1, as editors do.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Cell {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

/// A node as written in a KGX nodes file (or implied by a triple).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityRecord {
    pub key: String,
    pub category: String,
    pub name: String,
    /// Extra columns of the nodes file, as a JSON object of strings.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// An entity's features: what a model may know about it beyond its edges. Features are graph
/// data (versioned and hashed like edges); `featurize` turns each kind into a numeric vector.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureValue {
    /// A molecule as SMILES (compounds).
    Smiles(String),
    /// A protein or nucleic-acid sequence.
    Sequence(String),
    /// A numeric vector computed elsewhere (a protein or chemical language model, ...).
    Vector(Vec<f32>),
}

impl FeatureValue {
    /// The kind's name as stored and written in files: `smiles`, `sequence` or `vector`.
    pub fn kind(&self) -> &'static str {
        match self {
            FeatureValue::Smiles(_) => "smiles",
            FeatureValue::Sequence(_) => "sequence",
            FeatureValue::Vector(_) => "vector",
        }
    }
}

/// One entity's feature of one kind, as read from a features file or a prompt. An entity has
/// at most one value per kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureRecord {
    pub entity: String,
    pub value: FeatureValue,
}

/// A batch of triples read from files, interned to batch-local ids: the unit the store imports.
#[derive(Debug, Default)]
pub struct TripleBatch {
    /// Every entity named by a node row or a triple, indexed by batch-local id.
    pub entities: Vec<EntityRecord>,
    pub relations: Vec<String>,
    /// Distinct triples, as `[head, relation, tail]` batch-local ids, sorted.
    pub triples: Vec<[u32; 3]>,
    /// Data lines read (blank lines and headers excluded).
    pub lines_read: u64,
    /// Lines that repeated an earlier triple (or node) exactly.
    pub duplicates: u64,
    /// Lines skipped under `--skip-invalid`, with the reason.
    pub skipped: Vec<LineError>,
    /// Features of the batch's entities, by batch-local id, committed in the same version as
    /// its triples (so new entities arrive with their features).
    pub features: Vec<(u32, FeatureValue)>,
    /// Who asserts each triple, where the file says (a KGX `primary_knowledge_source`, a
    /// mapped `source` column): `(triple, index into sources)`, sorted and distinct. A triple
    /// given by several sources is one triple with several entries here.
    pub edge_sources: Vec<([u32; 3], u32)>,
    /// Source names that `edge_sources` indexes.
    pub sources: Vec<String>,
}

impl TripleBatch {
    /// The batch's triples renumbered into shared interners (adding keys they lack), so that
    /// several files (train, valid, test) end up in one id space.
    pub fn triples_in(&self, entities: &mut Interner, relations: &mut Interner) -> Vec<Triple> {
        self.triples
            .iter()
            .map(|&[h, r, t]| {
                Triple::new(
                    entities.intern(&self.entities[h as usize].key),
                    relations.intern(&self.relations[r as usize]),
                    entities.intern(&self.entities[t as usize].key),
                )
            })
            .collect()
    }
}

/// Who asserts each triple, collected while a reader runs: source names interned in the
/// order first seen, `(triple, source)` pairs in any order with repeats. [`EdgeSources::finish`]
/// moves them into a batch sorted and distinct, as [`TripleBatch::edge_sources`] promises.
#[derive(Debug, Default)]
pub struct EdgeSources {
    names: Interner,
    pairs: Vec<([u32; 3], u32)>,
}

impl EdgeSources {
    /// Records that `source` asserts `triple` (batch-local ids); an empty name is ignored.
    pub fn add(&mut self, triple: [u32; 3], source: &str) {
        let source = source.trim();
        if !source.is_empty() {
            let id = self.names.intern(source);
            self.pairs.push((triple, id));
        }
    }

    /// Records every source of a cell that may hold several, `|`-separated (KGX's multivalued
    /// form: `infores:a|infores:b`).
    pub fn add_cell(&mut self, triple: [u32; 3], cell: &str) {
        for source in cell.split('|') {
            self.add(triple, source);
        }
    }

    /// Sets the batch's `sources` and `edge_sources` (sorted, distinct).
    pub fn finish(mut self, batch: &mut TripleBatch) {
        self.pairs.sort_unstable();
        self.pairs.dedup();
        batch.edge_sources = self.pairs;
        batch.sources = self.names.into_keys().into_iter().map(Into::into).collect();
    }
}

/// How strict a reader is about bad lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// The first bad line stops the read: nothing is imported.
    #[default]
    Fail,
    /// Bad lines are skipped and reported.
    Skip,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Sorts and dedups triples in place; returns how many duplicates were dropped. Sorting beats
/// a hash set here: no per-triple hashing, and the store inserts in index order.
fn sort_dedup(triples: &mut Vec<[u32; 3]>) -> u64 {
    let before = triples.len();
    triples.sort_unstable();
    triples.dedup();
    (before - triples.len()) as u64
}
