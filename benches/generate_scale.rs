//! Candidate generation at Hetionet scale (issue 13): every relation of the synthetic graph at
//! scale 1, the best 200 unknown pairs of each within the relation's observed domain and
//! range, scored by a 3-member ensemble as a round does. Prints time and the peak memory of
//! generation alone (the peak is reset after training through /proc/self/clear_refs).
//!
//! Run: `python3 ../shared/tools/synth_kg.py --out target/synth1 --scale 1 &&
//!       SYNTH_DIR=target/synth1 cargo bench --bench generate_scale`
//! (`MEMBERS`, `TOP_K`, `DIM`, `EPOCHS` adjust it).

use hypograph::acquire::{self, GenerateSpec};
use hypograph::graph::{Graph, OnInvalid, Triple, kgx};
use hypograph::model::{self, Known, LossKind, Regime, TrainConfig, TrainSet};
use std::collections::HashSet;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn gib(b: Option<u64>) -> f64 {
    b.map_or(f64::NAN, |b| b as f64 / (1u64 << 30) as f64)
}

fn current_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() -> anyhow::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::var("SYNTH_DIR").unwrap_or_else(|_| "target/synth1".into()),
    );
    let batch = kgx::read_kgx(
        &dir.join("nodes.tsv"),
        &dir.join("edges.tsv"),
        OnInvalid::Fail,
    )?;
    let triples: Vec<Triple> = batch
        .triples
        .iter()
        .map(|&[h, r, t]| Triple::new(h, r, t))
        .collect();
    let graph = Graph::new(
        batch
            .entities
            .iter()
            .map(|e| (e.key.as_str().into(), e.category.as_str().into()))
            .collect(),
        batch.relations.iter().map(|r| r.as_str().into()).collect(),
        triples.clone(),
    )?;
    let (n, m) = (graph.num_entities(), graph.num_relations());
    println!(
        "graph: {n} entities, {m} relations, {} triples",
        triples.len()
    );

    let config = TrainConfig::new()
        .with_dim(env("DIM", 128))
        .with_regime(Regime::Negatives)
        .with_loss(LossKind::Softplus)
        .with_negatives(256)
        .with_batch_size(4096)
        .with_lr(0.01)
        .with_epochs(env("EPOCHS", 1))
        .with_eval_every(0)
        .with_patience(0);
    let known = Known::new(&[&triples]);
    let set = TrainSet {
        num_entities: n,
        num_relations: m,
        train: &triples,
        valid: &[],
        known: &known,
        refuted: &[],
    };
    let device = model::default_device();
    let started = Instant::now();
    let out = model::train(&config, &set, None, &device, &mut |_| {})?;
    println!("trained: {:.1} s", started.elapsed().as_secs_f64());

    let members = env("MEMBERS", 3);
    // The same weights in every member: generation's cost is per member, whatever the weights.
    let scorers: Vec<model::Scorer<'_>> = (0..members).map(|_| out.model.scorer(&device)).collect();
    let spec = GenerateSpec {
        relations: Vec::new(),
        top_k: env("TOP_K", 200),
        max_candidates: None,
        batch: 64,
        seed: 1,
    };
    let before = current_rss();
    // Resets VmHWM to the current RSS, so the peak below is generation's own.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let candidates = acquire::generate(&graph, &HashSet::new(), scorers.as_slice(), &spec);
    let seconds = started.elapsed().as_secs_f64();
    let peak = hypograph::logging::peak_rss_bytes();
    let mut per_category = std::collections::HashMap::<&str, u64>::new();
    for e in &batch.entities {
        *per_category.entry(e.category.as_str()).or_default() += 1;
    }
    let count = |cats: &std::collections::BTreeSet<&str>| -> u64 {
        cats.iter()
            .map(|c| per_category.get(c).copied().unwrap_or(0))
            .sum()
    };
    let mut pairs: u64 = 0;
    for r in 0..m as u32 {
        let (h, t) = graph.domain_range(r);
        pairs += count(&h) * count(&t);
    }
    println!(
        "generate: {} relations x top {} with {members} members: {} candidates in {seconds:.1} s \
         ({:.0} M pairs in the relations' domain x range, {:.1} M pairs/s per member)",
        m,
        spec.top_k,
        candidates.len(),
        pairs as f64 / 1e6,
        pairs as f64 * members as f64 / seconds / 1e6 / members as f64,
    );
    println!(
        "memory: RSS before {:.2} GiB, peak during generation {:.2} GiB{}",
        gib(before),
        gib(peak),
        if reset {
            ""
        } else {
            " (peak not reset: includes training)"
        }
    );
    Ok(())
}
