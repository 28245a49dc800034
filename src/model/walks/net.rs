//! The walk transformer as a burn module, and the token sequences it reads.
//!
//! Vocabulary (one id space, three tables concatenated in this order): PAD, MASK, one
//! "unknown entity of category c" token per category, the relations (inverses included), the
//! entities. An entity's output score is its (tied) input row dotted with the transformed
//! hidden state, plus a bias; a link-prediction query adds a bilinear (ComplEx) term of the
//! query entity's state and its relation to that state (`WalkNet::query`).

use burn::module::{Module, Param};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::Rng;

use crate::model::config::WalkConfig;
use crate::model::context::Step;

pub const PAD: i64 = 0;
pub const MASK: i64 = 1;

/// Sizes of a net: what its tables hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub entities: usize,
    /// Forward relations (the table holds twice as many rows: inverses).
    pub relations: usize,
    /// Category tokens (the vocabulary's length, "" included).
    pub categories: usize,
}

#[derive(Module, Debug)]
pub struct WalkNet {
    /// PAD, MASK, then one token per category.
    pub special: Param<Tensor<2>>,
    pub relations: Param<Tensor<2>>,
    pub entities: Param<Tensor<2>>,
    pub positions: Param<Tensor<2>>,
    pub entity_bias: Param<Tensor<1>>,
    pub relation_bias: Param<Tensor<1>>,
    pub input_norm: LayerNorm,
    pub dropout: Dropout,
    pub encoder: TransformerEncoder,
    pub final_norm: LayerNorm,
    pub head: Linear,
    pub head_norm: LayerNorm,
    /// The bilinear (ComplEx) part of a link-prediction query: the query entity's state lifted
    /// back into the entity-table space, multiplied by its relation's decoder row as complex
    /// numbers (first half real, second imaginary). A factorised path the shallow models show
    /// works: without it the transformer must learn the (h, r) -> t product from scratch.
    pub lift: Linear,
    /// One complex row per relation id (inverses included), `[2R, d]`.
    pub decoder: Param<Tensor<2>>,
    /// One `[width, d_model]` map per feature group (`WalkModel::feature_groups`): an entity
    /// shown as its category's token also gets its features' projection added.
    pub features: Vec<Param<Tensor<2>>>,
}

/// A `[rows, width]` table of N(0, std) values.
pub fn normal_table(rows: usize, width: usize, std: f32, rng: &mut impl Rng) -> Vec<f32> {
    (0..rows * width)
        .map(|_| std * crate::model::tables::gaussian(rng))
        .collect()
}

pub fn param2(data: Vec<f32>, rows: usize, width: usize, device: &Device) -> Param<Tensor<2>> {
    Param::from_data(TensorData::new(data, [rows, width]), device)
}

pub fn param1(data: Vec<f32>, device: &Device) -> Param<Tensor<1>> {
    let n = data.len();
    Param::from_data(TensorData::new(data, [n]), device)
}

/// The init scale of embedding rows: dot products of unit-variance hidden states with them
/// start near 1.
pub fn init_std(c: &WalkConfig) -> f32 {
    1.0 / (c.d_model as f32).sqrt()
}

impl WalkNet {
    pub fn init(c: &WalkConfig, sizes: Sizes, device: &Device, rng: &mut impl Rng) -> Self {
        let d = c.d_model;
        let std = init_std(c);
        let layout = Layout::new(c, sizes);
        Self {
            special: param2(
                normal_table(2 + sizes.categories, d, std, rng),
                2 + sizes.categories,
                d,
                device,
            ),
            relations: param2(
                normal_table(2 * sizes.relations, d, std, rng),
                2 * sizes.relations,
                d,
                device,
            ),
            entities: param2(
                normal_table(sizes.entities, d, std, rng),
                sizes.entities,
                d,
                device,
            ),
            positions: param2(
                normal_table(layout.positions, d, std, rng),
                layout.positions,
                d,
                device,
            ),
            entity_bias: param1(vec![0.0; sizes.entities], device),
            relation_bias: param1(vec![0.0; 2 * sizes.relations], device),
            input_norm: LayerNormConfig::new(d).init(device),
            dropout: DropoutConfig::new(c.dropout).init(),
            encoder: TransformerEncoderConfig::new(d, c.d_ff, c.heads, c.layers)
                .with_dropout(c.dropout)
                .with_norm_first(true)
                .init(device),
            final_norm: LayerNormConfig::new(d).init(device),
            head: LinearConfig::new(d, d).init(device),
            head_norm: LayerNormConfig::new(d).init(device),
            lift: LinearConfig::new(d, d).init(device),
            decoder: param2(
                decoder_rows(2 * sizes.relations, d, rng),
                2 * sizes.relations,
                d,
                device,
            ),
            features: Vec::new(),
        }
    }

