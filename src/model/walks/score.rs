//! Inference with a walk model: one sequence per distinct query, its context walks seeded by
//! the query alone, scored against every entity by one matrix product.

use super::WalkModel;
use super::net::{Batch, Layout, Row, WalkNet};
use super::sample::{Sampler, query_seed};
use crate::graph::Triple;
use crate::model::context::{Context, Step};
use crate::model::eval::LinkPredictor;
use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rustc_hash::FxHashMap;

/// Queries per forward pass.
const CHUNK: usize = 256;

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

    /// The context walks of a query: from `first` (claims) or the context.
    fn walks(&self, entity: u32, relation: u32, first: Option<&[Step]>) -> Vec<Vec<Step>> {
        let seed = query_seed(
            self.model.config.seed,
            entity,
            relation,
            self.model.num_relations as u32,
        );
        let mut rng = StdRng::seed_from_u64(seed);
        (0..self.layout.walks)
            .map(|_| {
                let mut w = Vec::new();
                self.sampler
                    .walk(entity, first, self.layout.walk_len, &[], &mut rng, &mut w);
                w
            })
            .collect()
    }

    /// `rows x n` scores for sequences given as (query token, relation, walks); `feature`
    /// (the model's group and a vector) is added to every row's query slot.
    fn run(
        &self,
        rows: &[(i64, u32, Vec<Vec<Step>>)],
        feature: Option<(usize, &[f32])>,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * self.num_entities());
        let token = |e: u32| self.entity_token(e);
        for chunk in rows.chunks(CHUNK) {
            let mut batch = Batch::new(&self.layout);
            for (query, relation, walks) in chunk {
                let row = Row {
                    query: *query,
                    relation: *relation,
                    walks,
                };
                batch.push(&self.layout, row, &token, None);
            }
            add_feature(&mut batch, feature);
            let hidden = self.net.encode(&batch, &self.device);
            let slots: Vec<usize> = (0..chunk.len()).map(|i| batch.query_slot(i)).collect();
            let q = self.net.project(&hidden, &slots, &self.device);
            out.extend(super::to_vec(self.net.entity_logits(q)));
        }
        out
    }

    fn query_rows(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let rows: Vec<(i64, u32, Vec<Vec<Step>>)> = queries
            .iter()
            .map(|&(e, r)| (self.entity_token(e), r, self.walks(e, r, None)))
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

    /// Scores of every trained entity as the answer to `(new, r, ?)` for each `r` of
    /// `relations` (inverse ids ask for heads), about an entity the model never saw: shown as
    /// its category's token, its `claims` (edges to known entities, as read from it) the start
    /// of its context walks, `features` (kind, vector) projected into its input when the
    /// model reads features of that kind for the category. `relations.len() x n`.
    pub fn new_entity_tails(
        &self,
        category: &str,
        features: Option<(&str, &[f32])>,
        claims: &[Step],
        relations: &[u32],
    ) -> Vec<f32> {
        let query = self.new_entity_token(category);
        let mut claims = claims.to_vec();
        claims.sort_unstable();
        claims.dedup();
        // An id past every entity the context has: its walks start from the claims.
        let new_id = u32::MAX;
        let rows: Vec<(i64, u32, Vec<Vec<Step>>)> = relations
            .iter()
            .map(|&r| (query, r, self.walks(new_id, r, Some(&claims))))
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

    /// A new entity's output row (the entity-table space), read from its encoded query slot:
    /// the model was trained to name an id-dropped entity there, so the expectation of the
    /// entity rows under that prediction stands for the new entity; and its bias, the same
    /// expectation. Lets a new entity be ranked among trained ones as an answer.
    pub fn new_entity_row(
        &self,
        category: &str,
        features: Option<(&str, &[f32])>,
        claims: &[Step],
    ) -> (Vec<f32>, f32) {
        let query = self.new_entity_token(category);
        let mut claims = claims.to_vec();
        claims.sort_unstable();
        claims.dedup();
        let walks = self.walks(u32::MAX, u32::MAX, Some(&claims));
        let mut batch = Batch::new(&self.layout);
        let token = |e: u32| self.entity_token(e);
        // Any relation fills slot 1; slot 0 is what is read.
        batch.push(
            &self.layout,
            Row {
                query,
                relation: claims.first().map_or(0, |s| s.relation),
                walks: &walks,
            },
            &token,
            None,
        );
        add_feature(&mut batch, self.feature(category, features));
        let hidden = self.net.encode(&batch, &self.device);
        let q = self.net.project(&hidden, &[0], &self.device);
        let p = softmax(self.net.entity_logits(q), 1); // [1, n]
        let row = p.clone().matmul(self.net.entities.val()); // [1, d]
        let n = self.num_entities();
        let bias = p
            .matmul(self.net.entity_bias.val().reshape([n, 1]))
            .into_scalar::<f32>();
        (super::to_vec(row), bias)
    }

    /// Scores of every entity as the tail of `(entity, relation)` and the score of one extra
    /// candidate given by its output row and bias (appended last): `n + 1` values.
    pub fn tails_with(&self, entity: u32, relation: u32, extra: &(Vec<f32>, f32)) -> Vec<f32> {
        let walks = self.walks(entity, relation, None);
        self.scores_with(self.entity_token(entity), relation, &walks, None, extra)
    }
}

impl WalkScorer<'_> {
    /// Like [`WalkScorer::new_entity_tails`] for one relation, with one extra candidate given
    /// by its output row and bias (another new entity, from [`WalkScorer::new_entity_row`])
    /// appended last: `n + 1` values.
    pub fn new_entity_tails_with(
        &self,
        category: &str,
        features: Option<(&str, &[f32])>,
        claims: &[Step],
        relation: u32,
        extra: &(Vec<f32>, f32),
    ) -> Vec<f32> {
        let mut claims = claims.to_vec();
        claims.sort_unstable();
        claims.dedup();
        let walks = self.walks(u32::MAX, relation, Some(&claims));
        let query = self.new_entity_token(category);
        self.scores_with(
            query,
            relation,
            &walks,
            self.feature(category, features),
            extra,
        )
    }

    /// One sequence's scores of every entity plus one extra candidate (an output row and
    /// bias) appended last: `n + 1` values.
    fn scores_with(
        &self,
        query: i64,
        relation: u32,
        walks: &[Vec<Step>],
        feature: Option<(usize, &[f32])>,
        extra: &(Vec<f32>, f32),
    ) -> Vec<f32> {
        let mut batch = Batch::new(&self.layout);
        let token = |e: u32| self.entity_token(e);
        batch.push(
            &self.layout,
            Row {
                query,
                relation,
                walks,
            },
            &token,
            None,
        );
        add_feature(&mut batch, feature);
        let hidden = self.net.encode(&batch, &self.device);
        let q = self
            .net
            .project(&hidden, &[batch.query_slot(0)], &self.device);
        let mut out = super::to_vec(self.net.entity_logits(q.clone()));
        let qv = super::to_vec(q);
        out.push(qv.iter().zip(&extra.0).map(|(a, b)| a * b).sum::<f32>() + extra.1);
        out
    }
}

/// Adds a feature vector to the query slot of every row of a batch.
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
