//! The backward pass, by hand: burn's autodiff would materialize every edge's message
//! (`edges x batch x dim`, gigabytes on Hetionet) where the forward pass never does. Each
//! layer's sparse sum runs backwards along the reverse edges (the graph holds every edge's
//! reverse), and the dense parts are burn products over chunks of rows, as forward.

use super::graph::Adjacency;
use super::net::{LayerTrace, Net, Removed, Trace, norm_stats, to_vec};
use super::params::LayerSlots;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

const CHUNK_ROWS: usize = 1 << 16;

/// A layer's gradients: of its input states, of its types' vectors, of each boundary row and
/// of every node's incoming sum.
pub(super) type LayerGrads = (Vec<f32>, Vec<f32>, Vec<Vec<f32>>, Vec<f32>);

/// A training batch: queries, each with its candidates (the answer first, then negatives).
pub struct Batch<'b> {
    pub queries: &'b [(u32, u32)],
    pub candidates: &'b [Vec<u32>],
    /// Each query's own edges, left out of its graph while they are the target.
    pub removed: &'b Removed,
    /// Temperature of the self-adversarial weights over negatives (ULTRA's loss).
    pub temperature: f32,
}

impl Net<'_> {
    /// The batch's loss, with its gradient added into `grad` (the parameters' layout).
    pub fn loss_and_grad(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        batch: &Batch<'_>,
        grad: &mut [f32],
    ) -> f64 {
        let d = self.layout.shape.dim;
        let h = 2 * d;
        let b = batch.queries.len();
        let n = graph.num_nodes;
        let mut trace = Trace::default();
        let enc = self.encode(
            graph,
            rel_graph,
            batch.queries,
            batch.removed,
            Some(&mut trace),
        );
        let lay = self.layout.clone();
        let w0 = self.w(&lay.mlp0_weight).to_vec();
        let b0 = self.w(&lay.mlp0_bias).to_vec();
        let w2 = self.w(&lay.mlp2_weight).to_vec();
        let b2 = self.w(&lay.mlp2_bias)[0];

        // Candidates' logits through the MLP over [state, query].
        let mut loss = 0f64;
        let mut dx = vec![0f32; n * b * d];
        let mut dquery = vec![vec![0f32; d]; b];
        let (mut dw0, mut db0, mut dw2, mut db2) =
            (vec![0f32; h * h], vec![0f32; h], vec![0f32; h], 0f32);
        for (q, cands) in batch.candidates.iter().enumerate() {
            let query = &enc.query[q];
            let pre: Vec<Vec<f32>> = cands
                .iter()
                .map(|&c| {
                    let f = &enc.x[(c as usize * b + q) * d..][..d];
                    (0..h)
                        .map(|o| {
                            let row = &w0[o * h..(o + 1) * h];
                            b0[o] + dot(&row[..d], f) + dot(&row[d..], query)
                        })
                        .collect()
                })
                .collect();
            let logits: Vec<f32> = pre
                .iter()
                .map(|p| p.iter().zip(&w2).map(|(a, w)| a.max(0.0) * w).sum::<f32>() + b2)
                .collect();
            let (l, dl) = adversarial_bce(&logits, batch.temperature);
            loss += l;
            let scale = 1.0 / b as f32;
            for (ci, &c) in cands.iter().enumerate() {
                let g = dl[ci] * scale;
                if g == 0.0 {
                    continue;
                }
                db2 += g;
                let f = &enc.x[(c as usize * b + q) * d..][..d];
                let dxr = &mut dx[(c as usize * b + q) * d..][..d];
                for o in 0..h {
                    let a = pre[ci][o];
                    dw2[o] += g * a.max(0.0);
                    if a <= 0.0 {
                        continue;
                    }
                    let dp = g * w2[o];
                    db0[o] += dp;
                    let row = &w0[o * h..(o + 1) * h];
                    let drow = &mut dw0[o * h..(o + 1) * h];
                    for k in 0..d {
                        drow[k] += dp * f[k];
                        drow[d + k] += dp * query[k];
                        dxr[k] += dp * row[k];
                        dquery[q][k] += dp * row[d + k];
                    }
                }
            }
        }
        add(&mut grad[lay.mlp0_weight.clone()], &dw0);
        add(&mut grad[lay.mlp0_bias.clone()], &db0);
        add(&mut grad[lay.mlp2_weight.clone()], &dw2);
        grad[lay.mlp2_bias.start] += db2;

        // Entity layers, last to first.
        let types = rel_graph.num_nodes;
        let heads: Vec<(u32, usize)> = batch
            .queries
            .iter()
            .enumerate()
            .map(|(q, &(hd, _))| (hd, q))
            .collect();
        let mut drep = vec![0f32; types * b * d];
        for (l, layer) in lay.entity_layers.iter().enumerate().rev() {
            let hidden = &trace.projected[l];
            let mut per_type = self.linear(hidden.clone(), types * b, d, &layer.project2_weight, d);
            super::net::add_bias(&mut per_type, self.w(&layer.project2_bias));
            let (dx_in, dper_type, dboundary, _) = self.layer_backward(
                layer,
                graph,
                &trace.entity_layers[l],
                &per_type,
                &dx,
                b,
                batch.removed,
                &heads,
                grad,
            );
            dx = dx_in;
            for (q, g) in dboundary.iter().enumerate() {
                add(&mut dquery[q], g);
            }
            self.project_backward(
                layer,
                &trace.rep,
                hidden,
                &dper_type,
                types * b,
                &mut drep,
                grad,
            );
        }
        // The first layer's input is the boundary itself.
        for &(hd, q) in &heads {
            let g = dx[(hd as usize * b + q) * d..][..d].to_vec();
            add(&mut dquery[q], &g);
        }
        for (q, &(_, r)) in batch.queries.iter().enumerate() {
            add(&mut drep[(r as usize * b + q) * d..][..d], &dquery[q]);
        }

        // Relation layers: their boundary is constant, their types' vectors shared by the
        // batch.
        let mut dx = drep;
        for (l, layer) in lay.relation_layers.iter().enumerate().rev() {
            let per_type = self.interactions(layer, rel_graph.num_types, b);
            let (dx_in, dper_type, _, _) = self.layer_backward(
                layer,
                rel_graph,
                &trace.relation_layers[l],
                &per_type,
                &dx,
                b,
                &Removed::default(),
                &[],
                grad,
            );
            dx = dx_in;
            let g = &mut grad[layer.relation.clone()];
            for (k, chunk) in dper_type.chunks(b * d).enumerate() {
                for row in chunk.chunks(d) {
                    add(&mut g[k * d..(k + 1) * d], row);
                }
            }
        }
        loss / b as f64
    }

    /// One layer backwards: from the gradient of its output, the gradients of its input
    /// states, of its types' vectors, of each boundary row and of every node's incoming sum
    /// (which edge importance reads); its weights' gradients are added into `grad`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer_backward(
        &self,
        layer: &LayerSlots,
        graph: &Adjacency,
        trace: &LayerTrace,
        per_type: &[f32],
        dout: &[f32],
        b: usize,
        removed: &Removed,
        boundary: &[(u32, usize)],
        grad: &mut [f32],
    ) -> LayerGrads {
        let d = self.layout.shape.dim;
        let n = graph.num_nodes;
        let width = b * d;
        let rows = n * b;
        let (gamma, beta) = (self.w(&layer.norm_weight), self.w(&layer.norm_bias));

        // Through relu(norm(z)): dz per row, and the norm's own gradients.
        // Partial sums over fixed blocks of rows, added in order: the same gradient whatever
        // the threads do (a resumed training must retrace the first one).
        let mut dz = vec![0f32; rows * d];
        let block = (rows / 64).max(256);
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dz
            .par_chunks_mut(block * d)
            .zip(trace.z.par_chunks(block * d))
            .zip(dout.par_chunks(block * d))
            .map(|((dzb, zb), gob)| {
                let (mut dg, mut dbt) = (vec![0f32; d], vec![0f32; d]);
                for ((dzr, z), go) in dzb.chunks_mut(d).zip(zb.chunks(d)).zip(gob.chunks(d)) {
                    let (mean, inv) = norm_stats(z);
                    let mut dn = [0f32; 1024];
                    let mut nrm = [0f32; 1024];
                    let (mut m1, mut m2) = (0f32, 0f32);
                    for k in 0..d {
                        nrm[k] = (z[k] - mean) * inv;
                        let y = nrm[k] * gamma[k] + beta[k];
                        let dy = if y > 0.0 { go[k] } else { 0.0 };
                        dg[k] += dy * nrm[k];
                        dbt[k] += dy;
                        dn[k] = dy * gamma[k];
                        m1 += dn[k];
                        m2 += dn[k] * nrm[k];
                    }
                    let (m1, m2) = (m1 / d as f32, m2 / d as f32);
                    for k in 0..d {
                        dzr[k] = inv * (dn[k] - m1 - nrm[k] * m2);
                    }
                }
                (dg, dbt)
            })
            .collect();
        let (mut dgamma, mut dbeta) = (vec![0f32; d], vec![0f32; d]);
        for (g, b) in &partials {
            add(&mut dgamma, g);
            add(&mut dbeta, b);
        }
        add(&mut grad[layer.norm_weight.clone()], &dgamma);
        add(&mut grad[layer.norm_bias.clone()], &dbeta);

        // Through the linear map: dW = dz^T [x, agg], db = sum dz, d[x, agg] = dz W.
        let w = Tensor::<2>::from_data(
            TensorData::new(self.w(&layer.linear_weight).to_vec(), [d, 2 * d]),
            &self.device,
        );
        let mut dw = vec![0f32; d * 2 * d];
        let mut db = vec![0f32; d];
        let mut dx_in = dout.to_vec();
        let mut dagg = vec![0f32; rows * d];
        for start in (0..rows).step_by(CHUNK_ROWS) {
            let end = (start + CHUNK_ROWS).min(rows);
            let m = end - start;
            let dz_c = dz[start * d..end * d].to_vec();
            for row in dz_c.chunks(d) {
                add(&mut db, row);
            }
            let dz_t = Tensor::<2>::from_data(TensorData::new(dz_c, [m, d]), &self.device);
            let cat = Tensor::<2>::from_data(
                TensorData::new(trace.cat[start * 2 * d..end * 2 * d].to_vec(), [m, 2 * d]),
                &self.device,
            );
            add(&mut dw, &to_vec(dz_t.clone().transpose().matmul(cat)));
            let dcat = to_vec(dz_t.matmul(w.clone()));
            dx_in[start * d..end * d]
                .par_chunks_mut(d)
                .zip(dagg[start * d..end * d].par_chunks_mut(d))
                .zip(dcat.par_chunks(2 * d))
                .with_min_len(256)
                .for_each(|((dxr, dar), dc)| {
                    add(dxr, &dc[..d]);
                    dar.copy_from_slice(&dc[d..]);
                });
        }
        add(&mut grad[layer.linear_weight.clone()], &dw);
        add(&mut grad[layer.linear_bias.clone()], &db);

        // Through the sparse sum: each edge j -> i of type t sent x[j] * P[t] to i.
        let x_in = |node: usize| &trace.cat[node * b * 2 * d..(node + 1) * b * 2 * d];
        dx_in
            .par_chunks_mut(width)
            .enumerate()
            .with_min_len(64)
            .for_each(|(j, acc)| {
                let (sources, types) = graph.incoming(j);
                let skip = removed_at(removed, j);
                for (&i, &s) in sources.iter().zip(types) {
                    if !skip.is_empty() && skip.iter().any(|e| e.1 == i && e.2 == s) {
                        continue;
                    }
                    let t = graph.inverse(s) as usize;
                    let g = &dagg[i as usize * width..(i as usize + 1) * width];
                    let p = &per_type[t * width..(t + 1) * width];
                    for ((a, gv), pv) in acc.iter_mut().zip(g).zip(p) {
                        *a += gv * pv;
                    }
                }
            });
        let types = graph.num_types;
        let block = (n / 64).max(256);
        let starts: Vec<usize> = (0..n).step_by(block).collect();
        let partials: Vec<Vec<f32>> = starts
            .par_iter()
            .map(|&start| {
                let mut acc = vec![0f32; types * width];
                for i in start..(start + block).min(n) {
                    let (sources, tys) = graph.incoming(i);
                    let skip = removed_at(removed, i);
                    let g = &dagg[i * width..(i + 1) * width];
                    for (&j, &t) in sources.iter().zip(tys) {
                        if !skip.is_empty() && skip.iter().any(|e| e.1 == j && e.2 == t) {
                            continue;
                        }
                        let xj = x_in(j as usize);
                        let a = &mut acc[t as usize * width..(t as usize + 1) * width];
                        for q in 0..b {
                            let xq = &xj[q * 2 * d..q * 2 * d + d];
                            let gq = &g[q * d..(q + 1) * d];
                            for ((av, xv), gv) in a[q * d..(q + 1) * d].iter_mut().zip(xq).zip(gq) {
                                *av += xv * gv;
                            }
                        }
                    }
                }
                acc
            })
            .collect();
        let mut dper_type = vec![0f32; types * width];
        for p in &partials {
            add(&mut dper_type, p);
        }
        let dboundary = boundary
            .iter()
            .map(|&(node, q)| dagg[(node as usize * b + q) * d..][..d].to_vec())
            .collect();
        (dx_in, dper_type, dboundary, dagg)
    }

    /// Back through `P = W2 relu(W0 rep + b0) + b2` into the relation representations.
    #[allow(clippy::too_many_arguments)]
    fn project_backward(
        &self,
        layer: &LayerSlots,
        rep: &[f32],
        hidden: &[f32],
        dp: &[f32],
        rows: usize,
        drep: &mut [f32],
        grad: &mut [f32],
    ) {
        let d = self.layout.shape.dim;
        let w2 = self.w(&layer.project2_weight);
        let w0 = self.w(&layer.project0_weight);
        let mut dw2 = vec![0f32; d * d];
        let mut db2 = vec![0f32; d];
        let mut dw0 = vec![0f32; d * d];
        let mut db0 = vec![0f32; d];
        let mut dh = vec![0f32; d];
        for r in 0..rows {
            let (g, hrow, x) = (
                &dp[r * d..(r + 1) * d],
                &hidden[r * d..(r + 1) * d],
                &rep[r * d..(r + 1) * d],
            );
            add(&mut db2, g);
            dh.fill(0.0);
            for o in 0..d {
                if g[o] == 0.0 {
                    continue;
                }
                for k in 0..d {
                    dw2[o * d + k] += g[o] * hrow[k];
                    dh[k] += g[o] * w2[o * d + k];
                }
            }
            let dr = &mut drep[r * d..(r + 1) * d];
            for o in 0..d {
                if hrow[o] <= 0.0 || dh[o] == 0.0 {
                    continue;
                }
                db0[o] += dh[o];
                for k in 0..d {
                    dw0[o * d + k] += dh[o] * x[k];
                    dr[k] += dh[o] * w0[o * d + k];
                }
            }
        }
        add(&mut grad[layer.project2_weight.clone()], &dw2);
        add(&mut grad[layer.project2_bias.clone()], &db2);
        add(&mut grad[layer.project0_weight.clone()], &dw0);
        add(&mut grad[layer.project0_bias.clone()], &db0);
    }
}

