//! The review app under load (issue 7): the queue page with 10,000 waiting hypotheses (paged),
//! and 50 reviewers posting verdicts at once over loopback. Reports server-side page times
//! and verdict latency percentiles, and checks afterwards that no verdict was lost or
//! duplicated. Prints figures; asserts only the database check.
//!
//! Run: `cargo bench --bench review_load` (`HYPOTHESES`, `REVIEWERS`, `EACH` to vary).

mod common;

use hypograph::store::{Role, RoundState, RoundUpdate, StageMeta};
use rand::{Rng, SeedableRng};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, reviewers, each) = (
        env("HYPOTHESES", 10_000),
        env("REVIEWERS", 50),
        env("EACH", 40),
    );
    let work = tempfile::tempdir_in("target")?;
    let (store, graph) = common::umls_store(work.path()).await?;
    let mut ranked = common::unknown_batch(&graph, n, 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for h in &mut ranked {
        h.acquisition = rng.random();
    }
    let spec = "name: bench\nstages:\n  - name: experts\n    plugin: human\n";
    let round = common::round_at_ranking(&store, "bench", spec).await?;
    let stage = StageMeta {
        stage: 0,
        name: "experts".into(),
        kind: "human".into(),
        quorum: 1,
        rule: "majority".into(),
        stale_below: None,
    };
    store
        .insert_hypotheses(round.id, RoundState::Ranking, None, 1, &[stage], &ranked)
        .await?;
    let ids: Vec<i64> = store
        .stage_items(round.id, 0, "queued")
        .await?
        .iter()
        .map(|h| h.id)
        .collect();
    store.mark_submitted(0, &ids, None).await?;
    store
        .advance_round(
            round.id,
            RoundState::Dispatching,
            RoundState::Awaiting,
            0,
            RoundUpdate::default(),
        )
        .await?;
    let mut tokens = Vec::new();
    for i in 0..reviewers {
        tokens.push(store.add_user(&format!("r{i:02}"), Role::Reviewer).await?);
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(hypograph::server::serve(
        store.clone(),
        None,
        listener,
        stop,
    ));
    let client = reqwest::Client::new();

    // The queue page: server time of a paged render with every waiting hypothesis in the table.
    let mut html_ms = Vec::new();
    let mut api_ms = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let r = client
            .get(format!("{base}/queue?page={}", i % 3))
            .header("Cookie", format!("hg_token={}", tokens[0]))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "queue page: {}", r.status());
        let _ = r.text().await?;
        html_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let r = client
            .get(format!("{base}/api/v1/queue?limit=25"))
            .bearer_auth(&tokens[0])
            .send()
            .await?;
        let _ = r.text().await?;
        api_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // 50 reviewers at once, each answering its own slice, plus one repeat each (must be 409).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (r, token) in tokens.iter().enumerate() {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        let mine: Vec<i64> = ids[r * each..(r + 1) * each].to_vec();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut conflicts = 0;
            for (k, id) in mine.iter().chain(mine.first()).enumerate() {
                let t = Instant::now();
                let resp = client
                    .post(format!("{base}/api/v1/hypotheses/{id}/verdict"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "verdict": if k % 2 == 0 { "confirmed" } else { "refuted" } }))
                    .send()
                    .await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                match resp.status().as_u16() {
                    200 => {}
                    409 => conflicts += 1,
                    s => anyhow::bail!("verdict answered HTTP {s}"),
                }
            }
            Ok::<_, anyhow::Error>((lat, conflicts))
        }));
    }
    let mut lat = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (l, c) = t.await??;
        lat.extend(l);
        conflicts += c;
    }
    let wall = started.elapsed().as_secs_f64();
    let posted = reviewers * each;
    let counts = store.hypothesis_counts(round.id).await?;
    let stage_counts = store.stage_counts(round.id).await?;
    let answered = stage_counts
        .get(&(0, "answered".to_owned()))
        .copied()
        .unwrap_or(0);
    let mut standing = 0usize;
    for id in &ids[..posted] {
        standing += store.verdicts(*id).await?.len();
    }
    println!(
        "machine: {} cores; {n} hypotheses waiting; {reviewers} reviewers",
        std::thread::available_parallelism()?.get()
    );
    println!(
        "queue page (HTML, 25 cards with evidence): median {:.1} ms, p99 {:.1} ms  (goal < 100 ms)",
        pct(&mut html_ms.clone(), 0.5),
        pct(&mut html_ms, 0.99)
    );
    println!(
        "queue API (25 items): median {:.1} ms, p99 {:.1} ms",
        pct(&mut api_ms.clone(), 0.5),
        pct(&mut api_ms, 0.99)
    );
    println!(
        "verdicts: {} posts in {:.2} s ({:.0}/s); latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        wall,
        lat.len() as f64 / wall,
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat.clone(), 0.99),
        pct(&mut lat, 1.0)
    );
    println!(
        "check: {posted} distinct verdicts posted, {standing} stored, {answered} items answered, {conflicts} repeats refused (409); statuses {counts:?}"
    );
    anyhow::ensure!(
        standing == posted && answered as usize == posted && conflicts == reviewers,
        "lost or duplicated verdicts"
    );
    println!("no verdict lost or duplicated");
    Ok(())
}
