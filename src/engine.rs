//! The round engine: a state machine persisted in the store after every transition, so a
//! killed process resumes the same round from the database. Each step is written so that
//! redoing it after a crash yields the same result (seeded training and ranking) or is
//! refused by the store's state guards (ingest, verdicts).

use crate::acquire::{self, Acquisition, Candidate, GenerateSpec as AcquireSpec};
use crate::graph::Triple;
use crate::model::checkpoint::Vocab;
use crate::model::{self, Known};
use crate::plugin::command::CommandPlugin;
use crate::plugin::http::Http;
use crate::plugin::llm::Llm;
use crate::plugin::{
    Context, Human, Hypothesis, Plugin, PluginError, idempotency_key, oracle::Oracle,
};
use crate::store::StageMeta;
use crate::store::{
    ImportOptions, ModelInfo, NewHypothesis, PinnedClaims, PinnedInfo, RoundInfo, RoundState,
    RoundUpdate, Store, StoreError,
};
use crate::training::{self, Job, LocalCheckpoint, TrainingError, Warm};
use crate::workflow::source::{self, Source, SourceError};
use crate::workflow::{
    self, Loaded, PluginKind, QuorumRule, RefuteOn, RetrainMode, StageSpec, WorkflowError,
};
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Training(#[from] TrainingError),
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error(transparent)]
    Parse(#[from] crate::graph::ParseError),
    #[error("graph.fetch: {0}")]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("stage `{stage}`: {message}")]
    Plugin { stage: String, message: String },
    #[error("the database has no graph and the workflow names none to import (`graph.import`)")]
    NoGraph,
    #[error("a worker thread failed: {0}")]
    Worker(String),
    #[error("stopped by a signal; the round resumes from `{0}`")]
    Interrupted(RoundState),
    #[error(
        "lost the lease on workflow `{0}` to another process: stopped after finishing the step at `{1}`; the lease holder carries on"
    )]
    LeaseLost(String, RoundState),
    /// Earlier runs of a round died inside a step (an abort, a crash, a kill) until its
    /// attempts were spent.
    #[error("{0}")]
    Died(String),
    #[error("round {number} of `{workflow}`: attempt {attempts} of {max} failed: {error}{}",
        if *failed { "; the round is now failed and the next run starts a new one" } else { "" })]
    Attempt {
        workflow: String,
        number: i64,
        attempts: i64,
        max: u32,
        failed: bool,
        error: Box<EngineError>,
    },
}

type Result<T> = std::result::Result<T, EngineError>;

/// What the engine tells its caller as a round moves.
#[derive(Debug, Clone, Serialize)]
pub enum Event {
    Imported {
        version: i64,
        triples: u64,
    },
    State {
        round: i64,
        number: i64,
        state: RoundState,
        stage: i64,
    },
    Resumed {
        round: i64,
        number: i64,
        state: RoundState,
    },
    Finished(RoundSummary),
}

/// One finished round, as the summary table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoundSummary {
    pub round: i64,
    pub number: i64,
    pub hypotheses: i64,
    pub confirmed: i64,
    pub refuted: i64,
    pub failed: i64,
    pub expired: i64,
    pub precision: f64,
    pub version: Option<i64>,
    pub test_mrr: Option<f64>,
    pub cost: f64,
}

/// How `run` is asked to behave.
pub struct Options<'a> {
    pub data_dir: PathBuf,
    /// The schedule slot that started this round, if any.
    pub fire_time: Option<String>,
    pub on_event: &'a mut (dyn FnMut(&Event) + Send + Sync),
    /// Set when the process should stop at the next step boundary.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// How long an `awaiting` stage is polled before `run` returns and leaves it waiting.
    pub wait: Duration,
    /// Return as soon as the round reaches this state (benchmarks time parts of a round).
    pub until: Option<RoundState>,
    /// Raised when the workflow's lease is lost: stop at the next step boundary with an error.
    pub lease_lost: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Why no new round starts.
pub async fn stop_reason(store: &Store, l: &Loaded) -> Result<Option<String>> {
    let w = &l.workflow;
    let done: Vec<RoundInfo> = store
        .rounds(Some(&w.name), i64::MAX)
        .await?
        .into_iter()
        .filter(|r| r.state == RoundState::Done)
        .collect();
    if let Some(max) = w.stop.max_rounds
        && done.len() as u64 >= max
    {
        return Ok(Some(format!("stop.max_rounds = {max} reached")));
    }
    if let Some(budget) = w.stop.budget {
        let spent: f64 = done
            .iter()
            .filter_map(|r| r.metrics.get("cost").and_then(|c| c.as_f64()))
            .sum();
        if spent >= budget {
            return Ok(Some(format!("stop.budget = {budget} spent ({spent})")));
        }
    }
    Ok(None)
}

/// Imports the workflow's graph into an empty database once its relations are checked
/// against it (`workflow::source`), before anything else is written.
pub async fn prepare(
    store: &Store,
    l: &Loaded,
    on_event: &mut (dyn FnMut(&Event) + Send + Sync),
) -> Result<()> {
    let (batch, path, fetched) = match source::check(Some(store), l).await? {
        Source::Stored => return Ok(()),
        Source::Missing => return Err(EngineError::NoGraph),
        Source::File {
            batch,
            path,
            fetched,
        } => (batch, path, fetched),
    };
    let w = &l.workflow;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut source =
        serde_json::json!({ "kind": "workflow-import", "workflow": w.name, "file": name });
    let mut message = format!("workflow {}: import {name}", w.name);
    if let Some(f) = &fetched {
        message = format!("workflow {}: fetch {}", w.name, f.describe());
        source = f.provenance("workflow-fetch");
        source["workflow"] = w.name.clone().into();
    }
    if let Some(f) = &w.graph.features {
        let features = f.display().to_string();
        message = format!("{message} + {features}");
        source["features"] = features.into();
    }
    let outcome = store
        .import(
            &batch,
            &ImportOptions {
                message,
                source,
                replace: false,
            },
        )
        .await?;
    if let crate::store::Outcome::Committed(c) = outcome {
        on_event(&Event::Imported {
            version: c.version,
            triples: c.added,
        });
    }
    Ok(())
}

