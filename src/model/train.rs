//! The training loop: batches, negatives, losses, regularizers, sparse optimizer steps,
//! validation MRR and early stopping.

use super::ModelError;
use super::config::{LossKind, ModelKind, NegativeSharing, Regime, Regularizer, TrainConfig};
use super::eval::{Known, evaluate};
use super::kge::{KgeModel, index, to_vec};
use super::score::{Ent, Rel, Side, query};
use super::shared_negatives;
use super::tables::Table;
use crate::graph::Triple;
use burn::tensor::activation::{log_sigmoid, log_softmax, softmax, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;
use std::time::{Duration, Instant};

/// What a model trains on, in dense graph ids.
pub struct TrainSet<'a> {
    pub num_entities: usize,
    pub num_relations: usize,
    pub train: &'a [Triple],
    /// Validation triples for early stopping (may be empty).
    pub valid: &'a [Triple],
    /// Every known true triple (filter for validation ranks).
    pub known: &'a Known,
    /// Refuted triples: extra hard negatives.
    pub refuted: &'a [Triple],
}

/// One epoch's report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub valid_mrr: Option<f64>,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
    /// Wall time of the epoch's training steps alone (validation excluded).
    pub train_seconds: f64,
}

/// Progress within an epoch, as [`TrainEvent::Batch`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BatchStats {
    pub epoch: usize,
    /// Epochs the run trains at most.
    pub epochs: usize,
    /// Batches done in this epoch, of `batches`.
    pub done: usize,
    pub batches: usize,
    /// Training examples done in this epoch (each a `unit`: a triple or a query).
    pub examples: usize,
    pub unit: &'static str,
    /// Mean loss of the epoch's batches so far.
    pub loss: f64,
    /// Seconds since the epoch began.
    pub seconds: f64,
}

impl BatchStats {
    /// Examples a second so far this epoch.
    pub fn per_second(&self) -> f64 {
        self.examples as f64 / self.seconds.max(1e-9)
    }

    /// Seconds the epoch's training steps still need at the rate so far.
    pub fn eta_seconds(&self) -> f64 {
        let left = self.batches.saturating_sub(self.done) as f64;
        self.seconds / self.done.max(1) as f64 * left
    }
}

/// What a training loop reports as it goes: within an epoch (after its first batch, then at
/// most every [`BATCH_REPORT_EVERY`], so reporting costs nothing next to a step), when the
/// validation starts, and each finished epoch. The caller decides how to show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrainEvent {
    Batch(BatchStats),
    /// The epoch's steps are done; ranking the validation triples begins.
    Validating {
        epoch: usize,
    },
    Epoch(EpochStats),
}

/// The callback a training loop reports its [`TrainEvent`]s to.
pub type OnProgress<'a> = &'a mut (dyn FnMut(&TrainEvent) + Send);

/// A callback for [`TrainEvent`]s that only wants finished epochs.
pub fn on_epochs(mut f: impl FnMut(&EpochStats) + Send) -> impl FnMut(&TrainEvent) + Send {
    move |e| {
        if let TrainEvent::Epoch(s) = e {
            f(s)
        }
    }
}

/// Least time between two [`TrainEvent::Batch`] reports of an epoch.
pub const BATCH_REPORT_EVERY: Duration = Duration::from_millis(500);

/// When a loop reports a batch: the first of each epoch, then at most every
/// [`BATCH_REPORT_EVERY`].
#[derive(Debug, Default)]
pub(crate) struct BatchTicker {
    last: Option<Instant>,
}

impl BatchTicker {
    pub(crate) fn due(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= BATCH_REPORT_EVERY)
        {
            self.last = Some(now);
            return true;
        }
        false
    }
}

#[derive(Debug, Clone)]
pub struct TrainOutcome<M = KgeModel> {
    pub model: M,
    pub history: Vec<EpochStats>,
    /// Epoch whose weights were kept (best validation MRR, or the last).
    pub best_epoch: usize,
    pub best_valid_mrr: Option<f64>,
    pub stopped_early: bool,
}

impl<M> TrainOutcome<M> {
    /// The same outcome around another model type.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> TrainOutcome<N> {
        TrainOutcome {
            model: f(self.model),
            history: self.history,
            best_epoch: self.best_epoch,
            best_valid_mrr: self.best_valid_mrr,
            stopped_early: self.stopped_early,
        }
    }
}

