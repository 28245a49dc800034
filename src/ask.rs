//! `ask`: prompt the graph with entities it has never seen. A prompt (new entities with
//! optional features, the asker's claimed edges, a context, what to predict) is checked
//! against the model's graph, each new entity is folded into every ensemble member (its row
//! fitted alone on the claimed edges, starting from the prior its features or category give),
//! and the candidate edges are ranked by calibrated probability with the members' spread, the
//! paths that connect their ends, and the trained entities the new one most resembles.
//!
//! Everything here works on one loaded model ([`Asker`]); the CLI and the server share it.

pub mod paths;
pub mod prompt;

pub use prompt::{Context, Flags, NewEntity, Origin, Problem, Prompt, PromptError};

use crate::graph::Graph;
use crate::model::checkpoint;
use crate::model::ensemble::Ensemble;
use crate::model::foldin::{self, Dir, Edge, FoldConfig, Node};
use crate::model::prior::Priors;
use crate::store::{ModelInfo, Store, StoreError};
use paths::{Overlay, Reach};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

/// Why an ask could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no trained model yet: run `hypograph train` first")]
    NoModel,
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Training(#[from] crate::training::TrainingError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// What a new entity's placement rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// Claimed edges (fold-in), starting from the feature prior or the category mean.
    Edges,
    /// Features alone: a prior, not evidence.
    Features,
    /// Nothing but the category: every entity of it would get the same answer.
    CategoryMean,
}

/// A trained entity that the new one resembles in the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Similar {
    pub id: String,
    pub name: String,
    /// Cosine similarity of the rows, averaged over the ensemble's members.
    pub similarity: f64,
}

/// One new entity as the model placed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityAnswer {
    pub id: String,
    pub category: String,
    pub name: String,
    pub basis: Basis,
    /// Claimed edges it was fitted to.
    pub edges: usize,
    /// The feature kind its prior came from, if any.
    pub prior: Option<String>,
    pub similar: Vec<Similar>,
}

/// One predicted triple.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub rank: usize,
    pub head: String,
    pub relation: String,
    pub tail: String,
    pub head_name: String,
    pub tail_name: String,
    /// Mean calibrated probability over the members.
    pub probability: f64,
    /// Standard deviation of the members' probabilities: how much the prompt pins it down.
    pub spread: f64,
    /// True when no claimed edge touches the new end(s): the row is a prior, not evidence.
    pub no_edges: bool,
    pub basis: Basis,
    pub paths: Vec<paths::Path>,
}

/// The answer to a prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub model: i64,
    pub graph_version: i64,
    pub entities: Vec<EntityAnswer>,
    pub rows: Vec<Row>,
    /// The prompt's edges: claims to review (or to assert), never graph facts by asking.
    pub claims: Vec<Claim>,
    /// Candidates scored before the top rows were taken.
    pub candidates: usize,
    pub seconds: f64,
}

/// A claimed edge with what the model expected of it before it was told: the prior's
/// probability (features or category alone), so a surprising claim stands out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub head: String,
    pub relation: String,
    pub tail: String,
    pub prior_probability: f64,
    pub prior_spread: f64,
}

/// At most this many rows in one answer.
pub const MAX_TOP: usize = 1_000;
/// Paths shown per row.
const PATHS_PER_ROW: usize = 3;
/// Resembling entities shown per new entity.
const SIMILAR: usize = 5;

/// One loaded model, ready for prompts.
pub struct Asker {
    pub model_id: i64,
    pub graph_version: i64,
    graph: Graph,
    ensemble: Ensemble,
    /// Per member; empty when the model was trained without features.
    priors: Vec<Priors>,
    names: HashMap<String, String>,
    /// Categories observed at each end of each relation.
    domain: Vec<HashSet<String>>,
    range: Vec<HashSet<String>>,
    /// Trained entities per category.
    by_category: HashMap<String, Vec<u32>>,
    /// Per member: each category's mean row.
    means: Vec<HashMap<String, Vec<f32>>>,
    pub fold: FoldConfig,
}

impl Asker {
    /// Loads model `id` (default: the newest) with its graph, names and priors.
    pub async fn load(store: &Store, id: Option<i64>) -> Result<Self, AskError> {
        let info = match id {
            Some(id) => store.model(id).await?,
            None => store.latest_model().await?.ok_or(AskError::NoModel)?,
        };
        let graph = store.load_graph(info.graph_version).await?;
        let names = store.entity_names(info.graph_version).await?;
        let info2 = info.clone();
        tokio::task::spawn_blocking(move || Self::build(&info2, graph, names))
            .await
            .map_err(|e| AskError::Store(StoreError::Corrupt(format!("loading a model: {e}"))))?
    }

