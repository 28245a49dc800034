//! Orchestration overhead of one round (issue 5): 10,000 ranked hypotheses through an instant
//! oracle to an ingested graph version, the model step excluded. Times each engine state and
//! the whole, against the goal of 1 s. Prints figures, asserts nothing.
//!
//! Run: `cargo bench --bench round_overhead` (`HYPOTHESES=N` for another batch size). With
//! `HYPOGRAPH_BENCH_POSTGRES` (an admin URL: `.ci/postgres start DIR` prints one) the same
//! round also runs on a PostgreSQL database, in the same run.

mod common;

use hypograph::engine::{self, Event, Options};
use hypograph::store::{Location, RoundState};
use hypograph::workflow;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("HYPOTHESES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    println!(
        "machine: {} cores; {n} hypotheses, UMLS graph, instant oracle (half confirmed)",
        std::thread::available_parallelism()?.get()
    );
    let work = tempfile::tempdir_in("target")?;
    round(n, Location::Sqlite(work.path().join("bench.db")), "SQLite").await?;
    if let Some(pg) = common::postgres_database("round").await? {
        round(n, Location::Postgres(pg.url.clone()), "PostgreSQL").await?;
    }
    Ok(())
}

/// One round of `n` hypotheses on a fresh database at `at`.
async fn round(n: usize, at: Location, label: &str) -> anyhow::Result<()> {
    println!("{label}:");
    let work = tempfile::tempdir_in("target")?;
    let (store, graph) = common::umls_store_at(at).await?;
    let ranked = common::unknown_batch(&graph, n, 5);
    // The oracle's truth holds every other one.
    let truth: String = ranked
        .iter()
        .step_by(2)
        .map(|h| format!("{}\t{}\t{}\n", h.head, h.relation, h.tail))
        .collect();
    let truth_path = work.path().join("truth.tsv");
    std::fs::write(&truth_path, truth)?;
    let text = format!(
        "name: bench\nstages:\n  - name: assay\n    plugin: oracle\n    truth: {}\n    batch: 1000\n",
        truth_path.display()
    );
    let loaded = workflow::parse(&work.path().join("bench.yaml"), &text, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let round = common::round_at_ranking(&store, "bench", &loaded.text).await?;

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
        lease_lost: None,
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
