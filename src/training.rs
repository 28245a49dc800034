//! Training on a stored graph version: load the graph, its refutations and a warm start,
//! train the ensemble, calibrate, write the checkpoint under the data directory and record it
//! in the store, files included (`local` reads them back on any host). Shared by `hypograph
//! train` and the round engine, so both produce the same kind of model record.

mod local;

pub use local::{LocalCheckpoint, cache_dir, checkpoint_files, local_checkpoint};

use crate::acquire;
use crate::graph::{Graph, OnInvalid, Triple, tsv};
use crate::model::calibrate::{self, Method};
use crate::model::checkpoint::{self, CheckpointError, Vocab};
use crate::model::ensemble::CalibrationSummary;
use crate::model::prior::{Examples, Priors};
use crate::model::recalibrate::{Verdict, VerdictCalibration};
use crate::model::{
    self, Ensemble, EpochStats, Known, ModelError, ModelKind, TrainConfig, TrainEvent, TrainSet,
};
use crate::plot::{Panel, Series};
use crate::store::{ModelInfo, NewModel, Store, StoreError};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Parse(#[from] crate::graph::ParseError),
    #[error("model {id} was trained on another graph: {why}")]
    OtherGraph { id: i64, why: String },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("model {id} has an unreadable config: {cause}")]
    BadRecord { id: i64, cause: serde_json::Error },
    #[error("model {id} is stored in the database but has no checkpoint files there")]
    NoCheckpointFiles { id: i64 },
    #[error(
        "model {id}: checkpoint file `{name}` in the database does not match its recorded checksum (altered or corrupted)"
    )]
    AlteredFile { id: i64, name: String },
    #[error("model {id}: `{name}` is not a checkpoint file name (a relative '/'-separated path)")]
    BadFileName { id: i64, name: String },
}

type Result<T> = std::result::Result<T, TrainingError>;

/// Calibration negatives drawn per validation positive. Among the pairs candidate generation
/// allows, false ones far outnumber true ones (the UMLS demo: about 30 allowed unknown pairs
/// for each true one), so a 1:1 mix would make every plausible pair look likely; 10:1 sits
/// between that base rate and the enriched mix a ranked batch shows reviewers, and leaves a
/// few hundred positives' weight for a stable fit. Probabilities read: "among pairs like
/// this, one true for ten false, how likely is this one".
pub const CALIBRATION_NEGATIVES: usize = 10;

/// Where the first weights come from.
#[derive(Debug, Clone)]
pub enum Warm {
    /// Random initialisation.
    Cold,
    /// The newest model in the store, when its kind, dimension and regime match.
    Latest,
    /// This model, when its kind, dimension and regime match.
    From(ModelInfo),
}

/// One training run.
#[derive(Debug, Clone)]
pub struct Job {
    pub version: i64,
    pub config: TrainConfig,
    /// Validation triples file for early stopping and calibration.
    pub valid: Option<PathBuf>,
    /// Other files of true triples held for evaluation (the test split): never drawn as a
    /// calibration negative.
    pub holdout: Vec<PathBuf>,
    pub ensemble: usize,
    pub calibration: Method,
    /// Whether the ensemble is recalibrated per relation on review's earlier verdicts.
    pub verdict_calibration: bool,
    pub warm: Warm,
    pub backend: model::Backend,
    /// The workflow training it, recorded with the model.
    pub workflow: Option<String>,
}

/// What a run recorded.
#[derive(Debug)]
pub struct Trained {
    pub info: ModelInfo,
    pub ensemble: Ensemble,
    pub graph: Graph,
    pub seconds: f64,
    pub warm_from: Option<i64>,
    pub best_valid_mrr: Option<f64>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub calibration: Option<CalibrationSummary>,
}

/// Triples of a file mapped to a graph's ids, and how many lines named unknown keys.
pub fn map_file(path: &Path, graph: &Graph) -> Result<(Vec<Triple>, usize)> {
    let batch = tsv::read_triples(path, OnInvalid::Fail)?;
    let mut triples = Vec::with_capacity(batch.triples.len());
    let mut unknown = 0;
    for &[h, r, t] in &batch.triples {
        let ids = (
            graph.entity_id(&batch.entities[h as usize].key),
            graph.relation_id(&batch.relations[r as usize]),
            graph.entity_id(&batch.entities[t as usize].key),
        );
        match ids {
            (Some(h), Some(r), Some(t)) => triples.push(Triple::new(h, r, t)),
            _ => unknown += 1,
        }
    }
    Ok((triples, unknown))
}