    /// A feature map for vectors of `width`, scaled so a projected vector starts about as
    /// large as a token row.
    pub fn feature_map(
        c: &WalkConfig,
        width: usize,
        device: &Device,
        rng: &mut impl Rng,
    ) -> Param<Tensor<2>> {
        let std = init_std(c) / (width.max(1) as f32).sqrt();
        param2(
            normal_table(width, c.d_model, std, rng),
            width,
            c.d_model,
            device,
        )
    }

    /// `[rows * len, d]`: the feature projections of the batch's featured slots, zero
    /// elsewhere (one product per group, placed by a one-hot matrix).
    fn feature_input(&self, batch: &Batch, d: usize, device: &Device) -> Option<Tensor<2>> {
        if batch.features.is_empty() {
            return None;
        }
        let slots = batch.rows * batch.len;
        let mut out: Option<Tensor<2>> = None;
        for (g, map) in self.features.iter().enumerate() {
            let rows: Vec<&(usize, usize, Vec<f32>)> =
                batch.features.iter().filter(|f| f.1 == g).collect();
            let Some(width) = rows.first().map(|r| r.2.len()) else {
                continue;
            };
            if map.dims()[0] != width {
                continue;
            }
            let m = rows.len();
            let x: Vec<f32> = rows.iter().flat_map(|r| r.2.iter().copied()).collect();
            let x: Tensor<2> = Tensor::from_data(TensorData::new(x, [m, width]), device);
            let mut place = vec![0f32; slots * m];
            for (j, r) in rows.iter().enumerate() {
                place[r.0 * m + j] = 1.0;
            }
            let place: Tensor<2> = Tensor::from_data(TensorData::new(place, [slots, m]), device);
            let part = place.matmul(x.matmul(map.val()));
            out = Some(match out {
                Some(o) => o + part,
                None => part,
            });
        }
        debug_assert!(out.as_ref().is_none_or(|o| o.dims() == [slots, d]));
        out
    }

    pub fn sizes(&self) -> Sizes {
        let [special, _] = self.special.dims();
        let [relations, _] = self.relations.dims();
        let [entities, _] = self.entities.dims();
        Sizes {
            entities,
            relations: relations / 2,
            categories: special - 2,
        }
    }

    /// Hidden states `[rows * len, d]` of a batch of token sequences.
    pub fn encode(&self, batch: &Batch, device: &Device) -> Tensor<2> {
        self.encode_with(batch, self.entities.val(), device)
    }

    /// [`WalkNet::encode`] with `entities` standing for the entity table: a batch whose
    /// entity tokens index those rows (a sampled-softmax step's local rows, so only they get
    /// a gradient).
    pub fn encode_with(&self, batch: &Batch, entities: Tensor<2>, device: &Device) -> Tensor<2> {
        let (rows, len) = (batch.rows, batch.len);
        let d = self.entities.dims()[1];
        let vocab = Tensor::cat(vec![self.special.val(), self.relations.val(), entities], 0);
        let tokens: Tensor<1, Int> =
            Tensor::from_data(TensorData::new(batch.tokens.clone(), [rows * len]), device);
        let pos_ids: Tensor<1, Int> =
            Tensor::from_data(TensorData::new(batch.positions.clone(), [len]), device);
        let x = vocab.select(0, tokens);
        let x = match self.feature_input(batch, d, device) {
            Some(f) => x + f,
            None => x,
        }
        .reshape([rows, len, d]);
        let p = self.positions.val().select(0, pos_ids).reshape([1, len, d]);
        let x = self.dropout.forward(self.input_norm.forward(x + p));
        let pad: Tensor<2, Bool> = Tensor::<2, Int>::from_data(
            TensorData::new(
                batch.pad.iter().map(|&b| i64::from(b)).collect::<Vec<_>>(),
                [rows, len],
            ),
            device,
        )
        .equal_elem(1);
        let attn: Tensor<3, Bool> = Tensor::<2, Int>::from_data(
            TensorData::new(
                batch.attn.iter().map(|&b| i64::from(b)).collect::<Vec<_>>(),
                [len, len],
            ),
            device,
        )
        .equal_elem(1)
        .reshape([1, len, len])
        .expand([rows, len, len]);
        let h = self.encoder.forward(
            TransformerEncoderInput::new(x)
                .mask_pad(pad)
                .mask_attn(attn),
        );
        self.final_norm.forward(h).reshape([rows * len, d])
    }

    /// The output transform of hidden states picked at `positions` (flat indices).
    pub fn project(&self, hidden: &Tensor<2>, positions: &[usize], device: &Device) -> Tensor<2> {
        let idx: Tensor<1, Int> = Tensor::from_data(
            TensorData::new(
                positions.iter().map(|&p| p as i64).collect::<Vec<_>>(),
                [positions.len()],
            ),
            device,
        );
        let h = hidden.clone().select(0, idx);
        self.head_norm.forward(gelu(self.head.forward(h)))
    }

