//! Inference with a walk model: one sequence per distinct query, its context walks seeded by
//! the query alone, scored against every entity by one matrix product.

use super::WalkModel;
use super::net::{Batch, Layout, Row, WalkNet};
use super::sample::{Sampler, query_seed};
use crate::graph::Triple;
use crate::model::context::{Context, Step};
use crate::model::eval::LinkPredictor;
use crate::model::range::Ranges;
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rustc_hash::FxHashMap;

/// Sequences per forward pass.
const CHUNK: usize = 256;

/// Most context walks a new entity's sequence gets (one per claim).
const MAX_WALKS: usize = 16;

/// The id a new entity's walks start from: past every entity a context has.
const NEW: u32 = u32::MAX;

/// A query as the net reads it: (query token, relation, context samples, each a set of walks).
type Query = (i64, u32, Vec<Vec<Vec<Step>>>);

impl WalkModel {
    /// A scorer reading `context` (the graph at scoring time) on `device`.
    pub fn scorer<'a>(&'a self, device: &Device, context: &'a Context) -> WalkScorer<'a> {
        let wc = self.config.walk_config();
        WalkScorer {
            model: self,
            net: self.net().clone().fork(device),
            device: device.clone(),
            sampler: Sampler::new(context, wc.rarity_alpha),
            layout: Layout::new(&wc, self.net().sizes()),
            category: self.category_map(context.categories()),
            samples: wc.samples(),
            ranges: wc.sampled_negatives.map(|_| Ranges::new(context)),
        }
    }
}

pub struct WalkScorer<'a> {
    model: &'a WalkModel,
    net: WalkNet,
    device: Device,
    sampler: Sampler<'a>,
    layout: Layout,
    /// The context's category ids mapped into the model's vocabulary.
    category: Vec<u32>,
    /// Context samples averaged per query.
    samples: usize,
    /// A model trained on sampled negatives never saw an entity outside a relation's range
    /// as a candidate: its score there is sunk.
    ranges: Option<Ranges>,
}

