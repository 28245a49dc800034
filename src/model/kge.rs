//! A knowledge-graph embedding model: its config, its entity and relation tables, and the
//! scorer that runs the burn scoring programs on them for inference.

use super::config::{ModelKind, Regime, TrainConfig};
use super::score::{Ent, Rel, Side, query};
use super::tables::Table;
use crate::graph::Triple;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;

/// The model: hyperparameters plus embedding tables. Entity rows hold `[re | im]` for complex
/// models; relation rows hold `[re | im]` (ComplEx), `re` (DistMult) or phases (RotatE).
/// With reciprocal relations (one-vs-all), relation `r + num_relations` is `r`'s inverse.
#[derive(Debug, Clone, PartialEq)]
pub struct KgeModel {
    pub config: TrainConfig,
    pub num_entities: usize,
    pub num_relations: usize,
    pub entities: Table,
    pub relations: Table,
}

impl KgeModel {
    /// A freshly initialised model.
    pub fn init(
        config: &TrainConfig,
        num_entities: usize,
        num_relations: usize,
        rng: &mut impl Rng,
    ) -> Self {
        let (ew, rw) = widths(config);
        let scale = config.init_scale as f32;
        let rel_rows = relation_rows(config, num_relations);
        let relations = match config.model {
            ModelKind::Rotate => Table::uniform(
                rel_rows,
                rw,
                -std::f32::consts::PI,
                std::f32::consts::PI,
                rng,
            ),
            _ => Table::normal(rel_rows, rw, scale, rng),
        };
        Self {
            config: config.clone(),
            num_entities,
            num_relations,
            entities: Table::normal(num_entities, ew, scale, rng),
            relations,
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.config.model
    }

    pub fn reciprocal(&self) -> bool {
        self.config.regime == Regime::OneVsAll
    }

    pub fn is_complex(&self) -> bool {
        self.config.model != ModelKind::Distmult
    }

    /// Entity rows as tensors (`None`: every entity).
    pub(crate) fn ent(&self, ids: Option<&[u32]>, device: &Device, grad: bool) -> Ent {
        let k = self.config.dim;
        let all: Vec<u32>;
        let ids = match ids {
            Some(ids) => ids,
            None => {
                all = (0..self.num_entities as u32).collect();
                &all
            }
        };
        let make = |cols: std::ops::Range<usize>| {
            let t: Tensor<2> = Tensor::from_data(
                TensorData::new(self.entities.gather(ids, cols), [ids.len(), k]),
                device,
            );
            if grad { t.require_grad() } else { t }
        };
        Ent {
            re: make(0..k),
            im: self.is_complex().then(|| make(k..2 * k)),
        }
    }

    /// Relation rows as tensors.
    pub(crate) fn rel(&self, ids: &[u32], device: &Device, grad: bool) -> Rel {
        let k = self.config.dim;
        let make = |cols: std::ops::Range<usize>| {
            let t: Tensor<2> = Tensor::from_data(
                TensorData::new(self.relations.gather(ids, cols), [ids.len(), k]),
                device,
            );
            if grad { t.require_grad() } else { t }
        };
        Rel {
            re: make(0..k),
            im: (self.kind() == ModelKind::Complex).then(|| make(k..2 * k)),
        }
    }

    /// Extends the tables to a larger graph, keeping every trained row (warm start). New
    /// entities and relations get fresh random rows.
    pub fn grow(&mut self, num_entities: usize, num_relations: usize, rng: &mut impl Rng) {
        let scale = self.config.init_scale as f32;
        self.entities
            .grow(num_entities, || scale * super::tables::gaussian(rng));
        self.num_entities = self.num_entities.max(num_entities);
        if num_relations > self.num_relations {
            let old = self.num_relations;
            let rotate = self.kind() == ModelKind::Rotate;
            let mut fresh = || {
                if rotate {
                    (rng.random::<f32>() * 2.0 - 1.0) * std::f32::consts::PI
                } else {
                    scale * super::tables::gaussian(rng)
                }
            };
            let w = self.relations.width;
            let mut rows: Vec<f32> = Vec::new();
            // Reciprocal layout: [forward rows | inverse rows]; grow both halves.
            let halves = if self.reciprocal() { 2 } else { 1 };
            for half in 0..halves {
                let start = half * old * w;
                rows.extend_from_slice(&self.relations.data[start..start + old * w]);
                rows.extend((0..(num_relations - old) * w).map(|_| fresh()));
            }
            // The rows moved, so the relations' optimizer state starts over (a few rows).
            self.relations = Table::from_data(num_relations * halves, w, rows);
            self.num_relations = num_relations;
        }
    }

    /// The relation row for predicting heads of `r` with reciprocal relations.
    pub(crate) fn inverse(&self, r: u32) -> u32 {
        r + self.num_relations as u32
    }

    /// A scorer with the entity table resident on `device`.
    pub fn scorer(&self, device: &Device) -> Scorer<'_> {
        Scorer {
            model: self,
            all: self.ent(None, device, false),
            device: device.clone(),
        }
    }
}

