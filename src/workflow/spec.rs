//! The workflow file's shape. Every struct denies unknown fields: a typo is an error, never a
//! silently ignored setting.

use crate::acquire::Acquisition;
use crate::limits;
use crate::model::calibrate::Method;
use crate::model::{LossKind, ModelKind, OptimizerKind, Regime, TrainConfig, WalkConfig};
use crate::plugin::Outcome;
use crate::spec_parse::duration;
use crate::spec_parse::schema::{DURATION, optional_value_enum, value_enum};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A whole workflow.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Cron expression (6 fields with seconds, or the classic 5) for whole rounds.
    #[serde(default)]
    pub schedule: Option<String>,
    /// A separate schedule that only retrains the model on the newest graph version.
    #[serde(default)]
    pub retrain: Option<RetrainSchedule>,
    /// What to do when a fire comes while the last round still runs.
    #[serde(default)]
    pub overlap: Overlap,
    /// What to do with fires missed while no daemon ran.
    #[serde(default)]
    pub missed: Missed,
    #[serde(default)]
    pub graph: GraphSpec,
    #[serde(default)]
    pub evaluate: EvaluateSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub generate: GenerateSpec,
    #[serde(default)]
    pub rank: RankSpec,
    /// Review stages; none for a retrain-only workflow.
    #[serde(default)]
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub ingest: IngestSpec,
    #[serde(default)]
    pub stop: StopSpec,
    /// Seeds training, ranking and plugins: equal seeds replay equal rounds.
    #[serde(default = "default_seed")]
    #[schemars(transform = limits::workflow::SEED.schema())]
    pub seed: u64,
    /// Runs (a `run` or a daemon fire) that may drive a round into an error before the round
    /// is marked failed and the next fire starts a new one.
    #[serde(default = "default_max_attempts")]
    #[schemars(transform = limits::workflow::MAX_ATTEMPTS.schema())]
    pub max_attempts: u32,
    /// Where plugin manifests (`NAME.yaml`) are looked up (default: `../plugins` from the
    /// workflow file).
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
}

fn default_max_attempts() -> u32 {
    3
}

