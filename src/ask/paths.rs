//! Evidence paths: the chains of edges (graph facts and the prompt's claims) that connect the
//! two ends of a predicted triple, shortest and most specific first. A path through a hub
//! (a gene with thousands of edges) says little; one through a rare neighbour says more, so
//! paths of equal length are ordered by the summed log-degree of their inner nodes.

use crate::graph::Graph;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A node of the graph seen with the prompt: trained entities keep their ids, the prompt's
/// new entities follow them (`graph.num_entities() + i`).
pub type NodeId = u32;

/// One edge of a path, walked from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub from: String,
    pub relation: String,
    pub to: String,
    /// The edge is `(from, relation, to)`; otherwise `(to, relation, from)`.
    pub forward: bool,
    /// A claim of the prompt, not a graph fact.
    pub claim: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Path {
    pub steps: Vec<Step>,
    /// For a path the model itself found (a message-passing member): the share of the
    /// answer's score its edges carried. `None` for a path found in the graph.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
}

/// At most this many second-level nodes are expanded from one source, bounding a path search
/// from a node next to hubs.
const MAX_FRONTIER: usize = 200_000;

/// How a node was reached: from which node, by which relation, in which direction.
#[derive(Debug, Clone, Copy)]
struct Link {
    prev: NodeId,
    relation: u32,
    forward: bool,
    claim: bool,
}

/// The graph plus the prompt's edges.
pub struct Overlay<'a> {
    graph: &'a Graph,
    /// Keys of the new entities, in order.
    new_keys: Vec<String>,
    /// Prompt edges by node: `(relation, other, forward)`.
    claims: HashMap<NodeId, Vec<(u32, NodeId, bool)>>,
}

impl<'a> Overlay<'a> {
    pub fn new(graph: &'a Graph, new_keys: Vec<String>, claims: &[(NodeId, u32, NodeId)]) -> Self {
        let mut by: HashMap<NodeId, Vec<(u32, NodeId, bool)>> = HashMap::new();
        for &(h, r, t) in claims {
            by.entry(h).or_default().push((r, t, true));
            by.entry(t).or_default().push((r, h, false));
        }
        Self {
            graph,
            new_keys,
            claims: by,
        }
    }

    fn key(&self, n: NodeId) -> &str {
        let known = self.graph.num_entities() as u32;
        if n < known {
            self.graph.entity_key(n)
        } else {
            self.new_keys
                .get((n - known) as usize)
                .map_or("?", String::as_str)
        }
    }

    fn degree(&self, n: NodeId) -> usize {
        let known = self.graph.num_entities() as u32;
        let graph = if n < known { self.graph.degree(n) } else { 0 };
        graph + self.claims.get(&n).map_or(0, Vec::len)
    }

    /// Every edge at `n`: `(relation, other, forward, claim)`.
    fn each(&self, n: NodeId, f: &mut dyn FnMut(u32, NodeId, bool, bool)) {
        if (n as usize) < self.graph.num_entities() {
            for t in self.graph.out_edges(n) {
                f(t.relation, t.tail, true, false);
            }
            for t in self.graph.in_edges(n) {
                f(t.relation, t.head, false, false);
            }
        }
        if let Some(c) = self.claims.get(&n) {
            for &(r, o, fwd) in c {
                f(r, o, fwd, true);
            }
        }
    }
}

/// What one source reaches in one and two steps; reused for every target of that source.
pub struct Reach {
    source: NodeId,
    first: HashMap<NodeId, Link>,
    second: HashMap<NodeId, Link>,
}

impl Reach {
    pub fn from(overlay: &Overlay<'_>, source: NodeId) -> Self {
        let mut first = HashMap::new();
        overlay.each(source, &mut |relation, other, forward, claim| {
            if other != source {
                first.entry(other).or_insert(Link {
                    prev: source,
                    relation,
                    forward,
                    claim,
                });
            }
        });
        let mut second = HashMap::new();
        // Rarest first, so the bound cuts hubs' neighbourhoods.
        let mut order: Vec<NodeId> = first.keys().copied().collect();
        order.sort_by_key(|&n| (overlay.degree(n), n));
        for mid in order {
            if second.len() >= MAX_FRONTIER {
                break;
            }
            overlay.each(mid, &mut |relation, other, forward, claim| {
                if other != source && !first.contains_key(&other) {
                    second.entry(other).or_insert(Link {
                        prev: mid,
                        relation,
                        forward,
                        claim,
                    });
                }
            });
        }
        Self {
            source,
            first,
            second,
        }
    }
}

/// One edge of a path in ids: from, relation, to, forward, claim.
type IdStep = (NodeId, u32, NodeId, bool, bool);

