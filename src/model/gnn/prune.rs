//! Pruned propagation, after A*Net (Zhu et al., NeurIPS 2023): at each layer only the `k`
//! nodes with the strongest incoming sums send messages, so a query reads the edges of `k`
//! nodes a layer instead of the whole graph. A*Net learns its priority; this one needs no
//! new weights, so the published ULTRA checkpoints run pruned as they are: the priority is
//! the norm of the sum a node received at the last layer (the head alone sends first).
//!
//! A node no message has reached holds the state every such node holds, `u_l`: the layers
//! applied to a zero sum, the same for every node and query. So the dense update runs on
//! reached nodes only, and unreached ones share one score. With `k` at least the graph's
//! size every node sends, unreached ones with `u_l`, which is full propagation exactly.

use super::graph::Adjacency;
use super::net::{Net, add_bias, norm_stats, to_vec};
use super::params::LayerSlots;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

impl Net<'_> {
    /// Logits of every node as the tail of each `(head, relation)` query (`queries x nodes`),
    /// at most `k` senders a layer. Queries run in parallel, one thread each.
    pub fn tails_pruned(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        queries: &[(u32, u32)],
        k: usize,
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
        let unreached = self.unreached_states();
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
                self.one_pruned(graph, queries[i].0, &query, &vectors, &unreached, k)
            })
            .collect();
        let mut out = Vec::with_capacity(b * n);
        for r in rows {
            out.extend(r);
        }
        out
    }

    /// `u_0 = 0, u_{l+1} = relu(norm(W [u_l, 0] + b)) + u_l`: the state of a node no
    /// message has reached, before each layer and after the last.
    fn unreached_states(&self) -> Vec<Vec<f32>> {
        let d = self.layout.shape.dim;
        let mut u = vec![vec![0f32; d]];
        for layer in &self.layout.entity_layers {
            let last = u.last().cloned().unwrap_or_default();
            let mut cat = last.clone();
            cat.extend(std::iter::repeat_n(0f32, d));
            u.push(self.update(layer, cat, &last, 1));
        }
        u
    }

    /// `relu(norm(W [x, sum] + b)) + x` for `m` rows of `[x, sum]`.
    fn update(&self, layer: &LayerSlots, cat: Vec<f32>, x: &[f32], m: usize) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let w = Tensor::<2>::from_data(
            TensorData::new(self.w(&layer.linear_weight).to_vec(), [d, 2 * d]),
            &self.device,
        );
        let a = Tensor::<2>::from_data(TensorData::new(cat, [m, 2 * d]), &self.device);
        let mut z = to_vec(a.matmul(w.transpose()));
        add_bias(&mut z, self.w(&layer.linear_bias));
        let (gamma, beta) = (self.w(&layer.norm_weight), self.w(&layer.norm_bias));
        for (zr, xr) in z.chunks_mut(d).zip(x.chunks(d)) {
            let (mean, inv) = norm_stats(zr);
            for k in 0..d {
                let y = (zr[k] - mean) * inv * gamma[k] + beta[k];
                zr[k] = y.max(0.0) + xr[k];
            }
        }
        z
    }

    /// One query's logits over every node, from `head` with `query` as its boundary;
    /// `vectors[l]` is layer `l`'s `types x dim` relation vectors.
    fn one_pruned(
        &self,
        graph: &Adjacency,
        head: u32,
        query: &[f32],
        vectors: &[Vec<f32>],
        unreached: &[Vec<f32>],
        k: usize,
    ) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let n = graph.num_nodes;
        let everyone = k >= n;
        // States of reached nodes (rows of unreached ones are not read).
        let mut x = vec![0f32; n * d];
        let mut reached = vec![everyone; n];
        let mut order: Vec<u32> = if everyone {
            (0..n as u32).collect()
        } else {
            Vec::new()
        };
        if !reached[head as usize] {
            reached[head as usize] = true;
            order.push(head);
        }
        for (a, q) in x[head as usize * d..][..d].iter_mut().zip(query) {
            *a += q;
        }
        let mut senders: Vec<u32> = if everyone {
            (0..n as u32).collect()
        } else {
            vec![head]
        };
        let mut sum = vec![0f32; n * d];
        for (l, layer) in self.layout.entity_layers.iter().enumerate() {
            let p = &vectors[l];
            sum.fill(0.0);
            // Each sender s sends along every edge s -> j; the graph holds each edge's
            // reverse, so s's incoming edges (j, t) name them, of type t's reverse.
            let mut fresh = Vec::new();
            for &s in &senders {
                let (sources, tys) = graph.incoming(s as usize);
                let xs: Vec<f32> = x[s as usize * d..(s as usize + 1) * d].to_vec();
                for (&j, &t) in sources.iter().zip(tys) {
                    let rel = &p[graph.inverse(t) as usize * d..][..d];
                    let acc = &mut sum[j as usize * d..(j as usize + 1) * d];
                    for ((a, xv), rv) in acc.iter_mut().zip(&xs).zip(rel) {
                        *a += xv * rv;
                    }
                    if !reached[j as usize] {
                        reached[j as usize] = true;
                        fresh.push(j);
                    }
                }
            }
            // Priority: the messages a node received (the head's boundary is not evidence
            // of reach, and would keep the head sending alone).
            if !everyone {
                senders = strongest(&order, &fresh, &sum, d, k);
            }
            for (a, q) in sum[head as usize * d..][..d].iter_mut().zip(query) {
                *a += q;
            }
            // Newly reached nodes enter with the unreached state.
            for &j in &fresh {
                x[j as usize * d..(j as usize + 1) * d].copy_from_slice(&unreached[l]);
            }
            order.extend(fresh);
            let m = order.len();
            let mut cat = Vec::with_capacity(m * 2 * d);
            let mut own = Vec::with_capacity(m * d);
            for &j in &order {
                let xr = &x[j as usize * d..(j as usize + 1) * d];
                cat.extend_from_slice(xr);
                cat.extend_from_slice(&sum[j as usize * d..(j as usize + 1) * d]);
                own.extend_from_slice(xr);
            }
            let next = self.update(layer, cat, &own, m);
            for (&j, row) in order.iter().zip(next.chunks(d)) {
                x[j as usize * d..(j as usize + 1) * d].copy_from_slice(row);
            }
        }
        // Unreached nodes share one logit.
        let last = &unreached[self.layout.entity_layers.len()];
        let floor = self.score(last, &[query.to_vec()], 1, 1)[0];
        let mut logits = vec![floor; n];
        let m = order.len();
        let mut rows = Vec::with_capacity(m * d);
        for &j in &order {
            rows.extend_from_slice(&x[j as usize * d..(j as usize + 1) * d]);
        }
        let scored = self.score(&rows, &[query.to_vec()], m, 1);
        for (&j, s) in order.iter().zip(scored) {
            logits[j as usize] = s;
        }
        logits
    }
}

