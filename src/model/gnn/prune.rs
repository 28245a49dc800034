//! Pruned propagation, after A*Net (Zhu et al., NeurIPS 2023): a query reads the edges of
//! at most `k` nodes a layer instead of the whole graph. A*Net learns which nodes to keep;
//! this needs no new weights, so the published ULTRA checkpoints run pruned as they are.
//!
//! Every node's state splits into a background and a delta. The background is the pass with
//! no head at all: it depends on the query's relation (through the relation vectors) but
//! not on its head, so one full pass per relation serves every query about it (a CtD round
//! asks thousands). The delta is what the head adds: zero beyond `l` hops after layer `l`,
//! and large only near the paths that matter. Pruning keeps, after each layer, the `k` nodes
//! with the largest deltas (they send delta messages next); every other node falls back to
//! its background state. With `k` at least the graph's size nothing is dropped: exactly full
//! propagation.

use super::graph::Adjacency;
use super::net::{Net, Removed, Trace, add_bias, norm_relu_shortcut};
use super::params::LayerSlots;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The pass with no head for one relation: every layer's input `[state, sum]` rows, the
/// final states, and the final states' half of the scoring MLP's first layer.
pub struct Background {
    layers: Vec<Vec<f32>>,
    last: Vec<f32>,
    last_hidden: Vec<f32>,
}

/// Backgrounds by relation, computed on first use. Bounded: a background holds `layers x
/// nodes x 2 dim` floats (64 MiB on Hetionet).
#[derive(Default)]
pub struct Backgrounds(Mutex<HashMap<u32, Arc<Background>>>);

/// Backgrounds a cache keeps at once: Hetionet's 24 relations (about 1.5 GiB there).
const KEPT: usize = 24;

impl Backgrounds {
    fn get(
        &self,
        net: &Net<'_>,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        r: u32,
    ) -> Arc<Background> {
        if let Some(b) = self.0.lock().ok().and_then(|m| m.get(&r).cloned()) {
            return b;
        }
        let b = Arc::new(net.background(graph, rel_graph, r));
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= KEPT {
                m.clear();
            }
            m.insert(r, b.clone());
        }
        b
    }
}