/// The refuted triples of version `v`, as ids of `graph`.
pub async fn refuted(store: &Store, v: i64, graph: &Graph) -> Result<Vec<Triple>> {
    let mut out = Vec::new();
    for [h, r, t] in store.refuted(v).await? {
        if let (Some(h), Some(r), Some(t)) = (
            graph.entity_id(&h),
            graph.relation_id(&r),
            graph.entity_id(&t),
        ) {
            out.push(Triple::new(h, r, t));
        }
    }
    Ok(out)
}

/// Loads a recorded model (see [`local_checkpoint`]) and checks that it belongs to
/// `vocab`'s graph (or a prefix of it).
pub fn load_model(local: &LocalCheckpoint, vocab: &Vocab) -> Result<Ensemble> {
    let info = &local.info;
    // A checkpoint checked file by file against the database is not hashed a second time.
    let expected = (!local.verified()).then_some(info.checksum.as_str());
    let (e, saved) = checkpoint::load_ensemble(local.dir(), expected)?;
    saved
        .check_prefix_of(vocab)
        .map_err(|why| TrainingError::OtherGraph { id: info.id, why })?;
    Ok(e)
}

pub fn kind_name(k: ModelKind) -> &'static str {
    match k {
        ModelKind::Complex => "complex",
        ModelKind::Distmult => "distmult",
        ModelKind::Rotate => "rotate",
        ModelKind::Walks => "walks",
        ModelKind::Ultra => "ultra",
        ModelKind::Gnn => "gnn",
    }
}

/// A model's kind and size in words: `complex dim 64`, `walks d_model 64, 2 layers`.
pub fn shape(config: &TrainConfig) -> String {
    match config.model {
        ModelKind::Walks => {
            let w = config.walk_config();
            format!(
                "walks d_model {}, {} layer{}",
                w.d_model,
                w.layers,
                if w.layers == 1 { "" } else { "s" }
            )
        }
        ModelKind::Ultra | ModelKind::Gnn => {
            let s = config.gnn_config().shape();
            format!(
                "{} dim {}, {} layers",
                kind_name(config.model),
                s.dim,
                s.layers
            )
        }
        kind => format!("{} dim {}", kind_name(kind), config.dim),
    }
}

