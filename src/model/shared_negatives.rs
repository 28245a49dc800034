//! The negatives regime with negatives shared by a batch, as host code: the step that large
//! graphs train with. burn's autodiff graph for it spent most of an epoch on bookkeeping and
//! one thread; here the loss and its gradient are fused and written by hand (the scoring
//! functions are bilinear, so every gradient is a row product), rows are processed on rayon's
//! threads, and the three matrix products of a step (scores, query gradients, negative
//! gradients) run through burn's plain (non-autodiff) GEMM, which uses every core and the
//! CPU's widest vectors.
//!
//! Covers ComplEx and DistMult with every loss, regularizer, optimizer and refuted negatives;
//! [`covers`] says so, and the training loop keeps burn's path for the rest (RotatE,
//! negatives per positive). It draws its negatives and refuted sample from the same RNG calls
//! as burn's path, so both train the same batches; `tests` pin its loss and gradients against
//! burn's. Results do not depend on the number of threads.

use super::config::{LossKind, ModelKind, NegativeSharing, Regime, TrainConfig};
use super::foldin::{query_grad, query_into};
use super::kge::{KgeModel, to_vec};
use super::score::Side;
use super::train::{RegRows, StepGrads, TrainSet, add_regularizer, localize, refuted_sample};
use crate::graph::Triple;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use rayon::prelude::*;

/// Rows per rayon task in the row-wise passes (a few hundred microseconds of work each).
const ROWS_PER_TASK: usize = 64;

/// Whether [`step`] implements this configuration (otherwise burn's path trains it).
pub(super) fn covers(config: &TrainConfig) -> bool {
    config.regime == Regime::Negatives
        && config.negative_sharing == NegativeSharing::Batch
        && matches!(config.model, ModelKind::Complex | ModelKind::Distmult)
}

/// One training step on `batch` (`covers(&model.config)` must hold): draws the negatives
/// and refuted sample, computes the gradients and applies the optimizer. Returns the loss.
pub(super) fn step(
    model: &mut KgeModel,
    batch: &[(Triple, Side)],
    set: &TrainSet<'_>,
    device: &Device,
    step: u64,
    rng: &mut StdRng,
) -> f64 {
    gradients(model, batch, set, device, rng).apply(model, step)
}

/// The loss and gradients of one step, drawing negatives as burn's path does.
pub(super) fn gradients(
    model: &KgeModel,
    batch: &[(Triple, Side)],
    set: &TrainSet<'_>,
    device: &Device,
    rng: &mut StdRng,
) -> StepGrads {
    let config = &model.config;
    let n = model.num_entities as u32;
    let negs: Vec<u32> = (0..config.negatives)
        .map(|_| rng.random_range(0..n))
        .collect();
    let refuted = refuted_sample(set, batch.len(), rng);
    let triples: Vec<Triple> = batch
        .iter()
        .map(|(t, _)| *t)
        .chain(refuted.iter().copied())
        .collect();
    Batch {
        model,
        triples: &triples,
        positives: batch.len(),
        negs: &negs,
        device,
    }
    .gradients()
}

/// One step's inputs: positives first, then refuted triples.
struct Batch<'a> {
    model: &'a KgeModel,
    triples: &'a [Triple],
    positives: usize,
    negs: &'a [u32],
    device: &'a Device,
}

