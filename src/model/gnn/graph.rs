//! The graphs messages flow over: the entity graph with its inverse edges (relation `r` and
//! `r + R`), as incoming edges per node so each node's sum is one thread's contiguous work
//! (no atomics), and the relation graph ULTRA builds from it.
//!
//! Direction: a triple `(h, r, t)` sends `t`'s state to `h` through `r`'s vector, and its
//! inverse `(t, r + R, h)` sends `h`'s to `t` through `r + R`'s. That is what ULTRA's fused
//! kernel computes (it adds `relation[type] * input[edge_index[1]]` into `edge_index[0]`), and
//! the published checkpoints were trained with it; the opposite flow (PyG's default) gives the
//! same checkpoint's zero-shot MRR on GraIL's fb237_v1 as 0.19 instead of 0.50. Relation-graph
//! edges `(a, b, k)` likewise send `b`'s state to `a`.

use super::params::INTERACTIONS;
use crate::model::context::Context;

/// Every node's incoming edges, `(source, type)`, grouped by target.
#[derive(Debug, Clone, Default)]
pub struct Adjacency {
    pub num_nodes: usize,
    pub num_types: usize,
    offsets: Vec<usize>,
    sources: Vec<u32>,
    types: Vec<u32>,
    /// Each type's reverse (`r <-> r + R`; ht <-> th): an edge's gradient flows back along
    /// its reverse edge, which the graph always holds.
    inverse: Vec<u32>,
}

