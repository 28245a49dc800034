//! Every training hyperparameter, as a burn `Config` saved next to the weights.

use burn::config::Config;
use serde::{Deserialize, Serialize};

/// Which scoring function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Re(<h, r, conj(t)>) in C^dim (Trouillon et al. 2016).
    Complex,
    /// <h, r, t> in R^dim (Yang et al. 2015).
    Distmult,
    /// -||h * r - t|| with |r_i| = 1 in C^dim (Sun et al. 2019).
    Rotate,
    /// A transformer over relation-typed random walks, trained with masked entities and
    /// relations (`model::walks`); its hyperparameters are `TrainConfig::walks`.
    Walks,
    /// ULTRA (`model::gnn`): conditional message passing over the graph with relations
    /// represented from the relation graph, starting from published pretrained weights (the
    /// embedded checkpoint, or `gnn.weights`); `epochs: 0` answers zero-shot.
    Ultra,
    /// The same message-passing network trained from random weights on this graph.
    Gnn,
}

/// How training pairs positives with negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// Score every entity as the tail of (h, r) and of (t, r^-1): reciprocal relations,
    /// cross-entropy over all entities. The strong choice on small graphs.
    OneVsAll,
    /// Corrupt heads or tails with sampled negatives: drawn once per batch and shared by every
    /// positive in it (one matrix product), or drawn per positive (`negative_sharing`).
    Negatives,
}

/// How the negatives regime draws its negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NegativeSharing {
    /// `negatives` entities drawn once per batch and shared by all its positives: negative
    /// scoring is one matrix product per side.
    #[default]
    Batch,
    /// `negatives` entities drawn for each positive (PyKEEN's basic sampler): each positive is
    /// scored against its own block of corruptions.
    PerPositive,
}