impl Batch<'_> {
    fn gradients(&self) -> StepGrads {
        let model = self.model;
        let config = &model.config;
        let kind = config.model;
        let (w, rw) = (model.entities.width, model.relations.width);
        let b = self.positives;
        let nn = self.negs.len();
        let half = b.div_ceil(2);
        let ent = |i: u32| model.entities.row(i as usize);
        let rel = |i: u32| model.relations.row(i as usize);
        // Row i's given entity and target: the first half predicts tails, the second heads.
        let side = |i: usize| if i < half { Side::Tail } else { Side::Head };
        let ends = |i: usize| {
            let t = self.triples[i];
            match side(i) {
                Side::Tail => (t.head, t.tail),
                Side::Head => (t.tail, t.head),
            }
        };

        // Queries and positive scores.
        let mut queries = vec![0.0f32; b * w];
        let mut pos = vec![0.0f32; b];
        queries
            .par_chunks_mut(w)
            .zip(pos.par_iter_mut())
            .enumerate()
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(i, (q, p))| {
                let (given, target) = ends(i);
                let r = rel(self.triples[i].relation);
                query_into(kind, side(i) == Side::Head, ent(given), r, q);
                *p = dot(q, ent(target));
            });
        let negatives = model.entities.gather(self.negs, 0..w);

        // Scores against the shared negatives, then the loss's gradient in their place.
        let q_t = matrix(queries, b, w, self.device);
        let n_t = matrix(negatives, nn, w, self.device);
        let mut g = to_vec(q_t.clone().matmul(n_t.clone().transpose())); // [b, nn]
        let mut g_pos = vec![0.0f32; b];
        let scale = 1.0 / b as f32;
        let row_losses: Vec<f64> = g
            .par_chunks_mut(nn)
            .zip(g_pos.par_iter_mut())
            .zip(pos.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .map(|((row, gp), &p)| row_loss(config, p, row, gp, scale))
            .collect();
        let mut loss = row_losses.iter().sum::<f64>() / b as f64;
        let g_t = matrix(g, b, nn, self.device);
        let d_neg = to_vec(g_t.clone().transpose().matmul(q_t)); // [nn, w]
        let mut d_query = to_vec(g_t.matmul(n_t)); // [b, w]

        // Per triple: gradients of its head, tail and relation rows.
        let t_all = self.triples.len();
        let mut d_head = vec![0.0f32; t_all * w];
        let mut d_tail = vec![0.0f32; t_all * w];
        let mut d_rel = vec![0.0f32; t_all * rw];
        d_head
            .par_chunks_mut(w)
            .zip(d_tail.par_chunks_mut(w))
            .zip(d_rel.par_chunks_mut(rw))
            .zip(d_query.par_chunks_mut(w))
            .enumerate()
            .take(b)
            .with_min_len(ROWS_PER_TASK)
            // Each query is rebuilt here (cheap, in parallel) rather than copied back.
            .for_each_init(
                || vec![0.0f32; w],
                |q, (i, (((dh, dt), dr), dq))| {
                    let (given, target) = ends(i);
                    let gp = g_pos[i];
                    // The positive's own term: d/dq of gp * <q, target>.
                    for (d, &x) in dq.iter_mut().zip(ent(target)) {
                        *d += gp * x;
                    }
                    let head_side = side(i) == Side::Head;
                    let r = rel(self.triples[i].relation);
                    query_into(kind, head_side, ent(given), r, q);
                    let (d_given, d_target) = if head_side { (dt, dh) } else { (dh, dt) };
                    for (d, &x) in d_target.iter_mut().zip(q.iter()) {
                        *d = gp * x;
                    }
                    query_grad(kind, head_side, dq, r, d_given);
                    relation_grad(kind, head_side, dq, ent(given), dr);
                },
            );

        // Refuted triples: softplus(score) pushes them down (tail direction), each weighted
        // like one positive of the batch times `refuted_weight` (a mean over the few refuted
        // rows made each weigh as much as the whole batch of positives).
        let refuted = &self.triples[b..];
        let refuted_weight = config.refuted_weight() as f32;
        if !refuted.is_empty() && refuted_weight > 0.0 {
            let mut q = vec![0.0f32; w];
            let mut value = 0.0f64;
            for (j, t) in refuted.iter().enumerate() {
                let r = rel(t.relation);
                query_into(kind, false, ent(t.head), r, &mut q);
                let s = dot(&q, ent(t.tail));
                value += f64::from(softplus(s));
                let gs = sigmoid(s) * refuted_weight * scale;
                let i = b + j;
                let dq: Vec<f32> = ent(t.tail).iter().map(|&x| gs * x).collect();
                for (d, &x) in d_tail[i * w..(i + 1) * w].iter_mut().zip(&q) {
                    *d = gs * x;
                }
                query_grad(kind, false, &dq, r, &mut d_head[i * w..(i + 1) * w]);
                relation_grad(
                    kind,
                    false,
                    &dq,
                    ent(t.head),
                    &mut d_rel[i * rw..(i + 1) * rw],
                );
            }
            loss += value * f64::from(refuted_weight) / b as f64;
        }

        // Sum each distinct row's contributions, in a fixed order.
        let (ent_ids, ent_pos) = localize(
            self.triples
                .iter()
                .flat_map(|t| [t.head, t.tail])
                .chain(self.negs.iter().copied()),
        );
        let source = |s: usize| -> &[f32] {
            if s < 2 * t_all {
                let (i, buf) = (
                    s / 2,
                    if s.is_multiple_of(2) {
                        &d_head
                    } else {
                        &d_tail
                    },
                );
                &buf[i * w..(i + 1) * w]
            } else {
                let j = s - 2 * t_all;
                &d_neg[j * w..(j + 1) * w]
            }
        };
        let mut ent_grad = scatter(&ent_pos, ent_ids.len(), w, source);
        let (rel_ids, rel_pos) = localize(self.triples.iter().map(|t| t.relation));
        let mut rel_grad = scatter(&rel_pos, rel_ids.len(), rw, |s| {
            &d_rel[s * rw..(s + 1) * rw]
        });

        let reg = RegRows {
            entities: ent_pos[..2 * b].to_vec(),
            relations: rel_pos[..b].to_vec(),
            batch: b,
        };
        loss += add_regularizer(
            config,
            &model.entities,
            &ent_ids,
            &reg.entities,
            kind == ModelKind::Complex,
            &mut ent_grad,
            reg.batch,
        );
        loss += add_regularizer(
            config,
            &model.relations,
            &rel_ids,
            &reg.relations,
            kind == ModelKind::Complex,
            &mut rel_grad,
            reg.batch,
        );
        StepGrads {
            loss,
            ent_ids,
            ent_grad,
            rel_ids,
            rel_grad,
        }
    }
}