impl From<SourceError> for EngineError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Workflow(e) => Self::Workflow(e),
            SourceError::Parse(e) => Self::Parse(e),
            SourceError::Store(e) => Self::Store(e),
            SourceError::Fetch(e) => Self::Fetch(e),
        }
    }
}

/// A retrain-only run: trains on the newest graph version, warm from the workflow's latest
/// model, and records the model under the workflow. Nothing when it already covers HEAD.
pub async fn retrain(store: &Store, l: &Loaded, data_dir: &std::path::Path) -> Result<ModelInfo> {
    prepare(store, l, &mut |_| {}).await?;
    let head = store.head().await?.ok_or(EngineError::NoGraph)?;
    let previous = store.workflow_model(&l.workflow.name).await?;
    if let Some(m) = &previous
        && m.graph_version == head
    {
        return Ok(m.clone());
    }
    let spec = &l.workflow.model;
    let warm = match (&previous, spec.retrain) {
        (Some(m), RetrainMode::Warm) => Warm::From(m.clone()),
        _ => Warm::Cold,
    };
    let trained = train_for(
        store,
        l,
        data_dir,
        head,
        l.workflow.seed.wrapping_add(head as u64),
        warm,
    )
    .await?;
    Ok(trained.info)
}

/// The workflow's test and validation triples that name known keys: never candidates.
fn evaluation_triples(l: &Loaded, graph: &crate::graph::Graph) -> Result<Vec<Triple>> {
    let e = &l.workflow.evaluate;
    let mut out = Vec::new();
    for p in e.test.iter().chain(e.valid.iter()) {
        out.extend(training::map_file(&l.resolve(p), graph)?.0);
    }
    Ok(out)
}

/// The test split: true, held for evaluation, so never drawn as a calibration negative.
/// Ranking filters are not excluded: in a simulation they are the oracle's truth, which the
/// model must not learn from.
fn held_out_files(l: &Loaded) -> Vec<std::path::PathBuf> {
    l.workflow
        .evaluate
        .test
        .iter()
        .map(|p| l.resolve(p))
        .collect()
}

/// Trains the workflow's model on `version` (a retrain when `warm` names a model), records it
/// under the workflow, and re-scores the hypotheses still waiting for review.
async fn train_for(
    store: &Store,
    l: &Loaded,
    data_dir: &std::path::Path,
    version: i64,
    seed: u64,
    warm: Warm,
) -> Result<training::Trained> {
    let spec = &l.workflow.model;
    let job = Job {
        version,
        config: spec.train_config(seed, matches!(warm, Warm::From(_))),
        valid: l.workflow.evaluate.valid.as_ref().map(|p| l.resolve(p)),
        holdout: held_out_files(l),
        ensemble: spec.ensemble,
        calibration: spec.calibration_method(),
        verdict_calibration: spec.verdict_calibration,
        warm,
        backend: model::Backend::Cpu,
        workflow: Some(l.workflow.name.clone()),
    };
    // A line per epoch (and throttled lines within long ones), never a bar: see above.
    let mut progress = crate::progress::TrainProgress::new(
        crate::progress::Reporter::lines(),
        format!(
            "workflow {}: {}",
            l.workflow.name,
            training::shape(&job.config)
        ),
        job.ensemble.max(1),
        job.config.epochs,
    );
    let trained = training::train(store, data_dir, &job, &mut |member, e| {
        progress.event(member, e)
    })
    .await?;
    rescore_open(store, &l.workflow.name, &trained).await?;
    Ok(trained)
}

/// Re-scores the workflow's waiting hypotheses with a newly trained model, so reviewers see
/// what changed.
async fn rescore_open(store: &Store, workflow: &str, trained: &training::Trained) -> Result<()> {
    let open = store.open_hypotheses(workflow).await?;
    if open.is_empty() {
        return Ok(());
    }
    let g = &trained.graph;
    let mut ids = Vec::new();
    let mut triples = Vec::new();
    for (id, h, r, t) in &open {
        if let (Some(h), Some(r), Some(t)) = (g.entity_id(h), g.relation_id(r), g.entity_id(t)) {
            ids.push(*id);
            triples.push(Triple::new(h, r, t));
        }
    }
    let device = model::default_device();
    let context = trained.ensemble.context_of(g);
    let scores: Vec<(i64, f64)> = trained
        .ensemble
        .predict(&triples, &device, &context)
        .into_iter()
        .zip(ids)
        .map(|(p, id)| (id, p.mean))
        .collect();
    store.set_fresh_scores(trained.info.id, &scores).await?;
    Ok(())
}

fn stopped(stop: &Option<tokio::sync::watch::Receiver<bool>>) -> bool {
    stop.as_ref().is_some_and(|s| *s.borrow())
}