impl WalkScorer<'_> {
    pub fn num_entities(&self) -> usize {
        self.model.num_entities
    }

    /// Relations the model knows (forward ones; `r + num_relations` is `r`'s inverse).
    pub fn num_relations(&self) -> usize {
        self.model.num_relations
    }

    /// An entity's token: its id, or its category's for an entity the model never saw.
    fn entity_token(&self, e: u32) -> i64 {
        if (e as usize) < self.model.num_entities {
            self.layout.entity(e)
        } else {
            let c = self.sampler.context().categories().get(e);
            self.layout
                .category(self.category.get(c as usize).copied().unwrap_or(0))
        }
    }

    /// The context samples of a query (`samples` of them, each a set of walks), seeded by
    /// the query alone (sample 0 by the model's seed itself). From the context, or for a new
    /// entity from its `claims`: then walk i starts with claim i (mod k), so every claim is
    /// read, and there are as many walks as claims (at least `context_walks`, at most
    /// [`MAX_WALKS`]).
    fn contexts(&self, entity: u32, relation: u32, claims: Option<&[Step]>) -> Vec<Vec<Vec<Step>>> {
        let walks = match claims {
            Some(c) => c
                .len()
                .clamp(self.layout.walks, MAX_WALKS.max(self.layout.walks)),
            None => self.layout.walks,
        };
        (0..self.samples)
            .map(|s| {
                let seed = self.model.config.seed ^ (s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let seed = query_seed(seed, entity, relation, self.model.num_relations as u32);
                let mut rng = StdRng::seed_from_u64(seed);
                (0..walks)
                    .map(|i| {
                        let first = claims.map(|c| {
                            if c.is_empty() {
                                c
                            } else {
                                &c[i % c.len()..=i % c.len()]
                            }
                        });
                        let mut w = Vec::new();
                        self.sampler.walk(
                            entity,
                            first,
                            self.layout.walk_len,
                            &[],
                            &mut rng,
                            &mut w,
                        );
                        w
                    })
                    .collect()
            })
            .collect()
    }

    /// The projected query states `[rows, d]` of queries given as (query token, relation,
    /// context samples), averaged over each query's samples (the logits are linear in them:
    /// averaging states averages logits). `feature` (the model's group and a vector) is added
    /// to every sequence's query slot.
    fn states(&self, rows: &[Query], feature: Option<(usize, &[f32])>) -> Tensor<2> {
        let s = self.samples.max(1);
        let per = (CHUNK / s).max(1);
        let token = |e: u32| self.entity_token(e);
        let mut parts = Vec::new();
        for chunk in rows.chunks(per) {
            let mut layout = self.layout;
            layout.walks = chunk
                .iter()
                .flat_map(|q| q.2.iter().map(Vec::len))
                .max()
                .unwrap_or(0)
                .max(layout.walks);
            let mut batch = Batch::new(&layout);
            for (query, relation, samples) in chunk {
                for walks in samples {
                    let row = Row {
                        query: *query,
                        relation: *relation,
                        walks,
                    };
                    batch.push(&layout, row, &token, None);
                }
            }
            add_feature(&mut batch, feature);
            let hidden = self.net.encode(&batch, &self.device);
            let slots: Vec<(usize, u32)> = chunk
                .iter()
                .flat_map(|(_, relation, samples)| std::iter::repeat_n(*relation, samples.len()))
                .enumerate()
                .map(|(i, r)| (batch.query_slot(i), r))
                .collect();
            let q = self.net.query(&hidden, &slots, &self.device);
            let d = q.dims()[1];
            parts.push(
                q.reshape([chunk.len(), s, d])
                    .mean_dim(1)
                    .reshape([chunk.len(), d]),
            );
        }
        Tensor::cat(parts, 0)
    }

    /// `rows x n` scores.
    fn run(&self, rows: &[Query], feature: Option<(usize, &[f32])>) -> Vec<f32> {
        if rows.is_empty() {
            return Vec::new();
        }
        let n = self.num_entities();
        let mut out = Vec::with_capacity(rows.len() * n);
        for chunk in rows.chunks(CHUNK) {
            out.extend(super::to_vec(
                self.net.entity_logits(self.states(chunk, feature)),
            ));
        }
        for (row, q) in out.chunks_exact_mut(n).zip(rows) {
            self.mask(q.1, row);
        }
        out
    }

    /// Sinks the scores of entities outside `relation`'s range (a sampled-softmax model).
    fn mask(&self, relation: u32, scores: &mut [f32]) {
        if let Some(r) = &self.ranges {
            r.mask(relation, scores);
        }
    }

    fn query_rows(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let rows: Vec<Query> = queries
            .iter()
            .map(|&(e, r)| (self.entity_token(e), r, self.contexts(e, r, None)))
            .collect();
        self.run(&rows, None)
    }

    /// Scores of every entity as the tail of each `(head, relation)`: `queries.len() x n`.
    pub fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        self.query_rows(queries)
    }

    /// Scores of every entity as the head of each `(relation, tail)`: asked as the tail of
    /// `(tail, relation^-1)`.
    pub fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let m = self.model.num_relations as u32;
        let q: Vec<(u32, u32)> = queries.iter().map(|&(r, t)| (t, r + m)).collect();
        self.query_rows(&q)
    }

    /// The score of each triple: one sequence per distinct `(head, relation)`.
    pub fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        let mut index: FxHashMap<(u32, u32), usize> = FxHashMap::default();
        let mut queries = Vec::new();
        for t in triples {
            index.entry((t.head, t.relation)).or_insert_with(|| {
                queries.push((t.head, t.relation));
                queries.len() - 1
            });
        }
        let n = self.num_entities();
        let scores = self.query_rows(&queries);
        triples
            .iter()
            .map(|t| {
                let q = index[&(t.head, t.relation)];
                scores
                    .get(q * n + t.tail as usize)
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY)
            })
            .collect()
    }

    /// A new entity's claims, sorted and deduplicated (the order walks start from them).
    fn sorted(claims: &[Step]) -> Vec<Step> {
        let mut claims = claims.to_vec();
        claims.sort_unstable();
        claims.dedup();
        claims
    }

    /// Scores of every trained entity as the answer to `(new, r, ?)` for each `r` of
    /// `relations` (inverse ids ask for heads), about an entity the model never saw: shown as
    /// its category's token, its `claims` (edges to known entities, as read from it) the start
    /// of its context walks, `features` (kind, vector) projected into its input when the
    /// model reads that kind for the category. `relations.len() x n`.
    pub fn new_entity_tails(
        &self,
        category: &str,
        features: Option<(&str, &[f32])>,
        claims: &[Step],
        relations: &[u32],
    ) -> Vec<f32> {
        let query = self.new_entity_token(category);
        let claims = Self::sorted(claims);
        // An id past every entity the context has: its walks start from the claims.
        let rows: Vec<Query> = relations
            .iter()
            .map(|&r| (query, r, self.contexts(NEW, r, Some(&claims))))
            .collect();
        self.run(&rows, self.feature(category, features))
    }

    /// Whether the model reads a category's features of `kind` with vectors of `width`.
    pub fn reads_feature(&self, category: &str, kind: &str, width: usize) -> bool {
        self.model
            .feature_group(category, kind)
            .is_some_and(|g| self.model.feature_groups[g].width == width)
    }

    /// A new entity's features as the model's group and vector, if the model reads them.
    fn feature<'f>(
        &self,
        category: &str,
        features: Option<(&str, &'f [f32])>,
    ) -> Option<(usize, &'f [f32])> {
        let (kind, x) = features?;
        let g = self.model.feature_group(category, kind)?;
        (self.model.feature_groups[g].width == x.len()).then_some((g, x))
    }

    fn new_entity_token(&self, category: &str) -> i64 {
        let c = self
            .model
            .categories
            .iter()
            .position(|c| c == category)
            .unwrap_or(0);
        self.layout.category(c as u32)
    }

    /// A new entity as a candidate answer, read from its encoded query slot: the model was
    /// trained to name an id-dropped entity there, so that prediction (averaged over the
    /// context samples) says which trained entities it resembles.
    pub fn new_entity_answer(
        &self,
        category: &str,
        features: Option<(&str, &[f32])>,
        claims: &[Step],
    ) -> NewAnswer {
        let query = self.new_entity_token(category);
        let claims = Self::sorted(claims);
        let samples = self.contexts(NEW, u32::MAX, Some(&claims));
        let mut layout = self.layout;
        layout.walks = samples
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .max(layout.walks);
        let mut batch = Batch::new(&layout);
        let token = |e: u32| self.entity_token(e);
        for walks in &samples {
            // Any relation fills slot 1; slot 0 is what is read.
            batch.push(
                &layout,
                Row {
                    query,
                    relation: claims.first().map_or(0, |s| s.relation),
                    walks,
                },
                &token,
                None,
            );
        }
        add_feature(&mut batch, self.feature(category, features));
        let hidden = self.net.encode(&batch, &self.device);
        let slots: Vec<usize> = (0..batch.rows).map(|i| i * batch.len).collect();
        let q = self.net.project(&hidden, &slots, &self.device);
        // The samples' predictions averaged: [1, n].
        let p = softmax(self.net.entity_logits(q), 1).mean_dim(0);
        let row = p.clone().matmul(self.net.entities.val()); // [1, d]
        NewAnswer {
            row: super::to_vec(row),
            guess: super::to_vec(p),
        }
    }

    /// Scores of `rows`' single query against every entity plus one new entity (last).
    fn with_extra(
        &self,
        row: Query,
        feature: Option<(usize, &[f32])>,
        extra: &NewAnswer,
    ) -> Vec<f32> {
        let relation = row.1;
        let q = self.states(&[row], feature);
        let mut out = super::to_vec(self.net.entity_logits(q));
        self.mask(relation, &mut out);
        out.push(extra.score(&out));
        out
    }

    /// Scores of every entity as the tail of `(entity, relation)` and the score of one new
    /// entity (appended last): `n + 1` values.
    pub fn tails_with(&self, entity: u32, relation: u32, extra: &NewAnswer) -> Vec<f32> {
        let row = (
            self.entity_token(entity),
            relation,
            self.contexts(entity, relation, None),
        );
        self.with_extra(row, None, extra)
    }

    /// Like [`WalkScorer::new_entity_tails`] for one relation, with another new entity (from
    /// [`WalkScorer::new_entity_answer`]) appended last: `n + 1` values.
    pub fn new_entity_tails_with(
        &self,
        category: &str,
        features: Option<(&str, &[f32])>,
        claims: &[Step],
        relation: u32,
        extra: &NewAnswer,
    ) -> Vec<f32> {
        let query = self.new_entity_token(category);
        let claims = Self::sorted(claims);
        let row = (query, relation, self.contexts(NEW, relation, Some(&claims)));
        self.with_extra(row, self.feature(category, features), extra)
    }
}

