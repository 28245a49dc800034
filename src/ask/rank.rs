//! Answering a checked prompt: priors, fold-in per member, each query's product against every
//! trained entity, calibrated probabilities, the top rows (a bounded heap: memory follows
//! `top`, not the candidates) with their evidence, and the trained entities each new one
//! resembles.

use super::paths::{self, Overlay, Reach};
use super::{
    Answer, Asker, Basis, Checked, Claim, EntityAnswer, PATHS_PER_ROW, Prompt, QuerySpec, Row,
    SIMILAR, Similar,
};
use crate::graph::Triple;
use crate::model::calibrate::Calibrator;
use crate::model::foldin::{self, Dir, FoldConfig, Node};
use crate::model::gnn::{GnnModel, GnnScorer};
use crate::model::popularity::{Popularity, PopularityWeights};
use crate::model::{Context, KgeModel, Model, NewAnswer, Prediction, Scorer, Step, WalkScorer};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Instant;

impl Asker {
    /// The trained entities a negative or a candidate for the `dir` end of `r` may be.
    fn pool(&self, r: u32, dir: Dir) -> Vec<u32> {
        let cats = match dir {
            Dir::Tail => &self.range[r as usize],
            Dir::Head => &self.domain[r as usize],
        };
        let mut out: Vec<u32> = cats
            .iter()
            .filter_map(|c| self.by_category.get(c))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out
    }

    /// Each member's starting rows for the new entities, and which kind each came from.
    fn priors(
        &self,
        prompt: &Prompt,
        checked: &Checked,
        member: usize,
    ) -> Vec<(Vec<f32>, Option<String>)> {
        prompt
            .entities
            .iter()
            .zip(&checked.features)
            .map(|(e, f)| {
                if let Some((kind, x)) = f
                    && let Some(map) = self.priors[member].get(&e.category, kind)
                    && let Some(row) = map.prior(x)
                {
                    return (row, Some(kind.clone()));
                }
                let mean = self.means[member]
                    .get(&e.category)
                    .cloned()
                    .or_else(|| {
                        kge(&self.ensemble.members[member].model).map(|m| foldin::mean_row(m, &[]))
                    })
                    .unwrap_or_default();
                (mean, None)
            })
            .collect()
    }

    /// The candidates of query `q`: its named end, or the pool of trained entities that fit
    /// (the context's entities where some fit, in "every relation" mode).
    fn candidates(
        &self,
        q: &QuerySpec,
        pools: &HashMap<(u32, Dir), Vec<u32>>,
        all_mode: bool,
        context: &HashSet<u32>,
    ) -> Vec<Node> {
        if let Some(o) = q.other {
            return vec![o];
        }
        let pool = pools
            .get(&(q.relation, q.dir))
            .map_or(&[][..], Vec::as_slice);
        if all_mode && !context.is_empty() {
            let narrowed: Vec<Node> = pool
                .iter()
                .filter(|c| context.contains(c))
                .map(|&c| Node::Known(c))
                .collect();
            if !narrowed.is_empty() {
                return narrowed;
            }
        }
        pool.iter().map(|&c| Node::Known(c)).collect()
    }

