//! Training and scoring at Hetionet scale (issue 3): one epoch of ComplEx dim 128 with shared
//! negatives, its peak memory, and the latency of scoring all tails of one (head, relation).
//!
//! Run: `python3 ../shared/tools/synth_kg.py --out target/synth1 --scale 1 && cargo bench --bench train_scale`
//! (`SYNTH_DIR`, `EPOCHS`, `BATCH`, `NEGATIVES` adjust it). `EVAL_HIDDEN=2000` also ranks that
//! many of `hidden.tsv`'s held-out true edges (a seeded sample, filter = the training triples)
//! after training: the quality check that goes with a speed change.

use hypograph::graph::{OnInvalid, Triple, tsv};
use hypograph::model::{
    self, Known, LossKind, OptimizerKind, Regime, Regularizer, TrainConfig, TrainSet,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_gib() -> f64 {
    hypograph::logging::peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / (1u64 << 30) as f64)
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::var("SYNTH_DIR").unwrap_or_else(|_| "target/synth1".into());
    let path = std::path::Path::new(&dir).join("triples.tsv");
    anyhow::ensure!(
        path.is_file(),
        "{} not found: run synth_kg.py first",
        path.display()
    );
    let batch = tsv::read_triples(&path, OnInvalid::Fail)?;
    let train: Vec<Triple> = batch
        .triples
        .iter()
        .map(|&[h, r, t]| Triple::new(h, r, t))
        .collect();
    let (n, m) = (batch.entities.len(), batch.relations.len());
    println!(
        "graph: {n} entities, {m} relations, {} triples",
        train.len()
    );
    let config = TrainConfig::new()
        .with_dim(128)
        .with_regime(Regime::Negatives)
        .with_loss(LossKind::Softplus)
        .with_negatives(env("NEGATIVES", 256))
        .with_optimizer(OptimizerKind::Adam)
        .with_lr(0.01)
        .with_regularizer(Regularizer::None)
        .with_batch_size(env("BATCH", 4096))
        .with_epochs(env("EPOCHS", 1))
        .with_eval_every(0)
        .with_patience(0);
    let known = Known::new(&[&train]);
    let set = TrainSet {
        num_entities: n,
        num_relations: m,
        train: &train,
        valid: &[],
        known: &known,
        refuted: &[],
    };
    let device = model::default_device();
    let started = Instant::now();
    let out = model::train(
        &config,
        &set,
        None,
        &device,
        &mut model::on_epochs(|s| {
            println!("epoch {}: {:.1} s, loss {:.4}", s.epoch, s.seconds, s.loss);
        }),
    )?;
    let total = started.elapsed().as_secs_f64();
    println!(
        "train:   ComplEx dim 128, batch {}, {} shared negatives: {:.1} s/epoch, peak RSS {:.2} GiB  (goal < 10 s, < 4 GiB)",
        config.batch_size,
        config.negatives,
        total / config.epochs as f64,
        peak_rss_gib()
    );
    let sample = env("EVAL_HIDDEN", 0);
    if sample > 0 {
        let ids: HashMap<&str, u32> = batch
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.as_str(), i as u32))
            .collect();
        let rels: HashMap<&str, u32> = batch
            .relations
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i as u32))
            .collect();
        let hidden = tsv::read_triples(
            &std::path::Path::new(&dir).join("hidden.tsv"),
            OnInvalid::Fail,
        )?;
        let mut test: Vec<Triple> = hidden
            .triples
            .iter()
            .filter_map(|&[h, r, t]| {
                let id = |i: u32| ids.get(hidden.entities[i as usize].key.as_str()).copied();
                let r = rels.get(hidden.relations[r as usize].as_str()).copied()?;
                Some(Triple::new(id(h)?, r, id(t)?))
            })
            .collect();
        test.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
        test.truncate(sample);
        let m = model::evaluate(&out.model.scorer(&device), &test, &known, 256);
        println!(
            "quality: {} hidden edges, filtered realistic ranks: MRR {:.4}, Hits@1 {:.4}, Hits@10 {:.4}",
            test.len(),
            m.both.mrr,
            m.both.hits_at_1,
            m.both.hits_at_10
        );
    }

    let scorer = out.model.scorer(&device);
    let mut times = Vec::new();
    for i in 0..50u32 {
        let t = train[(i as usize * 7919) % train.len()];
        let started = Instant::now();
        let s = scorer.tails(&[(t.head, t.relation)]);
        times.push(started.elapsed().as_secs_f64());
        assert_eq!(s.len(), n);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    // ComplEx: 4 real multiply-adds per complex dimension per candidate = 8 flops x 128 dims.
    let flops = n as f64 * 8.0 * 128.0;
    println!(
        "score:   all {n} tails of one (head, relation): median {:.2} ms = {:.1} M scores/s, {:.1} GFLOP/s  (goal < 2 ms)",
        median * 1e3,
        n as f64 / median / 1e6,
        flops / median / 1e9
    );
    Ok(())
}
