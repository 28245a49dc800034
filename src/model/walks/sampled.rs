//! The walk model's sampled-softmax step, for graphs whose entity table is too large for a
//! softmax over every entity (47K on Hetionet: a `[batch, 47K]` product and a dense AdamW
//! update of the whole table every step). Each query scores its answer against
//! `sampled_negatives` entities drawn from its relation's range (`model::range`), a masked
//! context entity against entities of its own category; the negatives that are known answers
//! of the query are left out of its softmax (and count as positives in the BCE term).
//!
//! The entity table lives on the host during training, as a [`Table`] of rows with their
//! bias in the last column: a step gathers the rows the batch touches (tokens and candidates)
//! into a leaf tensor, burn differentiates the loss with respect to it, and only those rows
//! take a (lazy) Adam step. The transformer's weights take burn's AdamW step as before.
//! Entity rows get no weight decay here.

use super::net::{Batch, Layout, WalkNet, param1, param2};
use super::train::{Example, cross_entropy};
use crate::model::config::{OptimizerKind, WalkConfig};
use crate::model::range::{OUTSIDE, Ranges};
use crate::model::tables::Table;
use burn::tensor::activation::{log_softmax, softplus};
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use rand::Rng;

/// The host entity table and what one step needs to map the batch's entities onto it.
pub(super) struct Sampled {
    ranges: Ranges,
    negatives: usize,
    d: usize,
    /// `num_entities x (d + 1)`: each entity's row, then its bias.
    table: Table,
    /// Each entity's row in the current step's leaf tensor (`u32::MAX`: not in it).
    local: Vec<u32>,
}

/// One step's leaf tensors and the table rows they hold.
pub(super) struct Leaves {
    ids: Vec<u32>,
    rows: Tensor<2>,
    bias: Tensor<1>,
}

/// Candidates of a set of queries, answer first: local row ids, and per candidate whether it
/// is left out of the softmax (a known answer drawn as a negative).
#[derive(Default)]
struct Candidates {
    ids: Vec<u32>,
    known: Vec<bool>,
    queries: usize,
}

impl Sampled {
    /// The host copy of `net`'s entity rows and biases.
    pub fn new(net: &WalkNet, ranges: Ranges, negatives: usize) -> Self {
        let [n, d] = net.entities.dims();
        let rows = super::to_vec(net.entities.val());
        let bias = super::to_vec1(net.entity_bias.val());
        let mut data = Vec::with_capacity(n * (d + 1));
        for (row, b) in rows.chunks_exact(d).zip(bias) {
            data.extend_from_slice(row);
            data.push(b);
        }
        Self {
            ranges,
            negatives,
            d,
            table: Table::from_data(n, d + 1, data),
            local: vec![u32::MAX; n],
        }
    }

    /// `net` with the host table written into its entity rows and biases.
    pub fn write(&self, mut net: WalkNet) -> WalkNet {
        let (n, d) = (self.table.rows, self.d);
        let mut rows = Vec::with_capacity(n * d);
        let mut bias = Vec::with_capacity(n);
        for i in 0..n {
            let r = self.table.row(i);
            rows.extend_from_slice(&r[..d]);
            bias.push(r[d]);
        }
        let device = net.entities.val().device();
        net.entities = param2(rows, n, d, &device);
        net.entity_bias = param1(bias, &device);
        net
    }

    fn localize(&mut self, ids: &mut Vec<u32>, e: u32) -> u32 {
        let slot = &mut self.local[e as usize];
        if *slot == u32::MAX {
            *slot = ids.len() as u32;
            ids.push(e);
        }
        *slot
    }

