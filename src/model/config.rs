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
}

/// How training pairs positives with negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// Score every entity as the tail of (h, r) and of (t, r^-1): reciprocal relations,
    /// cross-entropy over all entities. The strong choice on small graphs.
    OneVsAll,
    /// Corrupt heads or tails with negatives drawn once per batch and shared by every
    /// positive in it, so negative scoring is one matrix product.
    Negatives,
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
    /// Negatives shared by a batch (negative-sampling regime).
    #[config(default = 256)]
    pub negatives: usize,
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
}
