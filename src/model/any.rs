//! The one model type the loop holds. Each kind trains, grows, saves and scores its own way;
//! everything outside `model` (ensembles, calibration, checkpoints, the engine's rounds,
//! `simulate`, `eval`, `predict`) sees only this enum and [`LinkPredictor`], so a new kind of
//! model needs no second code path.

use super::context::{Categories, Context};
use super::eval::LinkPredictor;
use super::gnn::{GnnModel, GnnScorer};
use super::kge::{KgeModel, Scorer};
use super::popularity::{Popularity, PopularityWeights};
use super::train::{OnProgress, TrainOutcome, TrainSet};
use super::walks::{self, WalkModel, WalkScorer};
use super::{ModelError, ModelKind, TrainConfig};
use crate::graph::Triple;
use burn::tensor::Device;
use rand::Rng;

/// A trained model of any kind. (A handful live at once, one per ensemble member: the size
/// difference between variants does not matter.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// Shallow embeddings (ComplEx, DistMult, RotatE): scores by ids alone.
    Kge(KgeModel),
    /// The transformer over random walks (`model::walks`): reads the graph around a query.
    Walks(WalkModel),
    /// Conditional message passing (`model::gnn`: ULTRA or trained from scratch): reads the
    /// whole graph around a query, no entity rows.
    Gnn(GnnModel),
}

impl Model {
    pub fn config(&self) -> &TrainConfig {
        match self {
            Model::Kge(m) => &m.config,
            Model::Walks(m) => &m.config,
            Model::Gnn(m) => &m.config,
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.config().model
    }

    pub fn num_entities(&self) -> usize {
        match self {
            Model::Kge(m) => m.num_entities,
            Model::Walks(m) => m.num_entities,
            Model::Gnn(m) => m.num_entities,
        }
    }

    pub fn num_relations(&self) -> usize {
        match self {
            Model::Kge(m) => m.num_relations,
            Model::Walks(m) => m.num_relations,
            Model::Gnn(m) => m.num_relations,
        }
    }

    /// Whether its scores depend on the graph it is handed (so callers can skip building a
    /// [`Context`] for models that ignore it).
    pub fn reads_context(&self) -> bool {
        self.kind().reads_context()
    }

    /// The shallow model inside, for what only embedding rows support (fold-in of new
    /// entities, feature priors).
    pub fn as_kge(&self) -> Option<&KgeModel> {
        match self {
            Model::Kge(m) => Some(m),
            Model::Walks(_) | Model::Gnn(_) => None,
        }
    }

    pub fn as_kge_mut(&mut self) -> Option<&mut KgeModel> {
        match self {
            Model::Kge(m) => Some(m),
            Model::Walks(_) | Model::Gnn(_) => None,
        }
    }

    /// Extends the model to a larger graph, keeping what it learned (warm start).
    pub fn grow(&mut self, num_entities: usize, num_relations: usize, rng: &mut impl Rng) {
        match self {
            Model::Kge(m) => m.grow(num_entities, num_relations, rng),
            Model::Walks(m) => m.grow(num_entities, num_relations, rng),
            Model::Gnn(m) => m.grow(num_entities, num_relations),
        }
    }

    /// A scorer reading `context` (the graph the question is asked about) where the model
    /// reads context at all.
    pub fn scorer<'a>(&'a self, device: &Device, context: &'a Context) -> AnyScorer<'a> {
        match self {
            Model::Kge(m) => AnyScorer::Kge(m.scorer(device)),
            Model::Walks(m) => AnyScorer::Walks(m.scorer(device, context)),
            Model::Gnn(m) => AnyScorer::Gnn(m.scorer(device, context)),
        }
    }
}

impl ModelKind {
    /// Whether models of this kind read the graph they are handed while scoring.
    pub fn reads_context(self) -> bool {
        match self {
            ModelKind::Complex | ModelKind::Distmult | ModelKind::Rotate => false,
            ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn => true,
        }
    }
}

/// A model's scorer, whatever its kind.
#[allow(clippy::large_enum_variant)]
pub enum AnyScorer<'a> {
    Kge(Scorer<'a>),
    Walks(WalkScorer<'a>),
    Gnn(GnnScorer<'a>),
    /// A scorer with the popularity baseline blended in (an ensemble's fitted weights and the
    /// counts of the graph the question is asked about).
    Blended {
        inner: Box<AnyScorer<'a>>,
        weights: &'a PopularityWeights,
        counts: &'a Popularity,
    },
}

impl<'a> AnyScorer<'a> {
    fn inner(&self) -> &dyn LinkPredictor {
        match self {
            AnyScorer::Kge(s) => s,
            AnyScorer::Walks(s) => s,
            AnyScorer::Gnn(s) => s,
            AnyScorer::Blended { inner, .. } => inner.as_ref(),
        }
    }

    /// This scorer with `weights` of `counts` added to its scores (itself when either is
    /// missing).
    pub fn blended(
        self,
        weights: Option<&'a PopularityWeights>,
        counts: Option<&'a Popularity>,
    ) -> Self {
        match (weights, counts) {
            (Some(weights), Some(counts)) => AnyScorer::Blended {
                inner: Box::new(self),
                weights,
                counts,
            },
            _ => self,
        }
    }
}

impl LinkPredictor for AnyScorer<'_> {
    fn num_entities(&self) -> usize {
        self.inner().num_entities()
    }
    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        let mut s = self.inner().triples(triples);
        if let AnyScorer::Blended {
            weights, counts, ..
        } = self
        {
            for (x, t) in s.iter_mut().zip(triples) {
                *x += weights.triple_term(counts, *t);
            }
        }
        s
    }
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let mut s = self.inner().tails(queries);
        if let AnyScorer::Blended {
            weights, counts, ..
        } = self
        {
            weights.add_to_rows(counts, &mut s, queries.iter().map(|q| q.1), true);
        }
        s
    }
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        let mut s = self.inner().heads(queries);
        if let AnyScorer::Blended {
            weights, counts, ..
        } = self
        {
            weights.add_to_rows(counts, &mut s, queries.iter().map(|q| q.0), false);
        }
        s
    }
}

