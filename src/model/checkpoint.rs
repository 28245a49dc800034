//! Checkpoints: the weights as a burn record (burnpack), the `TrainConfig` beside them, and
//! the entity/relation keys they were trained on, so a checkpoint can be refused for another
//! graph and grown for a newer version of the same one.

use super::any::Model;
use super::config::{ModelKind, TrainConfig};
use super::kge::{KgeModel, relation_rows, widths};
use super::tables::Table;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};

const WEIGHTS: &str = "weights.bpk";
const CONFIG: &str = "config.json";
/// The optimizer's state beside the weights, so a warm retrain continues Adagrad or Adam
/// where the last one stopped (restarting Adagrad's accumulators made each warm retrain jolt
/// the model). Optional: a checkpoint without it warm-starts with fresh state.
const OPTIMIZER: &str = "optimizer.bin";
const OPTIMIZER_MAGIC: &[u8; 8] = b"HGOPT\0\0\x01";
const VOCAB: &str = "vocab.json";

/// The weights as a burn module, the unit burn records.
#[derive(Module, Debug)]
pub struct KgeWeights {
    pub entities: Param<Tensor<2>>,
    pub relations: Param<Tensor<2>>,
}

/// The keys behind the dense ids a checkpoint was trained on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vocab {
    pub entities: Vec<String>,
    pub relations: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    // Not a `source`: the message already carries it, and a chain would print it twice.
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("checkpoint {} is corrupted: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_owned(),
        cause,
    }
}

pub(crate) fn corrupt(path: &Path, reason: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Writes the checkpoint into `dir` and returns the blake3 checksum of its weights file.
pub fn save(model: &Model, vocab: &Vocab, dir: &Path) -> Result<String, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    match model {
        Model::Kge(m) => save_kge(m, dir)?,
        Model::Walks(m) => super::walks::save(m, dir)?,
        Model::Gnn(m) => super::gnn::save(m, dir)?,
    }
    let config = dir.join(CONFIG);
    model.config().save(&config).map_err(io(&config))?;
    let vocab_path = dir.join(VOCAB);
    let text = serde_json::to_vec(vocab).map_err(|e| corrupt(&vocab_path, e))?;
    std::fs::write(&vocab_path, text).map_err(io(&vocab_path))?;
    checksum(&dir.join(WEIGHTS))
}

fn save_kge(model: &KgeModel, dir: &Path) -> Result<(), CheckpointError> {
    let device = Device::flex();
    let table =
        |t: &Table| Param::from_data(TensorData::new(t.data.clone(), [t.rows, t.width]), &device);
    let weights = KgeWeights {
        entities: table(&model.entities),
        relations: table(&model.relations),
    };
    let path = dir.join(WEIGHTS);
    weights
        .save_file(&path)
        .map_err(|e| corrupt(&path, format!("writing weights: {e:?}")))?;
    save_optimizer(model, &dir.join(OPTIMIZER))
}

/// Writes the tables' optimizer state: a magic, then per table its first and second moments,
/// each as a little-endian u64 count and that many f32.
fn save_optimizer(model: &KgeModel, path: &Path) -> Result<(), CheckpointError> {
    let (e, r) = (model.entities.state(), model.relations.state());
    if e.0.is_empty() && r.0.is_empty() {
        return match std::fs::remove_file(path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(io(path)(err)),
            _ => Ok(()),
        };
    }
    let total: usize = [e.0, e.1, r.0, r.1].iter().map(|v| 8 + 4 * v.len()).sum();
    let mut bytes = Vec::with_capacity(OPTIMIZER_MAGIC.len() + total);
    bytes.extend_from_slice(OPTIMIZER_MAGIC);
    for v in [e.0, e.1, r.0, r.1] {
        bytes.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for x in v {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).map_err(io(path))
}

/// Restores the optimizer state saved beside a member checkpoint (`dir`, as
/// [`member_dir`] names it), if it is there: only a warm start needs it, so [`load`] leaves
/// it on disk (it is as large as the weights).
pub fn restore_optimizer(model: &mut Model, dir: &Path) -> Result<(), CheckpointError> {
    match model {
        Model::Kge(m) => load_optimizer(m, &dir.join(OPTIMIZER)),
        Model::Walks(_) | Model::Gnn(_) => Ok(()),
    }
}

fn load_optimizer(model: &mut KgeModel, path: &Path) -> Result<(), CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    let rest = bytes
        .strip_prefix(OPTIMIZER_MAGIC.as_slice())
        .ok_or_else(|| corrupt(path, "not an optimizer state file"))?;
    let mut at = 0usize;
    let mut next = || -> Result<Vec<f32>, CheckpointError> {
        let len = rest
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| corrupt(path, "truncated"))?;
        let n = usize::try_from(len).map_err(|e| corrupt(path, e))?;
        let end = n
            .checked_mul(4)
            .and_then(|b| b.checked_add(at + 8))
            .filter(|&end| end <= rest.len())
            .ok_or_else(|| corrupt(path, "truncated"))?;
        let v = rest[at + 8..end]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        at = end;
        Ok(v)
    };
    let (ef, es, rf, rs) = (next()?, next()?, next()?, next()?);
    model
        .entities
        .set_state(ef, es)
        .map_err(|e| corrupt(path, format!("entities: {e}")))?;
    model
        .relations
        .set_state(rf, rs)
        .map_err(|e| corrupt(path, format!("relations: {e}")))
}

