//! Link-prediction models trained with burn: the hypothesis generator. The only module that
//! imports burn.

pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod ensemble;
pub mod eval;
pub mod kge;
mod score;
pub mod tables;
pub mod train;

pub use config::{LossKind, ModelKind, OptimizerKind, Regime, Regularizer, TrainConfig};
pub use ensemble::{Ensemble, Prediction, mutual_information};
pub use eval::{Known, Metrics, RankScorer, SideMetrics, evaluate};
pub use kge::{KgeModel, Scorer};
pub use train::{EpochStats, TrainOutcome, TrainSet, train};

/// Errors at the model boundary.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the graph has no triples to train on")]
    EmptyGraph,
    #[error("invalid training configuration: {0}")]
    BadConfig(String),
    #[error("incompatible model: {0}")]
    Incompatible(String),
    #[error("training diverged at epoch {epoch} (loss {loss})")]
    Diverged { epoch: usize, loss: f64 },
}

/// The device models run on: burn's `flex` CPU backend unless a GPU feature picks another.
pub fn default_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}
