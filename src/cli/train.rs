//! `hypograph train` and `hypograph eval`: models on graph versions, checkpoints in the data
//! directory, their records in the store.

use crate::graph::{Graph, OnInvalid, Triple, tsv};
use crate::model::Ensemble;
use crate::model::calibrate::{self, Method};
use crate::model::checkpoint::{self, Vocab};
use crate::model::{
    self, EpochStats, Known, LossKind, ModelKind, OptimizerKind, Regime, Regularizer, TrainConfig,
    TrainSet,
};
use crate::plot::{Panel, Series};
use crate::store::{ModelInfo, NewModel, Store, VersionRef};
use anyhow::{Context, bail};
use burn::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Graph version to train on.
    #[arg(long, default_value = "HEAD")]
    version: VersionRef,
    /// Start from a saved TrainConfig JSON (e.g. a checkpoint's config.json); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    #[arg(long)]
    dim: Option<usize>,
    #[arg(long, value_enum)]
    regime: Option<Regime>,
    #[arg(long, value_enum)]
    loss: Option<LossKind>,
    #[arg(long)]
    label_smoothing: Option<f64>,
    #[arg(long)]
    negatives: Option<usize>,
    #[arg(long)]
    margin: Option<f64>,
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, value_enum)]
    regularizer: Option<Regularizer>,
    #[arg(long)]
    reg_weight: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Validation triples (head, relation, tail keys) for early stopping.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Start from random weights even if a compatible checkpoint exists.
    #[arg(long)]
    cold: bool,
    /// Ensemble members (different seeds, bootstrap samples of the training triples).
    #[arg(long, default_value_t = 1)]
    ensemble: usize,
    /// How scores become probabilities, fitted on half the validation triples.
    #[arg(long, value_enum, default_value_t = Method::Platt)]
    calibration: Method,
    /// Compute backend (GPU ones need a build with the matching cargo feature).
    #[arg(long, value_enum, default_value_t = model::Backend::Cpu)]
    device: model::Backend,
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => {
                TrainConfig::load(p).map_err(|e| anyhow::anyhow!("{}: {e:?}", p.display()))?
            }
            None => TrainConfig::new(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        set!(
            model,
            dim,
            regime,
            loss,
            label_smoothing,
            negatives,
            margin,
            optimizer,
            lr
        );
        set!(
            regularizer,
            reg_weight,
            batch_size,
            epochs,
            eval_every,
            patience,
            seed
        );
        if self.regime == Some(Regime::Negatives) && self.loss.is_none() && self.config.is_none() {
            c.loss = LossKind::Softplus;
        }
        Ok(c)
    }
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Test triples (head, relation, tail keys).
    #[arg(long)]
    test: PathBuf,
    /// Model id (default: the newest).
    #[arg(long)]
    model: Option<i64>,
    /// More known triples to filter out of the ranking (the training graph, the checkpoint's
    /// validation triples and the test triples always are).
    #[arg(long)]
    filter: Vec<PathBuf>,
    /// Write a reliability diagram of the test triples (against as many sampled negatives).
    #[arg(long)]
    reliability: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// Triples of a file mapped to a graph's ids; lines naming unknown keys are counted.
struct Mapped {
    triples: Vec<Triple>,
    unknown: usize,
}

fn map_file(path: &Path, graph: &Graph) -> anyhow::Result<Mapped> {
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
    Ok(Mapped { triples, unknown })
}

