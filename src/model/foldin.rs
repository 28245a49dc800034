//! Fold-in: an entity the model never saw gets an embedding by optimising its row alone on
//! a few edges, with every trained row held fixed. The model's scoring functions are linear
//! in the entity for ComplEx and DistMult and an isometry for RotatE, so the step is written
//! on the host: a query is `M e`, its gradient is `Mᵀ g`, and one step over a prompt costs
//! microseconds instead of a burn graph per step. `tests` pin these against `model::score`.

use super::config::{LossKind, ModelKind};
use super::kge::{KgeModel, widths};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One end of a prompt edge: a trained entity, or the `i`-th entity being folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Known(u32),
    New(usize),
}

/// An edge the new entities are fitted to. Relations are the model's (forward) ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub head: Node,
    pub relation: u32,
    pub tail: Node,
}

/// How hard and how long to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldConfig {
    pub steps: usize,
    pub lr: f32,
    /// Negatives per example, drawn each step inside the relation's domain or range.
    pub negatives: usize,
    /// The prior's precision in units of the entity table's per-coordinate variance: the
    /// objective is the sum of the examples' losses plus `prior_weight / var · ||e - prior||² / 2`
    /// per entity, a MAP estimate, so more edges move an entity further from its prior.
    pub prior_weight: f32,
    pub seed: u64,
}

impl Default for FoldConfig {
    fn default() -> Self {
        Self {
            // Measured on UMLS (benches/inductive.rs): 50 steps at 0.1 match 100 at 0.05 in
            // half the time; a weaker prior lets one or three edges move the entity further.
            steps: 50,
            lr: 0.1,
            negatives: 32,
            prior_weight: 0.01,
            seed: 7,
        }
    }
}

/// Which side the target of an example is on, in the model's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Given the head, score tails with relation row `r`.
    Tail,
    /// Given the tail, score heads: the inverse row (reciprocal models) or the head query.
    Head,
}

/// The relation row and query kind that predict `dir` of relation `r`.
fn row_for(model: &KgeModel, r: u32, dir: Dir) -> (usize, bool) {
    match dir {
        Dir::Tail => (r as usize, false),
        Dir::Head if model.reciprocal() => (model.inverse(r) as usize, false),
        Dir::Head => (r as usize, true),
    }
}

/// `M e`: the query that `model::score::query` builds from entity row `e` and relation row
/// `rel` (`head_query`: the non-reciprocal head side). Written into `q` (entity width).
pub fn query_into(kind: ModelKind, head_query: bool, e: &[f32], rel: &[f32], q: &mut [f32]) {
    match kind {
        ModelKind::Distmult => {
            for j in 0..e.len() {
                q[j] = e[j] * rel[j];
            }
        }
        ModelKind::Complex => {
            let k = e.len() / 2;
            let (er, ei) = e.split_at(k);
            let (rr, ri) = rel.split_at(k);
            let (qr, qi) = q.split_at_mut(k);
            for j in 0..k {
                if head_query {
                    qr[j] = rr[j] * er[j] + ri[j] * ei[j];
                    qi[j] = -(ri[j] * er[j] - rr[j] * ei[j]);
                } else {
                    qr[j] = er[j] * rr[j] - ei[j] * ri[j];
                    qi[j] = er[j] * ri[j] + ei[j] * rr[j];
                }
            }
        }
        ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn => {
            unreachable!("only embedding models have rows to fold in")
        }
        ModelKind::Rotate => {
            let k = e.len() / 2;
            let (er, ei) = e.split_at(k);
            let (qr, qi) = q.split_at_mut(k);
            for j in 0..k {
                let (c, s) = (rel[j].cos(), rel[j].sin());
                if head_query {
                    qr[j] = er[j] * c + ei[j] * s;
                    qi[j] = ei[j] * c - er[j] * s;
                } else {
                    qr[j] = er[j] * c - ei[j] * s;
                    qi[j] = er[j] * s + ei[j] * c;
                }
            }
        }
    }
}