    /// Ranks the candidates one query at a time, keeping only the `top` best: memory follows
    /// `top` and one query's candidates, never every candidate of the prompt.
    pub(super) fn run(&self, prompt: &Prompt, checked: Checked, started: Instant) -> Answer {
        let g = &self.graph;
        let device = crate::model::default_device();
        let pools: HashMap<(u32, Dir), Vec<u32>> = checked
            .edges
            .iter()
            .flat_map(|e| [(e.relation, Dir::Tail), (e.relation, Dir::Head)])
            .chain(checked.queries.iter().map(|q| (q.relation, q.dir)))
            .collect::<HashSet<_>>()
            .into_iter()
            .map(|(r, d)| ((r, d), self.pool(r, d)))
            .collect();
        let pool_fn = |r: u32, d: Dir| pools.get(&(r, d)).cloned().unwrap_or_default();
        let context: HashSet<u32> = checked
            .context
            .iter()
            .filter_map(|n| match n {
                Node::Known(id) => Some(*id),
                Node::New(_) => None,
            })
            .collect();
        let claimed: HashSet<(Node, u32, Node)> = checked
            .edges
            .iter()
            .map(|e| (e.head, e.relation, e.tail))
            .collect();
        let mut members: Vec<Member<'_>> = self
            .ensemble
            .members
            .iter()
            .enumerate()
            .map(|(mi, member)| match &member.model {
                Model::Kge(model) => self.prepare_kge(
                    model,
                    &member.calibrator,
                    mi,
                    prompt,
                    &checked,
                    &pool_fn,
                    &device,
                ),
                Model::Walks(model) => prepare_walks(
                    model.scorer(&device, &self.context),
                    &member.calibrator,
                    self.blend(),
                    prompt,
                    &checked,
                ),
                Model::Gnn(model) => prepare_gnn(
                    model,
                    &self.context,
                    &device,
                    &member.calibrator,
                    self.blend(),
                    &checked,
                    prompt.entities.len(),
                ),
            })
            .collect();
        let prior_kind: Vec<Option<String>> = members
            .first()
            .map(|m| m.prior_kind.clone())
            .unwrap_or_else(|| vec![None; prompt.entities.len()]);
        // A triple two queries share is ranked once, by the first: queries are distinct, so
        // only a named end and a pool of the same new entity, relation and side overlap.
        let wide: HashMap<(usize, u32, Dir), usize> = checked
            .queries
            .iter()
            .enumerate()
            .filter(|(_, q)| q.other.is_none())
            .map(|(i, q)| ((q.new, q.relation, q.dir), i))
            .collect();
        let named: HashMap<(usize, u32, Dir, Node), usize> = checked
            .queries
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.other.map(|o| ((q.new, q.relation, q.dir, o), i)))
            .collect();
        let k = members.len().max(1) as f64;
        let mut best = Best::new(prompt.top);
        let mut n_candidates = 0;
        for (qi, q) in checked.queries.iter().enumerate() {
            let cands = self.candidates(q, &pools, checked.all_mode, &context);
            let verdicts = &self.ensemble.verdicts;
            let per_member: Vec<Vec<f64>> = members
                .iter_mut()
                .map(|m| {
                    let mut probs = m.probs(prompt, &checked, q, &cands);
                    for p in &mut probs {
                        *p = verdicts.prob(q.relation, *p);
                    }
                    probs
                })
                .collect();
            for (ci, &c) in cands.iter().enumerate() {
                let triple = match q.dir {
                    Dir::Tail => (Node::New(q.new), q.relation, c),
                    Dir::Head => (c, q.relation, Node::New(q.new)),
                };
                let earlier = match q.other {
                    None => named
                        .get(&(q.new, q.relation, q.dir, c))
                        .is_some_and(|&i| i < qi),
                    Some(_) => wide.get(&(q.new, q.relation, q.dir)).is_some_and(|&i| {
                        i < qi
                            && self
                                .candidates(&checked.queries[i], &pools, checked.all_mode, &context)
                                .contains(&c)
                    }),
                };
                if claimed.contains(&triple) || earlier {
                    continue;
                }
                n_candidates += 1;
                let mean = per_member.iter().map(|m| m[ci]).sum::<f64>() / k;
                let entry = Ranked {
                    mean,
                    qi,
                    ci,
                    other: c,
                    spread: 0.0,
                };
                best.offer(entry, || {
                    Prediction::of(per_member.iter().map(|m| m[ci]).collect()).std
                });
            }
        }
        let scored = best.into_sorted();
        // Evidence: paths through the graph and the claims.
        let known = g.num_entities() as u32;
        let id_of = |n: Node| -> paths::NodeId {
            match n {
                Node::Known(id) => id,
                Node::New(i) => known + i as u32,
            }
        };
        let claims: Vec<(u32, u32, u32)> = checked
            .edges
            .iter()
            .map(|e| (id_of(e.head), e.relation, id_of(e.tail)))
            .collect();
        let overlay = Overlay::new(
            g,
            prompt.entities.iter().map(|e| e.id.clone()).collect(),
            &claims,
        );
        // One new entity's reach at a time (each may hold hundreds of thousands of nodes).
        let mut by_new: Vec<usize> = (0..scored.len()).collect();
        by_new.sort_by_key(|&i| checked.queries[scored[i].qi].new);
        let mut found: Vec<Vec<paths::Path>> = vec![Vec::new(); scored.len()];
        let mut reach: Option<(usize, Reach)> = None;
        for i in by_new {
            let new = checked.queries[scored[i].qi].new;
            if reach.as_ref().is_none_or(|(n, _)| *n != new) {
                reach = Some((new, Reach::from(&overlay, known + new as u32)));
            }
            if let Some((_, r)) = &reach {
                found[i] = paths::paths(&overlay, r, id_of(scored[i].other), PATHS_PER_ROW);
            }
        }
        drop(reach);
        // A message-passing member explains its own answers: the paths that carried the
        // score, found from its gradients, replace the graph's for the top rows (each costs
        // a forward and a backward pass over the whole graph).
        if let Some((scorer, first_new)) = members.iter().find_map(|m| match &m.kind {
            MemberKind::Gnn {
                scorer, first_new, ..
            } => Some((scorer, *first_new)),
            _ => None,
        }) {
            let r_count = scorer.num_relations();
            for (i, r) in scored.iter().enumerate().take(MODEL_PATH_ROWS) {
                let q = &checked.queries[r.qi];
                if q.relation >= r_count {
                    continue;
                }
                let rt = match q.dir {
                    Dir::Tail => q.relation,
                    Dir::Head => q.relation + r_count,
                };
                let answer = match r.other {
                    Node::Known(id) => id,
                    Node::New(j) => first_new + j as u32,
                };
                let model_paths: Vec<paths::Path> = scorer
                    .explain((first_new + q.new as u32, rt), answer, PATHS_PER_ROW)
                    .iter()
                    .map(|p| paths::Path::of_model(&overlay, p, &claims))
                    .collect();
                if !model_paths.is_empty() {
                    found[i] = model_paths;
                }
            }
        }
        let edges_of = |i: usize| {
            checked
                .edges
                .iter()
                .filter(|e| e.head == Node::New(i) || e.tail == Node::New(i))
                .count()
        };
        let basis_of = |i: usize| {
            if edges_of(i) > 0 {
                Basis::Edges
            } else if prior_kind[i].is_some() {
                Basis::Features
            } else {
                Basis::CategoryMean
            }
        };
        let key_of = |n: Node| -> String {
            match n {
                Node::Known(id) => g.entity_key(id).to_owned(),
                Node::New(i) => prompt.entities[i].id.clone(),
            }
        };
        let name_of = |n: Node| -> String {
            match n {
                Node::Known(id) => self.name(g.entity_key(id)),
                Node::New(i) => prompt.entities[i].name.clone(),
            }
        };
        let mut out_rows = Vec::with_capacity(scored.len());
        for (rank, (r, found)) in scored.iter().zip(found).enumerate() {
            let q = &checked.queries[r.qi];
            let (h, t) = match q.dir {
                Dir::Tail => (Node::New(q.new), r.other),
                Dir::Head => (r.other, Node::New(q.new)),
            };
            let new_ends: Vec<usize> = [h, t]
                .iter()
                .filter_map(|n| match n {
                    Node::New(i) => Some(*i),
                    Node::Known(_) => None,
                })
                .collect();
            let no_edges = new_ends.iter().all(|&i| edges_of(i) == 0);
            out_rows.push(Row {
                rank: rank + 1,
                head: key_of(h),
                relation: g.relation_key(q.relation).to_owned(),
                tail: key_of(t),
                head_name: name_of(h),
                tail_name: name_of(t),
                probability: r.mean,
                spread: r.spread,
                no_edges,
                basis: basis_of(q.new),
                paths: found,
            });
        }
        let rows_by_member: Vec<Vec<Vec<f32>>> = members
            .iter_mut()
            .map(|m| std::mem::take(&mut m.rows))
            .collect();
        let claim_probs: Vec<Vec<f64>> = members
            .iter_mut()
            .map(|m| std::mem::take(&mut m.claim_probs))
            .collect();
        drop(members);
        let entities = prompt
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| EntityAnswer {
                id: e.id.clone(),
                category: e.category.clone(),
                name: e.name.clone(),
                basis: basis_of(i),
                edges: edges_of(i),
                prior: prior_kind[i].clone(),
                similar: self.similar(&rows_by_member, i, &e.category),
            })
            .collect();
        Answer {
            model: self.model_id,
            graph_version: self.graph_version,
            entities,
            rows: out_rows,
            claims: checked
                .claims
                .iter()
                .enumerate()
                .map(|(i, [h, r, t])| {
                    let p = Prediction::of(claim_probs.iter().map(|m| m[i]).collect());
                    let name = |k: &str| match prompt.entities.iter().find(|e| e.id == k) {
                        Some(e) => e.name.clone(),
                        None => self.name(k),
                    };
                    Claim {
                        head: h.clone(),
                        relation: r.clone(),
                        tail: t.clone(),
                        head_name: name(h),
                        tail_name: name(t),
                        prior_probability: p.mean,
                        prior_spread: p.std,
                    }
                })
                .collect(),
            candidates: n_candidates,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// One shallow member, ready to score: each new entity's row fitted to its claims
    /// (fold-in), and each claim's probability before it.
    #[allow(clippy::too_many_arguments)]
    fn prepare_kge<'a>(
        &'a self,
        model: &'a KgeModel,
        calibrator: &'a Calibrator,
        mi: usize,
        prompt: &Prompt,
        checked: &Checked,
        pool_fn: &dyn Fn(u32, Dir) -> Vec<u32>,
        device: &burn::tensor::Device,
    ) -> Member<'a> {
        let starts = self.priors(prompt, checked, mi);
        let prior_kind = starts.iter().map(|s| s.1.clone()).collect();
        let init: Vec<Vec<f32>> = starts.into_iter().map(|s| s.0).collect();
        let before = |n: Node| -> &[f32] {
            match n {
                Node::Known(id) => model.entities.row(id as usize),
                Node::New(j) => &init[j],
            }
        };
        let claim_probs = checked
            .edges
            .iter()
            .map(|e| {
                let s = foldin::score_rows(model, before(e.head), e.relation, before(e.tail))
                    + self.blend_term(e.head, e.relation, e.tail);
                calibrator.prob(f64::from(s))
            })
            .collect();
        let config = FoldConfig {
            seed: self.fold.seed.wrapping_add(mi as u64),
            ..self.fold.clone()
        };
        let rows = foldin::fold_in(model, &init, &checked.edges, pool_fn, &config);
        Member {
            calibrator,
            blend: self.blend(),
            kind: MemberKind::Kge {
                model,
                scorer: Box::new(model.scorer(device)),
            },
            rows,
            claim_probs,
            prior_kind,
        }
    }
    /// The ensemble's popularity blend, when it has one.
    fn blend(&self) -> Option<(&PopularityWeights, &Popularity)> {
        self.ensemble
            .popularity
            .as_ref()
            .zip(self.context.popularity())
    }

    /// The popularity term of a claimed edge: each trained end's count on its side.
    fn blend_term(&self, head: Node, relation: u32, tail: Node) -> f32 {
        let Some((w, counts)) = self.blend() else {
            return 0.0;
        };
        let mut s = 0.0;
        if let Node::Known(id) = tail {
            s += w.end_term(counts, relation, id, true);
        }
        if let Node::Known(id) = head {
            s += w.end_term(counts, relation, id, false);
        }
        s
    }

    /// The trained entities of the category whose rows are closest to new entity `i`'s.
    fn similar(&self, rows: &[Vec<Vec<f32>>], i: usize, category: &str) -> Vec<Similar> {
        let Some(ids) = self.by_category.get(category) else {
            return Vec::new();
        };
        // Members without entity rows (message passing) have nothing to compare.
        if rows.iter().all(|r| r.get(i).is_none_or(|x| x.is_empty())) {
            return Vec::new();
        }
        let k = rows.len().max(1) as f64;
        // Each member's trained rows in the space its new rows live in.
        let tables: Vec<Option<(Vec<f32>, usize)>> = self
            .ensemble
            .members
            .iter()
            .map(|m| match &m.model {
                Model::Kge(_) | Model::Gnn(_) => None,
                Model::Walks(w) => Some((w.entity_table(), w.row_width())),
            })
            .collect();
        let trained_row = |mi: usize, id: u32| -> &[f32] {
            let id = id as usize;
            match (&self.ensemble.members[mi].model, &tables[mi]) {
                (Model::Walks(_), Some((t, d))) => t.get(id * d..(id + 1) * d).unwrap_or(&[]),
                (Model::Kge(m), _) if id < m.num_entities => m.entities.row(id),
                _ => &[],
            }
        };
        let mut sims: Vec<(f64, u32)> = ids
            .iter()
            .map(|&id| {
                let s: f64 = rows
                    .iter()
                    .enumerate()
                    .map(|(mi, r)| f64::from(foldin::cosine(&r[i], trained_row(mi, id))))
                    .sum();
                (s / k, id)
            })
            .collect();
        let top = SIMILAR.min(sims.len());
        if top == 0 {
            return Vec::new();
        }
        sims.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        sims.truncate(top);
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        sims.into_iter()
            .map(|(s, id)| {
                let key = self.graph.entity_key(id);
                Similar {
                    id: key.to_owned(),
                    name: self.name(key),
                    similarity: s,
                }
            })
            .collect()
    }
}