impl Net<'_> {
    /// The pass with no head for queries conditioned on direct relation `r`.
    pub fn background(&self, graph: &Adjacency, rel_graph: &Adjacency, r: u32) -> Background {
        let d = self.layout.shape.dim;
        let n = graph.num_nodes;
        let rep = self.relations(rel_graph, &[r], None);
        let types = rel_graph.num_nodes;
        let mut x = vec![0f32; n * d];
        let mut trace = Trace::default();
        for layer in &self.layout.entity_layers {
            let (_, per_type) = self.project(layer, &rep, types);
            trace.entity_layers.push(Default::default());
            let lt = trace.entity_layers.last_mut();
            x = self.layer(layer, graph, &x, &per_type, &[], 1, &Removed::default(), lt);
        }
        let last_hidden = self.linear_by(x.clone(), n, d, self.mlp_state_half(), 2 * d);
        Background {
            layers: trace.entity_layers.into_iter().map(|t| t.cat).collect(),
            last: x,
            last_hidden,
        }
    }

    /// Logits of every node as the tail of each `(head, relation)` query (`queries x nodes`),
    /// delta messages from at most `k` senders a layer; backgrounds come from `cache`.
    /// Queries run in parallel, one thread each.
    pub fn tails_pruned(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        queries: &[(u32, u32)],
        k: usize,
        cache: &Backgrounds,
    ) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let b = queries.len();
        let n = graph.num_nodes;
        let direct = (rel_graph.num_nodes / 2).max(1) as u32;
        let rels: Vec<u32> = queries.iter().map(|q| q.1 % direct).collect();
        let rep = self.relations(rel_graph, &rels, None);
        let types = rel_graph.num_nodes;
        // Each layer's relation vectors for the whole batch: types x batch x dim.
        let per_type: Vec<Vec<f32>> = self
            .layout
            .entity_layers
            .iter()
            .map(|layer| self.project(layer, &rep, types * b).1)
            .collect();
        let mut distinct = rels.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let backgrounds: HashMap<u32, Arc<Background>> = distinct
            .iter()
            .map(|&r| (r, cache.get(self, graph, rel_graph, r)))
            .collect();
        let rows: Vec<Vec<f32>> = (0..b)
            .into_par_iter()
            .map(|i| {
                let query = rep[(queries[i].1 as usize * b + i) * d..][..d].to_vec();
                let vectors: Vec<Vec<f32>> = per_type
                    .iter()
                    .map(|p| {
                        (0..types)
                            .flat_map(|t| p[(t * b + i) * d..(t * b + i + 1) * d].iter().copied())
                            .collect()
                    })
                    .collect();
                self.one_pruned(
                    graph,
                    queries[i].0,
                    &query,
                    &vectors,
                    &backgrounds[&rels[i]],
                    k,
                )
            })
            .collect();
        let mut out = Vec::with_capacity(b * n);
        for r in rows {
            out.extend(r);
        }
        out
    }

    /// `relu(norm(W [x, sum] + b)) + x` for `m` rows of `[x, sum]`.
    fn update(&self, layer: &LayerSlots, cat: Vec<f32>, m: usize) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let x: Vec<f32> = cat
            .chunks(2 * d)
            .flat_map(|r| r[..d].iter().copied())
            .collect();
        let mut z = self.linear(cat, m, 2 * d, &layer.linear_weight, d);
        add_bias(&mut z, self.w(&layer.linear_bias));
        let (gamma, beta) = (self.w(&layer.norm_weight), self.w(&layer.norm_bias));
        let mut out = vec![0f32; z.len()];
        for ((o, zr), xr) in out.chunks_mut(d).zip(z.chunks(d)).zip(x.chunks(d)) {
            norm_relu_shortcut(o, zr, xr, gamma, beta);
        }
        out
    }

    /// One query's logits over every node, from `head` with `query` as its boundary;
    /// `vectors[l]` is layer `l`'s `types x dim` relation vectors.
    fn one_pruned(
        &self,
        graph: &Adjacency,
        head: u32,
        query: &[f32],
        vectors: &[Vec<f32>],
        bg: &Background,
        k: usize,
    ) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let n = graph.num_nodes;
        // Deltas of the nodes the head has reached, in the order they were reached.
        let mut delta = vec![0f32; n * d];
        let mut reached = vec![false; n];
        let mut order: Vec<u32> = vec![head];
        reached[head as usize] = true;
        delta[head as usize * d..][..d].copy_from_slice(query);
        let mut senders = vec![head];
        let mut dsum = vec![0f32; n * d];
        for (l, layer) in self.layout.entity_layers.iter().enumerate() {
            let p = &vectors[l];
            let bcat = &bg.layers[l];
            let bnext = bg.layers.get(l + 1).map(|c| c.as_slice());
            // Each sender s sends its delta along every edge s -> j; the graph holds each
            // edge's reverse, so s's incoming edges (j, t) name them, of type t's reverse.
            for &j in &order {
                dsum[j as usize * d..(j as usize + 1) * d].fill(0.0);
            }
            let mut fresh = Vec::new();
            for &s in &senders {
                let (sources, tys) = graph.incoming(s as usize);
                let ds: Vec<f32> = delta[s as usize * d..(s as usize + 1) * d].to_vec();
                for (&j, &t) in sources.iter().zip(tys) {
                    if !reached[j as usize] {
                        reached[j as usize] = true;
                        dsum[j as usize * d..(j as usize + 1) * d].fill(0.0);
                        fresh.push(j);
                    }
                    let rel = &p[graph.inverse(t) as usize * d..][..d];
                    let acc = &mut dsum[j as usize * d..(j as usize + 1) * d];
                    for ((a, xv), rv) in acc.iter_mut().zip(&ds).zip(rel) {
                        *a += xv * rv;
                    }
                }
            }
            for (a, q) in dsum[head as usize * d..][..d].iter_mut().zip(query) {
                *a += q;
            }
            order.extend(fresh);
            // Reached nodes' full rows: background plus delta, state and sum.
            let m = order.len();
            let mut cat = Vec::with_capacity(m * 2 * d);
            for &j in &order {
                let j = j as usize;
                let brow = &bcat[j * 2 * d..(j + 1) * 2 * d];
                for k in 0..d {
                    cat.push(brow[k] + delta[j * d + k]);
                }
                for k in 0..d {
                    cat.push(brow[d + k] + dsum[j * d + k]);
                }
            }
            let next = self.update(layer, cat, m);
            for (&j, row) in order.iter().zip(next.chunks(d)) {
                let j = j as usize;
                let out = &mut delta[j * d..(j + 1) * d];
                match bnext {
                    Some(c) => {
                        let b = &c[j * 2 * d..j * 2 * d + d];
                        for k in 0..d {
                            out[k] = row[k] - b[k];
                        }
                    }
                    None => {
                        let b = &bg.last[j * d..(j + 1) * d];
                        for k in 0..d {
                            out[k] = row[k] - b[k];
                        }
                    }
                }
            }
            // Only the k largest deltas stay: the rest fall back to the background (and may
            // be reached again), so a layer's work is bounded by the k senders' edges.
            if order.len() > k {
                let keep = strongest(&order, &delta, d, k);
                for &j in &order {
                    if keep.binary_search(&j).is_err() {
                        delta[j as usize * d..(j as usize + 1) * d].fill(0.0);
                        reached[j as usize] = false;
                    }
                }
                order = keep;
            }
            senders = order.clone();
        }
        // Unreached nodes keep the background's logit; reached ones are scored in full.
        let w0 = self.w(&self.layout.mlp0_weight);
        let b0 = self.w(&self.layout.mlp0_bias);
        let w2 = self.w(&self.layout.mlp2_weight);
        let b2 = self.w(&self.layout.mlp2_bias)[0];
        let h = 2 * d;
        let q_term: Vec<f32> = (0..h)
            .map(|o| {
                let row = &w0[o * 2 * d + d..(o + 1) * 2 * d];
                b0[o] + row.iter().zip(query).map(|(a, b)| a * b).sum::<f32>()
            })
            .collect();
        let mut logits: Vec<f32> = bg
            .last_hidden
            .chunks(h)
            .map(|v| {
                v.iter()
                    .zip(&q_term)
                    .zip(w2)
                    .map(|((a, c), w)| (a + c).max(0.0) * w)
                    .sum::<f32>()
                    + b2
            })
            .collect();
        let m = order.len();
        let mut rows = Vec::with_capacity(m * d);
        for &j in &order {
            let j = j as usize;
            for k in 0..d {
                rows.push(bg.last[j * d + k] + delta[j * d + k]);
            }
        }
        let scored = self.score(&rows, &[query.to_vec()], m, 1);
        for (&j, s) in order.iter().zip(scored) {
            logits[j as usize] = s;
        }
        logits
    }
}