/// Aborts the process when `HYPOGRAPH_CRASH_AT` names this point: debug builds only, for the
/// crash-safety tests.
fn crash_point(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("HYPOGRAPH_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("HYPOGRAPH_CRASH_AT={name}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Returns an error when `HYPOGRAPH_FAIL_AT` names this point: debug builds only, for the
/// tests of attempts and failed rounds (a deterministic error, every time the round gets here).
fn fail_point(name: &str) -> Result<()> {
    #[cfg(debug_assertions)]
    if std::env::var("HYPOGRAPH_FAIL_AT").is_ok_and(|v| v == name) {
        return Err(EngineError::Plugin {
            stage: name.to_owned(),
            message: format!("HYPOGRAPH_FAIL_AT={name}: injected failure"),
        });
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
    Ok(())
}

/// Resumes the workflow's open round or starts a new one, and drives it as far as it goes:
/// to `done`, or to an `awaiting` stage still waiting after `opts.wait`. Returns the round.
pub async fn run_round(store: &Store, file: &Loaded, opts: &mut Options<'_>) -> Result<RoundInfo> {
    prepare(store, file, opts.on_event).await?;
    let name = file.workflow.name.clone();
    let round = match store.open_round(&name).await? {
        Some(r) => {
            info!(round = r.id, state = %r.state, "resuming round");
            (opts.on_event)(&Event::Resumed {
                round: r.id,
                number: r.number,
                state: r.state,
            });
            r
        }
        None => {
            let number_seed = file.workflow.seed as i64;
            let r = store
                .create_round(&name, &file.text, number_seed, opts.fire_time.as_deref())
                .await?;
            (opts.on_event)(&Event::State {
                round: r.id,
                number: r.number,
                state: r.state,
                stage: 0,
            });
            r
        }
    };
    // A resumed round keeps the workflow text it started with (validated again: it may come
    // from an older version, whose ranges were wider).
    let spec = if round.spec == file.text {
        Ok(file.clone())
    } else {
        workflow::parse(&file.file, &round.spec, &|n| std::env::var(n).ok()).map(|parsed| Loaded {
            dir: file.dir.clone(),
            ..parsed
        })
    };
    let max = spec
        .as_ref()
        .map_or(file.workflow.max_attempts, |l| l.workflow.max_attempts)
        .max(1);
    let (id, number) = (round.id, round.number);
    // Counted before any step runs, so that a step that kills the process counts too.
    let (attempts, failed) = store.begin_attempt(id, max).await?;
    if failed {
        let error = store.round(id).await?.error.unwrap_or_default();
        warn!(round = id, attempts, %error, "the round's attempts are spent");
        return Err(EngineError::Attempt {
            workflow: name,
            number,
            attempts,
            max,
            failed,
            error: Box::new(EngineError::Died(error)),
        });
    }
    let driven = match spec {
        Ok(l) => drive(store, &l, round, opts).await,
        Err(e) => Err(e.into()),
    };
    match driven {
        Ok(r) => {
            store.end_attempt(id).await?;
            Ok(r)
        }
        Err(e @ (EngineError::Interrupted(_) | EngineError::LeaseLost(..))) => {
            store.end_attempt(id).await?;
            Err(e)
        }
        Err(e) => {
            let (attempts, failed) = store.record_attempt(id, &e.to_string(), max).await?;
            warn!(round = id, attempts, failed, error = %e, "the run ended in an error");
            Err(EngineError::Attempt {
                workflow: name,
                number,
                attempts,
                max,
                failed,
                error: Box::new(e),
            })
        }
    }
}

/// Drives an open round from its stored state until it is done, waits, or fails.
async fn drive(
    store: &Store,
    l: &Loaded,
    mut round: RoundInfo,
    opts: &mut Options<'_>,
) -> Result<RoundInfo> {
    let mut timings = serde_json::Map::new();
    loop {
        crash_point(round.state.as_str());
        fail_point(round.state.as_str())?;
        if opts.until == Some(round.state) {
            return Ok(round);
        }
        if stopped(&opts.stop) && round.state.is_open() {
            return Err(EngineError::Interrupted(round.state));
        }
        if stopped(&opts.lease_lost) && round.state.is_open() {
            return Err(EngineError::LeaseLost(round.workflow.clone(), round.state));
        }
        let clock = Instant::now();
        let state = round.state;
        match state {
            RoundState::Planned => {
                store
                    .advance_round(
                        round.id,
                        state,
                        RoundState::Training,
                        0,
                        RoundUpdate::default(),
                    )
                    .await?;
            }
            RoundState::Training => step_train(store, l, &round, opts).await?,
            RoundState::Generating | RoundState::Ranking => {
                step_rank(store, l, &round, &opts.data_dir).await?;
            }
            RoundState::Dispatching => {
                if !step_dispatch(store, l, &round).await? {
                    return Ok(store.round(round.id).await?);
                }
            }
            RoundState::Awaiting => {
                if !step_await(store, l, &round, opts).await? {
                    return Ok(store.round(round.id).await?);
                }
            }
            RoundState::Ingesting => {
                let ingested = store.ingest_round(&round).await?;
                info!(
                    round = round.id,
                    version = ingested.version,
                    added = ingested.added,
                    "ingested"
                );
            }
            RoundState::Retraining => {
                let summary = step_retrain(store, l, &round, opts, &timings).await?;
                (opts.on_event)(&Event::Finished(summary));
            }
            RoundState::Done | RoundState::Failed => return Ok(round),
        }
        timings.insert(
            state.as_str().into(),
            serde_json::json!(clock.elapsed().as_secs_f64()),
        );
        round = store.round(round.id).await?;
        (opts.on_event)(&Event::State {
            round: round.id,
            number: round.number,
            state: round.state,
            stage: round.stage,
        });
    }
}

/// Runs CPU-bound work on the blocking pool, off the runtime's threads.
async fn cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Worker(e.to_string()))
}

fn round_seed(l: &Loaded, round: &RoundInfo) -> u64 {
    l.workflow
        .seed
        .wrapping_mul(1_000_003)
        .wrapping_add(round.number as u64)
}

async fn step_train(
    store: &Store,
    l: &Loaded,
    round: &RoundInfo,
    opts: &mut Options<'_>,
) -> Result<()> {
    let head = store.head().await?.ok_or(EngineError::NoGraph)?;
    let previous = store.workflow_model(&l.workflow.name).await?;
    let model_id = match previous {
        Some(m) if m.graph_version == head => {
            info!(model = m.id, "the latest model already covers the graph");
            m.id
        }
        previous => {
            let spec = &l.workflow.model;
            let warm = match (&previous, spec.retrain) {
                (Some(m), RetrainMode::Warm) => Warm::From(m.clone()),
                _ => Warm::Cold,
            };
            let trained =
                train_for(store, l, &opts.data_dir, head, round_seed(l, round), warm).await?;
            trained.info.id
        }
    };
    store
        .advance_round(
            round.id,
            RoundState::Training,
            RoundState::Generating,
            0,
            RoundUpdate {
                base_version: Some(head),
                model_id: Some(model_id),
                ..RoundUpdate::default()
            },
        )
        .await?;
    Ok(())
}

/// Generates candidates, scores them with the ensemble and stores the acquisition's batch.
/// A resume from either state redoes both: they are pure functions of the seeded inputs.
async fn step_rank(
    store: &Store,
    l: &Loaded,
    round: &RoundInfo,
    data_dir: &std::path::Path,
) -> Result<()> {
    let w = &l.workflow;
    let RankInputs {
        version,
        model_id,
        info,
        graph,
        excluded,
        plan,
        pinned_upto,
    } = rank_inputs(store, l, round, data_dir).await?;
    let seed = round_seed(l, round);
    let is_random = w.rank.acquisition() == Acquisition::Random;
    let cost = w.stages.iter().filter_map(|s| s.cost).sum::<f64>();
    let (graph, candidates, ensemble) =
        score_candidates(l, info, graph, excluded, is_random, seed, cost).await?;
    if round.state == RoundState::Generating {
        store
            .advance_round(
                round.id,
                RoundState::Generating,
                RoundState::Ranking,
                0,
                RoundUpdate {
                    metrics: Some(serde_json::json!({
                        "candidates": candidates.len(),
                        "pinned": plan.taken.len(),
                        "pinned_skipped": plan.skipped.len(),
                        "pinned_upto": pinned_upto,
                    })),
                    ..RoundUpdate::default()
                },
            )
            .await?;
        crash_point("ranking");
    }
    let batch = ranked_batch(l, &graph, &candidates, &plan, seed, cost);
    let batch = if ensemble.explains() {
        cpu(move || explain_batch(&ensemble, &graph, batch)).await?
    } else {
        batch
    };
    let claims = PinnedClaims {
        claimed: plan
            .taken
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.id, i as i64))
            .collect(),
        skipped: plan.skipped,
    };
    store
        .insert_ranked(
            round.id,
            RoundState::Ranking,
            Some(model_id),
            version,
            &stage_metas(l),
            &batch,
            &claims,
        )
        .await?;
    Ok(())
}

