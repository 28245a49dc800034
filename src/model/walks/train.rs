//! Training the walk model: sequences drawn per batch (nothing materialised), AdamW with a
//! linear warm-up and decay, validation MRR and early stopping as `model::train`.

use super::WalkModel;
use super::net::{Batch, Layout, Row, WalkNet};
use super::sample::Sampler;
use super::sampled::Sampled;
use crate::graph::Triple;
use crate::model::ModelError;
use crate::model::config::{TrainConfig, WalkConfig};
use crate::model::context::{Categories, Context, Step};
use crate::model::eval::evaluate;
use crate::model::range::Ranges;
use crate::model::train::{
    BatchStats, BatchTicker, EarlyStop, EpochStats, OnProgress, TrainEvent, TrainOutcome, TrainSet,
    refuted_sample,
};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::{log_softmax, softplus};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// Seconds spent in each phase of training steps since the process started: sampling and
/// batch building, forward (loss), backward, optimizer step. For benchmarks.
static PHASES: std::sync::Mutex<[f64; 4]> = std::sync::Mutex::new([0.0; 4]);

pub fn phase_seconds() -> [f64; 4] {
    PHASES.lock().map(|p| *p).unwrap_or_default()
}

fn add_phase(i: usize, since: Instant) -> Instant {
    if let Ok(mut p) = PHASES.lock() {
        p[i] += since.elapsed().as_secs_f64();
    }
    Instant::now()
}

/// Share of id-dropped sequences whose entity also shows its features (when it has them).
const FEATURES_SHOWN: f64 = 0.5;

/// Validation ranks at most this many triples.
const VALID_SAMPLE: usize = 1_000;

/// Tokens per training sequence of a config.
pub fn sequence_len(config: &TrainConfig) -> usize {
    let c = config.walk_config();
    3 + c.context_walks * 2 * c.walk_length
}

/// One training example: predict `tail` from `(head, relation)` (relation may be an inverse
/// id); `refuted`: the triple is known false and its probability is pushed down.
#[derive(Debug, Clone, Copy)]
pub(super) struct Example {
    pub head: u32,
    pub relation: u32,
    pub tail: u32,
    pub refuted: bool,
}