/// Missing in a config saved before the option existed: `batch`. (burn's `Config` derive
/// passes no field attributes to serde, so the default lives in the type: serde hands a
/// missing field to `deserialize_option`, which yields `None`.)
impl<'de> Deserialize<'de> for NegativeSharing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Repr {
            Batch,
            PerPositive,
        }
        Ok(match Option::<Repr>::deserialize(d)? {
            None | Some(Repr::Batch) => NegativeSharing::Batch,
            Some(Repr::PerPositive) => NegativeSharing::PerPositive,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Softmax cross-entropy over candidates, with label smoothing (one-vs-all).
    CrossEntropy,
    /// Binary cross-entropy on logits: softplus(-pos) + mean softplus(neg).
    Softplus,
    /// RotatE's self-adversarial negative sampling loss with margin.
    Adversarial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adagrad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Regularizer {
    None,
    /// Squared L2 norm of the embeddings used in a batch.
    L2,
    /// Nuclear 3-norm of the factors used in a batch (Lacroix et al. 2018).
    N3,
}

/// Training hyperparameters. The defaults are the best configuration found on UMLS (see
/// BENCHMARKS.md).
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    #[config(default = "ModelKind::Complex")]
    pub model: ModelKind,
    /// Embedding rank: complex dimensions for ComplEx and RotatE, real ones for DistMult.
    #[config(default = 128)]
    pub dim: usize,
    #[config(default = "Regime::OneVsAll")]
    pub regime: Regime,
    #[config(default = "LossKind::CrossEntropy")]
    pub loss: LossKind,
    #[config(default = 0.1)]
    pub label_smoothing: f64,
    /// Negatives shared by a batch, or per positive with `negative_sharing: per-positive`
    /// (negative-sampling regime).
    #[config(default = 256)]
    pub negatives: usize,
    /// Whether a batch's positives share their negatives (`batch`) or each draws its own
    /// (`per-positive`, as PyKEEN). Absent from configs saved before it existed: `batch`.
    #[config(default = "NegativeSharing::Batch")]
    pub negative_sharing: NegativeSharing,
    /// Margin gamma of the adversarial loss.
    #[config(default = 6.0)]
    pub margin: f64,
    /// Temperature of the adversarial loss's softmax over negatives.
    #[config(default = 1.0)]
    pub adversarial_temperature: f64,
    #[config(default = "OptimizerKind::Adagrad")]
    pub optimizer: OptimizerKind,
    #[config(default = 0.1)]
    pub lr: f64,
    #[config(default = "Regularizer::N3")]
    pub regularizer: Regularizer,
    #[config(default = 0.01)]
    pub reg_weight: f64,
    #[config(default = 512)]
    pub batch_size: usize,
    #[config(default = 100)]
    pub epochs: usize,
    /// Validation MRR is computed every this many epochs (0: never).
    #[config(default = 10)]
    pub eval_every: usize,
    /// Stop after this many validations without improvement (0: never stop early).
    #[config(default = 3)]
    pub patience: usize,
    #[config(default = 42)]
    pub seed: u64,
    /// Standard deviation of the initial embeddings.
    #[config(default = 0.1)]
    pub init_scale: f64,
    /// The walk model's hyperparameters (`model: walks`); `None` (and configs saved before it
    /// existed) means `WalkConfig`'s defaults. The walk model also reads `label_smoothing`,
    /// `eval_every`, `patience` and `seed` from here; it ignores the other fields.
    pub walks: Option<WalkConfig>,
    /// Whether training blends the popularity baseline into the scores, with a weight per
    /// relation and side chosen on the validation triples (`model::popularity`): the model
    /// starts from what counting knows. `None` (configs saved before it existed): yes.
    pub popularity_prior: Option<bool>,
    /// Weight of a refuted triple (negative evidence from review) beside one positive of the
    /// embedding models' loss. `None` (configs saved before it existed): [`REFUTED_WEIGHT`].
    /// The walk model reads its own `walks.refuted_weight`.
    pub refuted_weight: Option<f64>,
    /// The message-passing models' settings (`model: ultra` or `gnn`); `None`: defaults.
    pub gnn: Option<GnnConfig>,
}

/// Settings of the message-passing models (`model::gnn`).
#[derive(Config, Debug, PartialEq)]
pub struct GnnConfig {
    /// A PyTorch checkpoint of ULTRA to start from (`model: ultra`); `None`: the embedded
    /// `ultra_4g` weights.
    pub weights: Option<String>,
    /// Width of every state (`model: gnn`; ULTRA's is its checkpoint's). `None`: 64.
    pub dim: Option<usize>,
    /// Layers of each network (`model: gnn`). `None`: 6.
    pub layers: Option<usize>,
    /// AdamW's learning rate. `None`: 5e-4 (ULTRA's).
    pub lr: Option<f64>,
    /// Training queries per step; they share one pass over the graph. `None`: 8.
    pub batch_size: Option<usize>,
    /// Negatives per training query, drawn from the relation's range. `None`: 128.
    pub negatives: Option<usize>,
    /// Training queries per epoch, drawn afresh each epoch. `None`: every training triple in
    /// both directions.
    pub queries_per_epoch: Option<usize>,
    /// Scoring reads only this many senders a layer per query (A*Net-style pruning,
    /// `model::gnn::prune`); `None`: every node sends (full propagation). Training always
    /// propagates in full.
    pub prune_senders: Option<usize>,
}

impl GnnConfig {
    /// The network's size for a model trained from scratch.
    pub fn shape(&self) -> super::gnn::Shape {
        let d = super::gnn::Shape::default();
        super::gnn::Shape {
            dim: self.dim.unwrap_or(d.dim),
            layers: self.layers.unwrap_or(d.layers),
        }
    }

    pub fn lr(&self) -> f64 {
        self.lr.unwrap_or(5e-4)
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(8)
    }

    pub fn negatives(&self) -> usize {
        self.negatives.unwrap_or(128)
    }

    /// Every setting out of its range, as (field, why).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        use crate::limits::gnn as l;
        let mut out = Vec::new();
        for (name, v, range) in [
            ("dim", self.dim, l::DIM),
            ("layers", self.layers, l::LAYERS),
            ("batch_size", self.batch_size, l::BATCH_SIZE),
            ("negatives", self.negatives, l::NEGATIVES),
            (
                "queries_per_epoch",
                self.queries_per_epoch,
                l::QUERIES_PER_EPOCH,
            ),
            ("prune_senders", self.prune_senders, l::PRUNE_SENDERS),
        ] {
            if let Some(Err(why)) = v.map(|v| range.check(v)) {
                out.push((name, why));
            }
        }
        if let Some(Err(why)) = self.lr.map(|v| l::LR.check(v)) {
            out.push(("lr", why));
        }
        out
    }
}

/// Default weight of a refuted triple in the embedding models' loss (`refuted_weight`).
pub const REFUTED_WEIGHT: f64 = 1.0;

impl TrainConfig {
    /// Whether training fits a popularity blend (only where it has validation triples).
    pub fn popularity_prior(&self) -> bool {
        self.popularity_prior.unwrap_or(true)
    }

    /// Weight of a refuted triple beside one positive (embedding models).
    pub fn refuted_weight(&self) -> f64 {
        self.refuted_weight.unwrap_or(REFUTED_WEIGHT)
    }