/// What a ranking reads before it scores: the round's model and graph, the triples it must
/// never propose, and the plan for the workflow's waiting pinned rows.
struct RankInputs {
    version: i64,
    model_id: i64,
    info: LocalCheckpoint,
    graph: crate::graph::Graph,
    /// Known refutations, evaluation triples and pinned rows' triples.
    excluded: HashSet<Triple>,
    plan: PinnedPlan,
    pinned_upto: i64,
}

async fn rank_inputs(
    store: &Store,
    l: &Loaded,
    round: &RoundInfo,
    data_dir: &std::path::Path,
) -> Result<RankInputs> {
    let w = &l.workflow;
    let (Some(version), Some(model_id)) = (round.base_version, round.model_id) else {
        return Err(StoreError::Corrupt(format!("round {} has no model", round.id)).into());
    };
    let info = store.model(model_id).await?;
    let info = training::local_checkpoint(store, data_dir, info).await?;
    let graph = store.load_graph(version).await?;
    let refuted: HashSet<Triple> = training::refuted(store, version, &graph)
        .await?
        .into_iter()
        .collect();
    // Evaluation triples are true facts the oracle may not know: proposing one would label
    // it refuted and train on it as a negative, and it would leak into the measured MRR.
    let held_out: HashSet<Triple> = evaluation_triples(l, &graph)?.into_iter().collect();
    // A resumed ranking sees the pinned rows its first run saw (recorded with `ranking`).
    let upto = (round.state == RoundState::Ranking).then(|| {
        round
            .metrics
            .get("pinned_upto")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
    });
    let waiting = store.waiting_pinned(&w.name, version, upto).await?;
    let pinned_upto = upto.unwrap_or_else(|| waiting.last().map_or(0, |p| p.id));
    let plan = plan_pinned(
        waiting,
        &graph,
        &refuted,
        &held_out,
        version,
        w.rank.batch / 2,
    );
    let mut excluded = refuted;
    excluded.extend(held_out);
    excluded.extend(plan.exclude.iter().copied());
    Ok(RankInputs {
        version,
        model_id,
        info,
        graph,
        excluded,
        plan,
        pinned_upto,
    })
}

/// The candidates a ranking chooses from, with the ensemble's predictions: every allowed
/// pair's best (`generate`), or a uniform sample for `random`. Loading the model, scoring
/// every allowed pair and the ensemble's predictions are CPU work: off the runtime's
/// threads, so a server in the same process keeps answering. Hands the graph back.
async fn score_candidates(
    l: &Loaded,
    info: LocalCheckpoint,
    graph: crate::graph::Graph,
    excluded: HashSet<Triple>,
    is_random: bool,
    seed: u64,
    cost: f64,
) -> Result<(crate::graph::Graph, Vec<Candidate>, model::Ensemble)> {
    let w = &l.workflow;
    let relations: Vec<u32> = w
        .generate
        .relations
        .iter()
        .filter_map(|r| graph.relation_id(r))
        .collect();
    let spec = AcquireSpec {
        relations,
        top_k: w.generate.top_k,
        max_candidates: w.generate.max_candidates,
        batch: 64,
        seed,
    };
    let random_n = w.rank.batch.saturating_mul(4);
    let workflow = w.name.clone();
    cpu(move || -> Result<_> {
        let ensemble = training::load_model(&info, &Vocab::of(&graph))?;
        let device = model::default_device();
        let context = ensemble.context_of(&graph);
        let triples: Vec<Triple> = if is_random {
            acquire::sample_uniform(&graph, &excluded, &spec.relations, random_n, seed)
        } else {
            let scorers = ensemble.scorers(&device, &context);
            // Lines, not a bar: the engine runs in daemons and servers as often as in a
            // terminal. At most one every `progress::LINE_EVERY`.
            let mut reporter = crate::progress::Reporter::lines();
            let started = std::time::Instant::now();
            let mut report = |done: u64, total: u64| {
                reporter.update(done, total, || {
                    format!(
                        "workflow {workflow}: generating candidates: {}",
                        crate::progress::counted(
                            done,
                            total,
                            "pairs",
                            started.elapsed().as_secs_f64()
                        )
                    )
                })
            };
            acquire::generate_reporting(&graph, &excluded, scorers.as_slice(), &spec, &mut report)
                .into_iter()
                .map(|s| s.triple)
                .collect()
        };
        let predictions = ensemble.predict(&triples, &device, &context);
        drop(context);
        let candidates = Candidate::from_predictions(&triples, predictions, cost);
        Ok((graph, candidates, ensemble))
    })
    .await?
}