fn keys_of(graph: &Graph, triples: &[Triple]) -> String {
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

/// Loads a recorded model and checks that it belongs to `vocab`'s graph.
pub fn load_model(info: &ModelInfo, vocab: &Vocab) -> anyhow::Result<Ensemble> {
    let (e, saved) = checkpoint::load_ensemble(Path::new(&info.path), Some(&info.checksum))?;
    saved
        .check_prefix_of(vocab)
        .map_err(|why| anyhow::anyhow!("model {} was trained on another graph: {why}", info.id))?;
    Ok(e)
}

/// The model `id` (default: the newest), the graph it was trained on, and its weights.
async fn open_model(
    store: &Store,
    id: Option<i64>,
) -> anyhow::Result<(ModelInfo, Graph, Ensemble)> {
    let info = match id {
        Some(id) => store.model(id).await?,
        None => match store.latest_model().await? {
            Some(m) => m,
            None => bail!("no trained model yet: run `hypograph train` first"),
        },
    };
    let graph = store.load_graph(info.graph_version).await?;
    let ensemble = load_model(&info, &Vocab::of(&graph))?;
    Ok((info, graph, ensemble))
}

pub async fn train(store: &Store, data_dir: &Path, args: TrainArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let v = store.resolve(args.version).await?;
    let graph = store.load_graph(v).await?;
    let vocab = Vocab::of(&graph);
    let train_triples = graph.triples().to_vec();
    let valid = match &args.valid {
        Some(p) => map_file(p, &graph)?,
        None => Mapped {
            triples: Vec::new(),
            unknown: 0,
        },
    };
    if valid.unknown > 0 {
        tracing::warn!(
            skipped = valid.unknown,
            "validation triples naming unknown keys were skipped"
        );
    }
    let mut refuted = Vec::new();
    for [h, r, t] in store.refuted(v).await? {
        if let (Some(h), Some(r), Some(t)) = (
            graph.entity_id(&h),
            graph.relation_id(&r),
            graph.entity_id(&t),
        ) {
            refuted.push(Triple::new(h, r, t));
        }
    }
    let known = Known::new(&[&train_triples, &valid.triples]);

    // Warm start from the newest model when its shape fits this config.
    let latest = if args.cold {
        None
    } else {
        store.latest_model().await?
    };
    let mut warm: Vec<Option<model::KgeModel>> = Vec::new();
    let mut warm_from = None;
    if let Some(info) = latest {
        let saved: TrainConfig = serde_json::from_value(info.config.clone())?;
        if saved.model == config.model && saved.dim == config.dim && saved.regime == config.regime {
            let e = load_model(&info, &vocab)?;
            tracing::info!(model = info.id, "warm start");
            warm = e.members.into_iter().map(|m| Some(m.model)).collect();
            warm_from = Some(info.id);
        }
    }
    let set = TrainSet {
        num_entities: graph.num_entities(),
        num_relations: graph.num_relations(),
        train: &train_triples,
        valid: &valid.triples,
        known: &known,
        refuted: &refuted,
    };
    let k = args.ensemble;
    let bar = indicatif::ProgressBar::new((config.epochs * k) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix}epoch {pos}/{len} [{bar:30}] {msg} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    let mut last_mrr = None;
    let started = Instant::now();
    let device = model::device(args.device)?;
    let outcomes = model::ensemble::train_members(
        &config,
        &set,
        k,
        warm,
        &device,
        &mut |member, s: &EpochStats| {
            if s.valid_mrr.is_some() {
                last_mrr = s.valid_mrr;
            }
            if k > 1 {
                bar.set_prefix(format!("member {}/{k} ", member + 1));
            }
            bar.set_message(format!(
                "loss {:.4}{}",
                s.loss,
                last_mrr
                    .map(|m| format!(" valid MRR {m:.3}"))
                    .unwrap_or_default()
            ));
            bar.set_position((member * config.epochs + s.epoch) as u64);
        },
    )?;
    bar.finish_and_clear();
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
    let first = outcomes
        .first()
        .map(|o| (o.best_valid_mrr, o.best_epoch, o.history.len()));
    let models: Vec<model::KgeModel> = outcomes.into_iter().map(|o| o.model).collect();
    let (ensemble, calibration) = Ensemble::calibrate(
        models,
        args.calibration,
        &valid.triples,
        &known,
        config.seed,
        &device,
    );

    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let dir = data_dir
        .join("models")
        .join(format!("v{v}-{}-{stamp}", kind_name(config.model)));
    let checksum = checkpoint::save_ensemble(&ensemble, &vocab, &dir)?;
    write_curve(&dir, &histories)?;
    std::fs::write(dir.join("valid.tsv"), keys_of(&graph, &valid.triples))?;
    if let Some(c) = &calibration {
        let svg = calibrate::reliability_svg(
            "reliability on held-out validation triples",
            &[("raw sigmoid", &c.before), ("calibrated", &c.after)],
        );
        std::fs::write(dir.join("reliability.svg"), svg)?;
    }
    let (best_valid_mrr, best_epoch, epochs_run) = first.unwrap_or((None, 0, 0));
    let metrics = serde_json::json!({
        "members": member_metrics,
        "best_valid_mrr": best_valid_mrr,
        "seconds": seconds,
        "train_triples": train_triples.len(),
        "valid_triples": valid.triples.len(),
        "valid_skipped": valid.unknown,
        "refuted_negatives": refuted.len(),
        "calibration": calibration,
    });
    let path = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let config_json = serde_json::to_value(&config)?;
    let id = store
        .record_model(&NewModel {
            graph_version: v,
            parent_id: warm_from,
            kind: kind_name(config.model),
            config: &config_json,
            path: &path.display().to_string(),
            checksum: &checksum,
            metrics: &metrics,
        })
        .await?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&store.model(id).await?)?);
    } else {
        out!(
            "model {id}: {} dim {} on version {v}, {}{epochs_run} epochs in {seconds:.1}s{}{}",
            kind_name(config.model),
            config.dim,
            if k > 1 {
                format!("{k} members, ")
            } else {
                String::new()
            },
            best_valid_mrr
                .map(|m| format!(", best valid MRR {m:.4} at epoch {best_epoch}"))
                .unwrap_or_default(),
            warm_from
                .map(|w| format!(", warm from model {w}"))
                .unwrap_or_default()
        );
        if let Some(c) = &calibration {
            out!(
                "calibration ({:?}): ECE {:.4} -> {:.4}, Brier {:.4} -> {:.4} on {} held-out validation triples",
                c.method,
                c.before.ece,
                c.after.ece,
                c.before.brier,
                c.after.brier,
                c.measured_on
            );
        }
        out!("checkpoint {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn kind_name(k: ModelKind) -> &'static str {
    match k {
        ModelKind::Complex => "complex",
        ModelKind::Distmult => "distmult",
        ModelKind::Rotate => "rotate",
    }
}

/// The training curves as CSV and as an SVG plot beside the checkpoint.
fn write_curve(dir: &Path, histories: &[Vec<EpochStats>]) -> anyhow::Result<()> {
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
    std::fs::write(dir.join("curve.svg"), crate::plot::svg(&[loss, mrr]))?;
    Ok(())
}

pub async fn eval(store: &Store, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let (info, graph, ensemble) = open_model(store, args.model).await?;
    let test = map_file(&args.test, &graph)?;
    let mut filter_sets = vec![graph.triples().to_vec(), test.triples.clone()];
    let valid_path = Path::new(&info.path).join("valid.tsv");
    if valid_path.is_file() {
        filter_sets.push(map_file(&valid_path, &graph)?.triples);
    }
    for f in &args.filter {
        filter_sets.push(
            map_file(f, &graph)
                .with_context(|| format!("filter file {}", f.display()))?
                .triples,
        );
    }
    let refs: Vec<&[Triple]> = filter_sets.iter().map(Vec::as_slice).collect();
    let known = Known::new(&refs);
    let device = model::default_device();
    let scorers: Vec<model::Scorer<'_>> = ensemble
        .members
        .iter()
        .map(|m| m.model.scorer(&device))
        .collect();
    let metrics = model::evaluate(scorers.as_slice(), &test.triples, &known, 256);
    drop(scorers);
    let calibration = test_calibration(&ensemble, &test.triples, &known, &device);
    if let (Some(path), Some((before, after))) = (&args.reliability, &calibration) {
        let svg = calibrate::reliability_svg(
            "reliability on test triples",
            &[("raw sigmoid", before), ("calibrated", after)],
        );
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let out = serde_json::json!({
            "model": info.id,
            "graph_version": info.graph_version,
            "test_triples": test.triples.len(),
            "skipped_unknown": test.unknown,
            "metrics": metrics,
            "calibration": calibration.as_ref().map(|(b, a)| serde_json::json!({ "before": b, "after": a })),
        });
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "model {} on {}: {} test triples{}",
        info.id,
        args.test.display(),
        test.triples.len(),
        if test.unknown > 0 {
            format!(" ({} skipped: unknown entity or relation)", test.unknown)
        } else {
            String::new()
        }
    );
    out!("side    MRR     H@1     H@3     H@10    mean rank");
    let calibration_line = calibration.as_ref().map(|(b, a)| {
        format!(
            "calibration on test (+ as many sampled negatives): ECE {:.4} -> {:.4}, Brier {:.4} -> {:.4}",
            b.ece, a.ece, b.brier, a.brier
        )
    });
    for (name, s) in [
        ("both", metrics.both),
        ("head", metrics.head),
        ("tail", metrics.tail),
    ] {
        out!(
            "{name:<6}  {:.4}  {:.4}  {:.4}  {:.4}  {:.1}",
            s.mrr,
            s.hits_at_1,
            s.hits_at_3,
            s.hits_at_10,
            s.mean_rank
        );
    }
    if let Some(line) = calibration_line {
        out!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// ECE and Brier of the ensemble's probabilities on test positives and sampled negatives,
/// before (sigmoid of raw scores) and after calibration.
fn test_calibration(
    ensemble: &Ensemble,
    test: &[Triple],
    known: &Known,
    device: &burn::tensor::Device,
) -> Option<(calibrate::Report, calibrate::Report)> {
    let n = ensemble.members.first()?.model.num_entities;
    if test.is_empty() {
        return None;
    }
    let negatives = calibrate::sample_negatives(test, known, n, 1, 17);
    let triples: Vec<Triple> = test.iter().chain(&negatives).copied().collect();
    let labels: Vec<bool> = test
        .iter()
        .map(|_| true)
        .chain(negatives.iter().map(|_| false))
        .collect();
    let raw = Ensemble {
        members: ensemble
            .members
            .iter()
            .map(|m| model::ensemble::Member {
                model: m.model.clone(),
                calibrator: calibrate::Calibrator::Sigmoid,
            })
            .collect(),
    };
    let mean = |e: &Ensemble| -> Vec<f64> {
        e.predict(&triples, device)
            .into_iter()
            .map(|p| p.mean)
            .collect()
    };
    Some((
        calibrate::report(&mean(&raw), &labels, 10),
        calibrate::report(&mean(ensemble), &labels, 10),
    ))
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Candidate triples (head, relation, tail keys).
    triples: PathBuf,
    /// Model id (default: the newest).
    #[arg(long)]
    model: Option<i64>,
    #[arg(long)]
    json: bool,
}

/// Calibrated probability, spread and BALD mutual information of candidate triples.
pub async fn predict(store: &Store, args: PredictArgs) -> anyhow::Result<ExitCode> {
    let (_, graph, ensemble) = open_model(store, args.model).await?;
    let batch = tsv::read_triples(&args.triples, OnInvalid::Fail)?;
    let mut rows = Vec::with_capacity(batch.triples.len());
    let mut known_triples = Vec::new();
    for &[h, r, t] in &batch.triples {
        let keys = [
            batch.entities[h as usize].key.as_str(),
            batch.relations[r as usize].as_str(),
            batch.entities[t as usize].key.as_str(),
        ];
        let ids = (
            graph.entity_id(keys[0]),
            graph.relation_id(keys[1]),
            graph.entity_id(keys[2]),
        );
        let id = match ids {
            (Some(h), Some(r), Some(t)) => {
                known_triples.push(Triple::new(h, r, t));
                Some(known_triples.len() - 1)
            }
            _ => None,
        };
        rows.push((keys, id));
    }
    let predictions = ensemble.predict(&known_triples, &model::default_device());
    let mut out = Vec::with_capacity(rows.len());
    for (keys, id) in &rows {
        let p = id.map(|i| &predictions[i]);
        out.push(serde_json::json!({
            "head": keys[0], "relation": keys[1], "tail": keys[2],
            "known": id.is_some_and(|i| graph.contains(known_triples[i])),
            "probability": p.map(|p| p.mean),
            "std": p.map(|p| p.std),
            "mutual_information": p.map(|p| crate::acquire::mutual_information(&p.members)),
            "members": p.map(|p| p.members.clone()),
            "error": id.is_none().then_some("unknown entity or relation"),
        }));
    }
    if args.json {
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("probability  std     BALD    triple");
    for (row, (keys, _)) in out.iter().zip(&rows) {
        let triple = keys.join("\t");
        match row["probability"].as_f64() {
            Some(p) => out!(
                "{p:.4}       {:.4}  {:.4}  {triple}{}",
                row["std"].as_f64().unwrap_or(0.0),
                row["mutual_information"].as_f64().unwrap_or(0.0),
                if row["known"].as_bool() == Some(true) {
                    "  (in the graph)"
                } else {
                    ""
                }
            ),
            None => out!("-            -       -       {triple}  (unknown entity or relation)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
