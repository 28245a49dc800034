//! Conditional message passing (NBFNet, Zhu et al. 2021) as ULTRA builds it (Galkin et al.
//! 2024): a query `(h, r, ?)` lights up `h` with `r`'s representation, six layers pass
//! DistMult-style messages over the whole graph with inverse edges, and an MLP scores every
//! node's final state, so one pass answers every tail. Relations are represented by a second
//! network over the relation graph (relations as nodes, linked where they share heads or
//! tails), so no weight is tied to a graph's vocabulary: the published checkpoints answer on
//! any graph zero-shot (`ModelKind::Ultra`), and a new entity with claimed edges simply joins
//! the graph at inference. `ModelKind::Gnn` is the same network from random weights.
//!
//! The model reads the [`Context`] it is handed: its scores change as the graph grows, with no
//! entity rows to grow.

pub mod explain;
pub mod grad;
pub mod graph;
pub mod net;
pub mod params;
pub mod prune;
pub mod pth;
pub mod train;

use super::checkpoint::{CheckpointError, corrupt, io};
use super::config::{ModelKind, TrainConfig};
use super::context::Context;
use super::eval::LinkPredictor;
use super::range::Ranges;
use crate::graph::Triple;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
pub use explain::{Hop, ModelPath};
pub use graph::Adjacency;
pub use net::{Net, Removed};
pub use params::{Params, Shape};
use std::path::Path;

/// ULTRA's checkpoint pretrained on four graphs (FB15k-237, WN18RR, CoDEx-Medium, NELL-995),
/// MIT licensed (models/ULTRA-LICENSE): the default weights of `ModelKind::Ultra`, so a fresh
/// clone answers zero-shot offline.
pub static EMBEDDED_CHECKPOINT: &[u8] = include_bytes!("../../models/ultra_4g.pth");

/// Queries scored in one pass (they share the graph traversal).
pub const SCORE_BATCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum GnnError {
    #[error("{path}: {source}")]
    Pth {
        path: String,
        #[source]
        source: pth::PthError,
    },
    #[error("{path}: {source}")]
    Params {
        path: String,
        #[source]
        source: params::ParamsError,
    },
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
}

/// Reads ULTRA weights from a PyTorch checkpoint file, or the embedded one for `None`.
pub fn pretrained(path: Option<&Path>) -> Result<Params, GnnError> {
    let (name, bytes) = match path {
        None => (
            "the embedded ULTRA checkpoint".to_owned(),
            EMBEDDED_CHECKPOINT.to_vec(),
        ),
        Some(p) => (
            p.display().to_string(),
            std::fs::read(p).map_err(|cause| GnnError::Io {
                path: p.display().to_string(),
                cause,
            })?,
        ),
    };
    let dict = pth::read_state_dict(&bytes, Some("model"))
        .or_else(|_| pth::read_state_dict(&bytes, None))
        .map_err(|source| GnnError::Pth {
            path: name.clone(),
            source,
        })?;
    Params::from_state_dict(&dict).map_err(|source| GnnError::Params { path: name, source })
}

/// A trained (or pretrained) message-passing model.
#[derive(Debug, Clone)]
pub struct GnnModel {
    pub config: TrainConfig,
    pub num_entities: usize,
    pub num_relations: usize,
    pub params: Params,
}

impl GnnModel {
    /// Grows the vocabulary it answers about; nothing it learned is tied to it.
    pub fn grow(&mut self, num_entities: usize, num_relations: usize) {
        self.num_entities = self.num_entities.max(num_entities);
        self.num_relations = self.num_relations.max(num_relations);
    }

    /// A scorer over `context`'s graph.
    pub fn scorer<'a>(&'a self, device: &Device, context: &'a Context) -> GnnScorer<'a> {
        GnnScorer::new(self, device, context, &[])
    }
}

/// Scores queries by message passing over one graph (the context's, plus any extra edges).
pub struct GnnScorer<'a> {
    model: &'a GnnModel,
    net: Net<'a>,
    graph: Adjacency,
    relation_graph: Adjacency,
    ranges: Ranges,
    num_relations: u32,
    /// Senders a layer when scoring pruned (`GnnConfig::prune_senders`).
    prune: Option<usize>,
    /// The pruned passes' backgrounds, one per relation asked about.
    backgrounds: prune::Backgrounds,
}

impl<'a> GnnScorer<'a> {
    /// `extra` edges `(head, relation, tail)` join the graph for this scorer only (a prompt's
    /// new entities and their claims); ids may lie beyond the context's entities.
    pub fn new(
        model: &'a GnnModel,
        device: &Device,
        context: &'a Context,
        extra: &[(u32, u32, u32)],
    ) -> Self {
        Self::with_nodes(model, device, context, extra, 0)
    }

