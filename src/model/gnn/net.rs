//! The forward pass: ULTRA's relation-level network conditioned on the query relation, then
//! the entity-level network conditioned on the query (head, relation), every node's final
//! state scored by an MLP, so one pass answers every tail of a batch of queries.
//!
//! States are node-major (`node x batch x dim`), so an edge's message for the whole batch is
//! one contiguous run of floats. The sparse sums run on rayon over target nodes (each a
//! thread's own rows: no atomics); the dense updates (`[state, sum] -> linear`) are burn
//! matrix products over chunks of rows, so memory stays bounded by the states themselves.

use super::graph::Adjacency;
use super::params::{LayerSlots, Layout, Params};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

const NORM_EPS: f32 = 1e-5;

/// Seconds spent in the sparse sums and in the dense updates (products, norms, the MLP),
/// for benchmarks to say where the time goes.
static PHASES: std::sync::Mutex<[f64; 2]> = std::sync::Mutex::new([0.0; 2]);

/// Seconds so far in the sparse sums and in the dense parts.
pub fn phases() -> [f64; 2] {
    PHASES.lock().map(|p| *p).unwrap_or_default()
}

fn add_phase(i: usize, since: std::time::Instant) -> std::time::Instant {
    if let Ok(mut p) = PHASES.lock() {
        p[i] += since.elapsed().as_secs_f64();
    }
    std::time::Instant::now()
}
/// Rows of a dense update per burn product: bounds the concatenated input's memory.
const CHUNK_ROWS: usize = 1 << 16;

/// The network with its weights laid out for the products (transposed once).
pub struct Net<'a> {
    pub params: &'a Params,
    pub layout: Layout,
    pub(super) device: Device,
}

/// Which edges a pass leaves out: a query's own edge while it is the target (training), by
/// target node.
#[derive(Debug, Clone, Default)]
pub struct Removed {
    /// Sorted `(target, source, type)`.
    edges: Vec<(u32, u32, u32)>,
}

impl Removed {
    pub fn new(mut edges: Vec<(u32, u32, u32)>) -> Self {
        edges.sort_unstable();
        edges.dedup();
        Self { edges }
    }

    /// The edges of training queries `(given, relation id with inverses, answer)`: each
    /// query's own edge (the answer's state flowing into the given node) and its reverse,
    /// over a graph of `num_relations` relations.
    pub fn of_queries(queries: &[(u32, u32, u32)], num_relations: usize) -> Self {
        let m = num_relations as u32;
        Self::new(
            queries
                .iter()
                .flat_map(|&(g, r, a)| {
                    let back = if r < m { r + m } else { r - m };
                    [(g, a, r), (a, g, back)]
                })
                .collect(),
        )
    }

    pub(super) fn at(&self, target: u32) -> &[(u32, u32, u32)] {
        let lo = self.edges.partition_point(|e| e.0 < target);
        let hi = self.edges.partition_point(|e| e.0 <= target);
        &self.edges[lo..hi]
    }
}

/// What a forward pass keeps for the backward pass.
#[derive(Debug, Default)]
pub struct Trace {
    pub relation_layers: Vec<LayerTrace>,
    /// The relation representations (`types x batch x dim`).
    pub rep: Vec<f32>,
    pub entity_layers: Vec<LayerTrace>,
    /// Per entity layer: the projection's hidden activations (`types x batch x dim`).
    pub projected: Vec<Vec<f32>>,
}

/// One layer's inputs to its dense update: `[state, sum]` rows and the pre-norm outputs.
#[derive(Debug, Default)]
pub struct LayerTrace {
    pub cat: Vec<f32>,
    pub z: Vec<f32>,
}

/// The output of the message passing.
pub struct Encoded {
    /// Final node states, `nodes x batch x dim`.
    pub x: Vec<f32>,
    /// Each query's vector (its relation's representation).
    pub query: Vec<Vec<f32>>,
}

impl<'a> Net<'a> {
    pub fn new(params: &'a Params, device: &Device) -> Self {
        Self {
            layout: params.layout(),
            params,
            device: device.clone(),
        }
    }

    pub(super) fn w(&self, r: &std::ops::Range<usize>) -> &[f32] {
        &self.params.data[r.clone()]
    }