/// blake3 of a checkpoint's weights file.
pub fn checksum(weights: &Path) -> Result<String, CheckpointError> {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(weights).map_err(io(weights))?;
    h.update_reader(f).map_err(io(weights))?;
    Ok(h.finalize().to_hex().to_string())
}

/// Loads a checkpoint, refusing it if its weights do not match `expected_checksum`.
pub fn load(
    dir: &Path,
    expected_checksum: Option<&str>,
) -> Result<(Model, Vocab), CheckpointError> {
    let weights_path = dir.join(WEIGHTS);
    if let Some(want) = expected_checksum {
        let got = checksum(&weights_path)?;
        if got != want {
            return Err(corrupt(
                &weights_path,
                format!("checksum {got} does not match the recorded {want}"),
            ));
        }
    }
    let config_path = dir.join(CONFIG);
    let config =
        TrainConfig::load(&config_path).map_err(|e| corrupt(&config_path, format!("{e:?}")))?;
    let vocab_path = dir.join(VOCAB);
    let vocab: Vocab =
        serde_json::from_slice(&std::fs::read(&vocab_path).map_err(io(&vocab_path))?)
            .map_err(|e| corrupt(&vocab_path, e))?;
    let (n, m) = (vocab.entities.len(), vocab.relations.len());
    let model = match config.model {
        ModelKind::Complex | ModelKind::Distmult | ModelKind::Rotate => {
            Model::Kge(load_kge(dir, config, n, m)?)
        }
        ModelKind::Walks => Model::Walks(super::walks::load(dir, config, n, m)?),
        ModelKind::Ultra | ModelKind::Gnn => Model::Gnn(super::gnn::load(dir, config, n, m)?),
    };
    Ok((model, vocab))
}

fn load_kge(
    dir: &Path,
    config: TrainConfig,
    n: usize,
    m: usize,
) -> Result<KgeModel, CheckpointError> {
    let weights_path = dir.join(WEIGHTS);
    let (ew, rw) = widths(&config);
    let rel_rows = relation_rows(&config, m);
    let device = Device::flex();
    let empty = KgeWeights {
        entities: Param::from_data(TensorData::new(vec![0f32; n * ew], [n, ew]), &device),
        relations: Param::from_data(
            TensorData::new(vec![0f32; rel_rows * rw], [rel_rows, rw]),
            &device,
        ),
    };
    let weights = empty
        .try_load_file(&weights_path)
        .map_err(|e| corrupt(&weights_path, format!("{e:?}")))?;
    let data = |p: Param<Tensor<2>>, rows: usize, width: usize| -> Result<Table, CheckpointError> {
        let t = p.val();
        let dims = t.dims();
        if dims != [rows, width] {
            return Err(corrupt(
                &weights_path,
                format!("a table is {dims:?}, the config and vocabulary say [{rows}, {width}]"),
            ));
        }
        let v = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| corrupt(&weights_path, format!("{e:?}")))?;
        Ok(Table::from_data(rows, width, v))
    };
    Ok(KgeModel {
        entities: data(weights.entities, n, ew)?,
        relations: data(weights.relations, rel_rows, rw)?,
        config,
        num_entities: n,
        num_relations: m,
    })
}

impl Vocab {
    /// The keys of a graph, in dense id order.
    pub fn of(graph: &crate::graph::Graph) -> Self {
        Self {
            entities: (0..graph.num_entities() as u32)
                .map(|i| graph.entity_key(i).to_owned())
                .collect(),
            relations: (0..graph.num_relations() as u32)
                .map(|i| graph.relation_key(i).to_owned())
                .collect(),
        }
    }

    /// A checkpoint applies to a graph whose ids extend its own: same keys at the same ids,
    /// possibly more after them (a newer version of the same graph).
    pub fn check_prefix_of(&self, newer: &Vocab) -> Result<(), String> {
        for (what, old, new) in [
            ("entity", &self.entities, &newer.entities),
            ("relation", &self.relations, &newer.relations),
        ] {
            if old.len() > new.len() {
                return Err(format!(
                    "it knows {} {what} keys, this graph only {}",
                    old.len(),
                    new.len()
                ));
            }
            if let Some(i) = old.iter().zip(new.iter()).position(|(a, b)| a != b) {
                return Err(format!(
                    "{what} {i} is `{}` in the checkpoint and `{}` in this graph",
                    old[i], new[i]
                ));
            }
        }
        Ok(())
    }
}