/// Sums rows `source(s)` into row `pos[s]` of a `rows x w` buffer, each output row adding its
/// sources in the order of `s`: the same sums whatever the number of threads.
fn scatter<'a>(
    pos: &[u32],
    rows: usize,
    w: usize,
    source: impl Fn(usize) -> &'a [f32] + Sync,
) -> Vec<f32> {
    // Sources grouped by output row (a counting sort keeps each group in order).
    let mut start = vec![0u32; rows + 1];
    for &p in pos {
        start[p as usize + 1] += 1;
    }
    for i in 0..rows {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut order = vec![0u32; pos.len()];
    for (s, &p) in pos.iter().enumerate() {
        order[next[p as usize] as usize] = s as u32;
        next[p as usize] += 1;
    }
    let mut out = vec![0.0f32; rows * w];
    out.par_chunks_mut(w)
        .enumerate()
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(row, acc)| {
            for &s in &order[start[row] as usize..start[row + 1] as usize] {
                for (a, &x) in acc.iter_mut().zip(source(s as usize)) {
                    *a += x;
                }
            }
        });
    out
}

fn matrix(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums: vectorizes, and fixes the order of the additions.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Adds the gradient with respect to the relation row of a score whose gradient with respect
/// to its query is `g`, the query built from entity row `e` (the given end) and that relation
/// (`head_side`: the query predicts heads). See `model::score::query`.
fn relation_grad(kind: ModelKind, head_side: bool, g: &[f32], e: &[f32], out: &mut [f32]) {
    match kind {
        ModelKind::Complex => {
            let k = g.len() / 2;
            let (gr, gi) = g.split_at(k);
            let (er, ei) = e.split_at(k);
            let (or, oi) = out.split_at_mut(k);
            // Both sides share the real part; the imaginary parts differ in sign. (The side is
            // chosen outside the loop, so each loop vectorizes.)
            // Head side: q = (rr tr + ri ti, rr ti - ri tr); tail side: q = (hr rr - hi ri,
            // hr ri + hi rr).
            let sign = if head_side { 1.0 } else { -1.0 };
            for j in 0..k {
                or[j] += gr[j] * er[j] + gi[j] * ei[j];
                oi[j] += sign * (gr[j] * ei[j] - gi[j] * er[j]);
            }
        }
        _ => {
            for j in 0..g.len() {
                out[j] += g[j] * e[j];
            }
        }
    }
}

/// Lanes of the row-wise reductions: sums and maxima kept in this many partial results, so
/// the loops vectorize (a single float accumulator would fix the order and forbid it).
const LANES: usize = 8;

/// `f` applied to every element of `row` in place, with the `LANES` partial sums of its
/// second output.
#[inline]
fn map_sum(row: &mut [f32], f: impl Fn(f32) -> (f32, f32)) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            let (y, s) = f(c[j]);
            c[j] = y;
            acc[j] += s;
        }
    }
    let mut tail = 0.0f32;
    for x in chunks.into_remainder() {
        let (y, s) = f(*x);
        *x = y;
        tail += s;
    }
    acc.iter().sum::<f32>() + tail
}