/// Table widths (entity, relation) for a config.
pub(crate) fn widths(config: &TrainConfig) -> (usize, usize) {
    let k = config.dim;
    match config.model {
        ModelKind::Complex => (2 * k, 2 * k),
        ModelKind::Distmult => (k, k),
        ModelKind::Rotate => (2 * k, k),
        // The walk model has no KGE tables (`model::walks`); `model::train` refuses it, so
        // these widths only size an empty shell.
        ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn => (k, k),
    }
}

pub(crate) fn relation_rows(config: &TrainConfig, num_relations: usize) -> usize {
    if config.regime == Regime::OneVsAll {
        2 * num_relations
    } else {
        num_relations
    }
}

/// Inference over a model: all-entity scoring and triple scoring.
pub struct Scorer<'a> {
    model: &'a KgeModel,
    all: Ent,
    device: Device,
}

impl Scorer<'_> {
    pub fn num_entities(&self) -> usize {
        self.model.num_entities
    }

    /// Scores of every entity as the tail of each `(head, relation)`: `queries.len() x n`.
    pub fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let heads: Vec<u32> = queries.iter().map(|q| q.0).collect();
        let rels: Vec<u32> = queries.iter().map(|q| q.1).collect();
        self.side(Side::Tail, &heads, &rels)
    }

    /// Scores of every entity as the head of each `(relation, tail)`: `queries.len() x n`.
    pub fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let tails: Vec<u32> = queries.iter().map(|q| q.1).collect();
        if self.model.reciprocal() {
            let rels: Vec<u32> = queries.iter().map(|q| self.model.inverse(q.0)).collect();
            return self.side(Side::Tail, &tails, &rels);
        }
        let rels: Vec<u32> = queries.iter().map(|q| q.0).collect();
        self.side(Side::Head, &tails, &rels)
    }

    fn side(&self, side: Side, ents: &[u32], rels: &[u32]) -> Vec<f32> {
        if ents.is_empty() {
            return Vec::new();
        }
        let idx = index(ents, &self.device);
        let e = self.all.select(&idx);
        let r = self.model.rel(rels, &self.device, false);
        let scores = query(self.model.kind(), side, &e, &r).against(&self.all);
        to_vec(scores)
    }

    /// The score of each triple (tail direction).
    pub fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        if triples.is_empty() {
            return Vec::new();
        }
        let h = self.all.select(&index(
            &triples.iter().map(|t| t.head).collect::<Vec<_>>(),
            &self.device,
        ));
        let t = self.all.select(&index(
            &triples.iter().map(|t| t.tail).collect::<Vec<_>>(),
            &self.device,
        ));
        let rels: Vec<u32> = triples.iter().map(|t| t.relation).collect();
        let r = self.model.rel(&rels, &self.device, false);
        to_vec(query(self.model.kind(), Side::Tail, &h, &r).with(&t))
    }
}

impl Scorer<'_> {
    /// Scores of every entity against `b` queries given as host rows (see
    /// `model::foldin::query_into`): one matrix product for many questions about entities
    /// outside the table. `b x n`, row-major.
    pub fn against_query_rows(&self, rows: Vec<f32>, b: usize) -> Vec<f32> {
        if b == 0 {
            return Vec::new();
        }
        let q = super::score::query_from_rows(self.model.kind(), rows, b, &self.device);
        to_vec(q.against(&self.all))
    }
}

pub(crate) fn index(ids: &[u32], device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(v, [ids.len()]), device)
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float tensor data")
}