/// One ranked candidate: query `qi`'s candidate `ci` (the other end `other`). Ordered worst
/// first, so a max-heap's top is the row to drop: the lowest mean, then the later query and
/// candidate (the order the rows are shown in, reversed).
struct Ranked {
    mean: f64,
    qi: usize,
    ci: usize,
    other: Node,
    spread: f64,
}

impl Ranked {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        other
            .mean
            .total_cmp(&self.mean)
            .then(self.qi.cmp(&other.qi))
            .then(self.ci.cmp(&other.ci))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.order(other).is_eq()
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.order(other)
    }
}

/// The `top` best candidates offered so far, and nothing else.
struct Best {
    heap: BinaryHeap<Ranked>,
    top: usize,
}

impl Best {
    fn new(top: usize) -> Self {
        Self {
            heap: BinaryHeap::with_capacity(top + 1),
            top,
        }
    }

    /// Keeps `entry` if it is among the best so far; its spread is computed only then.
    fn offer(&mut self, entry: Ranked, spread: impl FnOnce() -> f64) {
        let better = self.heap.len() < self.top || self.heap.peek().is_some_and(|w| entry < *w);
        if better {
            self.heap.push(Ranked {
                spread: spread(),
                ..entry
            });
            if self.heap.len() > self.top {
                self.heap.pop();
            }
        }
    }