const CALIBRATION: &str = "calibration.json";
/// Per-member feature-to-row maps (`model::prior`), when the graph had features.
const PRIORS: &str = "priors.json";

/// Writes the members' priors beside the ensemble. Call before [`save_ensemble`]: the
/// ensemble's checksum covers this file.
pub fn save_priors(priors: &[super::prior::Priors], dir: &Path) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(PRIORS);
    let text = serde_json::to_vec(priors).map_err(|e| corrupt(&path, e))?;
    std::fs::write(&path, text).map_err(io(&path))
}

/// The members' priors, if the model has them.
pub fn load_priors(dir: &Path) -> Result<Option<Vec<super::prior::Priors>>, CheckpointError> {
    let path = dir.join(PRIORS);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The priors file's line in an ensemble's checksum (none for models without it, so their
/// recorded checksums still match).
fn priors_sum(dir: &Path) -> Result<String, CheckpointError> {
    let path = dir.join(PRIORS);
    if !path.exists() {
        return Ok(String::new());
    }
    Ok(format!("{}\n", checksum(&path)?))
}

/// An ensemble on disk: `member-<i>/` checkpoints and `calibration.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CalibrationFile {
    members: Vec<super::calibrate::Calibrator>,
    /// The popularity blend (absent in files written before it existed, and when training
    /// did not choose one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    popularity: Option<super::popularity::PopularityWeights>,
    /// The verdict recalibration (absent in files written before it existed, and before a
    /// relation had enough verdicts).
    #[serde(
        default,
        skip_serializing_if = "super::recalibrate::VerdictCalibration::is_empty"
    )]
    verdicts: super::recalibrate::VerdictCalibration,
}

/// Member `i`'s checkpoint directory inside an ensemble's.
pub fn member_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("member-{i}"))
}

/// Saves every member and the calibrators; returns one checksum over the members' weights.
pub fn save_ensemble(
    ensemble: &super::Ensemble,
    vocab: &Vocab,
    dir: &Path,
) -> Result<String, CheckpointError> {
    let mut sums = String::new();
    for (i, m) in ensemble.members.iter().enumerate() {
        sums.push_str(&save(&m.model, vocab, &member_dir(dir, i))?);
        sums.push('\n');
    }
    let file = CalibrationFile {
        members: ensemble
            .members
            .iter()
            .map(|m| m.calibrator.clone())
            .collect(),
        popularity: ensemble.popularity.clone(),
        verdicts: ensemble.verdicts.clone(),
    };
    let path = dir.join(CALIBRATION);
    let text = serde_json::to_vec_pretty(&file).map_err(|e| corrupt(&path, e))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    sums.push_str(&priors_sum(dir)?);
    Ok(blake3::hash(sums.as_bytes()).to_hex().to_string())
}

/// Loads an ensemble saved by [`save_ensemble`], refusing it unless its combined checksum is
/// `expected_checksum`.
pub fn load_ensemble(
    dir: &Path,
    expected_checksum: Option<&str>,
) -> Result<(super::Ensemble, Vocab), CheckpointError> {
    let path = dir.join(CALIBRATION);
    let file: CalibrationFile = serde_json::from_slice(&std::fs::read(&path).map_err(io(&path))?)
        .map_err(|e| corrupt(&path, e))?;
    let mut sums = String::new();
    for i in 0..file.members.len() {
        sums.push_str(&checksum(&member_dir(dir, i).join(WEIGHTS))?);
        sums.push('\n');
    }
    sums.push_str(&priors_sum(dir)?);
    if let Some(want) = expected_checksum {
        let got = blake3::hash(sums.as_bytes()).to_hex().to_string();
        if got != want {
            return Err(corrupt(
                dir,
                format!("checksum {got} does not match the recorded {want}"),
            ));
        }
    }
    let mut members = Vec::with_capacity(file.members.len());
    let mut vocab = None;
    let (popularity, verdicts) = (file.popularity, file.verdicts);
    for (i, calibrator) in file.members.into_iter().enumerate() {
        let (model, v) = load(&member_dir(dir, i), None)?;
        vocab = Some(v);
        members.push(super::ensemble::Member { model, calibrator });
    }
    let vocab = vocab.ok_or_else(|| corrupt(dir, "an ensemble without members"))?;
    Ok((
        super::Ensemble {
            members,
            popularity,
            verdicts,
        },
        vocab,
    ))
}
