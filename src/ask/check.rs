//! Checking a prompt against the model's graph: every name resolved, every claim and
//! prediction inside a relation's observed domain and range, features turned into vectors.
//! Problems are collected, never the first alone, as `(path, message)` pairs.

use super::{Asker, Checked, MAX_TOP, NewEntity, Problem, Prompt, QuerySpec, limits, prompt};
use crate::model::foldin::{Dir, Edge, Node};
use std::collections::{HashMap, HashSet};

/// Why a prompt is not answered.
pub(super) enum Refused {
    /// Over a limit: more work than one ask may do (nothing else was checked).
    Limits(Vec<Problem>),
    /// What the prompt says does not fit the graph.
    Problems(Vec<Problem>),
}

impl Asker {
    /// Resolves every name in the prompt, or says what is wrong with it.
    pub(super) fn check(&self, prompt: &Prompt) -> Result<Checked, Refused> {
        limits::check(prompt).map_err(Refused::Limits)?;
        let mut problems = Vec::new();
        let g = &self.graph;
        let trained = self.trained();
        let categories: HashSet<&str> = self.by_category.keys().map(String::as_str).collect();
        let mut new_ids: HashMap<&str, usize> = HashMap::new();
        let mut features: Vec<Option<(String, Vec<f32>)>> = Vec::new();
        if prompt.entities.is_empty() {
            problems.push(Problem::new(
                "entities",
                "a prompt needs at least one new entity (for entities the graph has, use `hypograph predict`)",
            ));
        }
        for (i, e) in prompt.entities.iter().enumerate() {
            let at = format!("entities[{i}]");
            if e.id.trim().is_empty() || e.id == prompt::ANY {
                problems.push(Problem::new(format!("{at}.id"), "an entity needs an id"));
            } else if g.entity_id(&e.id).is_some_and(|id| (id as usize) < trained) {
                problems.push(Problem::new(
                    format!("{at}.id"),
                    format!(
                        "`{}` is already in the graph; name it in edges without declaring it",
                        e.id
                    ),
                ));
            } else if new_ids.insert(e.id.as_str(), i).is_some() {
                problems.push(Problem::new(
                    format!("{at}.id"),
                    format!("`{}` is declared twice", e.id),
                ));
            }
            if !categories.contains(e.category.as_str()) {
                let mut known: Vec<&str> = categories
                    .iter()
                    .copied()
                    .filter(|c| !c.is_empty())
                    .collect();
                known.sort_unstable();
                let message = if known.is_empty() {
                    format!(
                        "unknown category `{}`: this graph has no categories",
                        e.category
                    )
                } else if e.category.is_empty() {
                    format!("a category is required, one of: {}", known.join(", "))
                } else {
                    format!(
                        "unknown category `{}`; the graph has: {}",
                        e.category,
                        known.join(", ")
                    )
                };
                problems.push(Problem::new(format!("{at}.category"), message));
            }
            features.push(self.featurize(i, e, &mut problems));
        }
        let node = |key: &str| -> Option<Node> {
            if let Some(&i) = new_ids.get(key) {
                return Some(Node::New(i));
            }
            g.entity_id(key)
                .filter(|&id| (id as usize) < trained)
                .map(Node::Known)
        };
        let category = |n: Node| -> &str {
            match n {
                Node::Known(id) => g.category(id),
                Node::New(i) => prompt.entities[i].category.as_str(),
            }
        };
        let unknown_entity = |key: &str| {
            format!(
                "unknown entity `{key}`: neither in the graph nor declared in the prompt's entities"
            )
        };
        let mut edges = Vec::new();
        let mut claims = Vec::new();
        let mut claimed = HashSet::new();
        for (i, [h, r, t]) in prompt.edges.iter().enumerate() {
            let at = format!("edges[{i}]");
            let (hn, tn) = (node(h), node(t));
            let rid = g.relation_id(r);
            if hn.is_none() {
                problems.push(Problem::new(format!("{at}[0]"), unknown_entity(h)));
            }
            if rid.is_none() {
                problems.push(Problem::new(format!("{at}[1]"), self.unknown_relation(r)));
            }
            if tn.is_none() {
                problems.push(Problem::new(format!("{at}[2]"), unknown_entity(t)));
            }
            let (Some(hn), Some(rid), Some(tn)) = (hn, rid, tn) else {
                continue;
            };
            if let Some(m) = self.signature_problem(category(hn), rid, category(tn)) {
                problems.push(Problem::new(at, m));
                continue;
            }
            if let (Node::Known(a), Node::Known(b)) = (hn, tn)
                && g.contains(crate::graph::Triple::new(a, rid, b))
            {
                problems.push(Problem::new(
                    at,
                    format!("`{h} {r} {t}` is already in the graph"),
                ));
                continue;
            }
            if claimed.insert((hn, rid, tn)) {
                edges.push(Edge {
                    head: hn,
                    relation: rid,
                    tail: tn,
                });
                claims.push([h.clone(), r.clone(), t.clone()]);
            }
        }
        let mut context_entities = Vec::new();
        for (i, c) in prompt.context.entities.iter().enumerate() {
            match node(c) {
                Some(n) => context_entities.push(n),
                None => problems.push(Problem::new(
                    format!("context.entities[{i}]"),
                    unknown_entity(c),
                )),
            }
        }
        let mut context_relations = Vec::new();
        for (i, r) in prompt.context.relations.iter().enumerate() {
            match g.relation_id(r) {
                Some(id) => context_relations.push(id),
                None => problems.push(Problem::new(
                    format!("context.relations[{i}]"),
                    self.unknown_relation(r),
                )),
            }
        }
        if prompt.top == 0 {
            problems.push(Problem::new(
                "top",
                format!("must be between 1 and {MAX_TOP}"),
            ));
        }
        // What to predict: explicit specs, or every relation of every new entity.
        let mut queries = Vec::new();
        let mut distinct = HashSet::new();
        let specs: Vec<(String, [String; 3])> = if prompt.predict.is_empty() {
            prompt
                .entities
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    (
                        format!("entities[{i}]"),
                        [e.id.clone(), prompt::ANY.into(), prompt::ANY.into()],
                    )
                })
                .collect()
        } else {
            prompt
                .predict
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("predict[{i}]"), p.clone()))
                .collect()
        };
        for (at, [h, r, t]) in &specs {
            let end =
                |key: &str, pos: usize, problems: &mut Vec<Problem>| -> Option<Option<Node>> {
                    if key == prompt::ANY {
                        return Some(None);
                    }
                    match node(key) {
                        Some(n) => Some(Some(n)),
                        None => {
                            problems
                                .push(Problem::new(format!("{at}[{pos}]"), unknown_entity(key)));
                            None
                        }
                    }
                };
            let (Some(hn), Some(tn)) = (end(h, 0, &mut problems), end(t, 2, &mut problems)) else {
                continue;
            };
            let rel = if r == prompt::ANY {
                None
            } else {
                match g.relation_id(r) {
                    Some(id) => Some(id),
                    None => {
                        problems.push(Problem::new(format!("{at}[1]"), self.unknown_relation(r)));
                        continue;
                    }
                }
            };
            let (new, dir, other) = match (hn, tn) {
                (Some(Node::New(i)), other) => (i, Dir::Tail, other),
                (other, Some(Node::New(i))) => (i, Dir::Head, other),
                _ => {
                    problems.push(Problem::new(
                        at.clone(),
                        "names no new entity: predictions here are about the prompt's entities",
                    ));
                    continue;
                }
            };
            let new_cat = prompt.entities[new].category.as_str();
            let relations: Vec<u32> = match rel {
                Some(r) => vec![r],
                None if other.is_none() && !context_relations.is_empty() => {
                    context_relations.clone()
                }
                None => (0..g.num_relations() as u32).collect(),
            };
            let mut any = false;
            for &r in &relations {
                // The new entity's side must fit; the other end, when named, too.
                let fits = |d: Dir, other_cat: Option<&str>| match d {
                    Dir::Tail => {
                        self.domain[r as usize].contains(new_cat)
                            && other_cat.is_none_or(|c| self.range[r as usize].contains(c))
                    }
                    Dir::Head => {
                        self.range[r as usize].contains(new_cat)
                            && other_cat.is_none_or(|c| self.domain[r as usize].contains(c))
                    }
                };
                let other_cat = other.map(category);
                // `[e, ?, ?]`: both directions of every fitting relation.
                let dirs: &[Dir] = if rel.is_none() && other.is_none() {
                    &[Dir::Tail, Dir::Head]
                } else {
                    std::slice::from_ref(&dir)
                };
                for &d in dirs {
                    if fits(d, other_cat) {
                        any = true;
                        // The same query twice (two predict lines) is asked once.
                        if distinct.insert((new, r, d, other)) {
                            queries.push(QuerySpec {
                                new,
                                relation: r,
                                dir: d,
                                other,
                            });
                        }
                    }
                }
            }
            if !any {
                let message = match (rel, other) {
                    (Some(r), _) => {
                        let (side, cats) = match dir {
                            Dir::Tail => ("domain", &self.domain[r as usize]),
                            Dir::Head => ("range", &self.range[r as usize]),
                        };
                        let mut cats: Vec<&str> = cats.iter().map(String::as_str).collect();
                        cats.sort_unstable();
                        match other.map(category) {
                            Some(oc) if self.signature_problem_dir(new_cat, r, oc, dir) => format!(
                                "`{}` cannot link {new_cat} and {oc}: outside its domain and range ({})",
                                g.relation_key(r),
                                self.signature_text(r)
                            ),
                            _ => format!(
                                "{new_cat} is outside the {side} of `{}` ({})",
                                g.relation_key(r),
                                cats.join(", ")
                            ),
                        }
                    }
                    (None, Some(o)) => format!(
                        "no relation in the graph links {new_cat} and {}",
                        category(o)
                    ),
                    (None, None) => format!("no relation in the graph has {new_cat} at either end"),
                };
                problems.push(Problem::new(at.clone(), message));
            }
        }
        if !problems.is_empty() {
            return Err(Refused::Problems(problems));
        }
        // The work the queries make: bounded before any of it is done.
        let all_mode = prompt.predict.is_empty();
        let context: HashSet<u32> = context_entities
            .iter()
            .filter_map(|n| match n {
                Node::Known(id) => Some(*id),
                Node::New(_) => None,
            })
            .collect();
        let candidates: usize = queries
            .iter()
            .map(|q| self.count_candidates(q, all_mode, &context))
            .sum();
        if candidates > limits::MAX_CANDIDATES {
            let path = if all_mode { "entities" } else { "predict" };
            return Err(Refused::Limits(vec![Problem::new(
                path,
                format!(
                    "{}; predict fewer relations (`predict`, `context.relations`) or name the other ends",
                    limits::over(
                        "candidate triples to score",
                        candidates,
                        limits::MAX_CANDIDATES
                    )
                ),
            )]));
        }
        Ok(Checked {
            edges,
            claims,
            features,
            queries,
            context: context_entities,
            all_mode,
        })
    }

    /// How many candidates query `q` scores: what `run` enumerates for it, counted.
    fn count_candidates(&self, q: &QuerySpec, all_mode: bool, context: &HashSet<u32>) -> usize {
        if q.other.is_some() {
            return 1;
        }
        let cats = match q.dir {
            Dir::Tail => &self.range[q.relation as usize],
            Dir::Head => &self.domain[q.relation as usize],
        };
        if all_mode && !context.is_empty() {
            let narrowed = context
                .iter()
                .filter(|&&c| cats.contains(self.graph.category(c)))
                .count();
            if narrowed > 0 {
                return narrowed;
            }
        }
        cats.iter()
            .filter_map(|c| self.by_category.get(c))
            .map(Vec::len)
            .sum()
    }

    /// The entity's feature vector for its prior: the first kind this model has a map for.
    fn featurize(
        &self,
        i: usize,
        e: &NewEntity,
        problems: &mut Vec<Problem>,
    ) -> Option<(String, Vec<f32>)> {
        let mut chosen = None;
        for value in e.features() {
            let kind = value.kind();
            let at = format!("entities[{i}].{kind}");
            let x = match crate::featurize::featurize(&e.id, &value) {
                Ok(x) => x,
                Err(err) => {
                    problems.push(Problem::new(at, err.to_string()));
                    continue;
                }
            };
            // The width the model reads: its prior map's (shallow members) or its feature
            // map's (walk members).
            let width = self
                .priors
                .first()
                .and_then(|p| p.get(&e.category, kind))
                .map(|m| m.dim)
                .or_else(|| self.walk_feature_width(&e.category, kind));
            match width {
                Some(w) if w != x.len() => problems.push(Problem::new(
                    at,
                    format!(
                        "has {} values; this model's {} {kind} features have {w}",
                        x.len(),
                        e.category,
                    ),
                )),
                Some(_) if chosen.is_none() => chosen = Some((kind.to_owned(), x)),
                _ => {}
            }
        }
        chosen
    }

    /// The width of a category's features of `kind` that a walk member reads.
    fn walk_feature_width(&self, category: &str, kind: &str) -> Option<usize> {
        self.ensemble.members.iter().find_map(|m| match &m.model {
            crate::model::Model::Walks(w) => w
                .feature_group(category, kind)
                .map(|g| w.feature_groups[g].width),
            crate::model::Model::Kge(_) | crate::model::Model::Gnn(_) => None,
        })
    }

    fn unknown_relation(&self, r: &str) -> String {
        let g = &self.graph;
        let mut all: Vec<&str> = (0..g.num_relations() as u32)
            .map(|i| g.relation_key(i))
            .collect();
        all.sort_unstable();
        let shown = all.iter().take(12).copied().collect::<Vec<_>>().join(", ");
        let more = if all.len() > 12 { ", ..." } else { "" };
        format!("unknown relation `{r}`; the graph has: {shown}{more}")
    }

    fn signature_text(&self, r: u32) -> String {
        let mut d: Vec<&str> = self.domain[r as usize].iter().map(String::as_str).collect();
        let mut g: Vec<&str> = self.range[r as usize].iter().map(String::as_str).collect();
        d.sort_unstable();
        g.sort_unstable();
        format!("{} -> {}", d.join("|"), g.join("|"))
    }

    /// A claimed or predicted triple whose categories the relation was never seen with.
    fn signature_problem(&self, head: &str, r: u32, tail: &str) -> Option<String> {
        (!self.domain[r as usize].contains(head) || !self.range[r as usize].contains(tail)).then(
            || {
                format!(
                    "{head} -{}-> {tail} is outside the relation's domain and range ({})",
                    self.graph.relation_key(r),
                    self.signature_text(r)
                )
            },
        )
    }

    fn signature_problem_dir(&self, new_cat: &str, r: u32, other: &str, dir: Dir) -> bool {
        match dir {
            Dir::Tail => self.signature_problem(new_cat, r, other).is_some(),
            Dir::Head => self.signature_problem(other, r, new_cat).is_some(),
        }
    }
}