/// Validation ranks at most this many triples, for speed on large graphs.
const VALID_SAMPLE: usize = 2_000;

/// Below this many floats per step's largest tensor, splitting burn's kernels across threads
/// costs more than it saves (UMLS one-vs-all: 0.05 s/epoch on one thread, 0.065 on two).
const SMALL_STEP: usize = 1 << 20;

/// Trains a model (from `warm` if given, grown to this graph) and returns the best weights.
/// `on_progress` hears of batches and epochs as they finish.
pub fn train(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    warm: Option<KgeModel>,
    device: &Device,
    on_progress: OnProgress<'_>,
) -> Result<TrainOutcome, ModelError> {
    validate(config, set)?;
    let candidates = match config.regime {
        Regime::OneVsAll => set.num_entities,
        Regime::Negatives => config.negatives,
    };
    let per_positive = config.regime == Regime::Negatives
        && config.negative_sharing == NegativeSharing::PerPositive;
    let step_floats = if per_positive {
        // The [batch, negatives, dim] blocks of per-positive candidates.
        config
            .batch_size
            .saturating_mul(candidates)
            .saturating_mul(config.dim.saturating_mul(2))
    } else {
        config
            .batch_size
            .max(candidates)
            .saturating_mul(candidates.max(config.dim.saturating_mul(2)))
    };
    if step_floats >= SMALL_STEP {
        return train_inner(config, set, warm, device, on_progress);
    }
    match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(|| train_inner(config, set, warm, device, on_progress)),
        Err(_) => train_inner(config, set, warm, device, on_progress),
    }
}

fn train_inner(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    warm: Option<KgeModel>,
    device: &Device,
    on_progress: OnProgress<'_>,
) -> Result<TrainOutcome, ModelError> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut model = match warm {
        Some(mut m) => {
            if m.config.model != config.model
                || m.config.dim != config.dim
                || m.config.regime != config.regime
            {
                return Err(ModelError::Incompatible(format!(
                    "warm start from a {:?} dim {} {:?} model into a {:?} dim {} {:?} one",
                    m.config.model,
                    m.config.dim,
                    m.config.regime,
                    config.model,
                    config.dim,
                    config.regime
                )));
            }
            m.grow(set.num_entities, set.num_relations, &mut rng);
            if m.config.optimizer != config.optimizer {
                m.entities.drop_state();
                m.relations.drop_state();
            }
            m.config = config.clone();
            m
        }
        None => KgeModel::init(config, set.num_entities, set.num_relations, &mut rng),
    };
    let autodiff = device.clone().autodiff();
    let valid: Vec<Triple> = if set.valid.len() > VALID_SAMPLE {
        let mut v = set.valid.to_vec();
        v.shuffle(&mut StdRng::seed_from_u64(config.seed ^ 0x5eed));
        v.truncate(VALID_SAMPLE);
        v
    } else {
        set.valid.to_vec()
    };

    let mut examples: Vec<(Triple, Side)> = match config.regime {
        Regime::OneVsAll => set
            .train
            .iter()
            .flat_map(|&t| {
                let inv = Triple::new(t.tail, t.relation + set.num_relations as u32, t.head);
                [(t, Side::Tail), (inv, Side::Tail)]
            })
            .collect(),
        Regime::Negatives => set.train.iter().map(|&t| (t, Side::Tail)).collect(),
    };
    let mut stop = EarlyStop::new(config, !valid.is_empty());
    let mut step = 0u64;
    let unit = match config.regime {
        Regime::OneVsAll => "queries",
        Regime::Negatives => "triples",
    };
    let per_epoch = examples.len().div_ceil(config.batch_size);
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        examples.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        let mut done = 0usize;
        let mut ticker = BatchTicker::default();
        for batch in examples.chunks(config.batch_size) {
            step += 1;
            let loss = match config.regime {
                Regime::OneVsAll => {
                    one_vs_all_step(&mut model, batch, set, &autodiff, step, &mut rng)
                }
                Regime::Negatives if shared_negatives::covers(config) => {
                    shared_negatives::step(&mut model, batch, set, device, step, &mut rng)
                }
                Regime::Negatives => {
                    negatives_step(&mut model, batch, set, &autodiff, step, &mut rng)
                }
            };
            if !loss.is_finite() {
                return Err(ModelError::Diverged { epoch, loss });
            }
            loss_sum += loss;
            batches += 1;
            done += batch.len();
            if ticker.due() {
                on_progress(&TrainEvent::Batch(BatchStats {
                    epoch,
                    epochs: config.epochs,
                    done: batches,
                    batches: per_epoch,
                    examples: done,
                    unit,
                    loss: loss_sum / batches as f64,
                    seconds: started.elapsed().as_secs_f64(),
                }));
            }
        }
        let mut stats = EpochStats {
            epoch,
            loss: loss_sum / batches.max(1) as f64,
            valid_mrr: None,
            seconds: 0.0,
            train_seconds: started.elapsed().as_secs_f64(),
        };
        if stop.due(epoch) {
            on_progress(&TrainEvent::Validating { epoch });
            let scorer = model.scorer(device);
            let mrr = evaluate(&scorer, &valid, set.known, 256).both.mrr;
            stop.validated(&mut stats, mrr, || model.clone());
        }
        stats.seconds = started.elapsed().as_secs_f64();
        on_progress(&TrainEvent::Epoch(stats));
        if stop.end_epoch(stats) {
            break;
        }
    }
    // The optimizer state stays with the model: a warm retrain that restarted Adagrad's
    // accumulators moved every touched row by about `lr` in its first steps, and test MRR fell
    // round after round even when the round's labels were random.
    Ok(stop.finish(model))
}