/// Runs CPU-bound work without stalling other tasks of a multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Trains `job` and records the checkpoint. `on_progress(member, event)` reports progress
/// (`crate::progress::TrainProgress` shows it).
pub async fn train(
    store: &Store,
    data_dir: &Path,
    job: &Job,
    on_progress: &mut (dyn FnMut(usize, &TrainEvent) + Send),
) -> Result<Trained> {
    let config = &job.config;
    let v = job.version;
    let graph = store.load_graph(v).await?;
    let vocab = Vocab::of(&graph);
    let train_triples = graph.triples().to_vec();
    let (valid, valid_unknown) = match &job.valid {
        Some(p) => map_file(p, &graph)?,
        None => (Vec::new(), 0),
    };
    if valid_unknown > 0 {
        tracing::warn!(
            skipped = valid_unknown,
            "validation triples naming unknown keys were skipped"
        );
    }
    let refuted = refuted(store, v, &graph).await?;
    let known = Known::new(&[&train_triples, &valid]);
    let mut not_negative: HashSet<Triple> = valid.iter().chain(&refuted).copied().collect();
    for p in &job.holdout {
        not_negative.extend(map_file(p, &graph)?.0);
    }
    let negatives = acquire::sample_like_candidates(
        &graph,
        &not_negative,
        &valid,
        CALIBRATION_NEGATIVES,
        config.seed ^ 0xca1b,
    );

    let features = store.features_at(v).await?;
    let candidate = match &job.warm {
        Warm::Cold => None,
        Warm::Latest => store.latest_model().await?,
        Warm::From(info) => Some(info.clone()),
    };
    let mut warm: Vec<Option<model::Model>> = Vec::new();
    let mut warm_from = None;
    if let Some(info) = candidate {
        let saved: TrainConfig = serde_json::from_value(info.config.clone())
            .map_err(|cause| TrainingError::BadRecord { id: info.id, cause })?;
        if model::warm_compatible(&saved, config) {
            let id = info.id;
            let local = local_checkpoint(store, data_dir, info).await?;
            let e = load_model(&local, &vocab)?;
            tracing::info!(model = id, "warm start");
            let old_priors = checkpoint::load_priors(local.dir())?.unwrap_or_default();
            warm = e
                .members
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut model = m.model;
                    checkpoint::restore_optimizer(
                        &mut model,
                        &checkpoint::member_dir(local.dir(), i),
                    )?;
                    if let (Some(p), Some(kge)) = (old_priors.get(i), model.as_kge_mut()) {
                        seed_new_rows(kge, &graph, &features, p, config.seed);
                    }
                    Ok(Some(model))
                })
                .collect::<std::result::Result<_, CheckpointError>>()?;
            warm_from = Some(id);
        }
    }
    let set = TrainSet {
        num_entities: graph.num_entities(),
        num_relations: graph.num_relations(),
        train: &train_triples,
        valid: &valid,
        known: &known,
        refuted: &refuted,
    };
    let started = Instant::now();
    let device = model::device(job.backend)?;
    let k = job.ensemble.max(1);
    let (vectors, skipped_features) = feature_vectors(&graph, &features);
    let mut categories = model::Categories::of_graph(&graph);
    if config.model.reads_context() {
        categories.features = entity_features(&vectors);
    }
    let outcomes = blocking(|| {
        model::ensemble::train_members(config, &set, &categories, k, warm, &device, on_progress)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let histories: Vec<Vec<EpochStats>> = outcomes.iter().map(|o| o.history.clone()).collect();
    let member_metrics: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "best_epoch": o.best_epoch,
                "best_valid_mrr": o.best_valid_mrr,
                "epochs_run": o.history.len(),
                "stopped_early": o.stopped_early,
            })
        })
        .collect();
    let (best_valid_mrr, best_epoch, epochs_run) = outcomes
        .first()
        .map(|o| (o.best_valid_mrr, o.best_epoch, o.history.len()))
        .unwrap_or((None, 0, 0));
    let models: Vec<model::Model> = outcomes.into_iter().map(|o| o.model).collect();
    let mut context = model::Context::of_graph_if(config.model.reads_context(), &graph);
    let mut blend = None;
    if config.popularity_prior() && !valid.is_empty() {
        let counts = std::sync::Arc::new(model::Popularity::new(
            graph.num_entities(),
            graph.num_relations(),
            graph.triples(),
        ));
        let fitted = blocking(|| {
            let scorers: Vec<_> = models.iter().map(|m| m.scorer(&device, &context)).collect();
            model::popularity::PopularityWeights::fit(
                scorers.as_slice(),
                &counts,
                graph.num_relations(),
                &valid,
                &known,
            )
        });
        context = context.with_popularity(counts);
        tracing::info!(
            valid_mrr_model = fitted.1.valid_mrr_model,
            valid_mrr_blended = fitted.1.valid_mrr_blended,
            "popularity blend fitted on validation"
        );
        blend = Some(fitted);
    }
    let (mut ensemble, calibration) = blocking(|| {
        Ensemble::calibrate(
            models,
            blend.as_ref().map(|b| b.0.clone()),
            job.calibration,
            &valid,
            &negatives,
            &device,
            &context,
        )
    });

    if job.verdict_calibration {
        let verdicts: Vec<Verdict> = store
            .judged(v, job.workflow.as_deref())
            .await?
            .into_iter()
            .filter_map(|(relation, probability, confirmed)| {
                Some(Verdict {
                    relation: graph.relation_id(&relation)?,
                    probability,
                    confirmed,
                })
            })
            .collect();
        ensemble.verdicts = VerdictCalibration::fit(&verdicts);
        for (r, s) in ensemble.verdicts.relations() {
            tracing::info!(
                relation = graph.relation_key(r),
                verdicts = s.verdicts,
                confirmed = s.confirmed,
                slope = s.a,
                intercept = s.b,
                "recalibrated on review's verdicts"
            );
        }
    }

    let (priors, prior_report) =
        blocking(|| fit_priors_on(&ensemble, &vectors, skipped_features, config.seed));

    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let dir = data_dir
        .join("models")
        .join(format!("v{v}-{}-{stamp}", kind_name(config.model)));
    if priors.iter().any(|p| !p.maps.is_empty()) {
        checkpoint::save_priors(&priors, &dir)?;
    }
    let checksum = blocking(|| checkpoint::save_ensemble(&ensemble, &vocab, &dir))?;
    let io = |path: PathBuf| move |cause| TrainingError::Io { path, cause };
    write_curve(&dir, &histories).map_err(io(dir.join("curve.csv")))?;
    std::fs::write(dir.join("valid.tsv"), keys_of(&graph, &valid))
        .map_err(io(dir.join("valid.tsv")))?;
    if let Some(c) = &calibration {
        let svg = calibrate::reliability_svg(
            "reliability on held-out validation triples",
            &[("raw sigmoid", &c.before), ("calibrated", &c.after)],
        );
        std::fs::write(dir.join("reliability.svg"), svg)
            .map_err(io(dir.join("reliability.svg")))?;
    }
    let metrics = serde_json::json!({
        "members": member_metrics,
        "best_valid_mrr": best_valid_mrr,
        "seconds": seconds,
        "train_triples": train_triples.len(),
        "valid_triples": valid.len(),
        "valid_skipped": valid_unknown,
        "refuted_negatives": refuted.len(),
        "calibration": calibration,
        "popularity_blend": blend.as_ref().map(|b| b.1),
        "priors": prior_report,
    });
    let path = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let files = checkpoint_files(&dir)?;
    let config_json =
        serde_json::to_value(config).map_err(|cause| TrainingError::BadRecord { id: 0, cause })?;
    let id = store
        .record_model(&NewModel {
            graph_version: v,
            parent_id: warm_from,
            kind: kind_name(config.model),
            config: &config_json,
            path: &path.display().to_string(),
            checksum: &checksum,
            metrics: &metrics,
            workflow: job.workflow.as_deref(),
            files: &files,
        })
        .await?;
    Ok(Trained {
        info: store.model(id).await?,
        ensemble,
        graph,
        seconds,
        warm_from,
        best_valid_mrr,
        best_epoch,
        epochs_run,
        calibration,
    })
}

