//! Evidence from the model itself: which paths carried a prediction. As NBFNet's authors do,
//! each edge's importance at each layer is the gradient of the answer's logit with respect to
//! a weight on that edge's message (1 in the forward pass), and a beam search finds the paths
//! from the query's node to the answer whose hops, taken at successive layers, have the
//! highest mean importance. A path's share is its summed importance over the positive
//! importance of every edge at every layer: the first-order part of the score it carries.

use super::graph::Adjacency;
use super::net::{Net, Removed, Trace};
use rayon::prelude::*;
use serde::Serialize;

/// Paths kept per node and layer by the beam search.
const BEAM: usize = 10;

/// One hop of a path, in the direction the evidence travelled: from `from` to `to` over
/// the graph's triple `(from, relation, to)` when `forward`, else `(to, relation, from)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub from: u32,
    pub to: u32,
    /// The direct relation id (no inverse offset).
    pub relation: u32,
    pub forward: bool,
}

/// A path that carried a prediction, with its importance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPath {
    pub hops: Vec<Hop>,
    /// Summed importance of the hops, each at the layer it was taken.
    pub weight: f32,
    /// `weight` over the positive importance of every edge at every layer.
    pub share: f32,
}

/// A beam entry: the path's summed importance, its last edge and the rank it extends in the
/// source's beam one layer earlier.
#[derive(Debug, Clone, Copy)]
struct Entry {
    dist: f32,
    edge: u32,
    prev: u8,
}

impl Net<'_> {
    /// Per entity layer, the importance of every edge of `graph` (in its edge order) for the
    /// logit of `answer` as the tail of `query`.
    pub fn edge_importance(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        query: (u32, u32),
        answer: u32,
    ) -> Vec<Vec<f32>> {
        let d = self.layout.shape.dim;
        let n = graph.num_nodes;
        let removed = Removed::default();
        let mut trace = Trace::default();
        let enc = self.encode(graph, rel_graph, &[query], &removed, Some(&mut trace));
        let lay = self.layout.clone();
        let (w0, b0, w2) = (
            self.w(&lay.mlp0_weight),
            self.w(&lay.mlp0_bias),
            self.w(&lay.mlp2_weight),
        );
        // d logit / d state(answer), through the MLP over [state, query].
        let mut dx = vec![0f32; n * d];
        let f = &enc.x[answer as usize * d..][..d];
        let q = &enc.query[0];
        let h = 2 * d;
        let out = &mut dx[answer as usize * d..][..d];
        for o in 0..h {
            let row = &w0[o * h..(o + 1) * h];
            let pre = b0[o]
                + row[..d].iter().zip(f).map(|(a, b)| a * b).sum::<f32>()
                + row[d..].iter().zip(q).map(|(a, b)| a * b).sum::<f32>();
            if pre > 0.0 {
                for k in 0..d {
                    out[k] += w2[o] * row[k];
                }
            }
        }
        let types = rel_graph.num_nodes;
        let mut scratch = vec![0f32; self.params.data.len()];
        let mut importance = vec![Vec::new(); lay.entity_layers.len()];
        for (l, layer) in lay.entity_layers.iter().enumerate().rev() {
            let mut per_type = self.linear(
                trace.projected[l].clone(),
                types,
                d,
                &layer.project2_weight,
                d,
            );
            super::net::add_bias(&mut per_type, self.w(&layer.project2_bias));
            let lt = &trace.entity_layers[l];
            let (dx_in, _, _, dagg) = self.layer_backward(
                layer,
                graph,
                lt,
                &per_type,
                &dx,
                1,
                &removed,
                &[(query.0, 0)],
                &mut scratch,
            );
            // Edge j -> i of type t sent x[j] * P[t]: its weight's gradient is that message
            // against the gradient of i's sum.
            let mut imp = vec![0f32; graph.len()];
            let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(n);
            let mut rest = imp.as_mut_slice();
            for i in 0..n {
                let (here, tail) = rest.split_at_mut(graph.in_degree(i));
                parts.push((i, here));
                rest = tail;
            }
            parts
                .into_par_iter()
                .with_min_len(256)
                .for_each(|(i, out)| {
                    let g = &dagg[i * d..(i + 1) * d];
                    let (sources, tys) = graph.incoming(i);
                    for ((o, &j), &t) in out.iter_mut().zip(sources).zip(tys) {
                        let xj = &lt.cat[j as usize * 2 * d..][..d];
                        let p = &per_type[t as usize * d..(t as usize + 1) * d];
                        *o = g.iter().zip(xj).zip(p).map(|((a, b), c)| a * b * c).sum();
                    }
                });
            importance[l] = imp;
            dx = dx_in;
        }
        importance
    }

    /// Up to `limit` paths from `query.0` to `answer` that carried the answer's logit, the
    /// most important (by mean importance per hop) first; paths that visit a node twice, or
    /// whose importance is not positive (they lowered the score), are left out.
    /// `num_relations` is the graph's count of direct relations.
    pub fn explain(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        query: (u32, u32),
        answer: u32,
        num_relations: u32,
        limit: usize,
    ) -> Vec<ModelPath> {
        let n = graph.num_nodes;
        if query.0 as usize >= n || answer as usize >= n || query.0 == answer {
            return Vec::new();
        }
        let importance = self.edge_importance(graph, rel_graph, query, answer);
        ranked_paths(graph, &importance, query.0, answer, num_relations)
            .into_iter()
            .filter(|p| p.weight > 0.0)
            .take(limit)
            .collect()
    }
}