/// The round's batch: the pinned rows the plan takes first, in the order they were
/// submitted, valued by the same acquisition function on the ask's probability and spread;
/// then the acquisition's picks among the candidates.
fn ranked_batch(
    l: &Loaded,
    graph: &crate::graph::Graph,
    candidates: &[Candidate],
    plan: &PinnedPlan,
    seed: u64,
    cost: f64,
) -> Vec<NewHypothesis> {
    let w = &l.workflow;
    let acquisition = w.rank.acquisition();
    let picks = acquire::select(
        &acquisition,
        candidates,
        w.rank.batch - plan.taken.len(),
        w.rank.max_per_entity,
        seed,
    );
    let pinned: Vec<Candidate> = plan
        .taken
        .iter()
        .map(|(p, triple)| Candidate {
            triple: *triple,
            mean: p.probability,
            std: p.spread,
            members: Vec::new(),
            cost,
            base: None,
        })
        .collect();
    let mut values = vec![0.0; pinned.len()];
    for p in acquire::select(&acquisition, &pinned, pinned.len(), None, seed) {
        values[p.index] = p.value;
    }
    let mut batch: Vec<NewHypothesis> = plan
        .taken
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, ((p, _), value))| NewHypothesis {
            head: p.head.clone(),
            relation: p.relation.clone(),
            tail: p.tail.clone(),
            score: p.probability,
            spread: p.spread,
            acquisition: if value.is_finite() { value } else { 0.0 },
            rank: i as i64,
            base_score: None,
            model_paths: None,
        })
        .collect();
    let first = batch.len();
    batch.extend(picks.iter().map(|p| {
        let c = &candidates[p.index];
        NewHypothesis {
            head: graph.entity_key(c.triple.head).to_owned(),
            relation: graph.relation_key(c.triple.relation).to_owned(),
            tail: graph.entity_key(c.triple.tail).to_owned(),
            score: c.mean,
            spread: c.std,
            acquisition: p.value,
            rank: (first + p.rank) as i64,
            base_score: c.base,
            model_paths: None,
        }
    }));
    batch
}

/// Hypotheses of a batch the model explains from its own gradients (each costs a forward and
/// a backward pass over the whole graph: about 1.5 s on Hetionet); the rest keep the
/// graph's evidence only.
const EXPLAINED_PER_ROUND: usize = 50;

/// The batch with the model's own evidence paths on its first [`EXPLAINED_PER_ROUND`]
/// hypotheses, in rank order.
fn explain_batch(
    ensemble: &model::Ensemble,
    graph: &crate::graph::Graph,
    mut batch: Vec<NewHypothesis>,
) -> Vec<NewHypothesis> {
    use crate::ask::paths::{Overlay, Path};
    let triples: Vec<Option<Triple>> = batch
        .iter()
        .take(EXPLAINED_PER_ROUND)
        .map(|h| {
            Some(Triple {
                head: graph.entity_id(&h.head)?,
                relation: graph.relation_id(&h.relation)?,
                tail: graph.entity_id(&h.tail)?,
            })
        })
        .collect();
    let device = model::default_device();
    let context = ensemble.context_of(graph);
    let found = ensemble.explain(&triples, crate::ask::PATHS_PER_ROW, &device, &context);
    let overlay = Overlay::new(graph, Vec::new(), &[]);
    for (h, paths) in batch.iter_mut().zip(found) {
        if paths.is_empty() {
            continue;
        }
        let paths: Vec<Path> = paths
            .iter()
            .map(|p| Path::of_model(&overlay, p, &[]))
            .collect();
        h.model_paths = serde_json::to_string(&paths).ok();
    }
    batch
}

/// What a ranking does with its workflow's waiting pinned rows.
struct PinnedPlan {
    /// Rows it sends, oldest first, with their triple in the round's graph.
    taken: Vec<(PinnedInfo, Triple)>,
    /// Rows it does not send, with the reason (recorded with the batch).
    skipped: Vec<(i64, String)>,
    /// Every sendable waiting row's triple, taken or left for a later round: acquisition
    /// does not propose them.
    exclude: Vec<Triple>,
}

/// Sorts waiting rows (oldest first) into the ones the batch takes (at most `limit`), the
/// ones that can no longer be sent (already an edge or a refutation at the round's
/// version, or held out for evaluation), and the rest, which wait for a later round. A
/// pure function of its inputs, so a resumed round decides the same.
fn plan_pinned(
    waiting: Vec<PinnedInfo>,
    graph: &crate::graph::Graph,
    refuted: &HashSet<Triple>,
    held_out: &HashSet<Triple>,
    version: i64,
    limit: usize,
) -> PinnedPlan {
    let mut plan = PinnedPlan {
        taken: Vec::new(),
        skipped: Vec::new(),
        exclude: Vec::new(),
    };
    let mut seen: std::collections::HashMap<Triple, i64> = std::collections::HashMap::new();
    for p in waiting {
        let ids = (
            graph.entity_id(&p.head),
            graph.relation_id(&p.relation),
            graph.entity_id(&p.tail),
        );
        let (Some(h), Some(r), Some(t)) = ids else {
            // Rows wait until the round's graph holds their submission: not expected.
            let reason = format!(
                "{} {} {} names a key unknown at version {version}",
                p.head, p.relation, p.tail
            );
            plan.skipped.push((p.id, reason));
            continue;
        };
        let triple = Triple::new(h, r, t);
        let reason = if graph.contains(triple) {
            Some(format!("already an edge at version {version}"))
        } else if refuted.contains(&triple) {
            Some(format!("refuted at version {version}"))
        } else if held_out.contains(&triple) {
            Some("held out for evaluation (`evaluate.test` or `evaluate.valid`)".to_owned())
        } else {
            seen.get(&triple)
                .map(|first| format!("the same triple as pinned row {first}"))
        };
        if let Some(reason) = reason {
            plan.skipped.push((p.id, reason));
            continue;
        }
        seen.insert(triple, p.id);
        plan.exclude.push(triple);
        if plan.taken.len() < limit {
            plan.taken.push((p, triple));
        }
    }
    plan
}