/// `Mᵀ g`: the gradient with respect to `e` of a score whose gradient with respect to the
/// query is `g`. Added into `out`.
pub(super) fn query_grad(
    kind: ModelKind,
    head_query: bool,
    g: &[f32],
    rel: &[f32],
    out: &mut [f32],
) {
    match kind {
        ModelKind::Distmult => {
            for j in 0..g.len() {
                out[j] += g[j] * rel[j];
            }
        }
        ModelKind::Complex => {
            let k = g.len() / 2;
            let (gr, gi) = g.split_at(k);
            let (rr, ri) = rel.split_at(k);
            let (or, oi) = out.split_at_mut(k);
            for j in 0..k {
                if head_query {
                    or[j] += gr[j] * rr[j] - gi[j] * ri[j];
                    oi[j] += gr[j] * ri[j] + gi[j] * rr[j];
                } else {
                    or[j] += gr[j] * rr[j] + gi[j] * ri[j];
                    oi[j] += -gr[j] * ri[j] + gi[j] * rr[j];
                }
            }
        }
        ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn => {
            unreachable!("only embedding models have rows to fold in")
        }
        ModelKind::Rotate => {
            let k = g.len() / 2;
            let (gr, gi) = g.split_at(k);
            let (or, oi) = out.split_at_mut(k);
            for j in 0..k {
                let (c, s) = (rel[j].cos(), rel[j].sin());
                if head_query {
                    or[j] += gr[j] * c - gi[j] * s;
                    oi[j] += gr[j] * s + gi[j] * c;
                } else {
                    or[j] += gr[j] * c + gi[j] * s;
                    oi[j] += -gr[j] * s + gi[j] * c;
                }
            }
        }
    }
}

const DIST_EPS: f32 = 1e-9;

/// The score of query `q` against candidate row `c`, as `Query::against` computes it.
pub fn score(kind: ModelKind, q: &[f32], c: &[f32]) -> f32 {
    if kind == ModelKind::Rotate {
        let d2: f32 = q.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
        -d2.max(DIST_EPS).sqrt()
    } else {
        q.iter().zip(c).map(|(a, b)| a * b).sum()
    }
}