    /// Relation representations for queries about `relations` (type ids of `rel_graph`'s
    /// nodes): `types x batch x dim`, node-major.
    pub fn relations(
        &self,
        rel_graph: &Adjacency,
        relations: &[u32],
        mut trace: Option<&mut Vec<LayerTrace>>,
    ) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let b = relations.len();
        let t = rel_graph.num_nodes;
        let boundary: Vec<(u32, usize, Vec<f32>)> = relations
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, i, vec![1f32; d]))
            .collect();
        let mut x = vec![0f32; t * b * d];
        for (node, i, v) in &boundary {
            x[(*node as usize * b + i) * d..][..d].copy_from_slice(v);
        }
        for layer in &self.layout.relation_layers {
            let per_type = self.interactions(layer, rel_graph.num_types, b);
            let lt = trace.as_deref_mut().map(|tr| {
                tr.push(LayerTrace::default());
                tr.last_mut().expect("pushed")
            });
            x = self.layer(
                layer,
                rel_graph,
                &x,
                &per_type,
                &boundary,
                b,
                &Removed::default(),
                lt,
            );
        }
        x
    }

    /// The interaction types' vectors of a relation-level layer, the same for every query of
    /// the batch: `types x batch x dim`.
    pub(super) fn interactions(&self, layer: &LayerSlots, types: usize, b: usize) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let rel = self.w(&layer.relation);
        let mut per_type = vec![0f32; types * b * d];
        for (k, chunk) in per_type.chunks_mut(b * d).enumerate() {
            for row in chunk.chunks_mut(d) {
                row.copy_from_slice(&rel[k * d..(k + 1) * d]);
            }
        }
        per_type
    }

    /// Logits of every node as the tail of each `(head, relation)` query: `batch x nodes`.
    pub fn tails(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        queries: &[(u32, u32)],
        removed: &Removed,
    ) -> Vec<f32> {
        let enc = self.encode(graph, rel_graph, queries, removed, None);
        self.score(&enc.x, &enc.query, graph.num_nodes, queries.len())
    }

    /// Every node's final state for a batch of queries (node-major), and each query's vector;
    /// with `trace`, what the backward pass needs.
    pub fn encode(
        &self,
        graph: &Adjacency,
        rel_graph: &Adjacency,
        queries: &[(u32, u32)],
        removed: &Removed,
        mut trace: Option<&mut Trace>,
    ) -> Encoded {
        let d = self.layout.shape.dim;
        let b = queries.len();
        let n = graph.num_nodes;
        // ULTRA lights the relation graph at the direct relation even when the query asks
        // for heads (its inverse); the query vector is then the inverse's representation.
        let direct = (rel_graph.num_nodes / 2).max(1) as u32;
        let rels: Vec<u32> = queries.iter().map(|q| q.1 % direct).collect();
        let rep = self.relations(
            rel_graph,
            &rels,
            trace.as_deref_mut().map(|t| &mut t.relation_layers),
        );
        let query: Vec<Vec<f32>> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| rep[(q.1 as usize * b + i) * d..][..d].to_vec())
            .collect();
        let boundary: Vec<(u32, usize, Vec<f32>)> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| (q.0, i, query[i].clone()))
            .collect();
        let mut x = vec![0f32; n * b * d];
        for (node, i, v) in &boundary {
            let row = &mut x[(*node as usize * b + i) * d..][..d];
            for (a, y) in row.iter_mut().zip(v) {
                *a += y;
            }
        }
        let types = rel_graph.num_nodes;
        for layer in &self.layout.entity_layers {
            let (hidden, per_type) = self.project(layer, &rep, types * b);
            let lt = trace.as_deref_mut().map(|tr| {
                tr.entity_layers.push(LayerTrace::default());
                tr.projected.push(hidden);
                tr.entity_layers.last_mut().expect("pushed")
            });
            x = self.layer(layer, graph, &x, &per_type, &boundary, b, removed, lt);
        }
        if let Some(t) = trace {
            t.rep = rep;
        }
        Encoded { x, query }
    }

    /// This layer's relation vectors: `W2 relu(W0 rep + b0) + b2` for every (type, query).
    /// Also returns the hidden activations (after the ReLU), which the backward pass reads.
    pub(super) fn project(
        &self,
        layer: &LayerSlots,
        rep: &[f32],
        rows: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let d = self.layout.shape.dim;
        let mut h = self.linear(rep.to_vec(), rows, d, &layer.project0_weight, d);
        add_bias(&mut h, self.w(&layer.project0_bias));
        h.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut out = self.linear(h.clone(), rows, d, &layer.project2_weight, d);
        add_bias(&mut out, self.w(&layer.project2_bias));
        (h, out)
    }

    /// `rows x inputs` times the transpose of the `outputs x inputs` weight at `w`.
    pub(super) fn linear(
        &self,
        a: Vec<f32>,
        rows: usize,
        inputs: usize,
        w: &std::ops::Range<usize>,
        outputs: usize,
    ) -> Vec<f32> {
        self.linear_by(a, rows, inputs, self.w(w).to_vec(), outputs)
    }

    /// `rows x inputs` times the transpose of the `outputs x inputs` weight `w`.
    pub(super) fn linear_by(
        &self,
        a: Vec<f32>,
        rows: usize,
        inputs: usize,
        w: Vec<f32>,
        outputs: usize,
    ) -> Vec<f32> {
        let w = Tensor::<2>::from_data(TensorData::new(w, [outputs, inputs]), &self.device);
        let a = Tensor::<2>::from_data(TensorData::new(a, [rows, inputs]), &self.device);
        to_vec(a.matmul(w.transpose()))
    }

    /// One conditional layer: every node's sum of `state(source) * relation(type)` over its
    /// incoming edges plus its boundary, then `relu(norm(W [state, sum] + b)) + state`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn layer(
        &self,
        layer: &LayerSlots,
        graph: &Adjacency,
        x: &[f32],
        per_type: &[f32],
        boundary: &[(u32, usize, Vec<f32>)],
        b: usize,
        removed: &Removed,
        trace: Option<&mut LayerTrace>,
    ) -> Vec<f32> {
        let mut trace = trace;
        let d = self.layout.shape.dim;
        let n = graph.num_nodes;
        let width = b * d;
        let mut out = vec![0f32; n * width];
        let wt = Tensor::<2>::from_data(
            TensorData::new(self.w(&layer.linear_weight).to_vec(), [d, 2 * d]),
            &self.device,
        )
        .transpose();
        let bias = self.w(&layer.linear_bias);
        let (gamma, beta) = (self.w(&layer.norm_weight), self.w(&layer.norm_bias));
        let nodes_per_chunk = (CHUNK_ROWS / b).max(1);
        for start in (0..n).step_by(nodes_per_chunk) {
            let t0 = std::time::Instant::now();
            let end = (start + nodes_per_chunk).min(n);
            // [state, sum] for the chunk's rows: 2 d wide.
            let mut cat = vec![0f32; (end - start) * b * 2 * d];
            cat.par_chunks_mut(2 * width)
                .enumerate()
                .with_min_len(64)
                .for_each(|(local, rows)| {
                    let node = start + local;
                    let own = &x[node * width..(node + 1) * width];
                    for q in 0..b {
                        rows[q * 2 * d..q * 2 * d + d].copy_from_slice(&own[q * d..(q + 1) * d]);
                    }
                    let (sources, types) = graph.incoming(node);
                    let skip = removed.at(node as u32);
                    for (&s, &t) in sources.iter().zip(types) {
                        if !skip.is_empty() && skip.iter().any(|e| e.1 == s && e.2 == t) {
                            continue;
                        }
                        let xs = &x[s as usize * width..(s as usize + 1) * width];
                        let rel = &per_type[t as usize * width..(t as usize + 1) * width];
                        for q in 0..b {
                            let acc = &mut rows[q * 2 * d + d..(q + 1) * 2 * d];
                            let (xq, rq) = (&xs[q * d..(q + 1) * d], &rel[q * d..(q + 1) * d]);
                            for ((a, xv), rv) in acc.iter_mut().zip(xq).zip(rq) {
                                *a += xv * rv;
                            }
                        }
                    }
                });
            for (node, q, v) in boundary {
                let node = *node as usize;
                if (start..end).contains(&node) {
                    let row = &mut cat[((node - start) * b + q) * 2 * d + d..][..d];
                    for (a, y) in row.iter_mut().zip(v) {
                        *a += y;
                    }
                }
            }
            let rows = (end - start) * b;
            let t0 = add_phase(0, t0);
            if let Some(t) = trace.as_deref_mut() {
                t.cat.extend_from_slice(&cat);
            }
            let a = Tensor::<2>::from_data(TensorData::new(cat, [rows, 2 * d]), &self.device);
            let mut z = to_vec(a.matmul(wt.clone()));
            add_bias(&mut z, bias);
            if let Some(t) = trace.as_deref_mut() {
                t.z.extend_from_slice(&z);
            }
            out[start * width..end * width]
                .par_chunks_mut(d)
                .zip(z.par_chunks(d))
                .zip(x[start * width..end * width].par_chunks(d))
                .with_min_len(256)
                .for_each(|((o, z), xi)| norm_relu_shortcut(o, z, xi, gamma, beta));
            add_phase(1, t0);
        }
        out
    }

    /// The state half of the scoring MLP's first layer (`2 dim x dim`): the part of a
    /// node's hidden activations that does not depend on the query.
    pub(super) fn mlp_state_half(&self) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let w0 = self.w(&self.layout.mlp0_weight);
        (0..2 * d)
            .flat_map(|o| w0[o * 2 * d..o * 2 * d + d].iter().copied())
            .collect()
    }

    /// The MLP over `[state, query]` for every (node, query): `batch x nodes` logits.
    pub(super) fn score(&self, x: &[f32], query: &[Vec<f32>], n: usize, b: usize) -> Vec<f32> {
        let d = self.layout.shape.dim;
        let h = 2 * d;
        let w0 = self.w(&self.layout.mlp0_weight); // h x 2d: [state | query] columns
        // The query's half of the first layer, once per query.
        let q_term: Vec<Vec<f32>> = query
            .iter()
            .map(|q| {
                let b0 = self.w(&self.layout.mlp0_bias);
                (0..h)
                    .map(|o| {
                        let row = &w0[o * 2 * d + d..(o + 1) * 2 * d];
                        b0[o] + row.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()
                    })
                    .collect()
            })
            .collect();
        let wt =
            Tensor::<2>::from_data(TensorData::new(self.mlp_state_half(), [h, d]), &self.device)
                .transpose();
        let w2 = self.w(&self.layout.mlp2_weight);
        let b2 = self.w(&self.layout.mlp2_bias)[0];
        let t0 = std::time::Instant::now();
        let mut logits = vec![0f32; b * n];
        let nodes_per_chunk = (CHUNK_ROWS / b).max(1);
        for start in (0..n).step_by(nodes_per_chunk) {
            let end = (start + nodes_per_chunk).min(n);
            let rows = (end - start) * b;
            let a = Tensor::<2>::from_data(
                TensorData::new(x[start * b * d..end * b * d].to_vec(), [rows, d]),
                &self.device,
            );
            let hid = to_vec(a.matmul(wt.clone()));
            let scores: Vec<f32> = hid
                .par_chunks(h)
                .enumerate()
                .with_min_len(256)
                .map(|(row, v)| {
                    let q = row % b;
                    v.iter()
                        .zip(&q_term[q])
                        .zip(w2)
                        .map(|((a, c), w)| (a + c).max(0.0) * w)
                        .sum::<f32>()
                        + b2
                })
                .collect();
            for (row, s) in scores.into_iter().enumerate() {
                let (node, q) = (start + row / b, row % b);
                logits[q * n + node] = s;
            }
        }
        add_phase(1, t0);
        logits
    }
}

/// A layer's output row from its pre-norm row `z` and input state `x`:
/// `relu(norm(z) * gamma + beta) + x`.
pub(super) fn norm_relu_shortcut(
    out: &mut [f32],
    z: &[f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
) {
    let (mean, inv) = norm_stats(z);
    for k in 0..z.len() {
        let y = (z[k] - mean) * inv * gamma[k] + beta[k];
        out[k] = y.max(0.0) + x[k];
    }
}

/// Mean and reciprocal standard deviation of a row, as layer norm takes them.
pub(super) fn norm_stats(z: &[f32]) -> (f32, f32) {
    let d = z.len() as f32;
    let mean = z.iter().sum::<f32>() / d;
    let var = z.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
    (mean, 1.0 / (var + NORM_EPS).sqrt())
}

pub(super) fn add_bias(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

pub(super) fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}