fn default_seed() -> u64 {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrainSchedule {
    pub schedule: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Drop the fire (logged).
    #[default]
    Skip,
    /// Keep one fire to run as soon as the current round ends.
    BufferOne,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Log every missed slot as skipped.
    #[default]
    Skip,
    /// Run one round for all missed slots, log the others as skipped.
    RunOnce,
}

/// Where the graph comes from. Paths are relative to the workflow file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    /// A triples TSV imported when the database has no graph yet.
    #[serde(default)]
    pub import: Option<PathBuf>,
    /// A public graph by name (`hypograph fetch --list`): its verified download in the cache
    /// (fetched now when absent; `hypograph fetch NAME --no-import` fetches it ahead) is
    /// imported with its format's reader when the database has no graph yet.
    #[serde(default)]
    pub fetch: Option<String>,
    /// A KGX directory (nodes.tsv, edges.tsv) imported when the database has no graph yet.
    #[serde(default)]
    pub kgx: Option<PathBuf>,
    /// Entity features (`id`, then `smiles`, `sequence` and/or vector columns), imported in
    /// the same first version as `import` or `kgx`; every entity must be in that graph.
    #[serde(default)]
    pub features: Option<PathBuf>,
    /// Columns of the KGX nodes file (`kgx`) that hold features, e.g.
    /// `{vector: [emb0, emb1, ...], smiles: smiles}`: embeddings computed elsewhere, imported
    /// with the graph in its first version.
    #[serde(default)]
    pub node_features: Option<crate::graph::kgx::NodeFeatureColumns>,
    /// How `import` is read (default: a triples TSV, or a table when the name says `.csv` or
    /// a tarball): `triples`, `kgx`, `table`, or a published graph's layout (`hetionet`,
    /// `primekg`, `drkg`, `monarch`) so that no map is needed.
    #[serde(default)]
    #[schemars(schema_with = "optional_value_enum::<crate::graph::table::Format>")]
    pub format: Option<crate::graph::table::Format>,
    /// The nodes table beside `import` (found by name when `import` is a directory or tarball).
    #[serde(default)]
    pub nodes: Option<PathBuf>,
    /// Which columns are what, as `import --map`: `{subject: x_id, object: y_id, predicate:
    /// relation, category: kind}`; `a+b` joins columns into one key, numbers name columns of
    /// a headerless file. On top of `format`'s preset.
    #[serde(default)]
    pub map: std::collections::BTreeMap<String, String>,
    /// Whether the tables have a header row (default true; presets know their own).
    #[serde(default)]
    pub header: Option<bool>,
    /// The tables' field separator: one character or `tab` (default from the file name).
    #[serde(default)]
    pub delimiter: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateSpec {
    /// Test triples: each round records the retrained model's filtered MRR on them.
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// Validation triples for early stopping and calibration.
    #[serde(default)]
    pub valid: Option<PathBuf>,
    /// More true triples to filter out of the test ranking (e.g. an oracle's truth file).
    #[serde(default)]
    pub filter: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetrainMode {
    #[default]
    Warm,
    Cold,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationSpec {
    #[default]
    Platt,
    Isotonic,
    None,
}

/// The model, as a subset of `TrainConfig` plus ensemble and retraining settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    #[schemars(schema_with = "value_enum::<ModelKind>")]
    pub kind: ModelKind,
    #[schemars(transform = limits::train::DIM.schema())]
    pub dim: usize,
    #[schemars(schema_with = "value_enum::<Regime>")]
    pub regime: Regime,
    /// Default: cross-entropy for one-vs-all, softplus for negatives.
    #[schemars(schema_with = "optional_value_enum::<LossKind>")]
    pub loss: Option<LossKind>,
    #[schemars(transform = limits::train::NEGATIVES.schema())]
    pub negatives: usize,
    #[schemars(schema_with = "value_enum::<OptimizerKind>")]
    pub optimizer: OptimizerKind,
    #[schemars(transform = limits::train::LR.schema())]
    pub lr: f64,
    #[schemars(transform = limits::train::BATCH_SIZE.schema())]
    pub batch_size: usize,
    /// Epochs of the first training (0 only with `kind: ultra`: zero-shot).
    #[schemars(transform = limits::train::EPOCHS.schema())]
    pub epochs: usize,
    /// Epochs of each retrain after a round.
    #[schemars(transform = limits::workflow::RETRAIN_EPOCHS.schema())]
    pub retrain_epochs: usize,
    #[schemars(transform = limits::train::ENSEMBLE.schema())]
    pub ensemble: usize,
    pub calibration: CalibrationSpec,
    /// Whether each retrain recalibrates a relation's probabilities on the verdicts review
    /// gave earlier rounds' picks (once it has 20): the top of a ranking, where validation
    /// triples say little (`model::recalibrate`).
    pub verdict_calibration: bool,
    pub retrain: RetrainMode,
    /// The walk transformer's settings (`kind: walks`); unset ones keep their defaults.
    /// `lr` and `batch_size` above apply to the shallow kinds; the walk model has its own.
    pub walks: Option<WalksSpec>,
    /// The message-passing models' settings (`kind: ultra` or `gnn`); unset ones keep their
    /// defaults. `lr`, `batch_size` and `negatives` above apply to the shallow kinds.
    pub gnn: Option<GnnSpec>,
}

/// The message-passing models' settings a workflow may set (see `model::GnnConfig`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GnnSpec {
    /// A PyTorch checkpoint of ULTRA to start from (`kind: ultra`); default: the embedded
    /// `ultra_4g` weights.
    pub weights: Option<String>,
    /// Width of every state (`kind: gnn`).
    #[schemars(transform = limits::gnn::DIM.schema())]
    pub dim: Option<usize>,
    /// Layers of each network (`kind: gnn`).
    #[schemars(transform = limits::gnn::LAYERS.schema())]
    pub layers: Option<usize>,
    #[schemars(transform = limits::gnn::LR.schema())]
    pub lr: Option<f64>,
    /// Training queries per step (they share one pass over the graph).
    #[schemars(transform = limits::gnn::BATCH_SIZE.schema())]
    pub batch_size: Option<usize>,
    /// Negatives per training query, from the relation's range.
    #[schemars(transform = limits::gnn::NEGATIVES.schema())]
    pub negatives: Option<usize>,
    /// Training queries per epoch, drawn afresh each epoch.
    #[schemars(transform = limits::gnn::QUERIES_PER_EPOCH.schema())]
    pub queries_per_epoch: Option<usize>,
    /// Scoring reads only this many senders a layer per query (A*Net-style pruning);
    /// default: every node (full propagation).
    #[schemars(transform = limits::gnn::PRUNE_SENDERS.schema())]
    pub prune_senders: Option<usize>,
}

impl GnnSpec {
    pub fn config(&self) -> crate::model::GnnConfig {
        crate::model::GnnConfig {
            weights: self.weights.clone(),
            dim: self.dim,
            layers: self.layers,
            lr: self.lr,
            batch_size: self.batch_size,
            negatives: self.negatives,
            queries_per_epoch: self.queries_per_epoch,
            prune_senders: self.prune_senders,
        }
    }
}

/// The walk transformer's hyperparameters a workflow may set (see `model::WalkConfig`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WalksSpec {
    /// Width of every token's vector (a multiple of `heads`).
    #[schemars(transform = limits::walks::D_MODEL.schema())]
    pub d_model: Option<usize>,
    #[schemars(transform = limits::walks::LAYERS.schema())]
    pub layers: Option<usize>,
    #[schemars(transform = limits::walks::HEADS.schema())]
    pub heads: Option<usize>,
    /// Width of the feed-forward block.
    #[schemars(transform = limits::walks::D_FF.schema())]
    pub d_ff: Option<usize>,
    #[schemars(transform = limits::walks::SHARE.schema())]
    pub dropout: Option<f64>,
    /// Context walks per sequence, each starting at the query's entity.
    #[schemars(transform = limits::walks::CONTEXT_WALKS.schema())]
    pub context_walks: Option<usize>,
    /// Steps (relation, entity) per walk.
    #[schemars(transform = limits::walks::WALK_LENGTH.schema())]
    pub walk_length: Option<usize>,
    /// Extra sequences per entity and epoch that start a rarity-biased walk.
    #[schemars(transform = limits::walks::WEIGHT.schema())]
    pub walks_per_entity: Option<f64>,
    /// Bias of a walk's next relation towards rare ones (count^-alpha).
    #[schemars(transform = limits::walks::RARITY_ALPHA.schema())]
    pub rarity_alpha: Option<f64>,
    /// Probability that a training sequence shows its entity as its category's token.
    #[schemars(transform = limits::walks::SHARE.schema())]
    pub id_dropout: Option<f64>,
    #[schemars(transform = limits::walks::SHARE.schema())]
    pub mask_prob: Option<f64>,
    #[schemars(transform = limits::walks::WEIGHT.schema())]
    pub mask_weight: Option<f64>,
    /// Weight of a refuted triple's penalty beside a true triple's loss.
    #[schemars(transform = limits::walks::WEIGHT.schema())]
    pub refuted_weight: Option<f64>,
    #[schemars(transform = limits::walks::LR.schema())]
    pub lr: Option<f64>,
    #[schemars(transform = limits::walks::WEIGHT_DECAY.schema())]
    pub weight_decay: Option<f64>,
    /// Share of the steps spent warming the learning rate up.
    #[schemars(transform = limits::walks::SHARE.schema())]
    pub warmup: Option<f64>,
    #[schemars(transform = limits::walks::BATCH_SIZE.schema())]
    pub batch_size: Option<usize>,
    /// Context samples averaged per query at scoring time.
    #[schemars(transform = limits::walks::SAMPLES.schema())]
    pub samples: Option<usize>,
    /// Fewest context walks a training batch draws (shorter sequences, cheaper steps).
    #[schemars(transform = limits::walks::MIN_WALKS.schema())]
    pub min_walks: Option<usize>,
    /// Weight of the binary cross-entropy term that makes scores compare across queries.
    #[schemars(transform = limits::walks::WEIGHT.schema())]
    pub bce_weight: Option<f64>,
    /// Training queries per epoch, drawn afresh each epoch (default: every training triple,
    /// both directions): a fixed budget for large graphs.
    #[schemars(transform = limits::walks::QUERIES_PER_EPOCH.schema())]
    pub queries_per_epoch: Option<usize>,
    /// Negatives per query from its relation's range: a sampled softmax with sparse entity
    /// updates instead of a softmax over every entity (default: every entity).
    #[schemars(transform = limits::walks::SAMPLED_NEGATIVES.schema())]
    pub sampled_negatives: Option<usize>,
    /// Peak learning rate of the entity rows under `sampled_negatives` (default: `lr`).
    #[schemars(transform = limits::walks::LR.schema())]
    pub entity_lr: Option<f64>,
}