impl Adjacency {
    /// From `(source, type, target)` edges; ones naming a node or type out of bounds are
    /// dropped.
    pub fn from_edges(
        num_nodes: usize,
        num_types: usize,
        edges: impl Iterator<Item = (u32, u32, u32)> + Clone,
    ) -> Self {
        let ok = |&(s, t, o): &(u32, u32, u32)| {
            (s as usize) < num_nodes && (o as usize) < num_nodes && (t as usize) < num_types
        };
        let mut offsets = vec![0usize; num_nodes + 1];
        for (_, _, o) in edges.clone().filter(ok) {
            offsets[o as usize + 1] += 1;
        }
        for i in 0..num_nodes {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let total = offsets[num_nodes];
        let (mut sources, mut types) = (vec![0u32; total], vec![0u32; total]);
        for (s, t, o) in edges.filter(ok) {
            let at = &mut fill[o as usize];
            sources[*at] = s;
            types[*at] = t;
            *at += 1;
        }
        Self {
            num_nodes,
            num_types,
            offsets,
            sources,
            types,
            inverse: (0..num_types as u32).collect(),
        }
    }

    /// Names each type's reverse.
    pub fn with_inverse(mut self, inverse: Vec<u32>) -> Self {
        debug_assert_eq!(inverse.len(), self.num_types);
        self.inverse = inverse;
        self
    }

    pub fn inverse(&self, t: u32) -> u32 {
        self.inverse[t as usize]
    }

    /// The entity graph of `context` with inverse edges: an entity's steps are its outgoing
    /// edges (inverse relations included) and each step `e -r-> x` sends `x`'s state to `e`
    /// through `r`. `extra` triples join in both directions; the graph has at least `nodes`
    /// nodes.
    pub fn of_context(context: &Context, extra: &[(u32, u32, u32)], nodes: usize) -> Self {
        let n = context.num_entities();
        let r = context.num_relations() as u32;
        let flip = move |t: u32| if t < r { t + r } else { t - r };
        let steps = (0..n as u32).flat_map(move |e| {
            context
                .steps(e)
                .iter()
                .map(move |s| (s.entity, s.relation, e))
        });
        // Extra triples (a prompt's claims) in both directions.
        let extra_edges = extra
            .iter()
            .flat_map(move |&(h, rel, t)| [(t, rel, h), (h, rel + r, t)]);
        let num_nodes = extra
            .iter()
            .map(|&(h, _, t)| h.max(t) as usize + 1)
            .max()
            .unwrap_or(0)
            .max(n)
            .max(nodes);
        Self::from_edges(num_nodes, 2 * r as usize, steps.chain(extra_edges))
            .with_inverse((0..2 * r).map(flip).collect())
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Where `node`'s incoming edges start in the graph's edge order (a per-edge array is
    /// indexed `first_edge(node) + k` for its `k`-th incoming edge).
    pub fn first_edge(&self, node: usize) -> usize {
        self.offsets[node]
    }

    /// The incoming edges of `node`: sources and types.
    pub fn incoming(&self, node: usize) -> (&[u32], &[u32]) {
        let r = self.offsets[node]..self.offsets[node + 1];
        (&self.sources[r.clone()], &self.types[r])
    }

    pub fn in_degree(&self, node: usize) -> usize {
        self.offsets[node + 1] - self.offsets[node]
    }

    /// The relation graph (ULTRA): one node per relation type of this graph, and an edge
    /// `(a, b)` of interaction `k` when some entity is the head (h) or tail (t) of both:
    /// hh, tt, ht (head of `a`, tail of `b`), th; it sends `b`'s state to `a`.
    pub fn relation_graph(&self) -> Adjacency {
        let m = self.num_types;
        let words = m.div_ceil(64);
        // head_of[e] / tail_of[e]: the types an entity is the head / tail of. An incoming
        // edge (s, t) of e comes from the triple (e, t, s): e is a head of t, s a tail.
        let mut tail_of = vec![Vec::<u32>::new(); self.num_nodes];
        let mut head_of: Vec<Vec<u32>> = (0..self.num_nodes)
            .map(|e| self.incoming(e).1.to_vec())
            .collect();
        for e in 0..self.num_nodes {
            let (srcs, tys) = self.incoming(e);
            for (&s, &t) in srcs.iter().zip(tys) {
                tail_of[s as usize].push(t);
            }
        }
        // pairs[k][a] = bitset of b.
        let mut pairs = vec![vec![0u64; m * words]; INTERACTIONS];
        let mut set = |k: usize, a: &[u32], b: &[u32]| {
            for &x in a {
                let row = &mut pairs[k][x as usize * words..(x as usize + 1) * words];
                for &y in b {
                    row[y as usize / 64] |= 1 << (y % 64);
                }
            }
        };
        for e in 0..self.num_nodes {
            let (h, t) = (&mut head_of[e], &mut tail_of[e]);
            h.sort_unstable();
            h.dedup();
            t.sort_unstable();
            t.dedup();
            set(0, h, h);
            set(1, t, t);
            set(2, h, t);
            set(3, t, h);
        }
        let mut edges = Vec::new();
        for (k, bits) in pairs.iter().enumerate() {
            for a in 0..m {
                for b in 0..m {
                    if bits[a * words + b / 64] >> (b % 64) & 1 == 1 {
                        edges.push((b as u32, k as u32, a as u32));
                    }
                }
            }
        }
        // hh and tt are their own reverses; ht and th each other's.
        Adjacency::from_edges(m, INTERACTIONS, edges.into_iter()).with_inverse(vec![0, 1, 3, 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_edges_carry_inverses_and_the_relation_graph_its_four_interactions() {
        // 0 -r0-> 1 -r1-> 2: types 0, 1 and inverses 2, 3; each triple sends its tail's
        // state to its head, each inverse its head's to its tail.
        let adj = Adjacency::from_edges(
            3,
            4,
            [(1, 0, 0), (0, 2, 1), (2, 1, 1), (1, 3, 2)].into_iter(),
        );
        assert_eq!(adj.incoming(1), (&[0u32, 2][..], &[2u32, 1][..]));
        let rg = adj.relation_graph();
        assert_eq!(rg.num_nodes, 4);
        // ULTRA's relation-graph edge (a, b, k): b's state flows into a.
        let has = |a: u32, k: u32, b: u32| {
            let (s, t) = rg.incoming(a as usize);
            s.iter().zip(t).any(|(&x, &y)| x == b && y == k)
        };
        // Entity 1 is the tail of r0 and the head of r1: r0 -tail-head-> r1 (th = 3).
        assert!(has(0, 3, 1));
        assert!(has(1, 2, 0));
        // and head of the inverse r0^-1 (2) and of r1 (1): hh between them.
        assert!(has(2, 0, 1) && has(1, 0, 2));
        // every type meets itself head-head
        assert!((0..4).all(|r| has(r, 0, r)));
        // r0 and r1 never share a head.
        assert!(!has(0, 0, 1));
    }
}