    /// Link-prediction query states: the projected MASK states of `rows` plus the bilinear
    /// product of each row's lifted query-entity state (slot 0) with its relation's decoder
    /// row. `rows`: (the row's MASK slot, relation id).
    pub fn query(&self, hidden: &Tensor<2>, rows: &[(usize, u32)], device: &Device) -> Tensor<2> {
        let masks: Vec<usize> = rows.iter().map(|r| r.0).collect();
        let q = self.project(hidden, &masks, device);
        let idx = |v: Vec<i64>| -> Tensor<1, Int> {
            let n = v.len();
            Tensor::from_data(TensorData::new(v, [n]), device)
        };
        let entity_slots = idx(rows.iter().map(|r| (r.0 - 2) as i64).collect());
        let relations = idx(rows.iter().map(|r| i64::from(r.1)).collect());
        let z = self.lift.forward(hidden.clone().select(0, entity_slots));
        let w = self.decoder.val().select(0, relations);
        q + complex_product(z, w)
    }

    /// Scores of every entity for projected states `q`: `[m, entities]`.
    pub fn entity_logits(&self, q: Tensor<2>) -> Tensor<2> {
        let n = self.entities.dims()[0];
        q.matmul(self.entities.val().transpose()) + self.entity_bias.val().reshape([1, n])
    }

    /// Scores of every relation id for projected states `q`: `[m, 2R]`.
    pub fn relation_logits(&self, q: Tensor<2>) -> Tensor<2> {
        let n = self.relations.dims()[0];
        q.matmul(self.relations.val().transpose()) + self.relation_bias.val().reshape([1, n])
    }
}

/// Rows of a fresh decoder table: the identity relation (real part 1, imaginary 0) plus
/// noise, so the bilinear path starts as "the entity itself" and learns each relation's turn.
pub fn decoder_rows(rows: usize, d: usize, rng: &mut impl Rng) -> Vec<f32> {
    let half = d / 2;
    (0..rows * d)
        .map(|i| {
            let base = if i % d < half { 1.0 } else { 0.0 };
            base + 0.1 * crate::model::tables::gaussian(rng)
        })
        .collect()
}

/// `a * b` row by row as complex vectors (first half of each row real, second imaginary);
/// an odd last column multiplies as a real number.
fn complex_product(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let d = a.dims()[1];
    let h = d / 2;
    if h == 0 {
        return a * b;
    }
    let (ar, ai) = (a.clone().narrow(1, 0, h), a.clone().narrow(1, h, h));
    let (br, bi) = (b.clone().narrow(1, 0, h), b.clone().narrow(1, h, h));
    let mut parts = vec![
        ar.clone() * br.clone() - ai.clone() * bi.clone(),
        ar * bi + ai * br,
    ];
    if d % 2 == 1 {
        parts.push(a.narrow(1, d - 1, 1) * b.narrow(1, d - 1, 1));
    }
    Tensor::cat(parts, 1)
}

/// Where tokens sit in a sequence: `[query entity, relation, MASK]` then `walks` context
/// walks of `walk_len` (relation, entity) steps, each starting at the query entity.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub categories: usize,
    /// Relation ids, inverses included.
    pub relation_ids: usize,
    pub walks: usize,
    pub walk_len: usize,
    /// Rows of the position table: 3 query slots, then one per offset within a walk (shared
    /// by all walks, which are interchangeable).
    pub positions: usize,
}

impl Layout {
    pub fn new(c: &WalkConfig, sizes: Sizes) -> Self {
        Self {
            categories: sizes.categories,
            relation_ids: 2 * sizes.relations,
            walks: c.context_walks,
            walk_len: c.walk_length,
            positions: 3 + 2 * c.walk_length,
        }
    }

    pub fn len(&self) -> usize {
        3 + self.walks * 2 * self.walk_len
    }

    pub fn category(&self, c: u32) -> i64 {
        2 + i64::from(c)
    }

    pub fn relation(&self, r: u32) -> i64 {
        2 + self.categories as i64 + i64::from(r)
    }

    pub fn entity(&self, e: u32) -> i64 {
        2 + (self.categories + self.relation_ids) as i64 + i64::from(e)
    }

    fn position_ids(&self) -> Vec<i64> {
        let mut p = vec![0, 1, 2];
        for _ in 0..self.walks {
            p.extend((0..2 * self.walk_len).map(|j| 3 + j as i64));
        }
        p
    }