    /// Best first: the highest mean, then the earlier query and candidate.
    fn into_sorted(self) -> Vec<Ranked> {
        self.heap.into_sorted_vec()
    }
}

/// One member, ready to score a query's candidates: per new entity, its row (for "behaves
/// like"); per claim, its probability before the claims were read; per new entity, the
/// feature kind its prior used.
struct Member<'a> {
    calibrator: &'a Calibrator,
    /// The ensemble's popularity blend and the graph's counts: what a trained candidate's
    /// score gains as the query's answer (the calibrator was fitted on blended scores).
    blend: Option<(&'a PopularityWeights, &'a Popularity)>,
    kind: MemberKind<'a>,
    rows: Vec<Vec<f32>>,
    claim_probs: Vec<f64>,
    prior_kind: Vec<Option<String>>,
}

enum MemberKind<'a> {
    Kge {
        model: &'a KgeModel,
        /// Boxed: the walk variant is larger.
        scorer: Box<Scorer<'a>>,
    },
    Walks {
        scorer: Box<WalkScorer<'a>>,
        /// Per new entity: its claims as steps of its context walks.
        claims: Vec<Vec<Step>>,
        answers: Vec<NewAnswer>,
        /// All-entity scores per (new entity, relation as read from it); a few at a time.
        wide: HashMap<(usize, u32), Vec<f32>>,
    },
    Gnn {
        /// Message passing over the graph with the prompt's new entities (ids from
        /// `first_new`) and claimed edges added, for this prompt only.
        scorer: Box<GnnScorer<'a>>,
        first_new: u32,
        /// Every node's logit per (new entity, relation as read from it).
        wide: HashMap<(usize, u32), Vec<f32>>,
    },
}