/// Grows a warm model to `graph` and starts each new entity that has features from the row its
/// features predict under the old model's priors (an entity submitted through `ask` keeps the
/// place its features gave it), instead of a random row. Without such entities the model is
/// left for `model::train` to grow, as before.
fn seed_new_rows(
    model: &mut model::KgeModel,
    graph: &Graph,
    features: &[crate::graph::FeatureRecord],
    priors: &Priors,
    seed: u64,
) {
    let before = model.num_entities;
    if before >= graph.num_entities() || priors.maps.is_empty() {
        return;
    }
    let mut rows: Vec<(usize, Vec<f32>)> = Vec::new();
    for f in features {
        let Some(id) = graph.entity_id(&f.entity) else {
            continue;
        };
        let id = id as usize;
        if id < before || rows.iter().any(|r| r.0 == id) {
            continue;
        }
        let Some(map) = priors.get(graph.category(id as u32), f.value.kind()) else {
            continue;
        };
        if let Some(row) = crate::featurize::featurize(&f.entity, &f.value)
            .ok()
            .and_then(|x| map.prior(&x))
        {
            rows.push((id, row));
        }
    }
    if rows.is_empty() {
        return;
    }
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x9e0f);
    model.grow(graph.num_entities(), graph.num_relations(), &mut rng);
    let w = model.entities.width;
    for (id, row) in rows {
        if row.len() == w {
            model.entities.data[id * w..(id + 1) * w].copy_from_slice(&row);
        }
    }
}

/// Each member's maps from features to rows (`model::prior`), per category and feature kind,
/// fitted on the trained entities that have features; and a report for the model's metrics.
/// A feature that cannot be featurized (an invalid SMILES imported as text) is skipped and
/// counted, not fatal: one bad row must not stop a retrain.
pub fn fit_priors(
    ensemble: &Ensemble,
    graph: &Graph,
    features: &[crate::graph::FeatureRecord],
    seed: u64,
) -> (Vec<Priors>, serde_json::Value) {
    let (vectors, skipped) = feature_vectors(graph, features);
    fit_priors_on(ensemble, &vectors, skipped, seed)
}