/// What every kind's loop does around its epochs: when to validate, the best weights so far
/// (by validation MRR), when patience runs out, and the outcome.
pub(crate) struct EarlyStop<M> {
    eval_every: usize,
    patience: usize,
    epochs: usize,
    has_valid: bool,
    best: Option<(f64, usize, M)>,
    since_best: usize,
    history: Vec<EpochStats>,
    stopped_early: bool,
}

impl<M> EarlyStop<M> {
    pub(crate) fn new(config: &TrainConfig, has_valid: bool) -> Self {
        Self {
            eval_every: config.eval_every,
            patience: config.patience,
            epochs: config.epochs,
            has_valid,
            best: None,
            since_best: 0,
            history: Vec::new(),
            stopped_early: false,
        }
    }

    /// Whether `epoch` ends with a validation (every `eval_every`, and the last).
    pub(crate) fn due(&self, epoch: usize) -> bool {
        self.eval_every > 0
            && self.has_valid
            && (epoch.is_multiple_of(self.eval_every) || epoch == self.epochs)
    }

    /// Records a validation MRR; `snapshot` is called for the weights only when they are the
    /// best so far.
    pub(crate) fn validated(
        &mut self,
        stats: &mut EpochStats,
        mrr: f64,
        snapshot: impl FnOnce() -> M,
    ) {
        stats.valid_mrr = Some(mrr);
        if self.best.as_ref().is_none_or(|b| mrr > b.0) {
            self.best = Some((mrr, stats.epoch, snapshot()));
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
    }

    /// Files an epoch's report; true when patience has run out.
    pub(crate) fn end_epoch(&mut self, stats: EpochStats) -> bool {
        let epoch = stats.epoch;
        self.history.push(stats);
        if self.patience > 0 && self.since_best >= self.patience {
            self.stopped_early = epoch < self.epochs;
            return true;
        }
        false
    }

    /// The outcome: the best validated weights, or `last` when nothing was validated.
    pub(crate) fn finish(self, last: M) -> TrainOutcome<M> {
        let last_epoch = self.history.last().map_or(0, |s| s.epoch);
        let (best_valid_mrr, best_epoch, model) = match self.best {
            Some((mrr, epoch, m)) => (Some(mrr), epoch, m),
            None => (None, last_epoch, last),
        };
        TrainOutcome {
            model,
            history: self.history,
            best_epoch,
            best_valid_mrr,
            stopped_early: self.stopped_early,
        }
    }
}

fn validate(config: &TrainConfig, set: &TrainSet<'_>) -> Result<(), ModelError> {
    if set.train.is_empty() || set.num_entities == 0 {
        return Err(ModelError::EmptyGraph);
    }
    let bad = |what: &str| Err(ModelError::BadConfig(what.to_owned()));
    if let Some((field, why)) = config.problems().into_iter().next() {
        return bad(&format!("{field}: {why}"));
    }
    if matches!(
        config.model,
        ModelKind::Walks | ModelKind::Ultra | ModelKind::Gnn
    ) {
        return bad("only the embedding models train with model::train");
    }
    if config.dim == 0 {
        return bad("dim must be positive");
    }
    if config.batch_size == 0 {
        return bad("batch_size must be positive");
    }
    if config.regime == Regime::Negatives && config.negatives == 0 {
        return bad("negatives must be positive in the negatives regime");
    }
    if config.regime == Regime::OneVsAll && config.loss != LossKind::CrossEntropy {
        return bad("the one-vs-all regime trains with the cross-entropy loss");
    }
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return bad("label_smoothing must be in [0, 1)");
    }
    let n = set.num_entities as u32;
    let m = set.num_relations as u32;
    for t in set.train.iter().chain(set.valid).chain(set.refuted) {
        if t.head >= n || t.tail >= n || t.relation >= m {
            return Err(ModelError::Incompatible(format!(
                "triple {t:?} is outside {n} entities and {m} relations"
            )));
        }
    }
    Ok(())
}