/// All-entity score vectors a walk member keeps between queries (each is as long as the
/// graph has entities).
const WIDE_CACHE: usize = 8;

/// Rows whose evidence a message-passing member finds from its own gradients.
const MODEL_PATH_ROWS: usize = 5;

impl Member<'_> {
    /// The calibrated probability of each candidate of query `q`.
    fn probs(
        &mut self,
        prompt: &Prompt,
        checked: &Checked,
        q: &QuerySpec,
        cands: &[Node],
    ) -> Vec<f64> {
        let calibrator = self.calibrator;
        let blend = self.blend;
        // A trained candidate's popularity term as this query's answer; a new entity has none.
        let bonus = |c: Node| -> f32 {
            match (c, blend) {
                (Node::Known(id), Some((w, counts))) => {
                    w.end_term(counts, q.relation, id, q.dir == Dir::Tail)
                }
                _ => 0.0,
            }
        };
        let prob = |s: f32, c: Node| calibrator.prob(f64::from(s + bonus(c)));
        let rows = &self.rows;
        match &mut self.kind {
            MemberKind::Kge { model, scorer } => {
                let model: &KgeModel = model;
                let row_of = |node: Node| -> &[f32] {
                    match node {
                        Node::Known(id) => model.entities.row(id as usize),
                        Node::New(j) => &rows[j],
                    }
                };
                let pair = |c: Node| match q.dir {
                    Dir::Tail => foldin::score_rows(model, &rows[q.new], q.relation, row_of(c)),
                    Dir::Head => foldin::score_rows(model, row_of(c), q.relation, &rows[q.new]),
                };
                if q.other.is_some() {
                    return cands.iter().map(|&c| prob(pair(c), c)).collect();
                }
                // A pool: every trained entity's score in one product.
                let qrow = foldin::query_row(model, &rows[q.new], q.relation, q.dir);
                let all = scorer.against_query_rows(qrow, 1);
                cands
                    .iter()
                    .map(|&c| match c {
                        Node::Known(id) => prob(
                            all.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY),
                            c,
                        ),
                        Node::New(_) => prob(pair(c), c),
                    })
                    .collect()
            }
            MemberKind::Gnn {
                scorer,
                first_new,
                wide,
            } => {
                let r_count = scorer.num_relations();
                if q.relation >= r_count {
                    return vec![calibrator.prob(f64::NEG_INFINITY); cands.len()];
                }
                let rt = match q.dir {
                    Dir::Tail => q.relation,
                    Dir::Head => q.relation + r_count,
                };
                let key = (q.new, rt);
                if !wide.contains_key(&key) {
                    if wide.len() >= WIDE_CACHE {
                        wide.clear();
                    }
                    let logits = scorer.logits(&[(*first_new + q.new as u32, rt)]);
                    wide.insert(key, logits);
                }
                let row = &wide[&key];
                cands
                    .iter()
                    .map(|&c| {
                        let id = match c {
                            Node::Known(id) => id as usize,
                            Node::New(j) => *first_new as usize + j,
                        };
                        prob(row.get(id).copied().unwrap_or(f32::NEG_INFINITY), c)
                    })
                    .collect()
            }
            MemberKind::Walks {
                scorer,
                claims,
                answers,
                wide,
            } => {
                let w = WalkView {
                    scorer,
                    prompt,
                    checked,
                };
                let Some(rt) = w.read(q.relation, q.dir) else {
                    return vec![calibrator.prob(f64::NEG_INFINITY); cands.len()];
                };
                let key = (q.new, rt);
                if cands.iter().any(|c| matches!(c, Node::Known(_))) && !wide.contains_key(&key) {
                    if wide.len() >= WIDE_CACHE {
                        wide.clear();
                    }
                    let tails = scorer.new_entity_tails(
                        w.category(q.new),
                        w.features(q.new),
                        &claims[q.new],
                        &[rt],
                    );
                    wide.insert(key, tails);
                }
                cands
                    .iter()
                    .map(|&c| {
                        let s = match c {
                            Node::Known(id) => wide
                                .get(&key)
                                .and_then(|t| t.get(id as usize))
                                .copied()
                                .unwrap_or(f32::NEG_INFINITY),
                            Node::New(j) => scorer
                                .new_entity_tails_with(
                                    w.category(q.new),
                                    w.features(q.new),
                                    &claims[q.new],
                                    rt,
                                    &answers[j],
                                )
                                .last()
                                .copied()
                                .unwrap_or(f32::NEG_INFINITY),
                        };
                        prob(s, c)
                    })
                    .collect()
            }
        }
    }
}