/// Featurized vectors by (category, kind), one width per group (vectors from different files
/// may differ: the commonest wins), and how many features could not be featurized.
pub type FeatureVectors = std::collections::BTreeMap<(String, &'static str), Vec<(u32, Vec<f32>)>>;

/// The graph's features as vectors (`featurize`), grouped for the priors and the walk model.
pub fn feature_vectors(
    graph: &Graph,
    features: &[crate::graph::FeatureRecord],
) -> (FeatureVectors, usize) {
    use std::collections::BTreeMap;
    let mut vectors = FeatureVectors::new();
    let mut skipped = 0usize;
    for f in features {
        let Some(id) = graph.entity_id(&f.entity) else {
            continue;
        };
        match crate::featurize::featurize(&f.entity, &f.value) {
            Ok(x) => vectors
                .entry((graph.category(id).to_owned(), f.value.kind()))
                .or_default()
                .push((id, x)),
            Err(e) => {
                skipped += 1;
                tracing::warn!(error = %e, "feature skipped for the priors");
            }
        }
    }
    // One width per group (vectors from different files may differ): the commonest wins.
    for rows in vectors.values_mut() {
        let mut widths: BTreeMap<usize, usize> = BTreeMap::new();
        for (_, x) in rows.iter() {
            *widths.entry(x.len()).or_default() += 1;
        }
        let w = widths
            .iter()
            .max_by_key(|(_, n)| **n)
            .map_or(0, |(w, _)| *w);
        rows.retain(|(_, x)| x.len() == w);
    }
    (vectors, skipped)
}

/// The walk model's view of the same vectors.
pub fn entity_features(vectors: &FeatureVectors) -> model::EntityFeatures {
    model::EntityFeatures::from_groups(
        vectors
            .iter()
            .map(|((c, k), rows)| (c.as_str(), *k, rows.as_slice())),
    )
}

fn fit_priors_on(
    ensemble: &Ensemble,
    vectors: &FeatureVectors,
    skipped: usize,
    seed: u64,
) -> (Vec<Priors>, serde_json::Value) {
    let groups: Vec<Examples<'_>> = vectors
        .iter()
        .map(|((category, kind), rows)| Examples {
            category,
            kind,
            rows: rows.iter().map(|(id, x)| (*id, x.as_slice())).collect(),
        })
        .collect();
    let priors: Vec<Priors> = ensemble
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| match m.model.as_kge() {
            Some(kge) => Priors::fit(kge, &groups, seed.wrapping_add(i as u64)),
            // Maps from features to embedding rows exist only where there are rows.
            None => Priors::default(),
        })
        .collect();
    let report = serde_json::json!({
        "maps": priors.first().map(|p| p.maps.iter().map(|m| serde_json::json!({
            "category": m.category,
            "kind": m.kind,
            "dim": m.dim,
            "fitted_on": m.fitted_on,
            "holdout_r2": m.holdout_r2,
            "penalty": m.lambda,
        })).collect::<Vec<_>>()).unwrap_or_default(),
        "features_skipped": skipped,
    });
    (priors, report)
}

pub fn keys_of(graph: &Graph, triples: &[Triple]) -> String {
    triples
        .iter()
        .map(|t| {
            format!(
                "{}\t{}\t{}\n",
                graph.entity_key(t.head),
                graph.relation_key(t.relation),
                graph.entity_key(t.tail)
            )
        })
        .collect()
}

/// The training curves as CSV and as an SVG plot beside the checkpoint.
fn write_curve(dir: &Path, histories: &[Vec<EpochStats>]) -> std::io::Result<()> {
    let mut csv = String::from("member,epoch,loss,valid_mrr,seconds\n");
    for (m, history) in histories.iter().enumerate() {
        for s in history {
            csv.push_str(&format!(
                "{m},{},{},{},{}\n",
                s.epoch,
                s.loss,
                s.valid_mrr.map(|m| m.to_string()).unwrap_or_default(),
                s.seconds
            ));
        }
    }
    std::fs::write(dir.join("curve.csv"), csv)?;
    let series = |f: &dyn Fn(&EpochStats) -> Option<f64>, markers: bool| -> Vec<Series> {
        histories
            .iter()
            .enumerate()
            .map(|(m, h)| Series {
                name: format!("member {m}"),
                points: h
                    .iter()
                    .filter_map(|s| f(s).map(|y| (s.epoch as f64, y)))
                    .collect(),
                markers,
            })
            .collect()
    };
    let loss = Panel {
        title: "training loss".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        series: series(&|s| Some(s.loss), false),
        y_range: None,
    };
    let mrr = Panel {
        title: "validation MRR (filtered)".into(),
        x_label: "epoch".into(),
        y_label: "MRR".into(),
        series: series(&|s| s.valid_mrr, true),
        y_range: Some((0.0, 1.0)),
    };
    std::fs::write(dir.join("curve.svg"), crate::plot::svg(&[loss, mrr]))
}