/// Distinct ids in first-seen order, and each input's position among them.
pub(super) fn localize(ids: impl Iterator<Item = u32>) -> (Vec<u32>, Vec<u32>) {
    let mut map: FxHashMap<u32, u32> = FxHashMap::default();
    let mut distinct = Vec::new();
    let pos = ids
        .map(|id| {
            *map.entry(id).or_insert_with(|| {
                distinct.push(id);
                distinct.len() as u32 - 1
            })
        })
        .collect();
    (distinct, pos)
}

/// L2 or N3 applied to the rows a batch used, computed on the host: its gradient is added to
/// the loss's before the optimizer step. (In burn's graph, the `sqrt` of N3 differentiates
/// through scalar `powf` and doubled the step time.) Returns the term's value.
///
/// `occurrences` are positions in `ids` (one per use of a row in the batch); `grad` holds the
/// gradients of the `ids` rows, as wide as `table`'s rows (`[re | im]` when `complex`).
pub(super) fn add_regularizer(
    config: &TrainConfig,
    table: &Table,
    ids: &[u32],
    occurrences: &[u32],
    complex: bool,
    grad: &mut [f32],
    batch: usize,
) -> f64 {
    let w = config.reg_weight / batch as f64;
    if config.regularizer == Regularizer::None || w == 0.0 {
        return 0.0;
    }
    let k = config.dim;
    let width = table.width;
    let wf = w as f32;
    let n3 = config.regularizer == Regularizer::N3;
    let mut value = 0.0f64;
    // Slice-at-a-time loops without branches inside, so they vectorize.
    for &p in occurrences {
        let row = table.row(ids[p as usize] as usize);
        let g = &mut grad[p as usize * width..(p as usize + 1) * width];
        let mut v = 0.0f32;
        if complex {
            let (re, im) = row[..2 * k].split_at(k);
            let (gr, gi) = g[..2 * k].split_at_mut(k);
            for j in 0..k {
                let sq = re[j] * re[j] + im[j] * im[j];
                let m = if n3 { sq.sqrt() } else { 1.0 };
                let c = if n3 { 3.0 * wf * m } else { 2.0 * wf };
                v += sq * m;
                gr[j] += c * re[j];
                gi[j] += c * im[j];
            }
        } else {
            let (re, gr) = (&row[..k], &mut g[..k]);
            for j in 0..k {
                let sq = re[j] * re[j];
                let m = if n3 { sq.sqrt() } else { 1.0 };
                let c = if n3 { 3.0 * wf * m } else { 2.0 * wf };
                v += sq * m;
                gr[j] += c * re[j];
            }
        }
        value += f64::from(v);
    }
    value * w
}

/// Which rows of a batch the regularizer covers: positions in the entity and relation ids.
#[derive(Default)]
pub(super) struct RegRows {
    pub entities: Vec<u32>,
    pub relations: Vec<u32>,
    pub batch: usize,
}

/// The leaf tensors of a step and the table rows they hold.
struct Leaves<'a> {
    ent_ids: &'a [u32],
    ent: &'a Ent,
    rel_ids: &'a [u32],
    rel: &'a Rel,
}