/// Trains a walk model (from `warm` if given, grown to this graph) and returns the best
/// weights by validation MRR. `on_progress` hears of batches and epochs as they finish.
pub fn train(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    categories: &Categories,
    warm: Option<WalkModel>,
    device: &Device,
    on_progress: OnProgress<'_>,
) -> Result<TrainOutcome<WalkModel>, ModelError> {
    let wc = config.walk_config();
    check(config, &wc, set)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let (n, m) = (set.num_entities, set.num_relations);
    let mut model = match warm {
        Some(mut w) => {
            let old = w.config.walk_config();
            if (
                old.d_model,
                old.layers,
                old.heads,
                old.d_ff,
                old.walk_length,
            ) != (wc.d_model, wc.layers, wc.heads, wc.d_ff, wc.walk_length)
            {
                return Err(ModelError::Incompatible(format!(
                    "warm start from a walk model of d_model {} x {} layers ({} heads, d_ff {}, walks of {}) into one of d_model {} x {} layers ({} heads, d_ff {}, walks of {})",
                    old.d_model,
                    old.layers,
                    old.heads,
                    old.d_ff,
                    old.walk_length,
                    wc.d_model,
                    wc.layers,
                    wc.heads,
                    wc.d_ff,
                    wc.walk_length
                )));
            }
            w.grow(n, m, &mut rng);
            w.config = config.clone();
            w
        }
        None => WalkModel::init(config, n, m, &categories.names, &mut rng),
    };
    let cat_map = model.learn_categories(categories, &mut rng);
    let group_map = model.learn_feature_groups(&categories.features.groups, &mut rng);
    // An entity's features as the model's group and vector, when it has them.
    let features_of = |e: u32| -> Option<(usize, &[f32])> {
        let (g, x) = categories.features.get(e)?;
        Some((group_map.get(g).copied().flatten()?, x))
    };
    let category_token = |e: u32| {
        cat_map
            .get(categories.get(e) as usize)
            .copied()
            .unwrap_or(0)
    };
    let context = Context::new(n, m, set.train, categories.clone());
    let sampler = Sampler::new(&context, wc.rarity_alpha);
    let layout = Layout::new(&wc, model.net().sizes());

    let valid: Vec<Triple> = {
        let mut v = set.valid.to_vec();
        if v.len() > VALID_SAMPLE {
            v.shuffle(&mut StdRng::seed_from_u64(config.seed ^ 0x5eed));
            v.truncate(VALID_SAMPLE);
        }
        v
    };
    let mut examples: Vec<Example> = set
        .train
        .iter()
        .flat_map(|t| {
            [
                Example {
                    head: t.head,
                    relation: t.relation,
                    tail: t.tail,
                    refuted: false,
                },
                Example {
                    head: t.tail,
                    relation: t.relation + m as u32,
                    tail: t.head,
                    refuted: false,
                },
            ]
        })
        .collect();
    let walk_examples = (wc.walks_per_entity * n as f64).round() as usize;
    let queries = wc
        .queries_per_epoch
        .map_or(examples.len(), |q| q.min(examples.len()));
    let per_epoch = queries + walk_examples;
    let batches_per_epoch = per_epoch.div_ceil(wc.batch_size);
    let total_steps = (batches_per_epoch * config.epochs).max(1);
    let warmup = ((wc.warmup * total_steps as f64) as usize).max(1);
    let lr_at = |step: usize| -> f64 {
        if step < warmup {
            wc.lr * (step + 1) as f64 / warmup as f64
        } else {
            let t = (step - warmup) as f64 / (total_steps - warmup).max(1) as f64;
            wc.lr * (1.0 - 0.9 * t.min(1.0))
        }
    };

    let autodiff = device.clone().autodiff();
    let mut net: WalkNet = model.net().clone().fork(&autodiff).train();
    let mut sampled = wc
        .sampled_negatives
        .map(|k| Sampled::new(model.net(), Ranges::new(&context), k));
    let mut optim = AdamWConfig::new()
        .with_weight_decay(wc.weight_decay as f32)
        .with_epsilon(1e-8)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)))
        .init();
    let mut stop = EarlyStop::new(config, !valid.is_empty());
    let mut step = 0usize;
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        examples.shuffle(&mut rng);
        // A fixed budget takes a fresh sample of the training queries every epoch.
        let mut epoch_examples = examples[..queries].to_vec();
        // Biased walks pick extra targets: the first step of a walk from a random entity.
        for _ in 0..walk_examples {
            let start = rng.random_range(0..n as u32);
            let mut out = Vec::new();
            sampler.walk(start, None, 1, &[], &mut rng, &mut out);
            if let Some(s) = out.first() {
                epoch_examples.push(Example {
                    head: start,
                    relation: s.relation,
                    tail: s.entity,
                    refuted: false,
                });
            }
        }
        if walk_examples > 0 {
            epoch_examples.shuffle(&mut rng);
        }
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        let mut done = 0usize;
        let mut ticker = BatchTicker::default();
        let per_epoch = epoch_examples.len().div_ceil(wc.batch_size);
        for chunk in epoch_examples.chunks(wc.batch_size) {
            let t = Instant::now();
            let mut rows: Vec<Example> = chunk.to_vec();
            rows.extend(
                refuted_sample(set, chunk.len(), &mut rng)
                    .into_iter()
                    .map(|t| Example {
                        head: t.head,
                        relation: t.relation,
                        tail: t.tail,
                        refuted: true,
                    }),
            );
            // Each batch reads its own number of context walks: shorter sequences are cheaper
            // steps, and the model learns to read any number (a new entity's claims).
            let mut batch_layout = layout;
            let least = wc.min_walks().min(layout.walks);
            batch_layout.walks = rng.random_range(least..=layout.walks);
            let mut batch = build_batch(
                &batch_layout,
                &sampler,
                &wc,
                &rows,
                &category_token,
                &features_of,
                &mut rng,
            );
            let t = add_phase(0, t);
            // Each query's known answers, for the binary cross-entropy term.
            let answers: Vec<Vec<u32>> = if wc.bce_weight() > 0.0 || sampled.is_some() {
                rows.iter()
                    .map(|ex| {
                        context
                            .steps(ex.head)
                            .iter()
                            .filter(|s| s.relation == ex.relation)
                            .map(|s| s.entity)
                            .collect()
                    })
                    .collect()
            } else {
                vec![Vec::new(); rows.len()]
            };
            let (loss, leaves) = match sampled.as_mut() {
                Some(s) => {
                    let (loss, leaves) = s.loss(
                        &net,
                        &mut batch,
                        &batch_layout,
                        &rows,
                        &answers,
                        &wc,
                        config.label_smoothing,
                        &autodiff,
                        &mut rng,
                    );
                    (loss, Some(leaves))
                }
                None => (
                    batch_loss(
                        &net,
                        &batch,
                        &rows,
                        &answers,
                        &wc,
                        config.label_smoothing,
                        &autodiff,
                    ),
                    None,
                ),
            };
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(ModelError::Diverged { epoch, loss: value });
            }
            let t = add_phase(1, t);
            let grads = loss.backward();
            if let (Some(s), Some(leaves)) = (sampled.as_mut(), leaves.as_ref()) {
                let lr = lr_at(step) * wc.entity_lr.unwrap_or(wc.lr) / wc.lr;
                s.step(leaves, &grads, lr, step as u64 + 1);
            }
            let grads = GradientsParams::from_grads(grads, &net);
            let t = add_phase(2, t);
            net = optim.step(lr_at(step), net, grads);
            add_phase(3, t);
            step += 1;
            loss_sum += value;
            batches += 1;
            done += chunk.len();
            if ticker.due() {
                on_progress(&TrainEvent::Batch(BatchStats {
                    epoch,
                    epochs: config.epochs,
                    done: batches,
                    batches: per_epoch,
                    examples: done,
                    unit: "queries",
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
            let snapshot = WalkModel {
                net: with_table(&sampled, net.valid()),
                ..model.clone()
            };
            let mrr = {
                let scorer = snapshot.scorer(device, &context);
                evaluate(&scorer, &valid, set.known, 256).both.mrr
            };
            stop.validated(&mut stats, mrr, || snapshot.net);
        }
        stats.seconds = started.elapsed().as_secs_f64();
        on_progress(&TrainEvent::Epoch(stats));
        if stop.end_epoch(stats) {
            break;
        }
    }
    Ok(stop.finish(with_table(&sampled, net.valid())).map(|best| {
        model.net = best.fork(&Device::flex());
        model.config = config.clone();
        model
    }))
}

/// `net` with the sampled step's host entity table written in, when training keeps one.
fn with_table(sampled: &Option<Sampled>, net: WalkNet) -> WalkNet {
    match sampled {
        Some(s) => s.write(net),
        None => net,
    }
}

fn check(config: &TrainConfig, wc: &WalkConfig, set: &TrainSet<'_>) -> Result<(), ModelError> {
    if set.train.is_empty() || set.num_entities == 0 {
        return Err(ModelError::EmptyGraph);
    }
    if let Some((field, why)) = wc.problems().into_iter().next() {
        return Err(ModelError::BadConfig(format!("walks.{field}: {why}")));
    }
    if !(0.0..1.0).contains(&config.label_smoothing) {
        return Err(ModelError::BadConfig(
            "label_smoothing must be in [0, 1)".to_owned(),
        ));
    }
    let (n, m) = (set.num_entities as u32, set.num_relations as u32);
    for t in set.train.iter().chain(set.valid).chain(set.refuted) {
        if t.head >= n || t.tail >= n || t.relation >= m {
            return Err(ModelError::Incompatible(format!(
                "triple {t:?} is outside {n} entities and {m} relations"
            )));
        }
    }
    Ok(())
}

/// The sequences of a batch: per row, `[h, r, MASK]` + context walks from `h` that avoid the
/// row's own edge; `h` shown as its category's token with probability `id_dropout` (then
/// predicted at slot 0, its features' projection added when it has features, its walks
/// starting from a few of its edges as a new entity's claims); context tokens masked with
/// probability `mask_prob`.
fn build_batch<'f>(
    layout: &Layout,
    sampler: &Sampler<'_>,
    wc: &WalkConfig,
    rows: &[Example],
    category_token: &dyn Fn(u32) -> u32,
    features_of: &dyn Fn(u32) -> Option<(usize, &'f [f32])>,
    rng: &mut StdRng,
) -> Batch {
    let mut batch = Batch::new(layout);
    let entity = |e: u32| layout.entity(e);
    let mut walks: Vec<Vec<Step>> = vec![Vec::new(); layout.walks];
    let mut claims: Vec<Step> = Vec::new();
    for ex in rows {
        let forbidden = sampler.target_edge(ex.head, ex.relation, ex.tail);
        let dropped = !ex.refuted && rng.random::<f64>() < wc.id_dropout;
        if dropped {
            // Shown as a new entity is: k of its edges (k uniform in 0..=walks), walk i
            // starting with claim i (mod k), as the scorer reads a new entity's claims.
            let target = forbidden[0].1;
            let steps = sampler.context().steps(ex.head);
            let k = rng.random_range(0..=layout.walks);
            claims.clear();
            claims.extend(
                rand::seq::index::sample(rng, steps.len(), k.min(steps.len()))
                    .into_iter()
                    .map(|i| steps[i])
                    .filter(|s| *s != target),
            );
            claims.sort_unstable();
            for (i, w) in walks.iter_mut().enumerate() {
                w.clear();
                if !claims.is_empty() {
                    let c = i % claims.len();
                    let first = &claims[c..=c];
                    sampler.walk(ex.head, Some(first), layout.walk_len, &forbidden, rng, w);
                }
            }
        } else {
            for w in &mut walks {
                w.clear();
                sampler.walk(ex.head, None, layout.walk_len, &forbidden, rng, w);
            }
        }
        let query = if dropped {
            layout.category(category_token(ex.head))
        } else {
            layout.entity(ex.head)
        };
        if dropped {
            let slot = batch.rows * batch.len;
            batch.entity_targets.push((slot, ex.head));
            // Half the time without its features: an entity may be asked about with or
            // without them, and each must be a question the model has seen.
            if let Some((g, x)) = features_of(ex.head)
                && rng.random::<f64>() < FEATURES_SHOWN
            {
                batch.features.push((slot, g, x.to_vec()));
            }
        }
        let row = Row {
            query,
            relation: ex.relation,
            walks: &walks,
        };
        let mask: Option<(f64, &mut dyn rand::RngCore)> = if !ex.refuted && wc.mask_prob > 0.0 {
            Some((wc.mask_prob, rng))
        } else {
            None
        };
        batch.push(layout, row, &entity, mask);
    }
    batch
}

fn ints(v: impl Iterator<Item = i64>, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = v.collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Mean cross-entropy of `logits` against `targets` (one per row), label-smoothed by `eps`.
pub(super) fn cross_entropy(
    logits: Tensor<2>,
    targets: &[u32],
    eps: f64,
    device: &Device,
) -> Tensor<1> {
    let [rows, n] = logits.dims();
    let logp = log_softmax(logits, 1);
    let idx: Tensor<2, Int> =
        ints(targets.iter().map(|&t| i64::from(t)), device).reshape([rows, 1]);
    let picked = logp.clone().gather(1, idx);
    let mut loss = -(picked.mean() * (1.0 - eps));
    if eps > 0.0 {
        loss = loss - logp.sum_dim(1).mean() * (eps / n as f64);
    }
    loss
}

/// The batch's loss: link prediction (cross-entropy over all entities at the MASK slot), a
/// refuted row's -log(1 - p(t)) times `refuted_weight`, and the masked tokens' cross-entropy
/// times `mask_weight`.
fn batch_loss(
    net: &WalkNet,
    batch: &Batch,
    rows: &[Example],
    answers: &[Vec<u32>],
    wc: &WalkConfig,
    label_smoothing: f64,
    device: &Device,
) -> Tensor<1> {
    let hidden = net.encode(batch, device);
    let (true_rows, refuted_rows): (Vec<usize>, Vec<usize>) =
        (0..rows.len()).partition(|&i| !rows[i].refuted);
    let slots = |rs: &[usize]| {
        rs.iter()
            .map(|&i| (batch.query_slot(i), rows[i].relation))
            .collect::<Vec<_>>()
    };
    let q = net.query(&hidden, &slots(&true_rows), device);
    let targets: Vec<u32> = true_rows.iter().map(|&i| rows[i].tail).collect();
    let logits = net.entity_logits(q);
    let mut loss = cross_entropy(logits.clone(), &targets, label_smoothing, device);
    let bce_weight = wc.bce_weight();
    if bce_weight > 0.0 {
        // Every known answer of each query is a 1, every other entity a 0.
        let [b, n] = logits.dims();
        let mut y = vec![0f32; b * n];
        for (row, &i) in true_rows.iter().enumerate() {
            y[row * n + rows[i].tail as usize] = 1.0;
            for &t in &answers[i] {
                if (t as usize) < n {
                    y[row * n + t as usize] = 1.0;
                }
            }
        }
        let y: Tensor<2> = Tensor::from_data(TensorData::new(y, [b, n]), device);
        // softplus(x) - y x = y softplus(-x) + (1 - y) softplus(x).
        let bce = (softplus(logits.clone(), 1.0) - logits * y).mean();
        loss = loss + bce * bce_weight;
    }
    if !refuted_rows.is_empty() && wc.refuted_weight > 0.0 {
        let q = net.query(&hidden, &slots(&refuted_rows), device);
        let logp = log_softmax(net.entity_logits(q), 1);
        let idx: Tensor<2, Int> = ints(
            refuted_rows.iter().map(|&i| i64::from(rows[i].tail)),
            device,
        )
        .reshape([refuted_rows.len(), 1]);
        let p = logp.gather(1, idx).exp().clamp(0.0, 1.0 - 1e-6);
        let penalty = -(p.neg() + 1.0).log().mean();
        loss = loss + penalty * wc.refuted_weight;
    }
    if wc.mask_weight > 0.0 {
        if !batch.entity_targets.is_empty() {
            let (pos, ids): (Vec<usize>, Vec<u32>) = batch.entity_targets.iter().copied().unzip();
            let q = net.project(&hidden, &pos, device);
            loss = loss + cross_entropy(net.entity_logits(q), &ids, 0.0, device) * wc.mask_weight;
        }
        if !batch.relation_targets.is_empty() {
            let (pos, ids): (Vec<usize>, Vec<u32>) = batch.relation_targets.iter().copied().unzip();
            let q = net.project(&hidden, &pos, device);
            loss = loss + cross_entropy(net.relation_logits(q), &ids, 0.0, device) * wc.mask_weight;
        }
    }
    loss
}