    /// The batch's loss, its entity tokens rewritten to local rows. `answers[i]`: row i's
    /// known answers, sorted.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &mut self,
        net: &WalkNet,
        batch: &mut Batch,
        layout: &Layout,
        rows: &[Example],
        answers: &[Vec<u32>],
        wc: &WalkConfig,
        label_smoothing: f64,
        device: &Device,
        rng: &mut impl Rng,
    ) -> (Tensor<1>, Leaves) {
        let offset = layout.entity(0);
        let mut ids = Vec::new();
        for t in batch.tokens.iter_mut() {
            if *t >= offset {
                *t = offset + i64::from(self.localize(&mut ids, (*t - offset) as u32));
            }
        }
        let (true_rows, refuted_rows): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| !rows[i].refuted);
        let mut queries = |rs: &[usize], ids: &mut Vec<u32>, rng: &mut dyn rand::RngCore| {
            let mut c = Candidates::default();
            for &i in rs {
                let ex = rows[i];
                c.ids.push(self.localize(ids, ex.tail));
                c.known.push(false);
                for _ in 0..self.negatives {
                    let e = self.ranges.sample(ex.relation, rng);
                    c.ids.push(self.localize(ids, e));
                    c.known
                        .push(e == ex.tail || answers[i].binary_search(&e).is_ok());
                }
                c.queries += 1;
            }
            c
        };
        let true_cands = queries(&true_rows, &mut ids, &mut *rng);
        let refuted_cands = queries(&refuted_rows, &mut ids, &mut *rng);
        let masked = if wc.mask_weight > 0.0 {
            let mut c = Candidates::default();
            for &(_, e) in &batch.entity_targets {
                c.ids.push(self.localize(&mut ids, e));
                c.known.push(false);
                for _ in 0..self.negatives {
                    let other = self.ranges.sample_like(e, rng);
                    c.ids.push(self.localize(&mut ids, other));
                    c.known.push(other == e);
                }
                c.queries += 1;
            }
            c
        } else {
            Candidates::default()
        };
        for &e in &ids {
            self.local[e as usize] = u32::MAX;
        }

        let s = ids.len();
        let d = self.d;
        let rows_t: Tensor<2> = Tensor::<2>::from_data(
            TensorData::new(self.table.gather(&ids, 0..d), [s, d]),
            device,
        )
        .require_grad();
        let bias_t: Tensor<1> = Tensor::<1>::from_data(
            TensorData::new(self.table.gather(&ids, d..d + 1), [s]),
            device,
        )
        .require_grad();
        let leaves = Leaves {
            ids,
            rows: rows_t,
            bias: bias_t,
        };

        let hidden = net.encode_with(batch, leaves.rows.clone(), device);
        let slots = |rs: &[usize]| {
            rs.iter()
                .map(|&i| (batch.query_slot(i), rows[i].relation))
                .collect::<Vec<_>>()
        };
        let q = net.query(&hidden, &slots(&true_rows), device);
        let logits = self.scores(q, &leaves, &true_cands, device);
        let mut loss = sampled_cross_entropy(logits.clone(), &true_cands, label_smoothing, device);
        let bce_weight = wc.bce_weight();
        if bce_weight > 0.0 {
            // The answer and every known answer drawn are 1s, the other negatives 0s.
            let y: Vec<f32> = true_cands
                .known
                .chunks(self.negatives + 1)
                .flat_map(|c| {
                    std::iter::once(1.0).chain(c[1..].iter().map(|&k| if k { 1.0 } else { 0.0 }))
                })
                .collect();
            let y: Tensor<2> = Tensor::from_data(TensorData::new(y, logits.dims()), device);
            let bce = (softplus(logits.clone(), 1.0) - logits * y).mean();
            loss = loss + bce * bce_weight;
        }
        if refuted_cands.queries > 0 && wc.refuted_weight > 0.0 {
            let q = net.query(&hidden, &slots(&refuted_rows), device);
            let logits = self.scores(q, &leaves, &refuted_cands, device);
            let logp = log_softmax(logits + mask(&refuted_cands, device), 1);
            let p = logp.narrow(1, 0, 1).exp().clamp(0.0, 1.0 - 1e-6);
            let penalty = -(p.neg() + 1.0).log().mean();
            loss = loss + penalty * wc.refuted_weight;
        }
        if wc.mask_weight > 0.0 {
            if masked.queries > 0 {
                let pos: Vec<usize> = batch.entity_targets.iter().map(|t| t.0).collect();
                let q = net.project(&hidden, &pos, device);
                let logits = self.scores(q, &leaves, &masked, device);
                loss = loss + sampled_cross_entropy(logits, &masked, 0.0, device) * wc.mask_weight;
            }
            if !batch.relation_targets.is_empty() {
                let (pos, ids): (Vec<usize>, Vec<u32>) =
                    batch.relation_targets.iter().copied().unzip();
                let q = net.project(&hidden, &pos, device);
                loss = loss
                    + cross_entropy(net.relation_logits(q), &ids, 0.0, device) * wc.mask_weight;
            }
        }
        (loss, leaves)
    }

    /// `[queries, 1 + negatives]`: each query state dotted with its candidates' rows, plus
    /// their biases.
    fn scores(&self, q: Tensor<2>, leaves: &Leaves, c: &Candidates, device: &Device) -> Tensor<2> {
        let (b, k, d) = (c.queries, self.negatives + 1, self.d);
        let idx: Tensor<1, Int> = Tensor::from_data(
            TensorData::new(
                c.ids.iter().map(|&i| i64::from(i)).collect::<Vec<_>>(),
                [b * k],
            ),
            device,
        );
        let rows = leaves
            .rows
            .clone()
            .select(0, idx.clone())
            .reshape([b, k, d]);
        let s = q
            .reshape([b, 1, d])
            .matmul(rows.swap_dims(1, 2))
            .reshape([b, k]);
        s + leaves.bias.clone().select(0, idx).reshape([b, k])
    }

    /// One Adam step on the rows the step's loss touched.
    pub fn step(&mut self, leaves: &Leaves, grads: &Gradients, lr: f64, t: u64) {
        let (s, d) = (leaves.ids.len(), self.d);
        let g_rows = leaves
            .rows
            .grad(grads)
            .map(super::to_vec)
            .unwrap_or_else(|| vec![0.0; s * d]);
        let g_bias = leaves
            .bias
            .grad(grads)
            .map(super::to_vec1)
            .unwrap_or_else(|| vec![0.0; s]);
        // The table's layout: each row, then its bias.
        let mut g = Vec::with_capacity(s * (d + 1));
        for (row, b) in g_rows.chunks_exact(d).zip(g_bias) {
            g.extend_from_slice(row);
            g.push(b);
        }
        self.table
            .step(&leaves.ids, 0..d + 1, &g, OptimizerKind::Adam, lr as f32, t);
    }
}

/// `[queries, 1 + negatives]`: [`OUTSIDE`] where a candidate is left out of the softmax.
fn mask(c: &Candidates, device: &Device) -> Tensor<2> {
    let k = c.ids.len() / c.queries.max(1);
    let m: Vec<f32> = c
        .known
        .iter()
        .map(|&k| if k { OUTSIDE } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(m, [c.queries, k]), device)
}

/// Mean cross-entropy of each query's answer (column 0) against its candidates, known
/// answers left out, label-smoothed by `eps` over the candidates kept.
fn sampled_cross_entropy(
    logits: Tensor<2>,
    c: &Candidates,
    eps: f64,
    device: &Device,
) -> Tensor<1> {
    let [rows, k] = logits.dims();
    let logp = log_softmax(logits + mask(c, device), 1);
    let mut loss = -(logp.clone().narrow(1, 0, 1).mean() * (1.0 - eps));
    if eps > 0.0 {
        let keep: Vec<f32> = c.known.iter().map(|&k| if k { 0.0 } else { 1.0 }).collect();
        let keep: Tensor<2> = Tensor::from_data(TensorData::new(keep, [rows, k]), device);
        loss = loss - (logp * keep).sum_dim(1).mean() * (eps / k as f64);
    }
    loss
}
