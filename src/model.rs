//! Link-prediction models trained with burn: the hypothesis generator. The only module that
//! imports burn.

pub mod any;
pub mod calibrate;
pub mod checkpoint;
pub mod config;
pub mod context;
pub mod ensemble;
pub mod eval;
pub mod foldin;
pub mod gnn;
pub mod kge;
pub mod popularity;
pub mod prior;
pub mod range;
pub mod recalibrate;
mod score;
mod shared_negatives;
pub mod tables;
pub mod train;
pub mod walks;

pub use any::{AnyScorer, Model, warm_compatible};
pub use config::{
    GnnConfig, LossKind, ModelKind, NegativeSharing, OptimizerKind, Regime, Regularizer,
    TrainConfig, WalkConfig,
};
pub use context::{Categories, Context, EntityFeatures, FeatureGroup, Step};
pub use ensemble::{Ensemble, Prediction};
pub use eval::{Known, LinkPredictor, Metrics, Ranks, SideMetrics, evaluate, rank_all};
pub use kge::{KgeModel, Scorer};
pub use popularity::Popularity;
pub use train::{
    BatchStats, EpochStats, OnProgress, TrainEvent, TrainOutcome, TrainSet, on_epochs, train,
};
pub use walks::{NewAnswer, WalkModel, WalkScorer};

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

/// The device models run on by default: burn's `flex` CPU backend.
pub fn default_device() -> burn::tensor::Device {
    burn::tensor::Device::flex()
}

/// Which backend to run on. GPU backends exist only in builds with the `wgpu` or `cuda`
/// cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    #[default]
    Cpu,
    Wgpu,
    Cuda,
}

/// The device for a backend, or why this build cannot provide it.
pub fn device(backend: Backend) -> Result<burn::tensor::Device, ModelError> {
    match backend {
        Backend::Cpu => Ok(default_device()),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => Ok(burn::tensor::Device::wgpu(
            burn::tensor::DeviceKind::DiscreteGpu(0),
        )),
        #[cfg(feature = "cuda")]
        Backend::Cuda => Ok(burn::tensor::Device::cuda(0)),
        #[allow(unreachable_patterns)]
        other => Err(ModelError::BadConfig(format!(
            "this build has no {other:?} backend: rebuild with `--features {}`",
            format!("{other:?}").to_lowercase()
        ))),
    }
}