/// The largest element of `row` (and `init`), in `LANES` partial maxima.
#[inline]
fn max_of(row: &[f32], init: f32) -> f32 {
    let mut acc = [init; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(init, |m, &x| m.max(x));
    for c in chunks {
        for j in 0..LANES {
            acc[j] = acc[j].max(c[j]);
        }
    }
    acc.iter().fold(tail, |m, &x| m.max(x))
}

/// One positive's loss and, in place of its negatives' scores `row`, the gradient with
/// respect to them; `gp` gets the positive's. The gradients are scaled by `scale` (one over
/// the batch), the loss is not. Matches the losses of `model::train::negatives_step`.
fn row_loss(config: &TrainConfig, pos: f32, row: &mut [f32], gp: &mut f32, scale: f32) -> f64 {
    let nn = row.len() as f32;
    match config.loss {
        LossKind::Softplus => {
            // softplus(-pos) + mean softplus(neg)
            let c = scale / nn;
            let sum = map_sum(row, |x| {
                let (sp, sg) = softplus_sigmoid(x);
                (sg * c, sp)
            });
            let (sp, sg) = softplus_sigmoid(-pos);
            *gp = -sg * scale;
            f64::from(sp) + f64::from(sum / nn)
        }
        LossKind::CrossEntropy => {
            // -log_softmax([pos, negs])[0]
            let m = max_of(row, pos);
            let e0 = exp_neg(pos - m);
            let sum = map_sum(row, |x| {
                let e = exp_neg(x - m);
                (e, e)
            }) + e0;
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|x| *x *= inv * scale);
            *gp = (e0 * inv - 1.0) * scale;
            f64::from(m + sum.ln() - pos)
        }
        LossKind::Adversarial => {
            // (-log σ(pos + γ) - Σ softmax((neg + γ) T) log σ(-(neg + γ))) / 2, weights fixed
            let g = config.margin as f32;
            let temp = config.adversarial_temperature as f32;
            // The softmax's shift, max((x + γ) T), from the extreme x on T's side.
            let m = if temp >= 0.0 {
                (max_of(row, f32::NEG_INFINITY) + g) * temp
            } else {
                (-max_of_neg(row) + g) * temp
            };
            let mut weights = row.to_vec();
            let wsum = map_sum(&mut weights, |x| {
                let wt = exp_neg((x + g) * temp - m);
                (wt, wt)
            });
            let inv = 1.0 / wsum;
            let mut parts = [0.0f32; LANES];
            for (c, w) in row.chunks_mut(LANES).zip(weights.chunks(LANES)) {
                for j in 0..c.len() {
                    let (sp, sg) = softplus_sigmoid(c[j] + g);
                    parts[j] += w[j] * sp;
                    c[j] = 0.5 * scale * inv * w[j] * sg;
                }
            }
            let weighted: f32 = parts.iter().sum();
            let (sp, sg) = softplus_sigmoid(-(pos + g));
            *gp = -0.5 * sg * scale;
            0.5 * (f64::from(sp) + f64::from(weighted * inv))
        }
    }
}

/// `-min(row)`, as a maximum.
fn max_of_neg(row: &[f32]) -> f32 {
    row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(-x))
}

/// `softplus(x) = ln(1 + e^x)` and `σ(x)`, from one exponential, in straight-line code that
/// vectorizes (libm's `log1pf`/`expf` calls do not).
#[inline]
fn softplus_sigmoid(x: f32) -> (f32, f32) {
    let u = exp_neg(-x.abs()); // e^-|x| in (0, 1]
    let inv = 1.0 / (1.0 + u);
    let sig = if x >= 0.0 { inv } else { u * inv };
    (x.max(0.0) + ln_1p_unit(u), sig)
}

fn softplus(x: f32) -> f32 {
    softplus_sigmoid(x).0
}

fn sigmoid(x: f32) -> f32 {
    softplus_sigmoid(x).1
}