    /// As [`Self::new`], with the graph holding at least `nodes` nodes (new entities without
    /// edges yet).
    pub fn with_nodes(
        model: &'a GnnModel,
        device: &Device,
        context: &'a Context,
        extra: &[(u32, u32, u32)],
        nodes: usize,
    ) -> Self {
        let graph = Adjacency::of_context(context, extra, nodes);
        let relation_graph = graph.relation_graph();
        Self {
            model,
            net: Net::new(&model.params, device),
            graph,
            relation_graph,
            ranges: Ranges::new(context),
            num_relations: context.num_relations() as u32,
            prune: model.config.gnn_config().prune_senders,
            backgrounds: prune::Backgrounds::default(),
        }
    }

    /// The paths that carried `answer` as the tail of `query` (a relation id with inverses:
    /// `r + R` asks for heads of `r`), most important first.
    pub fn explain(&self, query: (u32, u32), answer: u32, limit: usize) -> Vec<ModelPath> {
        if query.1 as usize >= self.graph.num_types {
            return Vec::new();
        }
        self.net.explain(
            &self.graph,
            &self.relation_graph,
            query,
            answer,
            self.num_relations,
            limit,
        )
    }

    /// Relations of the graph (without inverses).
    pub fn num_relations(&self) -> u32 {
        self.num_relations
    }

    /// Raw logits of every node of the graph as the tail of each query (`queries x nodes`),
    /// without the range mask.
    /// A query about a node or relation the graph lacks gets [`super::range::OUTSIDE`]
    /// everywhere.
    pub fn logits(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let g = self.graph.num_nodes;
        let ok = |q: &(u32, u32)| (q.0 as usize) < g && (q.1 as usize) < self.graph.num_types;
        let valid: Vec<(u32, u32)> = queries.iter().copied().filter(ok).collect();
        let mut scored = Vec::with_capacity(valid.len() * g);
        for chunk in valid.chunks(SCORE_BATCH) {
            scored.extend(match self.prune {
                Some(k) => self.net.tails_pruned(
                    &self.graph,
                    &self.relation_graph,
                    chunk,
                    k,
                    &self.backgrounds,
                ),
                None => self.net.tails(
                    &self.graph,
                    &self.relation_graph,
                    chunk,
                    &Removed::default(),
                ),
            });
        }
        if valid.len() == queries.len() {
            return scored;
        }
        let mut out = vec![super::range::OUTSIDE; queries.len() * g];
        let mut next = scored.chunks(g.max(1));
        for (i, q) in queries.iter().enumerate() {
            if ok(q)
                && let Some(row) = next.next()
            {
                out[i * g..(i + 1) * g].copy_from_slice(row);
            }
        }
        out
    }

    /// `queries.len() x num_entities` scores with entities outside the relation's range sunk,
    /// over relation ids with inverses (`r + R` asks for heads of `r`).
    fn rows(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let n = self.model.num_entities;
        let g = self.graph.num_nodes;
        let logits = self.logits(queries);
        let mut out = vec![super::range::OUTSIDE; queries.len() * n];
        for (i, q) in queries.iter().enumerate() {
            let row = &mut out[i * n..(i + 1) * n];
            let take = n.min(g);
            row[..take].copy_from_slice(&logits[i * g..i * g + take]);
            if (q.1 as usize) < 2 * self.num_relations as usize {
                self.ranges
                    .mask(q.1, &mut row[..take.min(self.ranges.num_entities())]);
            }
        }
        out
    }
}

impl LinkPredictor for GnnScorer<'_> {
    fn num_entities(&self) -> usize {
        self.model.num_entities
    }

    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        // One pass per distinct (head, relation).
        let mut queries: Vec<(u32, u32)> = triples.iter().map(|t| (t.head, t.relation)).collect();
        queries.sort_unstable();
        queries.dedup();
        let n = self.model.num_entities;
        let rows = self.rows(&queries);
        triples
            .iter()
            .map(|t| {
                let i = queries
                    .binary_search(&(t.head, t.relation))
                    .unwrap_or_default();
                rows.get(i * n + t.tail as usize)
                    .copied()
                    .unwrap_or(super::range::OUTSIDE)
            })
            .collect()
    }

    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        self.rows(queries)
    }

    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let r = self.num_relations;
        let inverse: Vec<(u32, u32)> = queries.iter().map(|&(rel, t)| (t, rel + r)).collect();
        self.rows(&inverse)
    }
}

/// The weights as a burn module, the unit burn records (one flat vector).
#[derive(Module, Debug)]
pub struct GnnWeights {
    pub flat: Param<Tensor<1>>,
}

const WEIGHTS: &str = "weights.bpk";
const META: &str = "gnn.json";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    shape: Shape,
    num_entities: usize,
    num_relations: usize,
}