fn removed_at(removed: &Removed, node: usize) -> &[(u32, u32, u32)] {
    removed.at(node as u32)
}

/// ULTRA's loss for one query: binary cross-entropy of the answer (index 0) and of each
/// negative, the negatives weighted by a softmax of their logits over `temperature` (held
/// constant), normalized by the weights' sum (1 + 1). Returns the loss and its gradient.
pub fn adversarial_bce(logits: &[f32], temperature: f32) -> (f64, Vec<f32>) {
    let softplus = |x: f32| if x > 20.0 { x } else { x.exp().ln_1p() };
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    let mut grad = vec![0f32; logits.len()];
    let Some((&pos, negs)) = logits.split_first() else {
        return (0.0, grad);
    };
    let max = negs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = negs
        .iter()
        .map(|&s| ((s - max) / temperature.max(1e-6)).exp())
        .collect();
    let z: f32 = e.iter().sum::<f32>().max(f32::MIN_POSITIVE);
    let weights: Vec<f32> = e.iter().map(|v| v / z).collect();
    let total = if negs.is_empty() { 1.0 } else { 2.0 };
    let mut loss = f64::from(softplus(-pos));
    grad[0] = (sigmoid(pos) - 1.0) / total;
    for (k, (&s, &w)) in negs.iter().zip(&weights).enumerate() {
        loss += f64::from(w * softplus(s));
        grad[k + 1] = w * sigmoid(s) / total;
    }
    (loss / f64::from(total), grad)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn add(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gnn::params::{Params, Shape};
    use rand::SeedableRng;

    /// The hand-written gradient against central differences of the loss, on the toy graph
    /// with a small random network: every parameter tensor checked at up to eight coordinates.
    #[test]
    fn gradients_match_finite_differences() {
        let (context, _, _) = crate::model::gnn::tests::toy();
        let graph = Adjacency::of_context(&context, &[], 0);
        let rel_graph = graph.relation_graph();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let params = Params::random(Shape { dim: 8, layers: 2 }, &mut rng);
        let queries = [(1u32, 0u32), (4, 4)];
        // One negative each: its self-adversarial weight is then 1 whatever the logits, so the
        // loss differentiated numerically is the one whose gradient is computed (the weights
        // are held constant, as ULTRA's are).
        let candidates = vec![vec![2u32, 5], vec![3, 11]];
        let removed = Removed::new(vec![(2, 1, 0), (1, 2, 3)]);
        let batch = Batch {
            queries: &queries,
            candidates: &candidates,
            removed: &removed,
            temperature: 1.0,
        };
        let device = crate::model::default_device();
        let loss_at = |p: &Params| -> f64 {
            let net = Net::new(p, &device);
            let mut g = vec![0f32; p.data.len()];
            net.loss_and_grad(&graph, &rel_graph, &batch, &mut g)
        };
        let net = Net::new(&params, &device);
        let mut grad = vec![0f32; params.data.len()];
        net.loss_and_grad(&graph, &rel_graph, &batch, &mut grad);
        let layout = params.layout();
        let mut checked = 0;
        let mut kinks = 0;
        let mut bad = Vec::new();
        for (name, _, slot) in &layout.named {
            let step = (slot.len() / 8).max(1);
            for at in slot.clone().step_by(step).take(8) {
                let numeric_at = |eps: f32| {
                    let mut p = params.clone();
                    p.data[at] += eps;
                    let up = loss_at(&p);
                    p.data[at] -= 2.0 * eps;
                    let down = loss_at(&p);
                    (up - down) / (2.0 * f64::from(eps))
                };
                let (numeric, finer) = (numeric_at(1e-3), numeric_at(2.5e-4));
                // A step across a ReLU's kink makes the difference quotient depend on the
                // step: such a coordinate says nothing about the gradient.
                if (numeric - finer).abs() > 1e-3 + 0.02 * numeric.abs() {
                    kinks += 1;
                    continue;
                }
                let analytic = f64::from(grad[at]);
                let tol = 2e-3 + 0.05 * numeric.abs().max(analytic.abs());
                if (numeric - analytic).abs() >= tol {
                    bad.push(format!(
                        "{name}[{at}]: analytic {analytic}, numeric {numeric}"
                    ));
                }
                checked += 1;
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
        assert!(
            checked > 150,
            "{checked} coordinates checked, {kinks} at kinks"
        );
        assert!(kinks * 4 < checked, "{kinks} at kinks, {checked} checked");
        assert!(grad.iter().any(|g| *g != 0.0));
    }

    #[test]
    fn the_loss_prefers_the_answer_above_its_negatives() {
        let (good, g) = adversarial_bce(&[3.0, -2.0, -1.0], 1.0);
        let (bad, _) = adversarial_bce(&[-3.0, 2.0, 1.0], 1.0);
        assert!(good < bad);
        assert!(g[0] < 0.0 && g[1] > 0.0 && g[2] > 0.0);
    }
}