/// Whether a saved model can warm-start training under `config`: same kind and shape.
pub fn warm_compatible(saved: &TrainConfig, config: &TrainConfig) -> bool {
    saved.model == config.model && saved.dim == config.dim && saved.regime == config.regime
}

/// Trains a model of `config.model`'s kind (from `warm` if given) and returns the best weights.
/// `categories` are the graph's, for models that read them; `on_progress` hears of batches and
/// epochs as they finish.
pub fn train(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    categories: &Categories,
    warm: Option<Model>,
    device: &Device,
    on_progress: OnProgress<'_>,
) -> Result<TrainOutcome<Model>, ModelError> {
    // Checked here too, not only where configs are written: a config saved by an older
    // version, or edited by hand, reaches training through `--config` and checkpoints.
    if let Some((field, why)) = config.problems().into_iter().next() {
        return Err(ModelError::BadConfig(format!("{field}: {why}")));
    }
    let mismatch = |m: &Model| {
        ModelError::Incompatible(format!(
            "warm start from a {:?} model into a {:?} one",
            m.kind(),
            config.model
        ))
    };
    match config.model {
        ModelKind::Complex | ModelKind::Distmult | ModelKind::Rotate => {
            let warm = match warm {
                None => None,
                Some(Model::Kge(m)) => Some(m),
                Some(other) => return Err(mismatch(&other)),
            };
            super::train::train(config, set, warm, device, on_progress).map(|o| o.map(Model::Kge))
        }
        ModelKind::Walks => {
            let warm = match warm {
                None => None,
                Some(Model::Walks(m)) => Some(m),
                Some(other) => return Err(mismatch(&other)),
            };
            walks::train(config, set, categories, warm, device, on_progress)
                .map(|o| o.map(Model::Walks))
        }
        ModelKind::Ultra | ModelKind::Gnn => {
            let warm = match warm {
                None => None,
                Some(Model::Gnn(m)) => Some(m),
                Some(other) => return Err(mismatch(&other)),
            };
            super::gnn::train::train(config, set, categories, warm, device, on_progress)
                .map(|o| o.map(Model::Gnn))
        }
    }
}