/// What a walk member reads of the prompt.
struct WalkView<'s, 'm, 'p> {
    scorer: &'s WalkScorer<'m>,
    prompt: &'p Prompt,
    checked: &'p Checked,
}

impl WalkView<'_, '_, '_> {
    fn category(&self, i: usize) -> &str {
        self.prompt.entities[i].category.as_str()
    }

    /// Features the model reads for the entity's category (others are ignored).
    fn features(&self, i: usize) -> Option<(&str, &[f32])> {
        self.checked.features[i]
            .as_ref()
            .filter(|(kind, x)| self.scorer.reads_feature(self.category(i), kind, x.len()))
            .map(|(kind, x)| (kind.as_str(), x.as_slice()))
    }

    /// The relation as read from a new entity's side (`None`: one the model never saw).
    fn read(&self, relation: u32, dir: Dir) -> Option<u32> {
        let r_count = self.scorer.num_relations() as u32;
        (relation < r_count).then_some(match dir {
            Dir::Tail => relation,
            Dir::Head => relation + r_count,
        })
    }
}

/// One message-passing member, ready to score: no fitting. The prompt's new entities join
/// the graph as nodes after the trained ones, its claims as edges (both directions), for this
/// prompt only. A claim's prior probability is its score on the graph without the claims.
fn prepare_gnn<'a>(
    model: &'a GnnModel,
    context: &'a Context,
    device: &burn::tensor::Device,
    calibrator: &'a Calibrator,
    blend: Option<(&'a PopularityWeights, &'a Popularity)>,
    checked: &Checked,
    n_new: usize,
) -> Member<'a> {
    let first_new = context.num_entities() as u32;
    let id = |n: Node| match n {
        Node::Known(id) => id,
        Node::New(j) => first_new + j as u32,
    };
    let claims: Vec<(u32, u32, u32)> = checked
        .edges
        .iter()
        .map(|e| (id(e.head), e.relation, id(e.tail)))
        .collect();
    let nodes = first_new as usize + n_new;
    let bare = GnnScorer::with_nodes(model, device, context, &[], nodes);
    let prob = |s: f32| calibrator.prob(f64::from(s));
    let r_count = bare.num_relations();
    let claim_probs = claims
        .iter()
        .map(|&(h, r, t)| {
            let s = (r < r_count)
                .then(|| bare.logits(&[(h, r)]).get(t as usize).copied())
                .flatten();
            prob(s.unwrap_or(f32::NEG_INFINITY))
        })
        .collect();
    Member {
        calibrator,
        blend,
        kind: MemberKind::Gnn {
            scorer: Box::new(GnnScorer::with_nodes(
                model, device, context, &claims, nodes,
            )),
            first_new,
            wide: HashMap::new(),
        },
        rows: vec![Vec::new(); n_new],
        claim_probs,
        prior_kind: vec![None; n_new],
    }
}

