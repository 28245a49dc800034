//! The message-passing models (issue 26) at Hetionet's size: building the graphs, all tails of
//! one query, batched queries per second, a fine-tuning step, where the time goes (sparse sums
//! against dense updates) and peak memory. ULTRA's embedded weights, full propagation.
//!
//! Run: `cargo bench --bench gnn`. `GNN_GRAPH` is a `head<TAB>relation<TAB>tail` file
//! (default: the shared Hetionet split's training graph as `benches/hetionet.sh` writes it,
//! `target/hetionet-bench/split/standard/train.tsv`); `GNN_BATCHES=1,8,16` the batch sizes
//! scored; `GNN_REPS` repetitions per figure (median); `GNN_TRAIN_STEPS` fine-tuning steps.

use hypograph::graph::{Interner, Triple};
use hypograph::model::gnn::grad::Batch;
use hypograph::model::gnn::{self, Adjacency, Net, Removed};
use hypograph::model::{Categories, Context};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn env<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let path = std::env::var("GNN_GRAPH")
        .unwrap_or_else(|_| "target/hetionet-bench/split/standard/train.tsv".into());
    let reps: usize = env("GNN_REPS").unwrap_or(3);
    println!("rayon threads: {}", rayon::current_num_threads());
    let (mut ents, mut rels) = (Interner::default(), Interner::default());
    let t = Instant::now();
    let triples: Vec<Triple> = hypograph::graph::tsv::read_triples(
        std::path::Path::new(&path),
        hypograph::graph::OnInvalid::Fail,
    )?
    .triples_in(&mut ents, &mut rels);
    let (n, m) = (ents.len(), rels.len());
    println!(
        "graph {path}: {n} entities, {m} relations, {} triples (read in {:.1} s)",
        triples.len(),
        t.elapsed().as_secs_f64()
    );
    let context = Context::new(n, m, &triples, Categories::none(n));
    let t = Instant::now();
    let graph = Adjacency::of_context(&context, &[], 0);
    let rel_graph = graph.relation_graph();
    println!(
        "adjacency ({} directed edges) and relation graph ({} edges): {:.3} s",
        graph.len(),
        rel_graph.len(),
        t.elapsed().as_secs_f64()
    );
    let params = gnn::pretrained(None)?;
    let device = hypograph::model::default_device();
    let net = Net::new(&params, &device);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut pick = |k: usize| -> Vec<(u32, u32)> {
        (0..k)
            .map(|_| {
                let t = triples[rng.random_range(0..triples.len())];
                (t.head, t.relation)
            })
            .collect()
    };
    let batches: Vec<usize> = std::env::var("GNN_BATCHES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 16]);
    for &b in &batches {
        let before = gnn::net::phases();
        let mut secs = Vec::new();
        for _ in 0..reps {
            let q = pick(b);
            let t = Instant::now();
            let logits = net.tails(&graph, &rel_graph, &q, &Removed::default());
            secs.push(t.elapsed().as_secs_f64());
            assert_eq!(logits.len(), b * graph.num_nodes);
        }
        let after = gnn::net::phases();
        let total: f64 = secs.iter().sum();
        let (sparse, dense) = (after[0] - before[0], after[1] - before[1]);
        let s = median(secs);
        println!(
            "all tails, batch {b:>2}: {:.0} ms a batch, {:.0} ms a query, {:.1} queries/s | sparse sums {:.0}%, dense {:.0}%, other {:.0}% | peak {:.0} MiB",
            s * 1e3,
            s * 1e3 / b as f64,
            b as f64 / s,
            100.0 * sparse / total,
            100.0 * dense / total,
            100.0 * (total - sparse - dense).max(0.0) / total,
            peak_mib()
        );
    }
    // Pruned scoring (A*Net-style, model::gnn::prune): at most K senders a layer per query,
    // beside full propagation on the same queries: speed, and how much of the full pass's
    // top 10 the pruned one keeps.
    let prunes: Vec<usize> = std::env::var("GNN_PRUNE")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![500, 2000, 8000]);
    let b = 8;
    let q = pick(b);
    let n = graph.num_nodes;
    let full = net.tails(&graph, &rel_graph, &q, &Removed::default());
    let top = |row: &[f32]| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        idx.truncate(10);
        idx
    };
    for &k in &prunes {
        // The backgrounds of the batch's relations (one full pass each) are paid once, by an
        // untimed first call, as a round or an evaluation pays them once for many queries.
        let cache = gnn::prune::Backgrounds::default();
        let t = Instant::now();
        net.tails_pruned(&graph, &rel_graph, &q, k, &cache);
        let warm = t.elapsed().as_secs_f64();
        let mut secs = Vec::new();
        let mut logits = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            logits = net.tails_pruned(&graph, &rel_graph, &q, k, &cache);
            secs.push(t.elapsed().as_secs_f64());
        }
        let kept: usize = (0..b)
            .map(|i| {
                let (f, p) = (
                    top(&full[i * n..(i + 1) * n]),
                    top(&logits[i * n..(i + 1) * n]),
                );
                f.iter().filter(|x| p.contains(x)).count()
            })
            .sum();
        let s = median(secs);
        println!(
            "pruned to {k:>5} nodes a layer, batch {b}: {:.0} ms a batch, {:.1} queries/s (first call, with the backgrounds: {:.1} s); keeps {:.0}% of full propagation's top 10 | peak {:.0} MiB",
            s * 1e3,
            b as f64 / s,
            warm,
            100.0 * kept as f64 / (10 * b) as f64,
            peak_mib()
        );
    }
    // Evidence: the paths that carried one answer (a forward and a backward pass, then the
    // beam search), as `ask` and a round's top hypotheses pay for each.
    let answer = top(&full[..n])[0] as u32;
    let t = Instant::now();
    let paths = net.explain(&graph, &rel_graph, q[0], answer, m as u32, 3);
    println!(
        "explain one answer: {:.0} ms, {} paths{} | peak {:.0} MiB",
        t.elapsed().as_secs_f64() * 1e3,
        paths.len(),
        paths
            .first()
            .map(|p| format!(
                ", the first {} hops with {:.1}% of the score",
                p.hops.len(),
                100.0 * p.share
            ))
            .unwrap_or_default(),
        peak_mib()
    );
    // Fine-tuning steps: batch 8, 128 negatives each, the batch's own edges removed.
    let steps: usize = env("GNN_TRAIN_STEPS").unwrap_or(2);
    let b = 8;
    let mut secs = Vec::new();
    for _ in 0..steps {
        let chosen: Vec<Triple> = (0..b)
            .map(|_| triples[rng.random_range(0..triples.len())])
            .collect();
        let queries: Vec<(u32, u32)> = chosen.iter().map(|t| (t.head, t.relation)).collect();
        let candidates: Vec<Vec<u32>> = chosen
            .iter()
            .map(|t| {
                std::iter::once(t.tail)
                    .chain((0..128).map(|_| rng.random_range(0..n as u32)))
                    .collect()
            })
            .collect();
        let own: Vec<(u32, u32, u32)> = chosen
            .iter()
            .map(|t| (t.head, t.relation, t.tail))
            .collect();
        let removed = Removed::of_queries(&own, m);
        let mut grad = vec![0f32; params.data.len()];
        let t = Instant::now();
        let loss = net.loss_and_grad(
            &graph,
            &rel_graph,
            &Batch {
                queries: &queries,
                candidates: &candidates,
                removed: &removed,
                temperature: 1.0,
            },
            &mut grad,
        );
        secs.push(t.elapsed().as_secs_f64());
        assert!(loss.is_finite());
    }
    if secs.is_empty() {
        return Ok(());
    }
    let s = median(secs);
    println!(
        "fine-tuning step, batch {b}: {:.2} s ({:.0} ms a query; 10,000 queries: {:.1} min) | peak {:.0} MiB",
        s,
        s * 1e3 / b as f64,
        s / b as f64 * 10_000.0 / 60.0,
        peak_mib()
    );
    Ok(())
}