/// The gradient of the leaves `re` (and `im`) as rows of their table: `[re | im]`.
fn grad_rows(
    grads: &burn::tensor::Gradients,
    re: &Tensor<2>,
    im: Option<&Tensor<2>>,
    rows: usize,
    k: usize,
) -> Vec<f32> {
    let grad = |t: &Tensor<2>| {
        t.grad(grads)
            .map(to_vec)
            .unwrap_or_else(|| vec![0.0; rows * k])
    };
    let g_re = grad(re);
    let Some(im) = im else {
        return g_re;
    };
    let g_im = grad(im);
    let mut out = Vec::with_capacity(rows * 2 * k);
    for (r, i) in g_re.chunks_exact(k).zip(g_im.chunks_exact(k)) {
        out.extend_from_slice(r);
        out.extend_from_slice(i);
    }
    out
}

/// The loss and the gradients of one step, per distinct row (before the optimizer): what
/// burn's path and the host path (`model::shared_negatives`) both produce.
#[derive(Debug)]
pub(super) struct StepGrads {
    /// Loss of the batch, regularizer included.
    pub loss: f64,
    pub ent_ids: Vec<u32>,
    /// `ent_ids.len() x entity width`, row-major, as the table's rows (`[re | im]`).
    pub ent_grad: Vec<f32>,
    pub rel_ids: Vec<u32>,
    pub rel_grad: Vec<f32>,
}

impl StepGrads {
    /// The optimizer step on the rows; returns the loss.
    pub(super) fn apply(self, model: &mut KgeModel, step: u64) -> f64 {
        let (opt, lr) = (model.config.optimizer, model.config.lr as f32);
        let (ew, rw) = (model.entities.width, model.relations.width);
        model
            .entities
            .step(&self.ent_ids, 0..ew, &self.ent_grad, opt, lr, step);
        model
            .relations
            .step(&self.rel_ids, 0..rw, &self.rel_grad, opt, lr, step);
        self.loss
    }
}

/// The gradients of the leaves as table rows, plus the regularizer's, after a backward pass
/// whose loss was `loss`.
fn leaf_grads(
    model: &KgeModel,
    loss: f64,
    grads: &burn::tensor::Gradients,
    leaves: &Leaves<'_>,
    reg: &RegRows,
) -> StepGrads {
    let Leaves {
        ent_ids,
        ent,
        rel_ids,
        rel,
    } = *leaves;
    let config = &model.config;
    let k = config.dim;
    let mut value = loss;
    let mut e = grad_rows(grads, &ent.re, ent.im.as_ref(), ent_ids.len(), k);
    value += add_regularizer(
        config,
        &model.entities,
        ent_ids,
        &reg.entities,
        model.is_complex(),
        &mut e,
        reg.batch,
    );
    let mut r = grad_rows(grads, &rel.re, rel.im.as_ref(), rel_ids.len(), k);
    // RotatE's relations are phases: nothing to shrink.
    if config.model != ModelKind::Rotate {
        value += add_regularizer(
            config,
            &model.relations,
            rel_ids,
            &reg.relations,
            config.model == ModelKind::Complex,
            &mut r,
            reg.batch,
        );
    }
    StepGrads {
        loss: value,
        ent_ids: ent_ids.to_vec(),
        ent_grad: e,
        rel_ids: rel_ids.to_vec(),
        rel_grad: r,
    }
}

fn ids_tensor(pos: &[u32], device: &Device) -> Tensor<1, Int> {
    index(pos, device)
}

/// Refuted triples as extra negatives, at the rate a training triple is seen: about
/// `batch * |refuted| / |train|` per batch (at most a quarter of the batch), so each refutation
/// weighs about as much as one positive per epoch. (A fixed share of every batch made 45
/// refuted pairs in a 162K-edge graph each count 40 times an epoch.)
pub(super) fn refuted_sample(set: &TrainSet<'_>, batch: usize, rng: &mut StdRng) -> Vec<Triple> {
    if set.refuted.is_empty() {
        return Vec::new();
    }
    let expected = batch as f64 * set.refuted.len() as f64 / set.train.len().max(1) as f64;
    // Rounded to the nearest count; below one, drawn (so a rare refutation still appears
    // about once an epoch rather than in every batch).
    let n = if expected >= 1.0 {
        expected.round() as usize
    } else {
        usize::from(rng.random::<f64>() < expected)
    };
    set.refuted
        .choose_multiple(rng, n.min(batch / 4).min(set.refuted.len()))
        .copied()
        .collect()
}