/// One walk-transformer member, ready to score: no fitting. Each new entity is its
/// category's token, its claimed edges the start of its context walks; every query is one
/// forward pass. A claim's prior probability is the same question asked with no claims.
fn prepare_walks<'a>(
    scorer: WalkScorer<'a>,
    calibrator: &'a Calibrator,
    blend: Option<(&'a PopularityWeights, &'a Popularity)>,
    prompt: &Prompt,
    checked: &Checked,
) -> Member<'a> {
    let n_new = prompt.entities.len();
    let n = scorer.num_entities();
    let w = WalkView {
        scorer: &scorer,
        prompt,
        checked,
    };
    let claims: Vec<Vec<Step>> = (0..n_new)
        .map(|i| {
            checked
                .edges
                .iter()
                .filter_map(|e| match (e.head, e.tail) {
                    (Node::New(h), Node::Known(t)) if h == i => {
                        w.read(e.relation, Dir::Tail).map(|relation| Step {
                            relation,
                            entity: t,
                        })
                    }
                    (Node::Known(h), Node::New(t)) if t == i => {
                        w.read(e.relation, Dir::Head).map(|relation| Step {
                            relation,
                            entity: h,
                        })
                    }
                    _ => None,
                })
                .filter(|s| (s.entity as usize) < n)
                .collect()
        })
        .collect();
    let answers: Vec<NewAnswer> = (0..n_new)
        .map(|i| scorer.new_entity_answer(w.category(i), w.features(i), &claims[i]))
        .collect();
    let prob = |s: f32| calibrator.prob(f64::from(s));
    // A claim's score before any claim is read; one pass per (new entity, relation as read).
    let mut before: HashMap<(usize, u32), Vec<f32>> = HashMap::new();
    let mut claim_probs = Vec::with_capacity(checked.edges.len());
    for e in &checked.edges {
        let mut prior = |i: usize, dir: Dir, other: u32| {
            let rt = w.read(e.relation, dir)?;
            before
                .entry((i, rt))
                .or_insert_with(|| {
                    scorer.new_entity_tails(w.category(i), w.features(i), &[], &[rt])
                })
                .get(other as usize)
                .copied()
        };
        let s = match (e.head, e.tail) {
            (Node::New(i), Node::Known(t)) => prior(i, Dir::Tail, t),
            (Node::Known(h), Node::New(i)) => prior(i, Dir::Head, h),
            (Node::New(i), Node::New(j)) => w.read(e.relation, Dir::Tail).and_then(|rt| {
                let other = scorer.new_entity_answer(w.category(j), w.features(j), &[]);
                scorer
                    .new_entity_tails_with(w.category(i), w.features(i), &[], rt, &other)
                    .last()
                    .copied()
            }),
            (Node::Known(h), Node::Known(t)) => scorer
                .triples(&[Triple::new(h, e.relation, t)])
                .first()
                .copied(),
        };
        claim_probs.push(prob(s.unwrap_or(f32::NEG_INFINITY)));
    }
    drop(before);
    let prior_kind = (0..n_new)
        .map(|i| w.features(i).map(|(kind, _)| kind.to_owned()))
        .collect();
    let rows = answers.iter().map(|a| a.row.clone()).collect();
    Member {
        calibrator,
        blend,
        kind: MemberKind::Walks {
            scorer: Box::new(scorer),
            claims,
            answers,
            wide: HashMap::new(),
        },
        rows,
        claim_probs,
        prior_kind,
    }
}

/// The shallow model of a member, if it is one: fold-in places a new entity by fitting its
/// embedding row.
pub(super) fn kge(model: &Model) -> Option<&KgeModel> {
    model.as_kge()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heap_keeps_what_sorting_every_candidate_keeps() {
        // Means with many ties, offered in a scrambled order.
        let all: Vec<(f64, usize, usize)> = (0..500)
            .map(|i| (f64::from((i * 37 % 23) as u32) / 7.0, i % 5, (i * 13) % 101))
            .collect();
        for top in [1, 7, 100, 499, 500, 1000] {
            let mut best = Best::new(top);
            for &(mean, qi, ci) in &all {
                let entry = Ranked {
                    mean,
                    qi,
                    ci,
                    other: Node::Known(ci as u32),
                    spread: 0.0,
                };
                best.offer(entry, || mean / 2.0);
            }
            let mut sorted = all.clone();
            sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
            sorted.truncate(top);
            let kept: Vec<(f64, usize, usize)> = best
                .into_sorted()
                .iter()
                .map(|r| {
                    assert_eq!(r.spread, r.mean / 2.0);
                    (r.mean, r.qi, r.ci)
                })
                .collect();
            assert_eq!(kept, sorted, "top {top}");
        }
    }
}