    fn build(
        info: &ModelInfo,
        graph: Graph,
        names: HashMap<String, String>,
    ) -> Result<Self, AskError> {
        let ensemble = crate::training::load_model(info, &checkpoint::Vocab::of(&graph))?;
        let priors = checkpoint::load_priors(Path::new(&info.path))?
            .unwrap_or_else(|| vec![Priors::default(); ensemble.members.len()]);
        Ok(Self::new(
            info.id,
            info.graph_version,
            graph,
            ensemble,
            priors,
            names,
        ))
    }

    /// An asker over an ensemble already in memory (`priors`: one per member, or none).
    pub fn new(
        model_id: i64,
        graph_version: i64,
        graph: Graph,
        ensemble: Ensemble,
        mut priors: Vec<Priors>,
        names: HashMap<String, String>,
    ) -> Self {
        priors.resize(ensemble.members.len(), Priors::default());
        let r = graph.num_relations();
        let (mut domain, mut range) = (vec![HashSet::new(); r], vec![HashSet::new(); r]);
        for t in graph.triples() {
            domain[t.relation as usize].insert(graph.category(t.head).to_owned());
            range[t.relation as usize].insert(graph.category(t.tail).to_owned());
        }
        let mut by_category: HashMap<String, Vec<u32>> = HashMap::new();
        // Only entities the model has rows for (a newer graph may have more).
        let trained = ensemble
            .members
            .first()
            .map_or(0, |m| m.model.num_entities)
            .min(graph.num_entities());
        for e in 0..trained as u32 {
            by_category
                .entry(graph.category(e).to_owned())
                .or_default()
                .push(e);
        }
        let means = ensemble
            .members
            .iter()
            .map(|m| {
                by_category
                    .iter()
                    .map(|(c, ids)| (c.clone(), foldin::mean_row(&m.model, ids)))
                    .collect()
            })
            .collect();
        Self {
            model_id,
            graph_version,
            graph,
            ensemble,
            priors,
            names,
            domain,
            range,
            by_category,
            means,
            fold: FoldConfig::default(),
        }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    fn name(&self, key: &str) -> String {
        self.names.get(key).cloned().unwrap_or_default()
    }

    fn trained(&self) -> usize {
        self.ensemble
            .members
            .first()
            .map_or(0, |m| m.model.num_entities)
            .min(self.graph.num_entities())
    }

    /// Answers a prompt; problems are located through `origin`.
    pub fn answer(&self, prompt: &Prompt, origin: &Origin) -> Result<Answer, PromptError> {
        let started = Instant::now();
        let checked = self.check(prompt).map_err(|p| origin.locate(p))?;
        Ok(self.run(prompt, checked, started))
    }

    /// Resolves every name in the prompt, or says what is wrong with it.
    fn check(&self, prompt: &Prompt) -> Result<Checked, Vec<Problem>> {
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
        if prompt.top == 0 || prompt.top > MAX_TOP {
            problems.push(Problem::new(
                "top",
                format!("must be between 1 and {MAX_TOP}"),
            ));
        }
        // What to predict: explicit specs, or every relation of every new entity.
        let mut queries = Vec::new();
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
                        queries.push(QuerySpec {
                            new,
                            relation: r,
                            dir: d,
                            other,
                        });
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
        if problems.is_empty() {
            Ok(Checked {
                edges,
                claims,
                features,
                queries,
                context: context_entities,
                all_mode: prompt.predict.is_empty(),
            })
        } else {
            Err(problems)
        }
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
            let map = self.priors.first().and_then(|p| p.get(&e.category, kind));
            match map {
                Some(m) if m.dim != x.len() => problems.push(Problem::new(
                    at,
                    format!(
                        "has {} values; this model's {} {kind} features have {}",
                        x.len(),
                        e.category,
                        m.dim
                    ),
                )),
                Some(_) if chosen.is_none() => chosen = Some((kind.to_owned(), x)),
                _ => {}
            }
        }
        chosen
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
                    .unwrap_or_else(|| foldin::mean_row(&self.ensemble.members[member].model, &[]));
                (mean, None)
            })
            .collect()
    }

    fn run(&self, prompt: &Prompt, checked: Checked, started: Instant) -> Answer {
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
            let model = &member.model;
            let starts = self.priors(prompt, &checked, mi);
            if mi == 0 {
                prior_kind = starts.iter().map(|s| s.1.clone()).collect();
            }
            let init: Vec<Vec<f32>> = starts.into_iter().map(|s| s.0).collect();
            let before = |n: Node| -> &[f32] {
                match n {
                    Node::Known(id) => model.entities.row(id as usize),
                    Node::New(j) => &init[j],
                }
            };
            claim_probs.push(
                checked
                    .edges
                    .iter()
                    .map(|e| {
                        let s =
                            foldin::score_rows(model, before(e.head), e.relation, before(e.tail));
                        member.calibrator.prob(f64::from(s))
                    })
                    .collect(),
            );
            let config = FoldConfig {
                seed: self.fold.seed.wrapping_add(mi as u64),
                ..self.fold.clone()
            };
            let rows = foldin::fold_in(model, &init, &checked.edges, &pool_fn, &config);
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
                                    Dir::Tail => foldin::score_rows(
                                        model,
                                        &rows[q.new],
                                        q.relation,
                                        row_of(c),
                                    ),
                                    Dir::Head => foldin::score_rows(
                                        model,
                                        row_of(c),
                                        q.relation,
                                        &rows[q.new],
                                    ),
                                },
                            };
                            member.calibrator.prob(f64::from(s))
                        })
                        .collect()
                })
                .collect();
            per_member.push(probs);
            rows_by_member.push(rows);
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
            let members: Vec<f64> = per_member.iter().map(|m| m[qi][ci]).collect();
            let var = members.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / k;
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
                spread: var.sqrt(),
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
                    let p: Vec<f64> = claim_probs.iter().map(|m| m[i]).collect();
                    let mean = p.iter().sum::<f64>() / k;
                    let var = p.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / k;
                    Claim {
                        head: h.clone(),
                        relation: r.clone(),
                        tail: t.clone(),
                        prior_probability: mean,
                        prior_spread: var.sqrt(),
                    }
                })
                .collect(),
            candidates: n_candidates,
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// The trained entities of the category whose rows are closest to new entity `i`'s.
    fn similar(&self, rows: &[Vec<Vec<f32>>], i: usize, category: &str) -> Vec<Similar> {
        let Some(ids) = self.by_category.get(category) else {
            return Vec::new();
        };
        let k = rows.len().max(1) as f64;
        let mut sims: Vec<(f64, u32)> = ids
            .iter()
            .map(|&id| {
                let s: f64 = self
                    .ensemble
                    .members
                    .iter()
                    .zip(rows)
                    .map(|(m, r)| {
                        f64::from(foldin::cosine(&r[i], m.model.entities.row(id as usize)))
                    })
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

/// What to send into a workflow from an answer: the new entities with their features, the
/// chosen rows (`picks`: ranks, 1-based; empty: every row), and the claims as hypotheses, or
/// as asserted facts with `assert`.
pub fn submission(
    prompt: &Prompt,
    answer: &Answer,
    picks: &[usize],
    assert: bool,
    workflow: &str,
    asker: &str,
) -> Result<crate::store::AskSubmission, Problem> {
    use crate::store::{PinnedOrigin, PinnedRow};
    let mut rows = Vec::new();
    for &p in picks {
        if p == 0 || p > answer.rows.len() {
            return Err(Problem::new(
                "pick",
                format!(
                    "row {p} is not in the answer (rows 1..={})",
                    answer.rows.len()
                ),
            ));
        }
    }
    for r in &answer.rows {
        if picks.is_empty() || picks.contains(&r.rank) {
            rows.push(PinnedRow {
                triple: [r.head.clone(), r.relation.clone(), r.tail.clone()],
                probability: r.probability,
                spread: r.spread,
                origin: PinnedOrigin::Prediction,
            });
        }
    }
    let claims: Vec<[String; 3]> = answer
        .claims
        .iter()
        .map(|c| [c.head.clone(), c.relation.clone(), c.tail.clone()])
        .collect();
    if !assert {
        for (c, t) in answer.claims.iter().zip(&claims) {
            rows.push(PinnedRow {
                triple: t.clone(),
                probability: c.prior_probability,
                spread: c.prior_spread,
                origin: PinnedOrigin::Claim,
            });
        }
    }
    let mut features = Vec::new();
    for e in &prompt.entities {
        for value in e.features() {
            features.push(crate::graph::FeatureRecord {
                entity: e.id.clone(),
                value,
            });
        }
    }
    Ok(crate::store::AskSubmission {
        workflow: workflow.to_owned(),
        asker: asker.to_owned(),
        prompt: serde_json::to_value(prompt).unwrap_or(serde_json::Value::Null),
        entities: prompt
            .entities
            .iter()
            .map(|e| crate::graph::EntityRecord {
                key: e.id.clone(),
                category: e.category.clone(),
                name: e.name.clone(),
                attributes: serde_json::Map::new(),
            })
            .collect(),
        features,
        asserted: if assert { claims } else { Vec::new() },
        rows,
    })
}

/// A prompt resolved against the graph.
struct Checked {
    edges: Vec<Edge>,
    claims: Vec<[String; 3]>,
    /// Per new entity: the feature kind and vector its prior uses.
    features: Vec<Option<(String, Vec<f32>)>>,
    queries: Vec<QuerySpec>,
    context: Vec<Node>,
    all_mode: bool,
}

/// Rank candidates for the `dir` end of `relation` next to new entity `new`.
struct QuerySpec {
    new: usize,
    relation: u32,
    dir: Dir,
    /// A named other end; `None`: every fitting entity.
    other: Option<Node>,
}