impl WalksSpec {
    /// `base` with every setting this spec names replaced.
    pub fn apply(&self, base: WalkConfig) -> WalkConfig {
        let mut c = base;
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { c.$f = v; } )* };
        }
        set!(
            d_model,
            layers,
            heads,
            d_ff,
            dropout,
            context_walks,
            walk_length,
            walks_per_entity,
            rarity_alpha,
            id_dropout,
            mask_prob,
            mask_weight,
            refuted_weight,
            lr,
            weight_decay,
            warmup,
            batch_size
        );
        // Settings that are optional in the config too: named ones replace, others stay.
        macro_rules! set_opt {
            ($($f:ident),*) => { $( if self.$f.is_some() { c.$f = self.$f; } )* };
        }
        set_opt!(
            samples,
            min_walks,
            bce_weight,
            queries_per_epoch,
            sampled_negatives,
            entity_lr
        );
        c
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            kind: ModelKind::Complex,
            dim: 64,
            regime: Regime::OneVsAll,
            loss: None,
            negatives: 256,
            optimizer: OptimizerKind::Adagrad,
            lr: 0.1,
            batch_size: 512,
            epochs: 40,
            retrain_epochs: 5,
            ensemble: 3,
            calibration: CalibrationSpec::Platt,
            verdict_calibration: true,
            retrain: RetrainMode::Warm,
            walks: None,
            gnn: None,
        }
    }
}