    /// The walk model's hyperparameters, defaults filled in.
    pub fn walk_config(&self) -> WalkConfig {
        self.walks.clone().unwrap_or_else(WalkConfig::new)
    }

    /// The message-passing models' settings, defaults filled in.
    pub fn gnn_config(&self) -> GnnConfig {
        self.gnn.clone().unwrap_or_else(GnnConfig::new)
    }
}

/// Hyperparameters of the walk transformer (`model: walks`). The defaults are the best
/// configuration found on UMLS within a 5-minute two-core budget (BENCHMARKS.md, issue 14).
#[derive(Config, Debug, PartialEq)]
pub struct WalkConfig {
    /// Width of every token's vector.
    #[config(default = 64)]
    pub d_model: usize,
    #[config(default = 2)]
    pub layers: usize,
    #[config(default = 4)]
    pub heads: usize,
    /// Width of the feed-forward block.
    #[config(default = 128)]
    pub d_ff: usize,
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Context walks per sequence, each starting at the query's entity.
    #[config(default = 4)]
    pub context_walks: usize,
    /// Steps (relation, entity) per walk.
    #[config(default = 2)]
    pub walk_length: usize,
    /// Sequences per entity and epoch whose target is the first step of a biased walk (beside
    /// one sequence per training triple and direction): the share of rare relations.
    #[config(default = 0.0)]
    pub walks_per_entity: f64,
    /// A walk's next relation is drawn with probability proportional to count(r)^-alpha among
    /// those the current entity has (0: uniform over edges' relations, 1: each relation alike).
    #[config(default = 0.5)]
    pub rarity_alpha: f64,
    /// Probability that a training sequence shows its query entity as its category's token
    /// instead of its id (and predicts the id back): what lets the model answer about new
    /// entities from their edges alone. Such a sequence's walks start from a few (0 to
    /// `context_walks`) of its edges, as a new entity's claims.
    #[config(default = 0.3)]
    pub id_dropout: f64,
    /// Probability that a context token (relation or entity) is masked and predicted.
    #[config(default = 0.15)]
    pub mask_prob: f64,
    /// Weight of the masked-token loss beside the link-prediction loss.
    #[config(default = 0.25)]
    pub mask_weight: f64,
    /// Weight of a refuted triple's penalty, -log(1 - p(t | h, r)), beside a true triple's
    /// cross-entropy. Low on purpose: refutations trained as full hard negatives sank the
    /// held-out true pairs of the same entities.
    #[config(default = 0.1)]
    pub refuted_weight: f64,
    /// AdamW's peak learning rate. 0.002 over 0.004 and 0.008: the gains come late, at low
    /// rates (UMLS, 40 epochs: 0.939 / 0.928 / 0.909 test MRR).
    #[config(default = 0.002)]
    pub lr: f64,
    #[config(default = 0.01)]
    pub weight_decay: f64,
    /// Share of all steps spent warming the learning rate up linearly; then it decays
    /// linearly to a tenth.
    #[config(default = 0.05)]
    pub warmup: f64,
    #[config(default = 128)]
    pub batch_size: usize,
    /// Context samples scored and averaged per query at inference (each its own seeded set of
    /// walks). `None` (configs saved before it existed): [`WALK_SAMPLES`], 1: on UMLS 4 or 16
    /// samples scored the same as one (the trained entities' scores barely read the context).
    pub samples: Option<usize>,
    /// Fewest context walks of a training batch: each batch draws its number uniformly from
    /// `min_walks..=context_walks` (shorter sequences are cheaper steps, and the model learns
    /// to read any number of walks, as a new entity's claims give). `None` (configs saved
    /// before it existed): [`WALK_MIN_WALKS`].
    pub min_walks: Option<usize>,
    /// Weight of a binary cross-entropy over every entity of a query (its known answers 1,
    /// the rest 0) beside the softmax: makes a score mean "this edge exists", so scores compare
    /// across queries (what choosing hypotheses among all pairs needs), not only within one.
    /// `None` (configs saved before it existed): [`WALK_BCE_WEIGHT`].
    pub bce_weight: Option<f64>,
    /// Training queries per epoch, drawn afresh each epoch from the training triples (both
    /// directions) without replacement: a fixed budget, so an epoch on a large graph costs
    /// what it costs on a small one. `None`: every training triple in both directions.
    pub queries_per_epoch: Option<usize>,
    /// Negatives per query, drawn uniformly from its relation's range (`model::range`): the
    /// softmax runs over the answer and these instead of every entity, only the entity rows a
    /// batch touches take an optimizer step (sparse Adam on the host), and scoring sinks the
    /// entities outside a relation's range. `None`: a softmax over every entity, whose
    /// gradient updates the whole entity table each step (fine for thousands of entities, not
    /// for 47K).
    pub sampled_negatives: Option<usize>,
    /// Peak learning rate of the entity rows under `sampled_negatives` (their sparse Adam
    /// follows the same warm-up and decay as `lr`). A row takes a step only when a batch
    /// touches it, a few dozen times in a budgeted training on 47K entities, so it needs
    /// larger steps than the shared weights. `None`: `lr`.
    pub entity_lr: Option<f64>,
}