/// The `k` nodes of `among` and `fresh` with the largest sums.
fn strongest(among: &[u32], fresh: &[u32], sum: &[f32], d: usize, k: usize) -> Vec<u32> {
    let mut scored: Vec<(f32, u32)> = among
        .iter()
        .chain(fresh)
        .map(|&j| {
            let r = &sum[j as usize * d..(j as usize + 1) * d];
            (r.iter().map(|v| v * v).sum::<f32>(), j)
        })
        .filter(|(s, _)| *s > 0.0)
        .collect();
    if scored.len() > k {
        scored.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(k);
    }
    let mut out: Vec<u32> = scored.into_iter().map(|(_, j)| j).collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Net, Removed};

    #[test]
    fn unpruned_it_is_full_propagation_and_pruned_it_shares_the_unreached_logit() {
        let (context, entities, relations) = super::super::tests::toy();
        let graph = super::super::Adjacency::of_context(&context, &[], 0);
        let rel_graph = graph.relation_graph();
        let params = crate::model::gnn::pretrained(None).expect("embedded checkpoint");
        let device = crate::model::default_device();
        let net = Net::new(&params, &device);
        let r = relations.len() as u32;
        let queries = [
            (entities["e1"], relations["r0"]),
            (entities["e7"], relations["r2"] + r),
        ];
        let full = net.tails(&graph, &rel_graph, &queries, &Removed::default());
        let all = net.tails_pruned(&graph, &rel_graph, &queries, graph.num_nodes);
        for (a, b) in full.iter().zip(&all) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
        // Pruned, on a chain 0 - 1 - ... - 19: one sender a layer carries the head's state
        // at most six hops, so nodes beyond share the unreached logit; the head's neighbour
        // has its own.
        let chain: Vec<(u32, u32, u32)> = (0..19u32)
            .flat_map(|i| [(i + 1, 0, i), (i, 1, i + 1)])
            .collect();
        let graph =
            super::super::Adjacency::from_edges(20, 2, chain.into_iter()).with_inverse(vec![1, 0]);
        let rel_graph = graph.relation_graph();
        let one = net.tails_pruned(&graph, &rel_graph, &[(0, 0)], 1);
        assert_eq!(one.len(), 20);
        assert!(one[7..].iter().all(|&v| v == one[19]), "{one:?}");
        assert_ne!(one[1], one[19], "{one:?}");
    }
}