impl ModelSpec {
    /// The training configuration for a first (`retrain == false`) or later training.
    pub fn train_config(&self, seed: u64, retrain: bool) -> TrainConfig {
        let loss = self.loss.unwrap_or(match self.regime {
            Regime::OneVsAll => LossKind::CrossEntropy,
            Regime::Negatives => LossKind::Softplus,
        });
        TrainConfig::new()
            .with_model(self.kind)
            .with_dim(self.dim)
            .with_regime(self.regime)
            .with_loss(loss)
            .with_negatives(self.negatives)
            .with_optimizer(self.optimizer)
            .with_lr(self.lr)
            .with_batch_size(self.batch_size)
            .with_epochs(if retrain {
                self.retrain_epochs
            } else {
                self.epochs
            })
            .with_seed(seed)
            // Rounds train a fixed budget: early stopping would make round time unpredictable.
            .with_eval_every(0)
            .with_patience(0)
            .with_walks((self.kind == ModelKind::Walks).then(|| {
                self.walks
                    .clone()
                    .unwrap_or_default()
                    .apply(WalkConfig::new())
            }))
            .with_gnn(
                crate::model::gnn::is_gnn(self.kind)
                    .then(|| self.gnn.clone().unwrap_or_default().config()),
            )
    }

    pub fn calibration_method(&self) -> Method {
        match self.calibration {
            CalibrationSpec::Platt => Method::Platt,
            CalibrationSpec::Isotonic => Method::Isotonic,
            CalibrationSpec::None => Method::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSpec {
    /// Relations to propose edges for (all when empty).
    pub relations: Vec<String>,
    /// Candidates kept per relation, best first.
    #[schemars(transform = limits::workflow::TOP_K.schema())]
    pub top_k: usize,
    /// Score a uniform sample of this many pairs per relation instead of every pair.
    #[schemars(transform = limits::workflow::MAX_CANDIDATES.schema())]
    pub max_candidates: Option<usize>,
}

impl Default for GenerateSpec {
    fn default() -> Self {
        Self {
            relations: Vec::new(),
            top_k: 200,
            max_candidates: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AcquisitionName {
    #[default]
    Greedy,
    Random,
    Uncertainty,
    Spread,
    Bald,
    Ucb,
    Thompson,
    Epsilon,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RankSpec {
    pub acquisition: AcquisitionName,
    /// UCB's weight on the spread.
    #[schemars(transform = limits::workflow::BETA.schema())]
    pub beta: f64,
    /// The random share of an `epsilon` batch.
    #[schemars(transform = limits::workflow::PROBABILITY.schema())]
    pub epsilon: f64,
    /// What an `epsilon` batch exploits with.
    pub inner: AcquisitionName,
    /// Hypotheses per round.
    #[schemars(transform = limits::workflow::RANK_BATCH.schema())]
    pub batch: usize,
    /// At most this many hypotheses per entity in one batch.
    #[schemars(transform = limits::workflow::MAX_PER_ENTITY.schema())]
    pub max_per_entity: Option<usize>,
}

impl Default for RankSpec {
    fn default() -> Self {
        Self {
            acquisition: AcquisitionName::Greedy,
            beta: 1.0,
            epsilon: 0.1,
            inner: AcquisitionName::Greedy,
            batch: 50,
            max_per_entity: Some(3),
        }
    }
}

impl RankSpec {
    pub fn acquisition(&self) -> Acquisition {
        let simple = |a: AcquisitionName| match a {
            AcquisitionName::Greedy | AcquisitionName::Epsilon => Acquisition::Greedy,
            AcquisitionName::Random => Acquisition::Random,
            AcquisitionName::Uncertainty => Acquisition::Uncertainty,
            AcquisitionName::Spread => Acquisition::Spread,
            AcquisitionName::Bald => Acquisition::Bald,
            AcquisitionName::Ucb => Acquisition::Ucb { beta: self.beta },
            AcquisitionName::Thompson => Acquisition::Thompson,
        };
        match self.acquisition {
            AcquisitionName::Epsilon => Acquisition::Epsilon {
                epsilon: self.epsilon,
                inner: Box::new(simple(self.inner)),
            },
            other => simple(other),
        }
    }
}

/// The plugin kinds: built-ins a stage names directly, and what manifests describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Oracle,
    Http,
    Command,
    Llm,
    Human,
}

impl PluginKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Oracle => "oracle",
            Self::Http => "http",
            Self::Command => "command",
            Self::Llm => "llm",
            Self::Human => "human",
        }
    }

    pub fn builtin(name: &str) -> Option<Self> {
        [
            Self::Oracle,
            Self::Http,
            Self::Command,
            Self::Llm,
            Self::Human,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuorumRule {
    /// The most common verdict wins; a tie is `inconclusive`.
    #[default]
    Majority,
    /// Any disagreement waits for an admin's verdict, which decides.
    Escalate,
}

/// One review stage. Plugin-specific settings sit beside the common ones; validation
/// rejects settings that do not belong to the stage's plugin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    /// A built-in kind (oracle, http, command, llm, human) or a manifest's name.
    pub plugin: String,
    /// Verdicts that move a hypothesis on to the next stage.
    #[serde(default = "default_advance")]
    #[schemars(schema_with = "outcomes")]
    pub advance: Vec<Outcome>,
    /// Whether this stage's verdict is what ingest applies (default: the last stage only).
    #[serde(default, rename = "final")]
    pub is_final: Option<bool>,
    /// How long hypotheses may wait for an answer ("30s", "15m", "72h", "7d").
    #[serde(default)]
    #[schemars(extend("pattern" = DURATION))]
    pub timeout: Option<String>,
    /// Attempts after the first on retryable errors.
    #[serde(default = "default_retries")]
    #[schemars(transform = limits::workflow::RETRIES.schema())]
    pub retries: u32,
    /// Cost per hypothesis (divides the acquisition value when ranking).
    #[serde(default)]
    #[schemars(transform = limits::workflow::COST.schema())]
    pub cost: Option<f64>,
    /// Hypotheses per submission.
    #[serde(default = "default_batch")]
    #[schemars(transform = limits::workflow::STAGE_BATCH.schema())]
    pub batch: usize,
    /// How long one request (http, llm) or one program run (command) may take.
    #[serde(default)]
    #[schemars(extend("pattern" = DURATION))]
    pub request_timeout: Option<String>,

    // oracle
    /// Truth triples TSV the oracle answers from.
    #[serde(default)]
    pub truth: Option<PathBuf>,
    /// Probability that the oracle's verdict is flipped.
    #[serde(default)]
    #[schemars(transform = limits::workflow::PROBABILITY.schema())]
    pub flip_rate: Option<f64>,
    /// The oracle's answer delay per batch ("0s", "2s").
    #[serde(default)]
    #[schemars(extend("pattern" = DURATION))]
    pub latency: Option<String>,
    /// Simulated outage: the oracle's first this-many submissions fail (retryably).
    #[serde(default)]
    #[schemars(transform = limits::workflow::OUTAGE.schema())]
    pub outage: Option<u32>,

    // http
    #[serde(default)]
    pub url: Option<String>,
    /// Where pending jobs are polled.
    #[serde(default)]
    pub poll_url: Option<String>,
    /// The service posts results back to `POST /api/v1/results` (given this base URL of
    /// hypograph's server).
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The environment variable holding the bearer token sent to the service (http) or the
    /// API key (llm; default `LLM_API_KEY`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Batches in flight at once (http, llm).
    #[serde(default)]
    #[schemars(transform = limits::workflow::CONCURRENCY.schema())]
    pub concurrency: Option<usize>,
    /// Consecutive failed batches after which the stage pauses until the next run.
    #[serde(default)]
    #[schemars(transform = limits::workflow::BREAKER.schema())]
    pub breaker: Option<u32>,
    // llm
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    /// Dollars per 1,000 prompt and completion tokens.
    #[serde(default)]
    #[schemars(transform = limits::workflow::PRICE_PER_1K.schema())]
    pub price_per_1k: Option<[f64; 2]>,
    // command
    #[serde(default)]
    pub command: Option<Vec<String>>,
    // human
    #[serde(default)]
    #[schemars(transform = limits::workflow::QUORUM.schema())]
    pub quorum: Option<u32>,
    #[serde(default)]
    pub rule: Option<QuorumRule>,
    /// human: waiting items whose fresh score (after a retrain) falls below this are marked
    /// stale in the review queue.
    #[serde(default)]
    #[schemars(transform = limits::workflow::PROBABILITY.schema())]
    pub stale_below: Option<f64>,
}

/// The verdicts a stage can advance on, for the schema (`Outcome` is the plugins' wire type).
fn outcomes(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // Exhaustive on purpose: a new verdict stops the build here until it is listed.
    let name = |o: Outcome| match o {
        Outcome::Confirmed | Outcome::Refuted | Outcome::Inconclusive => o.as_str(),
    };
    let all = [Outcome::Confirmed, Outcome::Refuted, Outcome::Inconclusive].map(name);
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "string", "enum": all },
    })
}

fn default_advance() -> Vec<Outcome> {
    vec![Outcome::Confirmed]
}

fn default_retries() -> u32 {
    3
}

fn default_batch() -> usize {
    1000
}

impl StageSpec {
    /// The settings a plugin of `kind` does not take.
    pub fn foreign_fields(&self, kind: PluginKind) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |set: bool, field: &'static str, allowed: &[PluginKind]| {
            if set && !allowed.contains(&kind) {
                out.push(field);
            }
        };
        use PluginKind::*;
        check(self.truth.is_some(), "truth", &[Oracle]);
        check(self.flip_rate.is_some(), "flip_rate", &[Oracle]);
        check(self.latency.is_some(), "latency", &[Oracle]);
        check(self.outage.is_some(), "outage", &[Oracle]);
        check(self.url.is_some(), "url", &[Http]);
        check(self.poll_url.is_some(), "poll_url", &[Http]);
        check(self.callback_url.is_some(), "callback_url", &[Http]);
        check(self.token_env.is_some(), "token_env", &[Http, Llm]);
        check(self.concurrency.is_some(), "concurrency", &[Http, Llm]);
        check(self.breaker.is_some(), "breaker", &[Http, Llm, Command]);
        check(
            self.request_timeout.is_some(),
            "request_timeout",
            &[Http, Llm, Command],
        );
        check(self.endpoint.is_some(), "endpoint", &[Llm]);
        check(self.model.is_some(), "model", &[Llm]);
        check(self.prompt.is_some(), "prompt", &[Llm]);
        check(self.price_per_1k.is_some(), "price_per_1k", &[Llm]);
        check(self.command.is_some(), "command", &[Command]);
        check(self.quorum.is_some(), "quorum", &[Human]);
        check(self.rule.is_some(), "rule", &[Human]);
        check(self.stale_below.is_some(), "stale_below", &[Human]);
        out
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefuteOn {
    /// Only a final stage's `refuted` becomes negative evidence.
    #[default]
    Final,
    /// Any stage's `refuted` does.
    Any,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSpec {
    pub refute_on: RefuteOn,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StopSpec {
    /// No more rounds after this many have finished.
    #[schemars(transform = limits::workflow::MAX_ROUNDS.schema())]
    pub max_rounds: Option<u64>,
    /// No more rounds once this much has been spent across rounds.
    #[schemars(transform = limits::workflow::BUDGET.schema())]
    pub budget: Option<f64>,
}