/// Every simple path the beam search finds from `head` to `answer`, by mean importance per
/// hop, highest first, whatever its sign.
fn ranked_paths(
    graph: &Adjacency,
    importance: &[Vec<f32>],
    head: u32,
    answer: u32,
    num_relations: u32,
) -> Vec<ModelPath> {
    let total: f32 = importance.iter().flatten().map(|v| v.max(0.0)).sum();
    let beams = beam_search(graph, importance, head, answer);
    let mut found: Vec<(f32, ModelPath)> = Vec::new();
    for (l, layer) in beams.iter().enumerate() {
        for (rank, e) in layer[answer as usize].iter().enumerate() {
            let Some(hops) = backtrack(graph, &beams, l, answer, rank, num_relations) else {
                continue;
            };
            if hops.first().map(|h| h.from) != Some(head) {
                continue;
            }
            let mut seen: Vec<u32> = hops.iter().map(|h| h.from).collect();
            seen.push(answer);
            let before = seen.len();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != before {
                continue;
            }
            let len = hops.len() as f32;
            found.push((
                e.dist / len,
                ModelPath {
                    hops,
                    weight: e.dist,
                    share: if total > 0.0 { e.dist / total } else { 0.0 },
                },
            ));
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Per layer and node, the `BEAM` best paths from `head` that end there after that many
/// hops, hop `l` scored by layer `l`'s importance. Paths never leave `answer` once there.
fn beam_search(
    graph: &Adjacency,
    importance: &[Vec<f32>],
    head: u32,
    answer: u32,
) -> Vec<Vec<Vec<Entry>>> {
    let n = graph.num_nodes;
    let mut prev: Vec<Vec<Entry>> = vec![Vec::new(); n];
    prev[head as usize].push(Entry {
        dist: 0.0,
        edge: u32::MAX,
        prev: 0,
    });
    let mut layers = Vec::with_capacity(importance.len());
    for imp in importance {
        let next: Vec<Vec<Entry>> = (0..n)
            .into_par_iter()
            .with_min_len(256)
            .map(|i| {
                let (sources, _) = graph.incoming(i);
                let first = graph.first_edge(i);
                let mut best: Vec<Entry> = Vec::new();
                for (k, &j) in sources.iter().enumerate() {
                    if j == answer {
                        continue;
                    }
                    let e = first + k;
                    for (rank, p) in prev[j as usize].iter().enumerate() {
                        let dist = p.dist + imp[e];
                        if best.len() == BEAM && dist <= best[BEAM - 1].dist {
                            continue;
                        }
                        let at = best.partition_point(|b| b.dist >= dist);
                        best.insert(
                            at,
                            Entry {
                                dist,
                                edge: e as u32,
                                prev: rank as u8,
                            },
                        );
                        best.truncate(BEAM);
                    }
                }
                best
            })
            .collect();
        layers.push(next);
        prev = layers.last().cloned().unwrap_or_default();
    }
    layers
}

/// The hops of the path ending at `node` with `rank` after layer `l`, first hop first.
fn backtrack(
    graph: &Adjacency,
    beams: &[Vec<Vec<Entry>>],
    l: usize,
    node: u32,
    rank: usize,
    num_relations: u32,
) -> Option<Vec<Hop>> {
    let mut hops = Vec::with_capacity(l + 1);
    let (mut node, mut rank) = (node, rank);
    for layer in (0..=l).rev() {
        let e = *beams[layer].get(node as usize)?.get(rank)?;
        let k = (e.edge as usize).checked_sub(graph.first_edge(node as usize))?;
        let (sources, types) = graph.incoming(node as usize);
        let (from, t) = (*sources.get(k)?, *types.get(k)?);
        // A message from `from` to `node` of type t: the triple (node, t, from) for a direct
        // relation, (from, t - R, node) for an inverse one.
        let forward = t >= num_relations;
        hops.push(Hop {
            from,
            to: node,
            relation: if forward { t - num_relations } else { t },
            forward,
        });
        node = from;
        rank = e.prev as usize;
    }
    hops.reverse();
    Some(hops)
}

#[cfg(test)]
mod tests {
    use super::super::{Adjacency, Net, Removed};

    #[test]
    fn the_path_that_carries_the_answer_comes_first() {
        // A chain 0 -r0-> 1 -r1-> 2 -r0-> 3 and a distractor 0 -r1-> 4 -r1-> 5; edges run
        // tail to head, inverses head to tail.
        let triples = [(0, 0, 1), (1, 1, 2), (2, 0, 3), (0, 1, 4), (4, 1, 5)];
        let r = 2u32;
        let edges: Vec<(u32, u32, u32)> = triples
            .iter()
            .flat_map(|&(h, rel, t)| [(t, rel, h), (h, rel + r, t)])
            .collect();
        let graph =
            Adjacency::from_edges(6, 4, edges.iter().copied()).with_inverse(vec![2, 3, 0, 1]);
        let rel_graph = graph.relation_graph();
        let params = crate::model::gnn::pretrained(None).expect("embedded checkpoint");
        let device = crate::model::default_device();
        let net = Net::new(&params, &device);
        let importance = net.edge_importance(&graph, &rel_graph, (0, 0), 3);
        assert_eq!(importance.len(), 6, "one row of importances a layer");
        let paths = super::ranked_paths(&graph, &importance, 0, 3, r);
        assert!(!paths.is_empty(), "a path reaches the answer");
        // What `explain` shows is the positive part, in the same order.
        let shown = net.explain(&graph, &rel_graph, (0, 0), 3, r, 5);
        let positive: Vec<_> = paths
            .iter()
            .filter(|p| p.weight > 0.0)
            .take(5)
            .cloned()
            .collect();
        assert_eq!(shown, positive);
        for p in &paths {
            assert_eq!(p.hops.first().map(|h| h.from), Some(0));
            assert_eq!(p.hops.last().map(|h| h.to), Some(3));
            for w in p.hops.windows(2) {
                assert_eq!(w[0].to, w[1].from, "hops join up");
            }
            for h in &p.hops {
                let triple = if h.forward {
                    (h.from, h.relation, h.to)
                } else {
                    (h.to, h.relation, h.from)
                };
                assert!(triples.contains(&triple), "{triple:?} is a graph triple");
            }
            assert!(p.share.abs() <= 1.0 + 1e-4);
        }
        // The only simple path from 0 to 3 is the chain, walked forward.
        assert_eq!(
            paths[0]
                .hops
                .iter()
                .map(|h| (h.from, h.to))
                .collect::<Vec<_>>(),
            [(0, 1), (1, 2), (2, 3)]
        );
        assert!(paths[0].hops.iter().all(|h| h.forward));

        // Importance is a first-order account of the logit: cutting the path's most
        // important edge costs the answer more than cutting the distractor's.
        let logit = |removed: &Removed| net.tails(&graph, &rel_graph, &[(0, 0)], removed)[3];
        let base = logit(&Removed::default());
        // Removed edges are (target, source, type).
        let cut_chain = logit(&Removed::new(vec![(1, 2, 1), (2, 1, 3)]));
        let cut_distractor = logit(&Removed::new(vec![(4, 5, 1), (5, 4, 3)]));
        assert!(
            (base - cut_chain).abs() > (base - cut_distractor).abs(),
            "chain {cut_chain} distractor {cut_distractor} base {base}"
        );
    }
}