/// Builds the plugin stage `i` names: a built-in, or a manifest's kind with the manifest's
/// settings under the stage's.
pub fn plugin(l: &Loaded, round: &RoundInfo, i: usize) -> Result<Plugin> {
    let stage = &l.workflow.stages[i];
    let manifest = l.manifests.get(&stage.plugin);
    let fail = |message: String| EngineError::Plugin {
        stage: stage.name.clone(),
        message,
    };
    let kind = l
        .kinds
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| fail(format!("unknown plugin `{}`", stage.plugin)))?;
    let duration = |s: Option<&String>, default: u64| -> Result<Duration> {
        s.map(|t| workflow::parse_duration(t))
            .transpose()
            .map_err(fail)
            .map(|d| d.unwrap_or(Duration::from_secs(default)))
    };
    let request_timeout = duration(
        stage
            .request_timeout
            .as_ref()
            .or(manifest.and_then(|m| m.timeout.as_ref())),
        if kind == PluginKind::Command { 300 } else { 30 },
    )?;
    let cost = stage
        .cost
        .or(manifest.and_then(|m| m.cost))
        .unwrap_or(match kind {
            PluginKind::Oracle => 1.0,
            _ => 0.0,
        });
    let env_var = |name: &str| -> Result<String> {
        std::env::var(name).map_err(|_| fail(format!("environment variable `{name}` is not set")))
    };
    Ok(match kind {
        PluginKind::Oracle => {
            let truth = stage
                .truth
                .as_ref()
                .ok_or_else(|| fail("the oracle needs `truth`".into()))?;
            let mut o = Oracle::from_file(&l.resolve(truth))?;
            o.flip_rate = stage.flip_rate.unwrap_or(0.0);
            o.latency = duration(stage.latency.as_ref(), 0)?;
            o.cost = cost;
            o.outage = stage.outage.unwrap_or(0);
            o.seed = round_seed(l, round);
            Plugin::Oracle(o)
        }
        PluginKind::Http => {
            let url = stage
                .url
                .as_ref()
                .or(manifest.and_then(|m| m.url.as_ref()))
                .ok_or_else(|| fail("an http stage needs `url`".into()))?;
            let concurrency = stage
                .concurrency
                .or(manifest.and_then(|m| m.concurrency))
                .unwrap_or(8);
            let mut h = Http::new(&stage.name, url, request_timeout, concurrency, cost)
                .map_err(|e| fail(e.to_string()))?;
            h.poll_url = stage
                .poll_url
                .clone()
                .or(manifest.and_then(|m| m.poll_url.clone()));
            h.callback_url = stage
                .callback_url
                .as_ref()
                .map(|u| format!("{}/api/v1/results", u.trim_end_matches('/')));
            if let Some(var) = stage
                .token_env
                .as_ref()
                .or(manifest.and_then(|m| m.token_env.as_ref()))
            {
                h.token = Some(env_var(var)?);
            }
            Plugin::Http(h)
        }
        PluginKind::Command => {
            let argv = stage
                .command
                .clone()
                .or(manifest.and_then(|m| m.command.clone()))
                .filter(|c| !c.is_empty())
                .ok_or_else(|| fail("a command stage needs `command`".into()))?;
            let dir = manifest
                .map(|m| m.dir.clone())
                .unwrap_or_else(|| l.dir.clone());
            Plugin::Command(CommandPlugin {
                argv,
                timeout: request_timeout,
                cost,
                dir: Some(dir),
            })
        }
        PluginKind::Llm => {
            let (Some(endpoint), Some(model)) = (&stage.endpoint, &stage.model) else {
                return Err(fail("an llm stage needs `endpoint` and `model`".into()));
            };
            let mut m = Llm::new(&stage.name, endpoint, model, request_timeout)
                .map_err(|e| fail(e.to_string()))?;
            let key_var = stage.token_env.as_deref().unwrap_or("LLM_API_KEY");
            m.api_key = std::env::var(key_var).ok();
            if let Some(p) = &stage.prompt {
                m.prompt = p.clone();
            }
            if let Some([a, b]) = stage.price_per_1k {
                m.price_per_1k = (a, b);
            }
            m.attempts = stage.retries.max(1);
            m.concurrency = stage.concurrency.unwrap_or(4);
            Plugin::Llm(m)
        }
        PluginKind::Human => Plugin::Human(Human {
            quorum: stage.quorum.unwrap_or(1),
        }),
    })
}

/// The stages as the store keeps them with the round.
fn stage_metas(l: &Loaded) -> Vec<StageMeta> {
    l.workflow
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| StageMeta {
            stage: i as i64,
            name: s.name.clone(),
            kind: l
                .kinds
                .get(i)
                .copied()
                .flatten()
                .map_or("unknown", PluginKind::name)
                .to_owned(),
            quorum: i64::from(s.quorum.unwrap_or(1).max(1)),
            rule: match s.rule.unwrap_or_default() {
                QuorumRule::Majority => "majority".into(),
                QuorumRule::Escalate => "escalate".into(),
            },
            stale_below: s.stale_below,
            callbacks: s.callback_url.is_some(),
        })
        .collect()
}

/// What one batch came to.
enum BatchEnd {
    Done,
    /// Gave up after retries (counts toward the circuit breaker).
    Failed,
}