/// Weight of the binary cross-entropy term when a config does not say.
pub const WALK_BCE_WEIGHT: f64 = 1.0;

/// Fewest context walks of a training batch when a config does not say.
pub const WALK_MIN_WALKS: usize = 4;

/// Context samples averaged per query when a config does not say.
pub const WALK_SAMPLES: usize = 1;

impl WalkConfig {
    /// Weight of the binary cross-entropy term.
    pub fn bce_weight(&self) -> f64 {
        self.bce_weight.unwrap_or(WALK_BCE_WEIGHT)
    }

    /// Context samples averaged per query at inference.
    pub fn samples(&self) -> usize {
        self.samples.unwrap_or(WALK_SAMPLES)
    }

    /// Fewest context walks of a training batch (never above `context_walks`).
    pub fn min_walks(&self) -> usize {
        self.min_walks
            .unwrap_or(WALK_MIN_WALKS)
            .min(self.context_walks)
    }

    /// Every setting out of its range (`crate::limits::walks`), as (field, why): shared by
    /// training, `train`'s flags and a workflow's validation (which places them in the file).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        use crate::limits::walks as l;
        let mut out = Vec::new();
        for (name, v, range) in [
            ("heads", self.heads, l::HEADS),
            ("d_model", self.d_model, l::D_MODEL),
            ("layers", self.layers, l::LAYERS),
            ("d_ff", self.d_ff, l::D_FF),
            ("context_walks", self.context_walks, l::CONTEXT_WALKS),
            ("walk_length", self.walk_length, l::WALK_LENGTH),
            ("batch_size", self.batch_size, l::BATCH_SIZE),
            ("samples", self.samples(), l::SAMPLES),
            (
                "min_walks",
                self.min_walks.unwrap_or(WALK_MIN_WALKS),
                l::MIN_WALKS,
            ),
            (
                "queries_per_epoch",
                self.queries_per_epoch.unwrap_or(1),
                l::QUERIES_PER_EPOCH,
            ),
            (
                "sampled_negatives",
                self.sampled_negatives.unwrap_or(1),
                l::SAMPLED_NEGATIVES,
            ),
        ] {
            if let Err(why) = range.check(v) {
                out.push((name, why));
            }
        }
        if (1..=l::HEADS.max).contains(&self.heads)
            && self.d_model > 0
            && !self.d_model.is_multiple_of(self.heads)
        {
            out.push((
                "d_model",
                format!(
                    "{} must be a positive multiple of heads ({})",
                    self.d_model, self.heads
                ),
            ));
        }
        if let Some(least) = self.min_walks.filter(|&m| m > self.context_walks) {
            out.push((
                "min_walks",
                format!(
                    "{least} must not exceed context_walks ({})",
                    self.context_walks
                ),
            ));
        }
        if self.context_walks > 0 && self.walk_length == 0 {
            out.push((
                "walk_length",
                "must be positive when there are context walks".to_owned(),
            ));
        }
        for (name, v, range) in [
            ("dropout", self.dropout, l::SHARE),
            ("id_dropout", self.id_dropout, l::SHARE),
            ("mask_prob", self.mask_prob, l::SHARE),
            ("warmup", self.warmup, l::SHARE),
            ("lr", self.lr, l::LR),
            ("walks_per_entity", self.walks_per_entity, l::WEIGHT),
            ("rarity_alpha", self.rarity_alpha, l::RARITY_ALPHA),
            ("mask_weight", self.mask_weight, l::WEIGHT),
            ("refuted_weight", self.refuted_weight, l::WEIGHT),
            ("weight_decay", self.weight_decay, l::WEIGHT_DECAY),
            ("bce_weight", self.bce_weight(), l::WEIGHT),
            ("entity_lr", self.entity_lr.unwrap_or(self.lr), l::LR),
        ] {
            if let Err(why) = range.check(v) {
                out.push((name, why));
            }
        }
        out
    }
}