/// Up to `limit` paths of at most three edges from the reach's source to `target`.
pub fn paths(overlay: &Overlay<'_>, reach: &Reach, target: NodeId, limit: usize) -> Vec<Path> {
    let graph = overlay.graph;
    let mut found: Vec<(usize, f64, Vec<IdStep>)> = Vec::new();
    let step = |from: NodeId, l: Link, to: NodeId| (from, l.relation, to, l.forward, l.claim);
    let mut seen_mid = std::collections::HashSet::new();
    overlay.each(target, &mut |relation, other, forward, claim| {
        // `other -> target` with the edge seen from `other`: the direction flips.
        let last = (other, relation, target, !forward, claim);
        if other == reach.source {
            found.push((1, 0.0, vec![last]));
        } else if let Some(&l1) = reach.first.get(&other) {
            if seen_mid.insert((other, relation)) {
                let cost = (overlay.degree(other) as f64).ln();
                found.push((2, cost, vec![step(reach.source, l1, other), last]));
            }
        } else if let Some(&l2) = reach.second.get(&other) {
            let mid = l2.prev;
            if let Some(&l1) = reach.first.get(&mid)
                && seen_mid.insert((other, relation))
            {
                let cost = (overlay.degree(mid) as f64).ln() + (overlay.degree(other) as f64).ln();
                found.push((
                    3,
                    cost,
                    vec![step(reach.source, l1, mid), step(mid, l2, other), last],
                ));
            }
        }
    });
    found.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    found
        .into_iter()
        .take(limit)
        .map(|(_, _, steps)| Path {
            steps: steps
                .into_iter()
                .map(|(from, relation, to, forward, claim)| Step {
                    from: overlay.key(from).to_owned(),
                    relation: graph.relation_key(relation).to_owned(),
                    to: overlay.key(to).to_owned(),
                    forward,
                    claim,
                })
                .collect(),
            share: None,
        })
        .collect()
}

impl Path {
    /// A hypothesis's stored model paths (`hypotheses.model_paths`), empty when it has none
    /// or they do not parse.
    pub fn list_of(stored: Option<&serde_json::Value>) -> Vec<Self> {
        stored
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// A path the model found, its nodes named through `overlay`; a hop over one of the
    /// prompt's claims is marked as a claim.
    pub fn of_model(
        overlay: &Overlay<'_>,
        path: &crate::model::gnn::ModelPath,
        claims: &[(NodeId, u32, NodeId)],
    ) -> Self {
        let steps = path
            .hops
            .iter()
            .map(|h| {
                let triple = if h.forward {
                    (h.from, h.relation, h.to)
                } else {
                    (h.to, h.relation, h.from)
                };
                Step {
                    from: overlay.key(h.from).to_owned(),
                    relation: overlay.graph.relation_key(h.relation).to_owned(),
                    to: overlay.key(h.to).to_owned(),
                    forward: h.forward,
                    claim: claims.contains(&triple),
                }
            })
            .collect();
        Self {
            steps,
            share: Some(f64::from(path.share)),
        }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            if i == 0 {
                write!(f, "{}", s.from)?;
            }
            let mark = if s.claim { "*" } else { "" };
            if s.forward {
                write!(f, " -{}{mark}-> {}", s.relation, s.to)?;
            } else {
                write!(f, " <-{}{mark}- {}", s.relation, s.to)?;
            }
        }
        if let Some(share) = self.share {
            write!(f, "  ({:.1}% of the score)", 100.0 * share)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Triple;

    /// a -r-> b -s-> c, a -r-> d <-s- c: from a new entity n claimed `n r a`, paths to c go
    /// through a and then b or d; the direct claim is a one-edge path.
    #[test]
    fn finds_short_paths_through_claims_and_graph() {
        let entities: Vec<(Box<str>, Box<str>)> = ["a", "b", "c", "d"]
            .iter()
            .map(|k| (Box::from(*k), Box::from("")))
            .collect();
        let relations: Vec<Box<str>> = vec!["r".into(), "s".into()];
        let triples = vec![
            Triple::new(0, 0, 1),
            Triple::new(1, 1, 2),
            Triple::new(0, 0, 3),
            Triple::new(2, 1, 3),
        ];
        let graph = Graph::new(entities, relations, triples).expect("graph");
        let n = 4; // the new entity
        let overlay = Overlay::new(&graph, vec!["new".into()], &[(n, 0, 0)]);
        let reach = Reach::from(&overlay, n);
        let to_c = paths(&overlay, &reach, 2, 5);
        let shown: Vec<String> = to_c.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown.contains(&"new -r*-> a -r-> b -s-> c".to_string()),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"new -r*-> a -r-> d <-s- c".to_string()),
            "{shown:?}"
        );
        let to_a = paths(&overlay, &reach, 0, 5);
        assert_eq!(to_a[0].to_string(), "new -r*-> a");
        assert!(to_a[0].steps[0].claim);
    }
}