/// A new entity as an answer: which trained entities it resembles, by the model's guess.
#[derive(Debug, Clone)]
pub struct NewAnswer {
    /// The expected entity row under the guess (the entity-table space, for similarity).
    pub row: Vec<f32>,
    /// The guess: a probability per trained entity.
    guess: Vec<f32>,
}

impl NewAnswer {
    /// The new entity's score under one query, given that query's scores of every trained
    /// entity: `ln sum_t p_t exp(s_t)`, the query's (unnormalised) probability of the answer
    /// marginalised over what the new entity is. It is on the scale of the trained entities'
    /// scores of the same query, so ranks among them are fair. (The expected row's score,
    /// `sum_t p_t s_t`, is its lower bound by Jensen and ranked new entities as answers
    /// 0.867 vs 0.940 at k = 3: a mixed row scores like no entity.)
    pub fn score(&self, scores: &[f32]) -> f32 {
        let top = scores
            .iter()
            .zip(&self.guess)
            .filter(|(_, p)| **p > 0.0)
            .map(|(s, _)| *s)
            .fold(f32::NEG_INFINITY, f32::max);
        if !top.is_finite() {
            return f32::NEG_INFINITY;
        }
        let sum: f64 = scores
            .iter()
            .zip(&self.guess)
            .map(|(s, p)| f64::from(*p) * f64::from(s - top).exp())
            .sum();
        top + sum.ln() as f32
    }
}

