//! Orchestration overhead of one round (issue 5): 10,000 ranked hypotheses through an instant
//! oracle to an ingested graph version, the model step excluded. Times each engine state and
//! the whole, against the goal of 1 s. Prints figures, asserts nothing.
//!
//! Run: `cargo bench --bench round_overhead` (`HYPOTHESES=N` for another batch size).

use hypograph::engine::{self, Event, Options};
use hypograph::store::{NewHypothesis, OpenMode, RoundState, RoundUpdate, Store};
use hypograph::workflow;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("HYPOTHESES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let work = tempfile::tempdir_in("target")?;
    let train = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/umls/train.txt");
    let store = Store::open(&work.path().join("bench.db"), OpenMode::Create).await?;
    let batch = hypograph::graph::tsv::read_triples(&train, hypograph::graph::OnInvalid::Fail)?;
    store
        .import(&batch, &hypograph::store::ImportOptions::default())
        .await?;
    let graph = store.load_graph(1).await?;

    // n distinct unknown triples; the oracle's truth holds every other one.
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut seen = HashSet::new();
    let mut ranked = Vec::with_capacity(n);
    let mut truth = String::new();
    while ranked.len() < n {
        let (h, r, t) = (
            rng.random_range(0..graph.num_entities() as u32),
            rng.random_range(0..graph.num_relations() as u32),
            rng.random_range(0..graph.num_entities() as u32),
        );
        let triple = hypograph::graph::Triple::new(h, r, t);
        if h == t || graph.contains(triple) || !seen.insert(triple) {
            continue;
        }
        let keys = [
            graph.entity_key(h).to_owned(),
            graph.relation_key(r).to_owned(),
            graph.entity_key(t).to_owned(),
        ];
        if ranked.len() % 2 == 0 {
            truth.push_str(&format!("{}\t{}\t{}\n", keys[0], keys[1], keys[2]));
        }
        let [head, relation, tail] = keys;
        ranked.push(NewHypothesis {
            head,
            relation,
            tail,
            score: rng.random(),
            spread: 0.1,
            acquisition: 1.0 - ranked.len() as f64 / n as f64,
            rank: ranked.len() as i64,
        });
    }
    let truth_path = work.path().join("truth.tsv");
    std::fs::write(&truth_path, truth)?;
    let text = format!(
        "name: bench\nstages:\n  - name: assay\n    plugin: oracle\n    truth: {}\n    batch: 1000\n",
        truth_path.display()
    );
    let loaded = workflow::parse(&work.path().join("bench.yaml"), &text, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let round = store.create_round("bench", &loaded.text, 1, None).await?;
    for (from, to) in [
        (RoundState::Planned, RoundState::Training),
        (RoundState::Training, RoundState::Generating),
        (RoundState::Generating, RoundState::Ranking),
    ] {
        let update = RoundUpdate {
            base_version: Some(1),
            ..RoundUpdate::default()
        };
        store.advance_round(round.id, from, to, 0, update).await?;
    }

    println!(
        "machine: {} cores; {n} hypotheses, UMLS graph, instant oracle (half confirmed)",
        std::thread::available_parallelism()?.get()
    );
    let total = Instant::now();
    let started = Instant::now();
    store
        .insert_hypotheses(round.id, RoundState::Ranking, None, 1, &[], &ranked)
        .await?;
    let mut phases: Vec<(String, f64)> =
        vec![("store ranked batch".into(), started.elapsed().as_secs_f64())];
    let mut last = Instant::now();
    let mut current = "dispatching".to_owned();
    let mut on_event = |e: &Event| {
        if let Event::State { state, .. } = e {
            phases.push((current.clone(), last.elapsed().as_secs_f64()));
            current = state.to_string();
            last = Instant::now();
        }
    };
    let mut opts = Options {
        data_dir: work.path().join("data"),
        fire_time: None,
        on_event: &mut on_event,
        stop: None,
        wait: std::time::Duration::from_secs(5),
        until: Some(RoundState::Retraining),
    };
    let end = engine::run_round(&store, &loaded, &mut opts).await?;
    let total = total.elapsed().as_secs_f64();
    anyhow::ensure!(
        end.state == RoundState::Retraining,
        "round ended in {}",
        end.state
    );
    let version = end.result_version.unwrap_or(0);
    let info = store.version(version).await?;
    for (phase, secs) in &phases {
        let name = match phase.as_str() {
            "dispatching" => "dispatch + record verdicts",
            "awaiting" => "close stage",
            "ingesting" => "ingest (one version)",
            other => other,
        };
        println!("  {name:<28} {:>8.1} ms", secs * 1000.0);
    }
    println!(
        "ranked -> ingested: {:.3} s for {n} hypotheses ({:.0} per second); version {version} added {} edges  (goal < 1 s)",
        total,
        n as f64 / total,
        info.n_added
    );
    store.close().await;
    Ok(())
}