/// Refuted scores' penalty: softplus pushes each down, weighted like one positive of a
/// `batch`-row mean times `weight`. (A mean over the few refuted rows of a batch made each
/// weigh as much as all its positives together, and sank the true pairs of the same entities.)
fn refuted_penalty(scores: Tensor<2>, batch: usize, weight: f64) -> Tensor<1> {
    softplus(scores, 1.0).sum() * (weight / batch as f64)
}

/// One-vs-all: every entity is a candidate tail; reciprocal relations cover heads.
fn one_vs_all_step(
    model: &mut KgeModel,
    batch: &[(Triple, Side)],
    set: &TrainSet<'_>,
    device: &Device,
    step: u64,
    rng: &mut StdRng,
) -> f64 {
    let config = model.config.clone();
    let b = batch.len();
    let n = model.num_entities;
    let refuted = refuted_sample(set, b, rng);
    let (rel_ids, rel_pos) = localize(
        batch
            .iter()
            .map(|(t, _)| t.relation)
            .chain(refuted.iter().map(|t| t.relation)),
    );
    let ent = model.ent(None, device, true);
    let rel = model.rel(&rel_ids, device, true);
    let heads: Vec<u32> = batch.iter().map(|(t, _)| t.head).collect();
    let tails: Vec<u32> = batch.iter().map(|(t, _)| t.tail).collect();
    let h = ent.select(&ids_tensor(&heads, device));
    let r = Rel {
        re: rel.re.clone().select(0, ids_tensor(&rel_pos[..b], device)),
        im: rel
            .im
            .clone()
            .map(|im| im.select(0, ids_tensor(&rel_pos[..b], device))),
    };
    let scores = query(config.model, Side::Tail, &h, &r).against(&ent); // [b, n]
    let logp = log_softmax(scores, 1);
    let targets: Tensor<2, Int> = Tensor::from_data(
        TensorData::new(
            tails.iter().map(|&x| i64::from(x)).collect::<Vec<_>>(),
            [b, 1],
        ),
        device,
    );
    let eps = config.label_smoothing;
    let picked = logp.clone().gather(1, targets); // [b, 1]
    let mut loss: Tensor<1> = -(picked.mean() * (1.0 - eps));
    if eps > 0.0 {
        loss = loss - logp.sum_dim(1).mean() * (eps / n as f64);
    }
    if !refuted.is_empty() {
        let pos = &rel_pos[b..];
        let rh = ent.select(&ids_tensor(
            &refuted.iter().map(|x| x.head).collect::<Vec<_>>(),
            device,
        ));
        let rt = ent.select(&ids_tensor(
            &refuted.iter().map(|x| x.tail).collect::<Vec<_>>(),
            device,
        ));
        let rr = Rel {
            re: rel.re.clone().select(0, ids_tensor(pos, device)),
            im: rel
                .im
                .clone()
                .map(|im| im.select(0, ids_tensor(pos, device))),
        };
        let s = query(config.model, Side::Tail, &rh, &rr).with(&rt);
        loss = loss + refuted_penalty(s, b, config.refuted_weight());
    }
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = loss.backward();
    let all: Vec<u32> = (0..n as u32).collect();
    let reg = RegRows {
        entities: heads.iter().chain(&tails).copied().collect(),
        relations: rel_pos[..b].to_vec(),
        batch: b,
    };
    let leaves = Leaves {
        ent_ids: &all,
        ent: &ent,
        rel_ids: &rel_ids,
        rel: &rel,
    };
    leaf_grads(model, value, &grads, &leaves, &reg).apply(model, step)
}

/// Negative sampling: the first half of the batch has its tails corrupted, the second half its
/// heads, by `negatives` entities drawn once and shared by the batch (`negative_sharing:
/// batch`, one GEMM per side) or drawn for each positive (`per-positive`, as PyKEEN's basic
/// sampler; scored block by block).
fn negatives_step(
    model: &mut KgeModel,
    batch: &[(Triple, Side)],
    set: &TrainSet<'_>,
    device: &Device,
    step: u64,
    rng: &mut StdRng,
) -> f64 {
    negatives_grads(model, batch, set, device, rng).apply(model, step)
}

