//! Training and fine-tuning: masked-edge prediction. Each training query `(h, r, ?)` hides its
//! own edge (and the reverse) from the graph while it is the target, scores its answer
//! against negatives drawn from the relation's range (never a known answer; a refuted one
//! always), and takes ULTRA's self-adversarial binary cross-entropy. AdamW on the flat
//! weights. `model: ultra` starts from pretrained weights, `model: gnn` from random ones;
//! `epochs: 0` keeps the starting weights (zero-shot).

use super::grad::Batch;
use super::{Adjacency, GnnModel, Net, Params, Removed};
use crate::graph::Triple;
use crate::model::ModelError;
use crate::model::config::{ModelKind, TrainConfig};
use crate::model::context::{Categories, Context};
use crate::model::eval::evaluate;
use crate::model::range::Ranges;
use crate::model::train::{
    BatchStats, BatchTicker, EarlyStop, EpochStats, OnProgress, TrainEvent, TrainOutcome, TrainSet,
};
use burn::tensor::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Validation ranks at most this many triples (each costs a pass over the graph).
const VALID_SAMPLE: usize = 500;

pub fn train(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    categories: &Categories,
    warm: Option<GnnModel>,
    device: &Device,
    on_progress: OnProgress<'_>,
) -> Result<TrainOutcome<GnnModel>, ModelError> {
    check(set)?;
    let gc = config.gnn_config();
    let (n, m) = (set.num_entities, set.num_relations);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let params = match warm {
        Some(w) => w.params,
        None => match config.model {
            ModelKind::Ultra => super::pretrained(gc.weights.as_deref().map(Path::new))
                .map_err(|e| ModelError::BadConfig(format!("gnn.weights: {e}")))?,
            _ => Params::random(gc.shape(), &mut rng),
        },
    };
    let mut model = GnnModel {
        config: config.clone(),
        num_entities: n,
        num_relations: m,
        params,
    };
    let mut stop: EarlyStop<Params> = EarlyStop::new(config, !set.valid.is_empty());
    if config.epochs == 0 {
        return Ok(stop
            .finish(model.params.clone())
            .map(|p| GnnModel { params: p, ..model }));
    }
    let context = Context::new(n, m, set.train, categories.clone());
    let graph = Adjacency::of_context(&context, &[], 0);
    let rel_graph = graph.relation_graph();
    let ranges = Ranges::new(&context);
    let mut refuted: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    for t in set.refuted {
        refuted
            .entry((t.head, t.relation))
            .or_default()
            .push(t.tail);
        refuted
            .entry((t.tail, t.relation + m as u32))
            .or_default()
            .push(t.head);
    }
    let valid: Vec<Triple> = {
        let mut v = set.valid.to_vec();
        if v.len() > VALID_SAMPLE {
            v.shuffle(&mut StdRng::seed_from_u64(config.seed ^ 0x5eed));
            v.truncate(VALID_SAMPLE);
        }
        v
    };
    // Training queries in both directions: (given, relation id with inverses, answer).
    let mut examples: Vec<(u32, u32, u32)> = set
        .train
        .iter()
        .flat_map(|t| {
            [
                (t.head, t.relation, t.tail),
                (t.tail, t.relation + m as u32, t.head),
            ]
        })
        .collect();
    let per_epoch = gc
        .queries_per_epoch
        .map_or(examples.len(), |q| q.min(examples.len()));
    let batch_size = gc.batch_size();
    let negatives = gc.negatives();
    let (lr, wd) = (gc.lr() as f32, 0.01f32);
    let mut adam = AdamW::new(model.params.data.len());
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        examples.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        let mut ticker = BatchTicker::default();
        let total_batches = per_epoch.div_ceil(batch_size);
        for chunk in examples[..per_epoch].chunks(batch_size) {
            let queries: Vec<(u32, u32)> = chunk.iter().map(|e| (e.0, e.1)).collect();
            // Each query's own edge and its reverse leave the graph.
            let removed = Removed::of_queries(chunk, m);
            let candidates: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&(g, r, a)| {
                    let mut c = vec![a];
                    if let Some(bad) = refuted.get(&(g, r)) {
                        c.extend(bad.iter().copied().filter(|&t| t != a).take(negatives / 2));
                    }
                    let mut tries = 0;
                    while c.len() < negatives + 1 && tries < 20 * negatives {
                        tries += 1;
                        let t = ranges.sample(r, &mut rng);
                        if t != a && !context.has(g, r, t) {
                            c.push(t);
                        }
                    }
                    c
                })
                .collect();
            let net = Net::new(&model.params, device);
            let mut grad = vec![0f32; model.params.data.len()];
            let loss = net.loss_and_grad(
                &graph,
                &rel_graph,
                &Batch {
                    queries: &queries,
                    candidates: &candidates,
                    removed: &removed,
                    temperature: config.adversarial_temperature as f32,
                },
                &mut grad,
            );
            if !loss.is_finite() {
                return Err(ModelError::Diverged { epoch, loss });
            }
            adam.step(&mut model.params.data, &grad, lr, wd);
            loss_sum += loss;
            batches += 1;
            crash_point(epoch, batches);
            if ticker.due() {
                on_progress(&TrainEvent::Batch(BatchStats {
                    epoch,
                    epochs: config.epochs,
                    done: batches,
                    batches: total_batches,
                    examples: batches * batch_size,
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
            let mrr = {
                let scorer = model.scorer(device, &context);
                evaluate(&scorer, &valid, set.known, super::SCORE_BATCH)
                    .both
                    .mrr
            };
            stop.validated(&mut stats, mrr, || model.params.clone());
        }
        stats.seconds = started.elapsed().as_secs_f64();
        on_progress(&TrainEvent::Epoch(stats));
        if stop.end_epoch(stats) {
            break;
        }
    }
    let last = model.params.clone();
    Ok(stop.finish(last).map(|p| {
        model.params = p;
        model
    }))
}

/// Aborts the process after the first step when `HYPOGRAPH_CRASH_AT=fine-tuning`: debug
/// builds only, for the tests of a kill in the middle of training.
fn crash_point(epoch: usize, batches: usize) {
    #[cfg(debug_assertions)]
    if epoch == 1
        && batches == 1
        && std::env::var("HYPOGRAPH_CRASH_AT").is_ok_and(|v| v == "fine-tuning")
    {
        eprintln!("HYPOGRAPH_CRASH_AT=fine-tuning: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = (epoch, batches);
}

fn check(set: &TrainSet<'_>) -> Result<(), ModelError> {
    if set.train.is_empty() || set.num_entities == 0 {
        return Err(ModelError::EmptyGraph);
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

/// AdamW over the flat weights (PyTorch's defaults: betas 0.9 / 0.999, epsilon 1e-8).
struct AdamW {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl AdamW {
    fn new(len: usize) -> Self {
        Self {
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32, weight_decay: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            *p -= lr * weight_decay * *p;
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        }
    }
}