/// Sends the stage's waiting hypotheses to its plugin in batches (up to the plugin's
/// concurrency at once), retrying retryable failures with exponential backoff and jitter,
/// then marking them failed with the reason. After `breaker` consecutive failed batches the
/// stage pauses: the rest stay queued for the next run. Returns false when paused.
async fn step_dispatch(store: &Store, l: &Loaded, round: &RoundInfo) -> Result<bool> {
    let i = round.stage;
    let stage = &l.workflow.stages[i as usize];
    let plugin = plugin(l, round, i as usize)?;
    // A synchronous plugin's `submitted` items were sent by a process that died before
    // recording the answers: send them again under the same idempotency key.
    let mut items = store.stage_items(round.id, i, "queued").await?;
    if plugin.is_synchronous() {
        items.extend(store.stage_items(round.id, i, "submitted").await?);
    }
    items.sort_by_key(|h| h.rank);
    // Validation bounds timeouts (100 years), so the checked add cannot fail; if it ever
    // did, the items would simply have no deadline rather than take the process down.
    let deadline = stage
        .timeout()
        .and_then(|t| chrono::Duration::from_std(t).ok())
        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let mut context = std::collections::HashMap::new();
    if plugin.needs_context() {
        for h in &items {
            for key in [&h.head, &h.tail] {
                if !context.contains_key(key) {
                    context.insert(key.clone(), store.neighbours(key, 10).await?);
                }
            }
        }
    }
    // Callbacks answer by a random key per item, kept across resends: a service cannot
    // name items it was not sent (`round:hypothesis:stage` would be guessable).
    let callback_keys = match &plugin {
        Plugin::Http(h) if h.callback_url.is_some() => {
            let ids: Vec<i64> = items.iter().map(|h| h.id).collect();
            store.callback_keys(i, &ids).await?
        }
        _ => std::collections::HashMap::new(),
    };
    let batches: Vec<Vec<Hypothesis>> = items
        .chunks(stage.batch.max(1))
        .map(|chunk| {
            chunk
                .iter()
                .map(|h| Hypothesis {
                    id: h.id,
                    key: callback_keys
                        .get(&h.id)
                        .cloned()
                        .unwrap_or_else(|| idempotency_key(round.id, h.id, i)),
                    head: h.head.clone(),
                    relation: h.relation.clone(),
                    tail: h.tail.clone(),
                    head_name: h.head_name.clone(),
                    tail_name: h.tail_name.clone(),
                    head_category: h.head_category.clone(),
                    tail_category: h.tail_category.clone(),
                    score: h.score,
                    spread: h.spread,
                    context: Context {
                        head: context.get(&h.head).cloned().unwrap_or_default(),
                        tail: context.get(&h.tail).cloned().unwrap_or_default(),
                    },
                })
                .collect()
        })
        .collect();
    let breaker = stage.breaker.unwrap_or(5).max(1);
    let consecutive = std::sync::atomic::AtomicU32::new(0);
    let seed = round_seed(l, round);
    let send = |(n, batch): (usize, Vec<Hypothesis>)| {
        let (plugin, consecutive, deadline) = (&plugin, &consecutive, &deadline);
        async move {
            if consecutive.load(std::sync::atomic::Ordering::SeqCst) >= breaker {
                return Ok::<_, EngineError>(None);
            }
            let end = send_batch(
                store,
                round,
                stage,
                plugin,
                &batch,
                deadline.as_deref(),
                seed ^ n as u64,
            )
            .await?;
            match end {
                BatchEnd::Done => consecutive.store(0, std::sync::atomic::Ordering::SeqCst),
                BatchEnd::Failed => {
                    consecutive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            if n == 0 {
                crash_point("dispatching-mid");
            }
            Ok(Some(end))
        }
    };
    let results: Vec<Result<Option<BatchEnd>>> =
        futures_util::stream::iter(batches.into_iter().enumerate())
            .map(send)
            .buffer_unordered(plugin.concurrency())
            .collect()
            .await;
    let mut skipped = 0usize;
    for r in results {
        if r?.is_none() {
            skipped += 1;
        }
    }
    if skipped > 0 {
        warn!(
            stage = %stage.name,
            batches = skipped,
            "circuit open after {breaker} failed batches in a row: the stage pauses; the rest stay queued for the next run"
        );
        return Ok(false);
    }
    store
        .advance_round(
            round.id,
            RoundState::Dispatching,
            RoundState::Awaiting,
            i,
            RoundUpdate::default(),
        )
        .await?;
    Ok(true)
}

/// Submits one batch with retries and records what came back.
async fn send_batch(
    store: &Store,
    round: &RoundInfo,
    stage: &StageSpec,
    plugin: &Plugin,
    batch: &[Hypothesis],
    deadline: Option<&str>,
    seed: u64,
) -> Result<BatchEnd> {
    let i = round.stage;
    let ids: Vec<i64> = batch.iter().map(|h| h.id).collect();
    store.mark_submitted(i, &ids, deadline).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xd15);
    let mut attempt = 0u32;
    let answer = loop {
        let clock = Instant::now();
        let result = plugin.submit(batch).await;
        crate::plugin::stats::record(
            &stage.name,
            &stage.plugin,
            result.is_ok(),
            clock.elapsed().as_secs_f64(),
        );
        // Sent and answered, not yet recorded: the resume must send again under the same keys.
        crash_point("dispatching-sent");
        match result {
            Ok(v) => break Ok(v),
            Err(PluginError::Retryable(why)) if attempt < stage.retries => {
                attempt += 1;
                let base = 100u64 << attempt.min(10);
                let wait = Duration::from_millis(base + rng.random_range(0..=base / 2));
                warn!(stage = %stage.name, attempt, ?wait, reason = %why, "retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => break Err(e.reason().to_owned()),
        }
    };
    let sub = match answer {
        Ok(s) => s,
        Err(reason) => {
            warn!(stage = %stage.name, %reason, "giving up on a batch");
            store.fail_items(i, &ids, &reason).await?;
            return Ok(BatchEnd::Failed);
        }
    };
    for why in &sub.rejected {
        warn!(stage = %stage.name, %why, "an answer was rejected");
    }
    let recorded = store.record_verdicts(round.id, i, &sub.verdicts).await?;
    if !recorded.rejected.is_empty() {
        warn!(stage = %stage.name, rejected = ?recorded.rejected, "verdicts for hypotheses not waiting here were rejected");
    }
    let jobs: Vec<(i64, String)> = sub
        .pending
        .iter()
        .filter_map(|(h, job)| job.clone().map(|j| (*h, j)))
        .collect();
    if !jobs.is_empty() {
        store.set_jobs(i, &jobs).await?;
    }
    let mut failed: Vec<(i64, String)> = sub.failed.clone();
    if plugin.is_synchronous() {
        let seen: HashSet<i64> = sub
            .verdicts
            .iter()
            .map(|v| v.hypothesis)
            .chain(sub.failed.iter().map(|f| f.0))
            .collect();
        failed.extend(
            ids.iter()
                .filter(|h| !seen.contains(h))
                .map(|h| (*h, "the plugin returned no verdict for it".to_owned())),
        );
    }
    let mut by_reason: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (h, why) in failed {
        by_reason.entry(why).or_default().push(h);
    }
    for (why, hs) in by_reason {
        store.fail_items(i, &hs, &why).await?;
    }
    Ok(BatchEnd::Done)
}

/// Waits for the stage's answers (up to `opts.wait`), expiring overdue items, then sorts the
/// stage's hypotheses and moves on. Returns false when answers are still outstanding.
async fn step_await(
    store: &Store,
    l: &Loaded,
    round: &RoundInfo,
    opts: &Options<'_>,
) -> Result<bool> {
    let i = round.stage;
    let stage = &l.workflow.stages[i as usize];
    let poller = Some(plugin(l, round, i as usize)?).filter(Plugin::polls);
    let started = Instant::now();
    let last = i as usize + 1 == l.workflow.stages.len();
    let (to, to_stage) = if last {
        (RoundState::Ingesting, i)
    } else {
        (RoundState::Dispatching, i + 1)
    };
    let refute_here = l.workflow.ingest.refute_on == RefuteOn::Any;
    // Subscribed before the first count, so an answer landing in between still wakes us.
    let mut answers = store.answer_wait().await;
    let closed = loop {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let expired = store.expire_items(round.id, i, &now).await?;
        if expired > 0 {
            warn!(stage = %stage.name, expired, "hypotheses expired without an answer");
        }
        if let Some(p) = &poller {
            let jobs = store.pending_jobs(round.id, i).await?;
            if !jobs.is_empty() {
                match p.poll(&jobs).await {
                    Ok(verdicts) => {
                        store.record_verdicts(round.id, i, &verdicts).await?;
                    }
                    Err(e) => warn!(stage = %stage.name, error = %e, "polling failed"),
                }
            }
        }
        let counts = store.stage_counts(round.id).await?;
        let open: i64 = ["queued", "submitted"]
            .iter()
            .filter_map(|s| counts.get(&(i, (*s).to_owned())))
            .sum();
        if open == 0 {
            // The close re-checks inside its transaction: an undo or retraction in between
            // reopens an item and sends us back to waiting.
            let closed = store
                .close_stage(
                    round.id,
                    i,
                    &stage.advance,
                    last || stage.is_final == Some(true),
                    refute_here,
                    RoundState::Awaiting,
                    to,
                    to_stage,
                )
                .await?;
            if let Some(closed) = closed {
                break closed;
            }
            info!(stage = %stage.name, "an item reopened while closing the stage: waiting again");
            continue;
        }
        if stopped(&opts.lease_lost) {
            return Err(EngineError::LeaseLost(round.workflow.clone(), round.state));
        }
        if started.elapsed() >= opts.wait || stopped(&opts.stop) {
            return Ok(false);
        }
        // Announced answers (PostgreSQL) wake the wait at once: the pause is then only the
        // fallback for expiries, a stop or a lost announcement. A plugin that is polled, or
        // SQLite, sets the pace.
        let pause = match (poller.is_some(), answers.is_live()) {
            (true, _) => 1000,
            (false, true) => 2000,
            (false, false) => 200,
        };
        answers.wait(round.id, Duration::from_millis(pause)).await;
    };
    info!(stage = %stage.name, ?closed, "stage closed");
    Ok(true)
}

/// Retrains on the round's new version, evaluates, and closes the round with its metrics.
async fn step_retrain(
    store: &Store,
    l: &Loaded,
    round: &RoundInfo,
    opts: &mut Options<'_>,
    timings: &serde_json::Map<String, serde_json::Value>,
) -> Result<RoundSummary> {
    let w = &l.workflow;
    let version = round
        .result_version
        .ok_or_else(|| StoreError::Corrupt(format!("round {} ingested nothing", round.id)))?;
    let warm = match (w.model.retrain, round.model_id) {
        (RetrainMode::Warm, Some(id)) => Warm::From(store.model(id).await?),
        _ => Warm::Cold,
    };
    let trained = train_for(
        store,
        l,
        &opts.data_dir,
        version,
        round_seed(l, round) ^ 0x7e7a,
        warm,
    )
    .await?;
    let mut test_mrr = None;
    let mut hits10 = None;
    let mut popularity_mrr = None;
    if let Some(test) = &w.evaluate.test {
        let (triples, _) = training::map_file(&l.resolve(test), &trained.graph)?;
        let valid = match &w.evaluate.valid {
            Some(v) => training::map_file(&l.resolve(v), &trained.graph)?.0,
            None => Vec::new(),
        };
        let mut filter = Vec::new();
        for f in &w.evaluate.filter {
            filter.extend(training::map_file(&l.resolve(f), &trained.graph)?.0);
        }
        let known = Known::new(&[trained.graph.triples(), &triples, &valid, &filter]);
        let ensemble = trained.ensemble.clone();
        let context = ensemble.context_of(&trained.graph);
        let graph = trained.graph.clone();
        let (metrics, popularity) = cpu(move || {
            let device = model::default_device();
            let scorers = ensemble.scorers(&device, &context);
            let metrics = model::evaluate(scorers.as_slice(), &triples, &known, 256);
            // The baseline beside it, on the same graph, test triples and filter.
            let counts = model::Popularity::new(
                graph.num_entities(),
                graph.num_relations(),
                graph.triples(),
            );
            (metrics, model::evaluate(&counts, &triples, &known, 256))
        })
        .await?;
        test_mrr = Some(metrics.both.mrr);
        hits10 = Some(metrics.both.hits_at_10);
        popularity_mrr = Some(popularity.both.mrr);
    }
    let counts = store.hypothesis_counts(round.id).await?;
    let count = |s: &str| counts.get(s).copied().unwrap_or(0);
    let total: i64 = counts.values().sum();
    let cost = store.round_cost(round.id).await?;
    let judged = count("confirmed") + count("refuted");
    let summary = RoundSummary {
        round: round.id,
        number: round.number,
        hypotheses: total,
        confirmed: count("confirmed"),
        refuted: count("refuted"),
        failed: count("failed"),
        expired: count("expired"),
        precision: if judged > 0 {
            count("confirmed") as f64 / judged as f64
        } else {
            0.0
        },
        version: Some(version),
        test_mrr,
        cost,
    };
    let mut timings = timings.clone();
    timings.insert("retraining".into(), serde_json::json!(trained.seconds));
    store
        .advance_round(
            round.id,
            RoundState::Retraining,
            RoundState::Done,
            round.stage,
            RoundUpdate {
                retrained_model: Some(trained.info.id),
                metrics: Some(serde_json::json!({
                    "hypotheses": total,
                    "confirmed": summary.confirmed,
                    "refuted": summary.refuted,
                    "failed": summary.failed,
                    "expired": summary.expired,
                    "precision": summary.precision,
                    "cost": cost,
                    "test_mrr": test_mrr,
                    "test_hits_at_10": hits10,
                    "popularity_test_mrr": popularity_mrr,
                    "calibration": trained.calibration,
                    "seconds": timings,
                })),
                ..RoundUpdate::default()
            },
        )
        .await?;
    Ok(summary)
}