pub fn save(model: &GnnModel, dir: &Path) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let device = Device::flex();
    let n = model.params.data.len();
    let weights = GnnWeights {
        flat: Param::from_data(TensorData::new(model.params.data.clone(), [n]), &device),
    };
    let path = dir.join(WEIGHTS);
    weights
        .save_file(&path)
        .map_err(|e| corrupt(&path, format!("writing weights: {e:?}")))?;
    let meta = Meta {
        shape: model.params.shape,
        num_entities: model.num_entities,
        num_relations: model.num_relations,
    };
    let meta_path = dir.join(META);
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| corrupt(&meta_path, e))?;
    std::fs::write(&meta_path, text).map_err(io(&meta_path))
}

pub fn load(
    dir: &Path,
    config: TrainConfig,
    num_entities: usize,
    num_relations: usize,
) -> Result<GnnModel, CheckpointError> {
    let meta_path = dir.join(META);
    let meta: Meta = serde_json::from_slice(&std::fs::read(&meta_path).map_err(io(&meta_path))?)
        .map_err(|e| corrupt(&meta_path, e))?;
    if (meta.num_entities, meta.num_relations) != (num_entities, num_relations) {
        return Err(corrupt(
            &meta_path,
            format!(
                "a model of {} entities and {} relations, the vocabulary has {num_entities} and {num_relations}",
                meta.num_entities, meta.num_relations
            ),
        ));
    }
    let len = params::Layout::new(meta.shape).len;
    let device = Device::flex();
    let empty = GnnWeights {
        flat: Param::from_data(TensorData::new(vec![0f32; len], [len]), &device),
    };
    let path = dir.join(WEIGHTS);
    let weights = empty
        .try_load_file(&path)
        .map_err(|e| corrupt(&path, format!("{e:?}")))?;
    let data = weights
        .flat
        .val()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| corrupt(&path, format!("{e:?}")))?;
    if data.len() != len {
        return Err(corrupt(
            &path,
            format!("{} weights, the shape needs {len}", data.len()),
        ));
    }
    Ok(GnnModel {
        config,
        num_entities,
        num_relations,
        params: Params {
            shape: meta.shape,
            data,
        },
    })
}

/// Whether a kind is this module's.
pub fn is_gnn(kind: ModelKind) -> bool {
    matches!(kind, ModelKind::Ultra | ModelKind::Gnn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::context::Categories;
    use std::collections::HashMap;

    /// The toy graph of `tests/fixtures/ultra/` as a context, with its name -> id maps.
    pub(crate) fn toy() -> (Context, HashMap<String, u32>, HashMap<String, u32>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ultra");
        let text = std::fs::read_to_string(dir.join("graph.tsv")).expect("fixture");
        let (mut ents, mut rels) = (HashMap::new(), HashMap::new());
        let mut triples = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let id = |m: &mut HashMap<String, u32>, k: &str| {
                let n = m.len() as u32;
                *m.entry(k.to_owned()).or_insert(n)
            };
            let (h, r, t) = (
                id(&mut ents, f[0]),
                id(&mut rels, f[1]),
                id(&mut ents, f[2]),
            );
            triples.push(Triple::new(h, r, t));
        }
        let n = ents.len();
        let context = Context::new(n, rels.len(), &triples, Categories::none(n));
        (context, ents, rels)
    }

    /// Same checkpoint, same graph, same queries: the reference PyTorch implementation's
    /// logits (benches/ultra_reference.py, stored as a fixture) to 1e-4 relative.
    #[test]
    fn matches_the_reference_implementation() {
        let (context, ents, rels) = toy();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ultra");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference_4g.json")).expect("fixture"))
                .expect("json");
        let model = GnnModel {
            config: TrainConfig::new().with_model(ModelKind::Ultra),
            num_entities: ents.len(),
            num_relations: rels.len(),
            params: pretrained(None).expect("embedded checkpoint"),
        };
        let scorer = model.scorer(&crate::model::default_device(), &context);
        let r = rels.len() as u32;
        let queries: Vec<(u32, u32)> = reference
            .as_array()
            .expect("list")
            .iter()
            .map(|q| {
                let rel = q["relation"].as_str().expect("relation");
                let rid = match rel.strip_prefix("inv:") {
                    Some(name) => rels[name] + r,
                    None => rels[rel],
                };
                (ents[q["head"].as_str().expect("head")], rid)
            })
            .collect();
        let logits = scorer.logits(&queries);
        let n = ents.len();
        let mut worst = 0f64;
        for (i, q) in reference.as_array().expect("list").iter().enumerate() {
            for (name, want) in q["logits"].as_object().expect("logits") {
                let want = want.as_f64().expect("number");
                let got = f64::from(logits[i * n + ents[name] as usize]);
                let rel = (got - want).abs() / want.abs().max(1.0);
                worst = worst.max(rel);
            }
        }
        assert!(worst < 1e-4, "largest relative difference {worst}");
    }
}
