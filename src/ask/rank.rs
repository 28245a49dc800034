//! Answering a checked prompt: priors, fold-in per member, one product of the new entities'
//! queries against every trained entity, calibrated probabilities, the top rows with their
//! evidence, and the trained entities each new one resembles.

use super::paths::{self, Overlay, Reach};
use super::{
    Answer, Asker, Basis, Checked, Claim, EntityAnswer, PATHS_PER_ROW, Prompt, Row, SIMILAR,
    Similar,
};
use crate::graph::Triple;
use crate::model::calibrate::Calibrator;
use crate::model::foldin::{self, Dir, FoldConfig, Node};
use crate::model::{KgeModel, Model, NewAnswer, Prediction, Step, WalkScorer};
use std::collections::{HashMap, HashSet};
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

    pub(super) fn run(&self, prompt: &Prompt, checked: Checked, started: Instant) -> Answer {
        let g = &self.graph;
        let n_new = prompt.entities.len();
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
        // Candidates per query: one named end, or the pool (the context's entities where
        // some fit, in "every relation" mode).
        let candidates: Vec<Vec<Node>> = checked
            .queries
            .iter()
            .map(|q| match q.other {
                Some(o) => vec![o],
                None => {
                    let pool = &pools[&(q.relation, q.dir)];
                    let narrowed: Vec<u32> = if checked.all_mode && !context.is_empty() {
                        pool.iter()
                            .copied()
                            .filter(|c| context.contains(c))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let chosen = if narrowed.is_empty() { pool } else { &narrowed };
                    chosen.iter().map(|&c| Node::Known(c)).collect()
                }
            })
            .collect();
        let claimed: HashSet<(Node, u32, Node)> = checked
            .edges
            .iter()
            .map(|e| (e.head, e.relation, e.tail))
            .collect();
        let mut per_member: Vec<Vec<Vec<f64>>> = Vec::new(); // member -> query -> candidate
        let mut rows_by_member: Vec<Vec<Vec<f32>>> = Vec::new();
        let mut prior_kind: Vec<Option<String>> = vec![None; n_new];
        let mut claim_probs: Vec<Vec<f64>> = Vec::new(); // member -> claim
        for (mi, member) in self.ensemble.members.iter().enumerate() {
            let answer = match &member.model {
                Model::Kge(model) => self.member_kge(
                    model,
                    &member.calibrator,
                    mi,
                    prompt,
                    &checked,
                    &candidates,
                    &pool_fn,
                ),
                Model::Walks(model) => {
                    let scorer = model.scorer(&device, &self.context);
                    member_walks(&scorer, &member.calibrator, prompt, &checked, &candidates)
                }
            };
            if mi == 0 {
                prior_kind = answer.prior_kind;
            }
            claim_probs.push(answer.claim_probs);
            per_member.push(answer.probs);
            rows_by_member.push(answer.rows);
        }
        // Rank every candidate by its mean probability.
        let k = self.ensemble.members.len().max(1) as f64;
        let mut scored: Vec<(f64, usize, usize)> = Vec::new();
        let mut seen = HashSet::new();
        for (qi, q) in checked.queries.iter().enumerate() {
            for (ci, &c) in candidates[qi].iter().enumerate() {
                let triple = match q.dir {
                    Dir::Tail => (Node::New(q.new), q.relation, c),
                    Dir::Head => (c, q.relation, Node::New(q.new)),
                };
                if claimed.contains(&triple) || !seen.insert(triple) {
                    continue;
                }
                let mean = per_member.iter().map(|m| m[qi][ci]).sum::<f64>() / k;
                scored.push((mean, qi, ci));
            }
        }
        let n_candidates = scored.len();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        scored.truncate(prompt.top);
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
        let mut reach: HashMap<usize, Reach> = HashMap::new();
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
        for (rank, &(mean, qi, ci)) in scored.iter().enumerate() {
            let q = &checked.queries[qi];
            let c = candidates[qi][ci];
            let (h, t) = match q.dir {
                Dir::Tail => (Node::New(q.new), c),
                Dir::Head => (c, Node::New(q.new)),
            };
            let spread = Prediction::of(per_member.iter().map(|m| m[qi][ci]).collect()).std;
            let reach = reach
                .entry(q.new)
                .or_insert_with(|| Reach::from(&overlay, known + q.new as u32));
            let found = paths::paths(&overlay, reach, id_of(c), PATHS_PER_ROW);
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
                probability: mean,
                spread,
                no_edges,
                basis: basis_of(q.new),
                paths: found,
            });
        }
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

    /// One shallow member's answer: each new entity's row fitted to its claims (fold-in), then
    /// scored against every candidate.
    #[allow(clippy::too_many_arguments)]
    fn member_kge(
        &self,
        model: &KgeModel,
        calibrator: &Calibrator,
        mi: usize,
        prompt: &Prompt,
        checked: &Checked,
        candidates: &[Vec<Node>],
        pool_fn: &dyn Fn(u32, Dir) -> Vec<u32>,
    ) -> MemberAnswer {
        let device = crate::model::default_device();
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
                let s = foldin::score_rows(model, before(e.head), e.relation, before(e.tail));
                calibrator.prob(f64::from(s))
            })
            .collect();
        let config = FoldConfig {
            seed: self.fold.seed.wrapping_add(mi as u64),
            ..self.fold.clone()
        };
        let rows = foldin::fold_in(model, &init, &checked.edges, pool_fn, &config);
        // All-entity scores for the queries that rank a pool, in one product.
        let wide: Vec<usize> = (0..checked.queries.len())
            .filter(|&i| checked.queries[i].other.is_none())
            .collect();
        let mut qrows = Vec::new();
        for &i in &wide {
            let q = &checked.queries[i];
            qrows.extend(foldin::query_row(model, &rows[q.new], q.relation, q.dir));
        }
        let scorer = model.scorer(&device);
        let all = scorer.against_query_rows(qrows, wide.len());
        let n = model.num_entities;
        let mut wide_at: HashMap<usize, usize> = HashMap::new();
        for (slot, &i) in wide.iter().enumerate() {
            wide_at.insert(i, slot);
        }
        let row_of = |node: Node| -> &[f32] {
            match node {
                Node::Known(id) => model.entities.row(id as usize),
                Node::New(j) => &rows[j],
            }
        };
        let probs: Vec<Vec<f64>> = checked
            .queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                candidates[i]
                    .iter()
                    .map(|&c| {
                        let s = match (wide_at.get(&i), c) {
                            (Some(&slot), Node::Known(id)) => all[slot * n + id as usize],
                            _ => match q.dir {
                                Dir::Tail => {
                                    foldin::score_rows(model, &rows[q.new], q.relation, row_of(c))
                                }
                                Dir::Head => {
                                    foldin::score_rows(model, row_of(c), q.relation, &rows[q.new])
                                }
                            },
                        };
                        calibrator.prob(f64::from(s))
                    })
                    .collect()
            })
            .collect();
        MemberAnswer {
            probs,
            rows,
            claim_probs,
            prior_kind,
        }
    }

    /// The trained entities of the category whose rows are closest to new entity `i`'s.
    fn similar(&self, rows: &[Vec<Vec<f32>>], i: usize, category: &str) -> Vec<Similar> {
        let Some(ids) = self.by_category.get(category) else {
            return Vec::new();
        };
        let k = rows.len().max(1) as f64;
        // Each member's trained rows in the space its new rows live in.
        let tables: Vec<Option<(Vec<f32>, usize)>> = self
            .ensemble
            .members
            .iter()
            .map(|m| match &m.model {
                Model::Kge(_) => None,
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

/// One member's view of a prompt: per query, each candidate's probability; per new entity,
/// its row (for "behaves like"); per claim, its probability before the claims were read; per
/// new entity, the feature kind its prior used.
struct MemberAnswer {
    probs: Vec<Vec<f64>>,
    rows: Vec<Vec<f32>>,
    claim_probs: Vec<f64>,
    prior_kind: Vec<Option<String>>,
}

/// One walk-transformer member's answer: no fitting. Each new entity is its category's token,
/// its claimed edges the start of its context walks; every query is one forward pass. A claim's
/// prior probability is the same question asked with no claims at all.
fn member_walks(
    scorer: &WalkScorer<'_>,
    calibrator: &Calibrator,
    prompt: &Prompt,
    checked: &Checked,
    candidates: &[Vec<Node>],
) -> MemberAnswer {
    let n_new = prompt.entities.len();
    let (n, r_count) = (scorer.num_entities(), scorer.num_relations() as u32);
    let category = |i: usize| prompt.entities[i].category.as_str();
    // Features the model reads for the entity's category (others are ignored).
    let features = |i: usize| {
        checked.features[i]
            .as_ref()
            .filter(|(kind, x)| scorer.reads_feature(category(i), kind, x.len()))
            .map(|(kind, x)| (kind.as_str(), x.as_slice()))
    };
    // The relation as read from new entity `i`'s side (`None`: one the model never saw).
    let read = |relation: u32, dir: Dir| -> Option<u32> {
        (relation < r_count).then_some(match dir {
            Dir::Tail => relation,
            Dir::Head => relation + r_count,
        })
    };
    let claims: Vec<Vec<Step>> =
        (0..n_new)
            .map(|i| {
                checked
                    .edges
                    .iter()
                    .filter_map(|e| match (e.head, e.tail) {
                        (Node::New(h), Node::Known(t)) if h == i => read(e.relation, Dir::Tail)
                            .map(|relation| Step {
                                relation,
                                entity: t,
                            }),
                        (Node::Known(h), Node::New(t)) if t == i => read(e.relation, Dir::Head)
                            .map(|relation| Step {
                                relation,
                                entity: h,
                            }),
                        _ => None,
                    })
                    .filter(|s| (s.entity as usize) < n)
                    .collect()
            })
            .collect();
    let rows: Vec<NewAnswer> = (0..n_new)
        .map(|i| scorer.new_entity_answer(category(i), features(i), &claims[i]))
        .collect();
    let prob = |s: f32| calibrator.prob(f64::from(s));
    // All-entity scores per (new entity, relation as read from it), one pass each.
    let mut wide: HashMap<(usize, u32), Vec<f32>> = HashMap::new();
    for q in &checked.queries {
        if let Some(rt) = read(q.relation, q.dir) {
            wide.entry((q.new, rt)).or_insert_with(|| {
                scorer.new_entity_tails(category(q.new), features(q.new), &claims[q.new], &[rt])
            });
        }
    }
    let probs = checked
        .queries
        .iter()
        .zip(candidates)
        .map(|(q, cands)| {
            let rt = read(q.relation, q.dir);
            cands
                .iter()
                .map(|&c| {
                    let s = match (rt, c) {
                        (None, _) => f32::NEG_INFINITY,
                        (Some(rt), Node::Known(id)) => wide[&(q.new, rt)]
                            .get(id as usize)
                            .copied()
                            .unwrap_or(f32::NEG_INFINITY),
                        (Some(rt), Node::New(j)) => scorer
                            .new_entity_tails_with(
                                category(q.new),
                                features(q.new),
                                &claims[q.new],
                                rt,
                                &rows[j],
                            )
                            .last()
                            .copied()
                            .unwrap_or(f32::NEG_INFINITY),
                    };
                    prob(s)
                })
                .collect()
        })
        .collect();
    // A claim's score before any claim is read; one pass per (new entity, relation as read).
    let mut before: HashMap<(usize, u32), Vec<f32>> = HashMap::new();
    let mut claim_probs = Vec::with_capacity(checked.edges.len());
    for e in &checked.edges {
        let mut prior = |i: usize, dir: Dir, other: u32| {
            let rt = read(e.relation, dir)?;
            before
                .entry((i, rt))
                .or_insert_with(|| scorer.new_entity_tails(category(i), features(i), &[], &[rt]))
                .get(other as usize)
                .copied()
        };
        let s = match (e.head, e.tail) {
            (Node::New(i), Node::Known(t)) => prior(i, Dir::Tail, t),
            (Node::Known(h), Node::New(i)) => prior(i, Dir::Head, h),
            (Node::New(i), Node::New(j)) => read(e.relation, Dir::Tail).and_then(|rt| {
                let other = scorer.new_entity_answer(category(j), features(j), &[]);
                scorer
                    .new_entity_tails_with(category(i), features(i), &[], rt, &other)
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
    MemberAnswer {
        probs,
        rows: rows.into_iter().map(|r| r.row).collect(),
        claim_probs,
        prior_kind: (0..n_new)
            .map(|i| features(i).map(|(kind, _)| kind.to_owned()))
            .collect(),
    }
}

/// The shallow model of a member, if it is one: fold-in places a new entity by fitting its
/// embedding row.
pub(super) fn kge(model: &Model) -> Option<&KgeModel> {
    model.as_kge()
}