    /// `len x len`, true where attention is blocked: the query slots see everything; a walk's
    /// tokens see the query slots and their own walk (so a step stays bound to its path).
    fn attention(&self) -> Vec<bool> {
        let len = self.len();
        let w = 2 * self.walk_len;
        let walk_of = |i: usize| (i >= 3).then(|| (i - 3) / w);
        let mut m = vec![false; len * len];
        for i in 0..len {
            for j in 0..len {
                m[i * len + j] = match (walk_of(i), walk_of(j)) {
                    (None, _) | (_, None) => false,
                    (Some(a), Some(b)) => a != b,
                };
            }
        }
        m
    }
}

/// A batch of sequences and what to predict at which (flat) position.
#[derive(Debug, Clone)]
pub struct Batch {
    pub rows: usize,
    pub len: usize,
    pub tokens: Vec<i64>,
    pub pad: Vec<bool>,
    positions: Vec<i64>,
    attn: Vec<bool>,
    /// Entities to predict: (flat position, entity).
    pub entity_targets: Vec<(usize, u32)>,
    /// Relation ids to predict: (flat position, relation id).
    pub relation_targets: Vec<(usize, u32)>,
    /// Feature vectors added to a slot's input: (flat position, feature group, vector).
    pub features: Vec<(usize, usize, Vec<f32>)>,
}

/// How one row's tokens are written.
pub struct Row<'a> {
    /// The query entity's token (its id, or its category's token).
    pub query: i64,
    pub relation: u32,
    /// The context walks' steps.
    pub walks: &'a [Vec<Step>],
}

impl Batch {
    pub fn new(layout: &Layout) -> Self {
        Self {
            rows: 0,
            len: layout.len(),
            tokens: Vec::new(),
            pad: Vec::new(),
            positions: layout.position_ids(),
            attn: layout.attention(),
            entity_targets: Vec::new(),
            relation_targets: Vec::new(),
            features: Vec::new(),
        }
    }

    /// Flat position of the MASK slot of a row.
    pub fn query_slot(&self, row: usize) -> usize {
        row * self.len + 2
    }

    /// Appends a row. `entity`: an entity's token (its id, or its category's when the model
    /// lacks it). `mask`: (probability, rng) of masking each context token, which then
    /// becomes a target.
    pub fn push(
        &mut self,
        layout: &Layout,
        row: Row<'_>,
        entity: &dyn Fn(u32) -> i64,
        mut mask: Option<(f64, &mut dyn rand::RngCore)>,
    ) {
        let base = self.rows * self.len;
        self.tokens
            .extend([row.query, layout.relation(row.relation), MASK]);
        self.pad.extend([false, false, false]);
        for k in 0..layout.walks {
            let steps = row.walks.get(k).map_or(&[][..], |w| &w[..]);
            for j in 0..layout.walk_len {
                let slot = base + 3 + (k * layout.walk_len + j) * 2;
                match steps.get(j) {
                    Some(s) => {
                        let (mut rt, mut et) = (layout.relation(s.relation), entity(s.entity));
                        if let Some((p, rng)) = mask.as_mut() {
                            if rng.random::<f64>() < *p {
                                rt = MASK;
                                self.relation_targets.push((slot, s.relation));
                            }
                            if rng.random::<f64>() < *p {
                                et = MASK;
                                self.entity_targets.push((slot + 1, s.entity));
                            }
                        }
                        self.tokens.extend([rt, et]);
                        self.pad.extend([false, false]);
                    }
                    None => {
                        self.tokens.extend([PAD, PAD]);
                        self.pad.extend([true, true]);
                    }
                }
            }
        }
        self.rows += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rows(v: Vec<f32>, d: usize) -> Tensor<2> {
        let n = v.len() / d;
        Tensor::from_data(TensorData::new(v, [n, d]), &Device::flex())
    }

    #[test]
    fn complex_product_multiplies_halves_as_complex_numbers() {
        // (1+3i, 2+4i) * (5+7i, 6+8i) = (-16+22i, -20+40i).
        let out = complex_product(rows(vec![1., 2., 3., 4.], 4), rows(vec![5., 6., 7., 8.], 4));
        assert_eq!(crate::model::walks::to_vec(out), vec![-16., -20., 22., 40.]);
        // An odd last column multiplies as a real number.
        let out = complex_product(rows(vec![1., 3., 2.], 3), rows(vec![5., 7., 10.], 3));
        assert_eq!(crate::model::walks::to_vec(out), vec![-16., 22., 20.]);
    }

    #[test]
    fn a_fresh_decoder_starts_near_the_identity_relation() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let d = 8;
        let rows = decoder_rows(50, d, &mut rng);
        let mean = |half: usize| {
            let v: Vec<f32> = rows
                .chunks(d)
                .flat_map(|r| r[half * d / 2..(half + 1) * d / 2].to_vec())
                .collect();
            v.iter().sum::<f32>() / v.len() as f32
        };
        assert!((mean(0) - 1.0).abs() < 0.05, "real part {}", mean(0));
        assert!(mean(1).abs() < 0.05, "imaginary part {}", mean(1));
    }
}