/// The `k` nodes of `among` with the largest deltas (all of them when `k` covers them).
fn strongest(among: &[u32], delta: &[f32], d: usize, k: usize) -> Vec<u32> {
    if among.len() <= k {
        return among.to_vec();
    }
    let mut scored: Vec<(f32, u32)> = among
        .iter()
        .map(|&j| {
            let r = &delta[j as usize * d..(j as usize + 1) * d];
            (r.iter().map(|v| v * v).sum::<f32>(), j)
        })
        .collect();
    scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    let mut out: Vec<u32> = scored.into_iter().map(|(_, j)| j).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Adjacency, Net, Removed};
    use super::Backgrounds;

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                "{x} vs {y}\n{a:?}\n{b:?}"
            );
        }
    }

    #[test]
    fn unpruned_it_is_full_propagation_and_pruned_far_nodes_keep_their_exact_scores() {
        let (context, entities, relations) = super::super::tests::toy();
        let graph = Adjacency::of_context(&context, &[], 0);
        let rel_graph = graph.relation_graph();
        let params = crate::model::gnn::pretrained(None).expect("embedded checkpoint");
        let device = crate::model::default_device();
        let net = Net::new(&params, &device);
        let r = relations.len() as u32;
        let queries = [
            (entities["e1"], relations["r0"]),
            (entities["e7"], relations["r2"] + r),
        ];
        let cache = Backgrounds::default();
        let full = net.tails(&graph, &rel_graph, &queries, &Removed::default());
        let all = net.tails_pruned(&graph, &rel_graph, &queries, graph.num_nodes, &cache);
        close(&full, &all);

        // A chain 0 - 1 - ... - 19 with one sender a layer: nodes more than six hops from
        // the head never see it, in full propagation either, so their scores are exact; a
        // nearer one's is the head's doing.
        let chain: Vec<(u32, u32, u32)> = (0..19u32)
            .flat_map(|i| [(i + 1, 0, i), (i, 1, i + 1)])
            .collect();
        let graph = Adjacency::from_edges(20, 2, chain.into_iter()).with_inverse(vec![1, 0]);
        let rel_graph = graph.relation_graph();
        let cache = Backgrounds::default();
        let full = net.tails(&graph, &rel_graph, &[(0, 0)], &Removed::default());
        let one = net.tails_pruned(&graph, &rel_graph, &[(0, 0)], 1, &cache);
        close(&full[7..], &one[7..]);
        let bg = net.background(&graph, &rel_graph, 0);
        assert!(bg.last.len() == 20 * params.layout().shape.dim);
        assert_ne!(one[1], one[10], "{one:?}");
    }
}