/// The loss and gradients of [`negatives_step`] (`device`: an autodiff device).
pub(super) fn negatives_grads(
    model: &KgeModel,
    batch: &[(Triple, Side)],
    set: &TrainSet<'_>,
    device: &Device,
    rng: &mut StdRng,
) -> StepGrads {
    let config = model.config.clone();
    let b = batch.len();
    let n = model.num_entities as u32;
    let per_positive = config.negative_sharing == NegativeSharing::PerPositive;
    let k_neg = config.negatives;
    let negs: Vec<u32> = (0..if per_positive { b * k_neg } else { k_neg })
        .map(|_| rng.random_range(0..n))
        .collect();
    let refuted = refuted_sample(set, b, rng);
    let triples: Vec<Triple> = batch
        .iter()
        .map(|(t, _)| *t)
        .chain(refuted.iter().copied())
        .collect();
    let (ent_ids, ent_pos) = localize(
        triples
            .iter()
            .flat_map(|t| [t.head, t.tail])
            .chain(negs.iter().copied()),
    );
    let (rel_ids, rel_pos) = localize(triples.iter().map(|t| t.relation));
    let ent = model.ent(Some(&ent_ids), device, true);
    let rel = model.rel(&rel_ids, device, true);
    let pick_e = |from: usize, to: usize, which: usize| -> Ent {
        let pos: Vec<u32> = (from..to).map(|i| ent_pos[2 * i + which]).collect();
        ent.select(&ids_tensor(&pos, device))
    };
    let pick_r = |from: usize, to: usize| -> Rel {
        let idx = ids_tensor(&rel_pos[from..to], device);
        Rel {
            re: rel.re.clone().select(0, idx.clone()),
            im: rel.im.clone().map(|im| im.select(0, idx)),
        }
    };
    let neg_pos: Vec<u32> = ent_pos[2 * triples.len()..].to_vec();
    let shared = (!per_positive).then(|| ent.select(&ids_tensor(&neg_pos, device)));
    let half = b.div_ceil(2);
    let mut pos_scores = Vec::new();
    let mut neg_scores = Vec::new();
    for (side, from, to) in [(Side::Tail, 0, half), (Side::Head, half, b)] {
        if from == to {
            continue;
        }
        let (h, r, t) = (pick_e(from, to, 0), pick_r(from, to), pick_e(from, to, 1));
        let (given, target) = match side {
            Side::Tail => (&h, &t),
            Side::Head => (&t, &h),
        };
        let q = query(config.model, side, given, &r);
        pos_scores.push(q.with(target));
        neg_scores.push(match &shared {
            Some(neg) => q.against(neg),
            None => {
                let own = &neg_pos[from * k_neg..to * k_neg];
                q.against_each(&ent.select(&ids_tensor(own, device)))
            }
        });
    }
    let pos = Tensor::cat(pos_scores, 0); // [b, 1]
    let negm = Tensor::cat(neg_scores, 0); // [b, N]
    let mut loss: Tensor<1> = match config.loss {
        LossKind::Softplus => softplus(-pos, 1.0).mean() + softplus(negm, 1.0).mean(),
        LossKind::CrossEntropy => {
            let logits = Tensor::cat(vec![pos, negm], 1);
            -(log_softmax(logits, 1).narrow(1, 0, 1).mean())
        }
        LossKind::Adversarial => {
            let g = config.margin;
            let weights = softmax((negm.clone() + g) * config.adversarial_temperature, 1).detach();
            let pos_term = -log_sigmoid(pos + g).mean();
            let neg_term = -(log_sigmoid(-(negm + g)) * weights).sum_dim(1).mean();
            (pos_term + neg_term) * 0.5
        }
    };
    if !refuted.is_empty() {
        let (from, to) = (b, triples.len());
        let (h, r, t) = (pick_e(from, to, 0), pick_r(from, to), pick_e(from, to, 1));
        let s = query(config.model, Side::Tail, &h, &r).with(&t);
        loss = loss + refuted_penalty(s, b, config.refuted_weight());
    }
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = loss.backward();
    let reg = RegRows {
        entities: ent_pos[..2 * b].to_vec(),
        relations: rel_pos[..b].to_vec(),
        batch: b,
    };
    let leaves = Leaves {
        ent_ids: &ent_ids,
        ent: &ent,
        rel_ids: &rel_ids,
        rel: &rel,
    };
    leaf_grads(model, value, &grads, &leaves, &reg)
}
