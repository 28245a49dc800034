//! `ask`: prompt the graph with entities it has never seen. A prompt (new entities with
//! optional features, the asker's claimed edges, a context, what to predict) is checked
//! against the model's graph, each new entity is folded into every ensemble member (its row
//! fitted alone on the claimed edges, starting from the prior its features or category give),
//! and the candidate edges are ranked by calibrated probability with the members' spread, the
//! paths that connect their ends, and the trained entities the new one most resembles.
//!
//! Everything here works on one loaded model ([`Asker`]); the CLI and the server share it.

mod check;
pub mod limits;
pub mod paths;
pub mod prompt;
mod rank;

pub use prompt::{Context, Flags, NewEntity, Origin, Problem, Prompt, PromptError};

use crate::graph::Graph;
use crate::model::checkpoint;
use crate::model::ensemble::Ensemble;
use crate::model::foldin::{self, Dir, Edge, FoldConfig, Node};
use crate::model::prior::Priors;
use crate::store::{Store, StoreError};
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
    /// The ends' display names (the prompt's for new entities; empty when unnamed).
    pub head_name: String,
    pub tail_name: String,
    pub prior_probability: f64,
    pub prior_spread: f64,
}

pub use limits::MAX_TOP;
/// Evidence paths shown per answer row (and per hypothesis, from the model).
pub const PATHS_PER_ROW: usize = 3;
/// Resembling entities shown per new entity.
const SIMILAR: usize = 5;

/// One loaded model, ready for prompts.
pub struct Asker {
    pub model_id: i64,
    pub graph_version: i64,
    graph: Graph,
    ensemble: Ensemble,
    /// The graph as members that read context see it (empty when none does).
    context: crate::model::Context,
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
    /// Loads model `id` (default: the newest) with its graph, names and priors; its
    /// checkpoint is made local under `data_dir` when this host does not have it.
    pub async fn load(store: &Store, data_dir: &Path, id: Option<i64>) -> Result<Self, AskError> {
        let info = match id {
            Some(id) => store.model(id).await?,
            None => store.latest_model().await?.ok_or(AskError::NoModel)?,
        };
        let graph = store.load_graph(info.graph_version).await?;
        let names = store.entity_names(info.graph_version).await?;
        let local = crate::training::local_checkpoint(store, data_dir, info).await?;
        tokio::task::spawn_blocking(move || Self::build(&local, graph, names))
            .await
            .map_err(|e| AskError::Store(StoreError::Corrupt(format!("loading a model: {e}"))))?
    }

    fn build(
        local: &crate::training::LocalCheckpoint,
        graph: Graph,
        names: HashMap<String, String>,
    ) -> Result<Self, AskError> {
        let info = &local.info;
        let ensemble = crate::training::load_model(local, &checkpoint::Vocab::of(&graph))?;
        let priors = checkpoint::load_priors(local.dir())?
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
        let owned = |set: std::collections::BTreeSet<&str>| -> HashSet<String> {
            set.into_iter().map(str::to_owned).collect()
        };
        let (domain, range): (Vec<_>, Vec<_>) = (0..graph.num_relations() as u32)
            .map(|r| {
                let (d, g) = graph.domain_range(r);
                (owned(d), owned(g))
            })
            .unzip();
        let mut by_category: HashMap<String, Vec<u32>> = HashMap::new();
        // Only entities the model has rows for (a newer graph may have more).
        let trained = ensemble
            .members
            .first()
            .map_or(0, |m| m.model.num_entities())
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
                    .filter_map(|(c, ids)| {
                        rank::kge(&m.model).map(|k| (c.clone(), foldin::mean_row(k, ids)))
                    })
                    .collect()
            })
            .collect();
        Self {
            model_id,
            graph_version,
            context: ensemble.context_of(&graph),
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
            .map_or(0, |m| m.model.num_entities())
            .min(self.graph.num_entities())
    }

    /// Answers a prompt; problems are located through `origin`.
    pub fn answer(&self, prompt: &Prompt, origin: &Origin) -> Result<Answer, PromptError> {
        let started = Instant::now();
        let checked = self.check(prompt).map_err(|refused| match refused {
            check::Refused::Limits(p) => PromptError::TooLarge(Box::new(origin.locate(p))),
            check::Refused::Problems(p) => origin.locate(p),
        })?;
        Ok(self.run(prompt, checked, started))
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
