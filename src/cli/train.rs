//! `hypograph train` and `hypograph eval`: models on graph versions, their checkpoints and
//! records in the store (read through a local directory: `training::local_checkpoint`).

use crate::graph::{Graph, OnInvalid, Triple, tsv};
use crate::limits;
use crate::model::Ensemble;
use crate::model::calibrate::{self, Method};
use crate::model::checkpoint::Vocab;
use crate::model::{
    self, Known, LossKind, ModelKind, NegativeSharing, OptimizerKind, Regime, Regularizer,
    TrainConfig, TrainEvent,
};
use crate::store::{Store, VersionRef};
use crate::training::{self, Job, LocalCheckpoint, Warm};
use anyhow::{Context, bail};
use burn::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
    #[arg(long, value_parser = limits::flag(limits::train::DIM))]
    dim: Option<usize>,
    #[arg(long, value_enum)]
    regime: Option<Regime>,
    #[arg(long, value_enum)]
    loss: Option<LossKind>,
    #[arg(long, value_parser = limits::flag(limits::train::LABEL_SMOOTHING))]
    label_smoothing: Option<f64>,
    #[arg(long, value_parser = limits::flag(limits::train::NEGATIVES))]
    negatives: Option<usize>,
    /// Negatives regime: `batch` shares the negatives across a batch (one GEMM), `per-positive`
    /// draws `--negatives` for each positive (as PyKEEN does).
    #[arg(long, value_enum)]
    negative_sharing: Option<NegativeSharing>,
    #[arg(long, value_parser = limits::flag(limits::train::MARGIN))]
    margin: Option<f64>,
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    #[arg(long, value_parser = limits::flag(limits::train::LR))]
    lr: Option<f64>,
    #[arg(long, value_enum)]
    regularizer: Option<Regularizer>,
    #[arg(long, value_parser = limits::flag(limits::train::REG_WEIGHT))]
    reg_weight: Option<f64>,
    #[arg(long, value_parser = limits::flag(limits::train::BATCH_SIZE))]
    batch_size: Option<usize>,
    #[arg(long, value_parser = limits::flag(limits::train::EPOCHS))]
    epochs: Option<usize>,
    #[arg(long, value_parser = limits::flag(limits::train::EVAL_EVERY))]
    eval_every: Option<usize>,
    #[arg(long, value_parser = limits::flag(limits::train::PATIENCE))]
    patience: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Walk model (`--model walks`): width of every token's vector.
    #[arg(long, value_parser = limits::flag(limits::walks::D_MODEL), help_heading = "Walk model")]
    d_model: Option<usize>,
    /// Walk model: transformer layers.
    #[arg(long, value_parser = limits::flag(limits::walks::LAYERS), help_heading = "Walk model")]
    layers: Option<usize>,
    /// Walk model: attention heads (`--d-model` must be a multiple).
    #[arg(long, value_parser = limits::flag(limits::walks::HEADS), help_heading = "Walk model")]
    heads: Option<usize>,
    /// Walk model: context walks per sequence, each from the query's entity.
    #[arg(long, value_parser = limits::flag(limits::walks::CONTEXT_WALKS), help_heading = "Walk model")]
    context_walks: Option<usize>,
    /// Walk model: steps per context walk.
    #[arg(long, value_parser = limits::flag(limits::walks::WALK_LENGTH), help_heading = "Walk model")]
    walk_length: Option<usize>,
    /// Walk model: probability a training sequence shows its entity as its category's token.
    #[arg(long, value_parser = limits::flag(limits::walks::SHARE), help_heading = "Walk model")]
    id_dropout: Option<f64>,
    /// Walk model: training queries per epoch, drawn afresh each epoch (default: every
    /// training triple in both directions).
    #[arg(long, value_parser = limits::flag(limits::walks::QUERIES_PER_EPOCH), help_heading = "Walk model")]
    queries_per_epoch: Option<usize>,
    /// Walk model: negatives per query from its relation's range, a sampled softmax with
    /// sparse entity updates (default: a softmax over every entity).
    #[arg(long, value_parser = limits::flag(limits::walks::SAMPLED_NEGATIVES), help_heading = "Walk model")]
    sampled_negatives: Option<usize>,
    /// Walk model: peak learning rate of the entity rows under `--sampled-negatives`
    /// (default: `--lr`).
    #[arg(long, value_parser = limits::flag(limits::walks::LR), help_heading = "Walk model")]
    entity_lr: Option<f64>,
    /// Message passing (`--model ultra`): a PyTorch checkpoint of ULTRA to start from
    /// (default: the embedded `ultra_4g`). `--lr`, `--batch-size`, `--negatives`,
    /// `--queries-per-epoch`, and for `--model gnn` `--dim` and `--layers`, apply too.
    #[arg(long, help_heading = "Message passing")]
    weights: Option<PathBuf>,
    /// Message passing: scoring reads only this many senders a layer per query (A*Net-style
    /// pruning; default: every node). Training propagates in full.
    #[arg(long, value_parser = limits::flag(limits::gnn::PRUNE_SENDERS), help_heading = "Message passing")]
    prune_senders: Option<usize>,
    /// Blend the popularity baseline into the scores, weighted per relation and side on the
    /// validation triples (default: true; needs `--valid`).
    #[arg(long)]
    popularity_prior: Option<bool>,
    /// Validation triples (head, relation, tail keys) for early stopping.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Start from random weights even if a compatible checkpoint exists.
    #[arg(long)]
    cold: bool,
    /// Ensemble members (different seeds, bootstrap samples of the training triples).
    #[arg(long, default_value_t = 1, value_parser = limits::flag(limits::train::ENSEMBLE))]
    ensemble: usize,
    /// How scores become probabilities, fitted on half the validation triples.
    #[arg(long, value_enum, default_value_t = Method::Platt)]
    calibration: Method,
    /// Keep the validation-fitted probabilities: no recalibration on review's verdicts on
    /// earlier rounds' picks (`model::recalibrate`).
    #[arg(long)]
    no_verdict_calibration: bool,
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
        let kind = self.model.unwrap_or(c.model);
        let walks = kind == ModelKind::Walks;
        let gnn = model::gnn::is_gnn(kind);
        if gnn && self.config.is_none() && self.epochs.is_none() {
            c.epochs = model::config::gnn_epochs(kind);
        }
        if gnn {
            let mut g = c.gnn_config();
            if let Some(p) = &self.weights {
                g.weights = Some(p.display().to_string());
            }
            macro_rules! gnn_opt {
                ($($field:ident),*) => { $( if self.$field.is_some() { g.$field = self.$field; } )* };
            }
            gnn_opt!(
                lr,
                batch_size,
                negatives,
                queries_per_epoch,
                layers,
                prune_senders
            );
            if self.dim.is_some() {
                g.dim = self.dim;
            }
            c.gnn = Some(g);
        } else if self.weights.is_some() {
            anyhow::bail!("--weights is for --model ultra");
        } else if self.prune_senders.is_some() {
            anyhow::bail!("--prune-senders is for --model ultra or gnn");
        }
        if walks && self.config.is_none() && self.epochs.is_none() {
            c.epochs = model::config::WALK_EPOCHS;
        }
        if walks {
            // The walk model has its own optimizer settings: `--lr` and `--batch-size` are its.
            let mut w = c.walk_config();
            macro_rules! walk {
                ($($field:ident),*) => { $( if let Some(v) = self.$field { w.$field = v; } )* };
            }
            walk!(
                d_model,
                layers,
                heads,
                context_walks,
                walk_length,
                id_dropout,
                lr,
                batch_size
            );
            // Optional in the config too: a flag given replaces it.
            macro_rules! walk_opt {
                ($($field:ident),*) => { $( if self.$field.is_some() { w.$field = self.$field; } )* };
            }
            walk_opt!(queries_per_epoch, sampled_negatives, entity_lr);
            c.walks = Some(w);
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        if !gnn {
            set!(dim);
        }
        set!(
            model,
            regime,
            loss,
            label_smoothing,
            negatives,
            negative_sharing,
            margin,
            optimizer
        );
        set!(regularizer, reg_weight, epochs, eval_every, patience, seed);
        if !walks && !gnn {
            set!(lr, batch_size);
        }
        if let Some(p) = self.popularity_prior {
            c.popularity_prior = Some(p);
        }
        if self.regime == Some(Regime::Negatives) && self.loss.is_none() && self.config.is_none() {
            c.loss = LossKind::Softplus;
        }
        // The flags are checked as they are parsed; a config file's values only here.
        let problems = c.problems();
        if !problems.is_empty() {
            let from = self
                .config
                .as_ref()
                .map(|p| format!(" in {}", p.display()))
                .unwrap_or_default();
            let lines: Vec<String> = problems
                .iter()
                .map(|(field, why)| format!("  {field}{from}: {why}"))
                .collect();
            bail!("training settings out of range:\n{}", lines.join("\n"));
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
    /// Write a reliability diagram of the test triples (against candidate-like negatives).
    #[arg(long)]
    reliability: Option<PathBuf>,
    /// Also print the metrics of each relation beside the popularity baseline's.
    #[arg(long)]
    by_relation: bool,
    /// Skip the calibration report on the test triples: it scores ten candidate-like
    /// negatives a test triple, which costs a message-passing model a graph pass each.
    #[arg(long, conflicts_with = "reliability")]
    no_calibration: bool,
    #[arg(long)]
    json: bool,
}

struct Mapped {
    triples: Vec<Triple>,
    unknown: usize,
}

fn map_file(path: &Path, graph: &Graph) -> anyhow::Result<Mapped> {
    let (triples, unknown) = training::map_file(path, graph)?;
    Ok(Mapped { triples, unknown })
}

/// The model `id` (default: the newest), the graph it was trained on, and its weights (its
/// checkpoint made local under `data_dir` when this host does not have it).
async fn open_model(
    store: &Store,
    data_dir: &Path,
    id: Option<i64>,
) -> anyhow::Result<(LocalCheckpoint, Graph, Ensemble)> {
    let info = match id {
        Some(id) => store.model(id).await?,
        None => match store.latest_model().await? {
            Some(m) => m,
            None => bail!("no trained model yet: run `hypograph train` first"),
        },
    };
    let graph = store.load_graph(info.graph_version).await?;
    let local = training::local_checkpoint(store, data_dir, info).await?;
    let ensemble = training::load_model(&local, &Vocab::of(&graph))?;
    Ok((local, graph, ensemble))
}

pub async fn train(store: &Store, data_dir: &Path, args: TrainArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    let job = Job {
        version: store.resolve(args.version).await?,
        config: config.clone(),
        valid: args.valid.clone(),
        holdout: Vec::new(),
        ensemble: args.ensemble,
        calibration: args.calibration,
        verdict_calibration: !args.no_verdict_calibration,
        warm: if args.cold { Warm::Cold } else { Warm::Latest },
        backend: args.device,
        workflow: None,
    };
    let k = job.ensemble.max(1);
    // A bar on a terminal; a line per epoch (and throttled lines within long ones) otherwise.
    let mut progress = crate::progress::TrainProgress::new(
        crate::progress::Reporter::new(),
        training::shape(&config),
        k,
        config.epochs,
    );
    let trained = training::train(store, data_dir, &job, &mut |member, e: &TrainEvent| {
        progress.event(member, e)
    })
    .await;
    progress.finish();
    let trained = trained?;
    let id = trained.info.id;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&trained.info)?);
    } else {
        out!(
            "model {id}: {} on version {}, {}{} epochs in {:.1}s{}{}",
            training::shape(&config),
            job.version,
            if k > 1 {
                format!("{k} members, ")
            } else {
                String::new()
            },
            trained.epochs_run,
            trained.seconds,
            trained
                .best_valid_mrr
                .map(|m| format!(", best valid MRR {m:.4} at epoch {}", trained.best_epoch))
                .unwrap_or_default(),
            trained
                .warm_from
                .map(|w| format!(", warm from model {w}"))
                .unwrap_or_default()
        );
        if let Some(c) = &trained.calibration {
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
        out!("checkpoint {}", trained.info.path);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn eval(store: &Store, data_dir: &Path, args: EvalArgs) -> anyhow::Result<ExitCode> {
    let (local, graph, ensemble) = open_model(store, data_dir, args.model).await?;
    let info = &local.info;
    let test = map_file(&args.test, &graph)?;
    let mut filter_sets = vec![graph.triples().to_vec(), test.triples.clone()];
    let valid_path = local.dir().join("valid.tsv");
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
    let context = ensemble.context_of(&graph);
    let scorers = ensemble.scorers(&device, &context);
    let counted = crate::progress::Counted::new(
        scorers.as_slice(),
        crate::progress::Reporter::new(),
        format!("evaluating model {}", info.id),
        "queries",
        2 * test.triples.len() as u64,
    );
    let ranks = model::rank_all(&counted, &test.triples, &known, 256);
    counted.finish();
    drop(scorers);
    let metrics = ranks.metrics();
    // The baseline on the same protocol: the same test triples, the same filter.
    let popularity =
        model::Popularity::new(graph.num_entities(), graph.num_relations(), graph.triples());
    let pop_ranks = model::rank_all(&popularity, &test.triples, &known, 256);
    let pop_metrics = pop_ranks.metrics();
    let relations = by_relation(&graph, &test.triples, &ranks, &pop_ranks);
    let below: Vec<&RelationRow> = relations.iter().filter(|r| r.below()).collect();
    let exclude: std::collections::HashSet<Triple> =
        filter_sets.iter().flatten().copied().collect();
    let calibration = if args.no_calibration {
        None
    } else {
        test_calibration(
            &ensemble,
            &graph,
            &test.triples,
            &exclude,
            &device,
            &context,
        )
    };
    if let (Some(path), Some((before, after))) = (&args.reliability, &calibration) {
        let svg = calibrate::reliability_svg(
            "reliability on test triples",
            &[("raw sigmoid", before), ("calibrated", after)],
        );
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let mut out = serde_json::json!({
            "model": info.id,
            "graph_version": info.graph_version,
            "test_triples": test.triples.len(),
            "skipped_unknown": test.unknown,
            "metrics": metrics,
            "popularity": pop_metrics,
            "ratio_to_popularity": ratio(metrics.both.mrr, pop_metrics.both.mrr),
            "below_popularity": below.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            "calibration": calibration.as_ref().map(|(b, a)| serde_json::json!({ "before": b, "after": a })),
        });
        if args.by_relation {
            out["by_relation"] = relations
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "relation": r.name,
                        "test_triples": r.count,
                        "metrics": r.model,
                        "popularity": r.popularity,
                        "ratio_to_popularity": ratio(r.model.both.mrr, r.popularity.both.mrr),
                        "below_popularity": r.below(),
                    })
                })
                .collect();
        }
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
    out!("side        MRR     H@1     H@3     H@10    mean rank");
    let calibration_line = calibration.as_ref().map(|(b, a)| {
        format!(
            "calibration on test (+ {} candidate-like negatives each): ECE {:.4} -> {:.4}, Brier {:.4} -> {:.4}",
            crate::training::CALIBRATION_NEGATIVES,
            b.ece,
            a.ece,
            b.brier,
            a.brier
        )
    });
    for (name, s) in [
        ("both", metrics.both),
        ("head", metrics.head),
        ("tail", metrics.tail),
        ("popularity", pop_metrics.both),
    ] {
        out!(
            "{name:<10}  {:.4}  {:.4}  {:.4}  {:.4}  {:.1}",
            s.mrr,
            s.hits_at_1,
            s.hits_at_3,
            s.hits_at_10,
            s.mean_rank
        );
    }
    out!(
        "model / popularity (MRR, both sides): {}",
        ratio_text(metrics.both.mrr, pop_metrics.both.mrr)
    );
    if args.by_relation {
        out!("");
        out!("relation                      test    MRR     H@10    pop MRR pop H@10  ratio");
        for r in &relations {
            out!(
                "{:<28}  {:>6}  {:.4}  {:.4}  {:.4}  {:.4}   {}{}",
                r.name,
                r.count,
                r.model.both.mrr,
                r.model.both.hits_at_10,
                r.popularity.both.mrr,
                r.popularity.both.hits_at_10,
                ratio_text(r.model.both.mrr, r.popularity.both.mrr),
                if r.below() { "  BELOW POPULARITY" } else { "" }
            );
        }
    }
    if !below.is_empty() {
        let names: Vec<String> = below
            .iter()
            .map(|r| format!("{} ({} test triples)", r.name, r.count))
            .collect();
        out!(
            "below popularity on {} of {} relations: {}",
            below.len(),
            relations.len(),
            names.join(", ")
        );
    }
    if let Some(line) = calibration_line {
        out!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// One relation's figures beside the popularity baseline's.
struct RelationRow {
    name: String,
    count: usize,
    model: model::Metrics,
    popularity: model::Metrics,
}

impl RelationRow {
    /// The model ranks this relation's test triples worse than counting does.
    fn below(&self) -> bool {
        self.model.both.mrr < self.popularity.both.mrr
    }
}

fn by_relation(
    graph: &Graph,
    test: &[Triple],
    model: &model::Ranks,
    popularity: &model::Ranks,
) -> Vec<RelationRow> {
    let pop: std::collections::HashMap<u32, model::Metrics> =
        popularity.by_relation(test).into_iter().collect();
    let counts = test
        .iter()
        .fold(std::collections::HashMap::new(), |mut m, t| {
            *m.entry(t.relation).or_insert(0usize) += 1;
            m
        });
    model
        .by_relation(test)
        .into_iter()
        .map(|(r, m)| RelationRow {
            name: graph.relation_key(r).to_owned(),
            count: counts.get(&r).copied().unwrap_or(0),
            model: m,
            popularity: pop.get(&r).copied().unwrap_or_default(),
        })
        .collect()
}

/// `a / b`, or `None` when the baseline scores nothing (no ratio to give).
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

fn ratio_text(a: f64, b: f64) -> String {
    ratio(a, b).map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x"))
}

/// ECE and Brier of the ensemble's probabilities on test positives and negatives drawn the
/// way calibration draws them (candidate-like pairs at the same ratio), before (sigmoid of
/// raw scores) and after calibration.
fn test_calibration(
    ensemble: &Ensemble,
    graph: &crate::graph::Graph,
    test: &[Triple],
    exclude: &std::collections::HashSet<Triple>,
    device: &burn::tensor::Device,
    context: &model::Context,
) -> Option<(calibrate::Report, calibrate::Report)> {
    if test.is_empty() || ensemble.members.is_empty() {
        return None;
    }
    let negatives: Vec<Triple> = crate::acquire::sample_like_candidates(
        graph,
        exclude,
        test,
        crate::training::CALIBRATION_NEGATIVES,
        17,
    )
    .into_iter()
    .flatten()
    .collect();
    let triples: Vec<Triple> = test.iter().chain(&negatives).copied().collect();
    let labels: Vec<bool> = test
        .iter()
        .map(|_| true)
        .chain(negatives.iter().map(|_| false))
        .collect();
    let (raw, calibrated) = ensemble.mean_raw_and_calibrated(&triples, device, context);
    Some((
        calibrate::report(&raw, &labels, 10),
        calibrate::report(&calibrated, &labels, 10),
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
pub async fn predict(
    store: &Store,
    data_dir: &Path,
    args: PredictArgs,
) -> anyhow::Result<ExitCode> {
    let (local, graph, ensemble) = open_model(store, data_dir, args.model).await?;
    let info = &local.info;
    let names = store.entity_names(info.graph_version).await?;
    let name = |k: &str| names.get(k).cloned().unwrap_or_default();
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
    let context = ensemble.context_of(&graph);
    let predictions = ensemble.predict(&known_triples, &model::default_device(), &context);
    let mut out = Vec::with_capacity(rows.len());
    for (keys, id) in &rows {
        let p = id.map(|i| &predictions[i]);
        out.push(serde_json::json!({
            "head": keys[0], "relation": keys[1], "tail": keys[2],
            "head_name": name(keys[0]), "tail_name": name(keys[2]),
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
        let named = |k: &str| match names.get(k) {
            Some(n) => format!("{k} ({n})"),
            None => k.to_owned(),
        };
        let triple = format!("{}\t{}\t{}", named(keys[0]), keys[1], named(keys[2]));
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