impl TrainConfig {
    /// Every setting out of its range (`crate::limits::train`), as (field, why), the walk
    /// model's as `walks.FIELD`: checked by `train`'s flags and again by training itself, so
    /// a config saved by an older version or edited by hand cannot ask for a 16 PB tensor.
    pub fn problems(&self) -> Vec<(String, String)> {
        use crate::limits::train as l;
        let mut out = Vec::new();
        let mut check = |name: &str, r: Result<(), String>| {
            if let Err(why) = r {
                out.push((name.to_owned(), why));
            }
        };
        check("dim", l::DIM.check(self.dim).map(drop));
        check("negatives", l::NEGATIVES.check(self.negatives).map(drop));
        check("lr", l::LR.check(self.lr).map(drop));
        check("batch_size", l::BATCH_SIZE.check(self.batch_size).map(drop));
        check("epochs", l::EPOCHS.check(self.epochs).map(drop));
        check("eval_every", l::EVAL_EVERY.check(self.eval_every).map(drop));
        check("patience", l::PATIENCE.check(self.patience).map(drop));
        check(
            "label_smoothing",
            l::LABEL_SMOOTHING.check(self.label_smoothing).map(drop),
        );
        check("margin", l::MARGIN.check(self.margin).map(drop));
        check(
            "adversarial_temperature",
            l::ADVERSARIAL_TEMPERATURE
                .check(self.adversarial_temperature)
                .map(drop),
        );
        check("reg_weight", l::REG_WEIGHT.check(self.reg_weight).map(drop));
        check("init_scale", l::INIT_SCALE.check(self.init_scale).map(drop));
        if let Some(w) = &self.walks {
            for (field, why) in w.problems() {
                out.push((format!("walks.{field}"), why));
            }
        }
        if let Some(g) = &self.gnn {
            for (field, why) in g.problems() {
                out.push((format!("gnn.{field}"), why));
            }
        }
        out
    }
}

/// Epochs that suit the walk model when nothing else says (`TrainConfig.epochs` counts them:
/// a workflow's `epochs` and `retrain_epochs` apply to every kind).
pub const WALK_EPOCHS: usize = 40;

/// Epochs of the message-passing models when nothing else says: none for ULTRA (its
/// published weights answer as they are, zero-shot), a few for a network from scratch.
pub fn gnn_epochs(kind: ModelKind) -> usize {
    match kind {
        ModelKind::Ultra => 0,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_sharing_defaults_to_batch_and_round_trips() {
        let mut json = serde_json::to_value(TrainConfig::new()).expect("serialize");
        assert_eq!(json["negative_sharing"], "batch");
        json.as_object_mut()
            .expect("object")
            .remove("negative_sharing");
        let old: TrainConfig = serde_json::from_value(json.clone()).expect("old config loads");
        assert_eq!(old.negative_sharing, NegativeSharing::Batch);
        json["negative_sharing"] = "per-positive".into();
        let new: TrainConfig = serde_json::from_value(json).expect("new config loads");
        assert_eq!(new.negative_sharing, NegativeSharing::PerPositive);
        assert_eq!(
            serde_json::to_value(&new).expect("serialize")["negative_sharing"],
            "per-positive"
        );
    }

    #[test]
    fn walk_problems_name_the_field() {
        assert!(WalkConfig::new().problems().is_empty());
        let bad = WalkConfig::new()
            .with_heads(3)
            .with_bce_weight(Some(-1.0))
            .with_id_dropout(1.0);
        let fields: Vec<&str> = bad.problems().iter().map(|p| p.0).collect();
        assert_eq!(
            fields,
            vec!["d_model", "id_dropout", "bce_weight"],
            "{:?}",
            bad.problems()
        );
    }

    #[test]
    fn walks_config_is_optional_and_round_trips() {
        let mut json = serde_json::to_value(TrainConfig::new()).expect("serialize");
        json.as_object_mut().expect("object").remove("walks");
        let old: TrainConfig = serde_json::from_value(json.clone()).expect("old config loads");
        assert_eq!(old.walks, None);
        assert_eq!(old.walk_config(), WalkConfig::new());
        let custom = TrainConfig::new()
            .with_model(ModelKind::Walks)
            .with_walks(Some(WalkConfig::new().with_layers(3).with_id_dropout(0.5)));
        let text = serde_json::to_string(&custom).expect("serialize");
        assert!(text.contains("\"walks\""), "{text}");
        let back: TrainConfig = serde_json::from_str(&text).expect("loads");
        assert_eq!(back, custom);
        assert_eq!(back.walk_config().layers, 3);
    }
}