/// Adds `w · ∂score/∂q` to `gq` and `w · ∂score/∂c` to `gc` (either may be `None`).
fn score_grad(
    kind: ModelKind,
    q: &[f32],
    c: &[f32],
    w: f32,
    gq: Option<&mut [f32]>,
    gc: Option<&mut [f32]>,
) {
    if kind == ModelKind::Rotate {
        let d2: f32 = q.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
        if d2 <= DIST_EPS {
            return;
        }
        let inv = w / d2.sqrt();
        if let Some(gq) = gq {
            for j in 0..q.len() {
                gq[j] -= (q[j] - c[j]) * inv;
            }
        }
        if let Some(gc) = gc {
            for j in 0..q.len() {
                gc[j] += (q[j] - c[j]) * inv;
            }
        }
    } else {
        if let Some(gq) = gq {
            for j in 0..q.len() {
                gq[j] += w * c[j];
            }
        }
        if let Some(gc) = gc {
            for j in 0..q.len() {
                gc[j] += w * q[j];
            }
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The loss's gradient with respect to `[positive, negatives...]` scores, as the training
/// loop's loss (`model::train`) for one positive and its negatives. Returns the loss.
fn loss_grad(model: &KgeModel, scores: &[f32], grad: &mut [f32]) -> f32 {
    let config = &model.config;
    let (pos, negs) = (scores[0], &scores[1..]);
    let k = negs.len().max(1) as f32;
    match config.loss {
        LossKind::CrossEntropy => {
            let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = scores.iter().map(|s| (s - m).exp()).sum();
            for (g, s) in grad.iter_mut().zip(scores) {
                *g = (s - m).exp() / z;
            }
            grad[0] -= 1.0;
            -(pos - m - z.ln())
        }
        LossKind::Softplus => {
            grad[0] = -sigmoid(-pos);
            let mut loss = softplus(-pos);
            for (g, &s) in grad[1..].iter_mut().zip(negs) {
                *g = sigmoid(s) / k;
                loss += softplus(s) / k;
            }
            loss
        }
        LossKind::Adversarial => {
            let g0 = config.margin as f32;
            let t = config.adversarial_temperature as f32;
            let m = negs
                .iter()
                .map(|s| (s + g0) * t)
                .fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = negs.iter().map(|s| ((s + g0) * t - m).exp()).sum();
            grad[0] = -0.5 * sigmoid(-(pos + g0));
            let mut loss = -0.5 * log_sigmoid(pos + g0);
            for (g, &s) in grad[1..].iter_mut().zip(negs) {
                let w = ((s + g0) * t - m).exp() / z;
                *g = 0.5 * w * sigmoid(s + g0);
                loss -= 0.5 * w * log_sigmoid(-(s + g0));
            }
            loss
        }
    }
}

fn softplus(x: f32) -> f32 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

fn log_sigmoid(x: f32) -> f32 {
    -softplus(-x)
}

/// One fitting example: given one end, the other is the positive among negatives.
struct Example {
    given: Node,
    row: usize,
    head_query: bool,
    target: Node,
    /// Where negatives come from (trained entities), and which of them are positives too.
    pool: usize,
}

/// Fits the rows of the new entities. `priors[i]` is entity `i`'s starting point and the
/// centre of its prior; `pools(relation, dir)` lists the trained entities a negative for
/// that side may be (the relation's domain or range); `exclude` holds prompt edges, never
/// drawn as negatives of each other. Returns one row per new entity (entity-table width).
pub fn fold_in(
    model: &KgeModel,
    priors: &[Vec<f32>],
    edges: &[Edge],
    pools: &dyn Fn(u32, Dir) -> Vec<u32>,
    config: &FoldConfig,
) -> Vec<Vec<f32>> {
    let (w, _) = widths(&model.config);
    let mut rows: Vec<Vec<f32>> = priors.to_vec();
    let kind = model.kind();
    let mut examples = Vec::new();
    let mut pool_lists: Vec<Vec<u32>> = Vec::new();
    let mut pool_index = std::collections::HashMap::new();
    for e in edges {
        if !matches!(e.head, Node::New(_)) && !matches!(e.tail, Node::New(_)) {
            continue; // nothing of ours to fit
        }
        for (dir, given, target) in [(Dir::Tail, e.head, e.tail), (Dir::Head, e.tail, e.head)] {
            let (row, head_query) = row_for(model, e.relation, dir);
            let pool = *pool_index.entry((e.relation, dir)).or_insert_with(|| {
                pool_lists.push(pools(e.relation, dir));
                pool_lists.len() - 1
            });
            examples.push(Example {
                given,
                row,
                head_query,
                target,
                pool,
            });
        }
    }
    if examples.is_empty() || config.steps == 0 {
        return rows;
    }
    // Known targets of the same (given, row): never negatives of each other.
    let mut positives: std::collections::HashMap<(Node, usize), Vec<u32>> =
        std::collections::HashMap::new();
    for ex in &examples {
        if let Node::Known(t) = ex.target {
            positives.entry((ex.given, ex.row)).or_default().push(t);
        }
    }
    let var = table_variance(model).max(1e-6);
    let lambda = config.prior_weight / var;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let (mut m1, mut m2) = (
        vec![vec![0f32; w]; rows.len()],
        vec![vec![0f32; w]; rows.len()],
    );
    let mut q = vec![0f32; w];
    let mut gq = vec![0f32; w];
    let mut scores = Vec::with_capacity(config.negatives + 1);
    let mut sgrad = vec![0f32; config.negatives + 1];
    let mut negs: Vec<u32> = Vec::with_capacity(config.negatives);
    for step in 1..=config.steps {
        let mut grads = vec![vec![0f32; w]; rows.len()];
        for ex in &examples {
            let rel = model.relations.row(ex.row);
            let given_row: &[f32] = match ex.given {
                Node::Known(g) => model.entities.row(g as usize),
                Node::New(i) => &rows[i],
            };
            query_into(kind, ex.head_query, given_row, rel, &mut q);
            let target_row: &[f32] = match ex.target {
                Node::Known(t) => model.entities.row(t as usize),
                Node::New(j) => &rows[j],
            };
            let pool = &pool_lists[ex.pool];
            let taken = positives.get(&(ex.given, ex.row));
            negs.clear();
            if !pool.is_empty() {
                let mut tries = 0;
                while negs.len() < config.negatives && tries < 4 * config.negatives {
                    tries += 1;
                    let c = pool[rng.random_range(0..pool.len())];
                    if Node::Known(c) != ex.target && taken.is_none_or(|t| !t.contains(&c)) {
                        negs.push(c);
                    }
                }
            }
            scores.clear();
            scores.push(score(kind, &q, target_row));
            for &c in &negs {
                scores.push(score(kind, &q, model.entities.row(c as usize)));
            }
            let n = scores.len();
            loss_grad(model, &scores, &mut sgrad[..n]);
            gq.iter_mut().for_each(|g| *g = 0.0);
            let given_new = matches!(ex.given, Node::New(_));
            if let Node::New(j) = ex.target {
                score_grad(
                    kind,
                    &q,
                    target_row,
                    sgrad[0],
                    given_new.then_some(&mut gq[..]),
                    Some(&mut grads[j]),
                );
            } else if given_new {
                score_grad(kind, &q, target_row, sgrad[0], Some(&mut gq), None);
            }
            if let Node::New(i) = ex.given {
                for (c, &g) in negs.iter().zip(&sgrad[1..n]) {
                    let cand = model.entities.row(*c as usize);
                    score_grad(kind, &q, cand, g, Some(&mut gq), None);
                }
                query_grad(kind, ex.head_query, &gq, rel, &mut grads[i]);
            }
        }
        // Adam, with the Gaussian prior's pull.
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let c1 = 1.0 - b1.powi(step as i32);
        let c2 = 1.0 - b2.powi(step as i32);
        for (i, row) in rows.iter_mut().enumerate() {
            for j in 0..w {
                let g = grads[i][j] + lambda * (row[j] - priors[i][j]);
                m1[i][j] = b1 * m1[i][j] + (1.0 - b1) * g;
                m2[i][j] = b2 * m2[i][j] + (1.0 - b2) * g * g;
                row[j] -= config.lr * (m1[i][j] / c1) / ((m2[i][j] / c2).sqrt() + eps);
            }
        }
    }
    rows
}

/// The mean per-coordinate variance of the trained entity rows.
pub fn table_variance(model: &KgeModel) -> f32 {
    let t = &model.entities;
    let (n, w) = (t.rows, t.width);
    if n == 0 {
        return 1.0;
    }
    let mut mean = vec![0f64; w];
    for i in 0..n {
        for (m, &x) in mean.iter_mut().zip(t.row(i)) {
            *m += f64::from(x);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = 0f64;
    for i in 0..n {
        for (m, &x) in mean.iter().zip(t.row(i)) {
            var += (f64::from(x) - m).powi(2);
        }
    }
    (var / (n * w) as f64) as f32
}

/// The mean row of `ids` (the category prior); the mean of every row when `ids` is empty.
pub fn mean_row(model: &KgeModel, ids: &[u32]) -> Vec<f32> {
    let t = &model.entities;
    let mut out = vec![0f32; t.width];
    let all: Vec<u32>;
    let ids = if ids.is_empty() {
        all = (0..t.rows as u32).collect();
        &all
    } else {
        ids
    };
    for &i in ids {
        for (o, &x) in out.iter_mut().zip(t.row(i as usize)) {
            *o += x;
        }
    }
    let n = ids.len().max(1) as f32;
    out.iter_mut().for_each(|o| *o /= n);
    out
}

/// Scores of every trained entity as the `dir` end of relation `r`, given a row `e` that
/// may not be in the table (a folded-in entity): the same numbers `Scorer` gives a trained
/// entity with that row.
pub fn scores_against_all(model: &KgeModel, e: &[f32], r: u32, dir: Dir) -> Vec<f32> {
    let q = query_row(model, e, r, dir);
    (0..model.entities.rows)
        .map(|c| score(model.kind(), &q, model.entities.row(c)))
        .collect()
}

/// The query row that asks for the `dir` end of relation `r` given row `e`: pass a batch of
/// them to `Scorer::against_query_rows`.
pub fn query_row(model: &KgeModel, e: &[f32], r: u32, dir: Dir) -> Vec<f32> {
    let (row, head_query) = row_for(model, r, dir);
    let mut q = vec![0f32; e.len()];
    query_into(
        model.kind(),
        head_query,
        e,
        model.relations.row(row),
        &mut q,
    );
    q
}

/// The score of one triple whose ends are given as rows (tail direction, as
/// `Scorer::triples`).
pub fn score_rows(model: &KgeModel, h: &[f32], r: u32, t: &[f32]) -> f32 {
    let mut q = vec![0f32; h.len()];
    query_into(
        model.kind(),
        false,
        h,
        model.relations.row(r as usize),
        &mut q,
    );
    score(model.kind(), &q, t)
}

/// Cosine similarity of two rows.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Triple;
    use crate::model::config::{Regime, TrainConfig};
    use crate::model::default_device;

    fn model(kind: ModelKind, regime: Regime) -> KgeModel {
        let config = TrainConfig::new()
            .with_model(kind)
            .with_dim(8)
            .with_regime(regime)
            .with_loss(if regime == Regime::OneVsAll {
                LossKind::CrossEntropy
            } else {
                LossKind::Adversarial
            });
        KgeModel::init(&config, 12, 3, &mut StdRng::seed_from_u64(3))
    }

    const KINDS: [ModelKind; 3] = [ModelKind::Complex, ModelKind::Distmult, ModelKind::Rotate];

    /// The host scores equal burn's for trained entities, both directions.
    #[test]
    fn host_scores_match_the_burn_scorer() {
        for kind in KINDS {
            for regime in [Regime::OneVsAll, Regime::Negatives] {
                let m = model(kind, regime);
                let scorer = m.scorer(&default_device());
                let burn_tails = scorer.tails(&[(4, 1)]);
                let burn_heads = scorer.heads(&[(2, 5)]);
                let host_tails = scores_against_all(&m, m.entities.row(4), 1, Dir::Tail);
                let host_heads = scores_against_all(&m, m.entities.row(5), 2, Dir::Head);
                for (a, b) in burn_tails.iter().zip(&host_tails) {
                    assert!((a - b).abs() < 1e-4, "{kind:?} {regime:?} tails {a} {b}");
                }
                for (a, b) in burn_heads.iter().zip(&host_heads) {
                    assert!((a - b).abs() < 1e-4, "{kind:?} {regime:?} heads {a} {b}");
                }
                let q = query_row(&m, m.entities.row(4), 1, Dir::Tail);
                let batched = scorer.against_query_rows(q, 1);
                for (a, b) in burn_tails.iter().zip(&batched) {
                    assert!((a - b).abs() < 1e-4, "{kind:?} {regime:?} batched {a} {b}");
                }
                let t = scorer.triples(&[Triple::new(3, 2, 7)]);
                let h = score_rows(&m, m.entities.row(3), 2, m.entities.row(7));
                assert!((t[0] - h).abs() < 1e-4);
            }
        }
    }

    /// `Mᵀ g` is the gradient of `<M e, c>`: finite differences agree.
    #[test]
    fn query_gradient_matches_finite_differences() {
        for kind in KINDS {
            for head_query in [false, true] {
                let m = model(kind, Regime::Negatives);
                let (e, c) = (m.entities.row(1).to_vec(), m.entities.row(2).to_vec());
                let rel = m.relations.row(0);
                let f = |e: &[f32]| {
                    let mut q = vec![0f32; e.len()];
                    query_into(kind, head_query, e, rel, &mut q);
                    score(kind, &q, &c)
                };
                let mut q = vec![0f32; e.len()];
                query_into(kind, head_query, &e, rel, &mut q);
                let mut gq = vec![0f32; e.len()];
                score_grad(kind, &q, &c, 1.0, Some(&mut gq), None);
                let mut ge = vec![0f32; e.len()];
                query_grad(kind, head_query, &gq, rel, &mut ge);
                for j in 0..e.len() {
                    let (mut a, mut b) = (e.clone(), e.clone());
                    a[j] += 1e-3;
                    b[j] -= 1e-3;
                    let num = (f(&a) - f(&b)) / 2e-3;
                    assert!(
                        (num - ge[j]).abs() < 2e-2,
                        "{kind:?} head_query={head_query} coord {j}: {num} vs {}",
                        ge[j]
                    );
                }
            }
        }
    }

    /// An entity folded in on the edges of a trained one lands near it: its edges rank high.
    #[test]
    fn fold_in_recovers_an_entity_from_its_edges() {
        for kind in KINDS {
            let m = model(kind, Regime::OneVsAll);
            // Edges that entity 0 "has": its three best-scoring tails under relation 0.
            let s = scores_against_all(&m, m.entities.row(0), 0, Dir::Tail);
            let mut order: Vec<usize> = (0..s.len()).collect();
            order.sort_by(|a, b| s[*b].total_cmp(&s[*a]));
            let edges: Vec<Edge> = order[..3]
                .iter()
                .map(|&t| Edge {
                    head: Node::New(0),
                    relation: 0,
                    tail: Node::Known(t as u32),
                })
                .collect();
            let all: Vec<u32> = (0..12).collect();
            let prior = mean_row(&m, &[]);
            let config = FoldConfig {
                steps: 300,
                prior_weight: 0.0,
                ..FoldConfig::default()
            };
            let rows = fold_in(
                &m,
                std::slice::from_ref(&prior),
                &edges,
                &|_, _| all.clone(),
                &config,
            );
            let fitted = scores_against_all(&m, &rows[0], 0, Dir::Tail);
            let before = scores_against_all(&m, &prior, 0, Dir::Tail);
            let margin = |s: &[f32]| {
                let pos: f32 = order[..3].iter().map(|&t| s[t]).sum::<f32>() / 3.0;
                let neg: f32 = order[3..].iter().map(|&t| s[t]).sum::<f32>() / 9.0;
                pos - neg
            };
            assert!(
                margin(&fitted) > margin(&before) + 1e-3,
                "{kind:?}: fitted {} vs prior {}",
                margin(&fitted),
                margin(&before)
            );
            // Deterministic for a seed.
            let again = fold_in(&m, &[prior], &edges, &|_, _| all.clone(), &config);
            assert_eq!(rows, again);
        }
    }
}