/// `e^x` for `x <= 0` (inputs below -87 give about 1e-38), within 1e-6 relative: Cody-Waite
/// reduction and a degree-6 polynomial, with integer bit tricks instead of rounding calls.
#[inline]
fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.max(-87.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO; // |r| <= ln2 / 2
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n sits in the low mantissa bits of `shifted`; 2^n is (n + 127) in the exponent field.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `ln(1 + u)` for `u` in `[0, 1]`: `2 atanh(s)` with `s = u / (2 + u) <= 1/3`, by its series.
#[inline]
fn ln_1p_unit(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let s2 = s * s;
    let p = 1.0
        + s2 * (1.0 / 3.0
            + s2 * (1.0 / 5.0
                + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0))))));
    2.0 * s * p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{OptimizerKind, Regularizer};
    use crate::model::eval::Known;
    use crate::model::train::negatives_grads;
    use rand::SeedableRng;

    #[test]
    fn fast_functions_match_libm() {
        for i in 0..20_000 {
            let x = -30.0 + i as f32 * 0.003;
            let (sp, sg) = softplus_sigmoid(x);
            let want_sp = x.max(0.0) + (-x.abs()).exp().ln_1p();
            let want_sg = 1.0 / (1.0 + (-x).exp());
            assert!(
                (sp - want_sp).abs() <= 3e-7 * want_sp.max(1.0),
                "softplus({x})"
            );
            assert!(
                (sg - want_sg).abs() <= 1e-6 * want_sg,
                "sigmoid({x}): {sg} vs {want_sg}"
            );
            if x <= 0.0 {
                let (got, want) = (exp_neg(x), x.exp());
                assert!(
                    (got - want).abs() <= 1e-6 * want,
                    "exp({x}): {got} vs {want}"
                );
            }
        }
        assert!(exp_neg(-200.0) >= 0.0 && exp_neg(-200.0) < 1e-37);
        let mut row = [3.0f32, -1.0, 7.5, 0.25, -9.0, 2.0, 1.0, 0.0, 4.0, -3.0, 6.0];
        assert_eq!(max_of(&row, f32::NEG_INFINITY), 7.5);
        assert_eq!(max_of(&row, 8.0), 8.0);
        let sum = map_sum(&mut row, |x| (2.0 * x, x));
        assert_eq!(sum, 10.75);
        assert_eq!(row[2], 15.0);
    }

    /// A small random graph and model with refuted triples.
    fn setup(kind: ModelKind, seed: u64) -> (KgeModel, Vec<Triple>, Vec<Triple>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (n, m) = (40u32, 3u32);
        let mut triple = || {
            Triple::new(
                rng.random_range(0..n),
                rng.random_range(0..m),
                rng.random_range(0..n),
            )
        };
        let train: Vec<Triple> = (0..75).map(|_| triple()).collect();
        let refuted: Vec<Triple> = (0..9).map(|_| triple()).collect();
        let config = TrainConfig::new()
            .with_model(kind)
            .with_dim(6)
            .with_regime(Regime::Negatives)
            .with_negatives(11)
            .with_init_scale(0.6);
        let model = KgeModel::init(&config, n as usize, m as usize, &mut rng);
        (model, train, refuted)
    }

    fn close(a: f64, b: f64, what: &str) {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "{what}: host {a} vs burn {b}"
        );
    }

    /// The host step's loss and gradients equal burn's autodiff path's for the same batch:
    /// both models, every loss and regularizer, refuted negatives, an odd batch (the head
    /// half is one shorter).
    #[test]
    fn host_gradients_match_burn() {
        let device = crate::model::default_device();
        let autodiff = device.clone().autodiff();
        let cases = [
            (LossKind::Softplus, Regularizer::None),
            (LossKind::Softplus, Regularizer::N3),
            (LossKind::CrossEntropy, Regularizer::L2),
            (LossKind::Adversarial, Regularizer::N3),
        ];
        for kind in [ModelKind::Complex, ModelKind::Distmult] {
            for (i, &(loss, reg)) in cases.iter().enumerate() {
                let (mut model, train, refuted) = setup(kind, 5 + i as u64);
                model.config = model
                    .config
                    .clone()
                    .with_loss(loss)
                    .with_regularizer(reg)
                    .with_reg_weight(0.05)
                    .with_margin(2.0)
                    .with_adversarial_temperature(0.7)
                    .with_optimizer(OptimizerKind::Adam);
                assert!(covers(&model.config));
                let known = Known::new(&[&train]);
                let set = TrainSet {
                    num_entities: model.num_entities,
                    num_relations: model.num_relations,
                    train: &train,
                    valid: &[],
                    known: &known,
                    refuted: &refuted,
                };
                let batch: Vec<(Triple, Side)> =
                    train[..37].iter().map(|&t| (t, Side::Tail)).collect();
                let mut rng_host = StdRng::seed_from_u64(9);
                let mut rng_burn = StdRng::seed_from_u64(9);
                let host = gradients(&model, &batch, &set, &device, &mut rng_host);
                let burn = negatives_grads(&model, &batch, &set, &autodiff, &mut rng_burn);
                let what = format!("{kind:?} {loss:?} {reg:?}");
                assert_eq!(rng_host, rng_burn, "{what}: same draws");
                close(host.loss, burn.loss, &format!("{what} loss"));
                assert_eq!(host.ent_ids, burn.ent_ids, "{what}");
                assert_eq!(host.rel_ids, burn.rel_ids, "{what}");
                assert_eq!(host.ent_grad.len(), burn.ent_grad.len(), "{what}");
                assert_eq!(host.rel_grad.len(), burn.rel_grad.len(), "{what}");
                let nonzero = host.ent_grad.iter().filter(|g| g.abs() > 1e-4).count();
                assert!(
                    nonzero > host.ent_grad.len() / 2,
                    "{what}: gradients too small"
                );
                for (j, (a, b)) in host.ent_grad.iter().zip(&burn.ent_grad).enumerate() {
                    close(
                        f64::from(*a),
                        f64::from(*b),
                        &format!("{what} entity grad {j}"),
                    );
                }
                for (j, (a, b)) in host.rel_grad.iter().zip(&burn.rel_grad).enumerate() {
                    close(
                        f64::from(*a),
                        f64::from(*b),
                        &format!("{what} relation grad {j}"),
                    );
                }
            }
        }
    }

    /// A refuted triple weighs like one positive of the batch times `refuted_weight`: its
    /// term is linear in the weight and bounded by the refuted rows' share of the batch (a
    /// mean over the refuted rows made each weigh as much as every positive together).
    #[test]
    fn a_refutation_weighs_like_one_positive() {
        let device = crate::model::default_device();
        let (model, train, refuted) = setup(ModelKind::Complex, 3);
        let known = Known::new(&[&train]);
        // As many refutations as training triples, so a batch of 40 draws 10 (a quarter).
        let refuted: Vec<Triple> = refuted.iter().cycle().take(train.len()).copied().collect();
        let set = TrainSet {
            num_entities: model.num_entities,
            num_relations: model.num_relations,
            train: &train,
            valid: &[],
            known: &known,
            refuted: &refuted,
        };
        let batch: Vec<(Triple, Side)> = train[..40].iter().map(|&t| (t, Side::Tail)).collect();
        let loss = |weight: f64| {
            let mut m = model.clone();
            m.config = m.config.clone().with_refuted_weight(Some(weight));
            gradients(&m, &batch, &set, &device, &mut StdRng::seed_from_u64(4)).loss
        };
        let (none, one, two) = (loss(0.0), loss(1.0), loss(2.0));
        let term = one - none;
        assert!(term > 0.0, "refutations add to the loss");
        close(two - none, 2.0 * term, "linear in the weight");
        let scorer = model.scorer(&device);
        let worst = scorer
            .triples(&refuted)
            .into_iter()
            .map(|s| f64::from(softplus(s)))
            .fold(0.0f64, f64::max);
        assert!(
            term <= 10.0 * worst / 40.0 + 1e-6,
            "10 refuted rows of a 40-row batch: {term} > {}",
            10.0 * worst / 40.0
        );
    }

    /// The same gradients whatever the number of threads, bit for bit.
    #[test]
    fn gradients_do_not_depend_on_threads() {
        let device = crate::model::default_device();
        let (mut model, _, refuted) = setup(ModelKind::Complex, 1);
        model.config = model.config.clone().with_negatives(64).with_dim(32);
        let mut rng = StdRng::seed_from_u64(2);
        model = KgeModel::init(&model.config, 500, 4, &mut rng);
        let train: Vec<Triple> = (0..1000)
            .map(|_| {
                Triple::new(
                    rng.random_range(0..500),
                    rng.random_range(0..4),
                    rng.random_range(0..500),
                )
            })
            .collect();
        let known = Known::new(&[&train]);
        let set = TrainSet {
            num_entities: 500,
            num_relations: 4,
            train: &train,
            valid: &[],
            known: &known,
            refuted: &refuted,
        };
        let batch: Vec<(Triple, Side)> = train.iter().map(|&t| (t, Side::Tail)).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            pool.install(|| {
                let mut m = model.clone();
                let mut rng = StdRng::seed_from_u64(3);
                let loss = step(&mut m, &batch, &set, &device, 1, &mut rng);
                (loss, m)
            })
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.0.to_bits(), three.0.to_bits());
        assert_eq!(one.1, three.1);
        assert_ne!(one.1.entities.data, model.entities.data);
    }
}
