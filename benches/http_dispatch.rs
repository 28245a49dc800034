//! Dispatch through the `http` plugin (issue 6): 10,000 hypotheses to a local service that
//! answers instantly, concurrency limit 32, from a stored ranked batch to an ingested graph
//! version, against plain reqwest posting the same batches to the same service at the same
//! concurrency in the same run. Prints figures, asserts nothing.
//!
//! Run: `cargo bench --bench http_dispatch` (`HYPOTHESES`, `BATCH`, `CONCURRENCY` to vary).

mod common;

use axum::Json;
use axum::routing::post;
use futures_util::StreamExt;
use hypograph::engine::{self, Options};
use hypograph::store::RoundState;
use hypograph::workflow;
use serde_json::{Value, json};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The instant assay: every other hypothesis confirmed.
async fn assay(Json(body): Json<Value>) -> Json<Value> {
    let results: Vec<Value> = body["hypotheses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let odd = h["id"].as_i64().unwrap_or(0) % 2 == 1;
            json!({ "key": h["key"], "verdict": if odd { "confirmed" } else { "refuted" }, "confidence": 0.9 })
        })
        .collect();
    Json(json!({ "results": results }))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, batch, concurrency) = (
        env("HYPOTHESES", 10_000),
        env("BATCH", 50),
        env("CONCURRENCY", 32),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let app = axum::Router::new().route("/assay", post(assay));
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}/assay");

    let work = tempfile::tempdir_in("target")?;
    let (store, graph) = common::umls_store(work.path()).await?;
    let ranked = common::unknown_batch(&graph, n, 9);
    let text = format!(
        "name: bench\nstages:\n  - name: assay\n    plugin: http\n    url: {url}\n    batch: {batch}\n    concurrency: {concurrency}\n"
    );
    let loaded = workflow::parse(&work.path().join("bench.yaml"), &text, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let round = common::round_at_ranking(&store, "bench", &loaded.text).await?;
    store
        .insert_hypotheses(round.id, RoundState::Ranking, None, 1, &[], &ranked)
        .await?;

    // The same batches as the plugin sends (with graph context), posted by plain reqwest.
    let items = store.stage_items(round.id, 0, "queued").await?;
    let mut bodies = Vec::new();
    for chunk in items.chunks(batch) {
        let mut hs = Vec::new();
        for h in chunk {
            hs.push(json!({
                "id": h.id, "key": format!("{}:{}:0", round.id, h.id), "head": h.head,
                "relation": h.relation, "tail": h.tail, "head_name": h.head_name,
                "tail_name": h.tail_name, "head_category": h.head_category,
                "tail_category": h.tail_category, "score": h.score, "spread": h.spread,
                "context": { "head": store.neighbours(&h.head, 10).await?, "tail": store.neighbours(&h.tail, 10).await? },
            }));
        }
        bodies.push(json!({ "stage": "assay", "callback_url": null, "hypotheses": hs }));
    }
    let client = reqwest::Client::new();
    let started = Instant::now();
    let answered: usize = futures_util::stream::iter(bodies.iter())
        .map(|b| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let v: Value = client.post(&url).json(b).send().await?.json().await?;
                Ok::<usize, reqwest::Error>(v["results"].as_array().map_or(0, Vec::len))
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| r.unwrap_or(0))
        .sum();
    let plain = started.elapsed().as_secs_f64();

    let mut on_event = |_: &engine::Event| {};
    let mut opts = Options {
        data_dir: work.path().join("data"),
        fire_time: None,
        on_event: &mut on_event,
        stop: None,
        wait: std::time::Duration::from_secs(5),
        until: Some(RoundState::Retraining),
        lease_lost: None,
    };
    let started = Instant::now();
    let end = engine::run_round(&store, &loaded, &mut opts).await?;
    let ours = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        end.state == RoundState::Retraining,
        "ended in {}",
        end.state
    );
    let version = store.version(end.result_version.unwrap_or(0)).await?;
    println!(
        "machine: {} cores; {n} hypotheses, batches of {batch}, concurrency {concurrency}, local instant service",
        std::thread::available_parallelism()?.get()
    );
    println!(
        "plain reqwest: {answered} answers in {:.3} s ({:.0} per second)",
        plain,
        answered as f64 / plain
    );
    println!(
        "hypograph (dispatch + record verdicts + close stage + ingest, version {} with {} edges): {:.3} s ({:.0} per second)  (goal >= 5,000/s)",
        version.id,
        version.n_added,
        ours,
        n as f64 / ours
    );
    println!(
        "overhead vs plain reqwest: {:.1} us per hypothesis ({:.2}x the plain time)",
        (ours - plain) / n as f64 * 1e6,
        ours / plain
    );
    store.close().await;
    Ok(())
}