/// Adds a feature vector to the query slot of every sequence of a batch.
fn add_feature(batch: &mut Batch, feature: Option<(usize, &[f32])>) {
    if let Some((g, x)) = feature {
        for row in 0..batch.rows {
            batch.features.push((row * batch.len, g, x.to_vec()));
        }
    }
}

impl WalkModel {
    /// The entity output rows (`num_entities x d_model`, row-major): the space
    /// [`WalkScorer::new_entity_row`] places a new entity in.
    pub fn entity_table(&self) -> Vec<f32> {
        super::to_vec(self.net().entities.val())
    }

    /// Width of an entity row.
    pub fn row_width(&self) -> usize {
        self.config.walk_config().d_model
    }
}

impl LinkPredictor for WalkScorer<'_> {
    fn num_entities(&self) -> usize {
        WalkScorer::num_entities(self)
    }
    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        WalkScorer::triples(self, triples)
    }
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        WalkScorer::tails(self, queries)
    }
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        WalkScorer::heads(self, queries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{ModelKind, TrainConfig, WalkConfig};
    use crate::model::context::Categories;

    #[test]
    fn every_claim_starts_a_walk_and_samples_are_stable() {
        // A ring of 10 entities under relation 0.
        let t: Vec<Triple> = (0..10).map(|i| Triple::new(i, 0, (i + 1) % 10)).collect();
        let context = Context::new(10, 1, &t, Categories::none(10));
        let config = TrainConfig::new()
            .with_model(ModelKind::Walks)
            .with_walks(Some(
                WalkConfig::new()
                    .with_d_model(8)
                    .with_heads(2)
                    .with_d_ff(8)
                    .with_context_walks(2)
                    .with_samples(Some(3)),
            ));
        let mut rng = StdRng::seed_from_u64(1);
        let model = WalkModel::init(&config, 10, 1, &[], &mut rng);
        let scorer = model.scorer(&Device::flex(), &context);
        let claims: Vec<Step> = (0..5)
            .map(|e| Step {
                relation: 0,
                entity: e,
            })
            .collect();
        let samples = scorer.contexts(NEW, 0, Some(&claims));
        assert_eq!(samples.len(), 3);
        for walks in &samples {
            // One walk per claim (more than context_walks), each from its claim.
            assert_eq!(walks.len(), 5);
            for (w, c) in walks.iter().zip(&claims) {
                assert_eq!(w[0], *c);
            }
        }
        // Fewer claims than walks: still every claim, then round again.
        let two = scorer.contexts(NEW, 0, Some(&claims[..1]));
        assert!(
            two.iter()
                .all(|ws| ws.len() == 2 && ws.iter().all(|w| w[0] == claims[0]))
        );
        // A known entity's samples are drawn apart, and the same on every call.
        let known = scorer.contexts(3, 0, None);
        assert_eq!(known, scorer.contexts(3, 0, None));
        assert_eq!(known[0].len(), 2);
        let s = scorer.tails(&[(3, 0), (4, 0)]);
        assert_eq!(&s[..10], &scorer.tails(&[(3, 0)])[..]);
    }
}
