//! The review app under load: the queue page with 10,000 waiting hypotheses (paged), 50
//! reviewers posting verdicts at once over loopback, and reviewers racing on the same items
//! of stages with a quorum of 2 and of 3. Reports page times and verdict latency percentiles,
//! and checks afterwards that no verdict was lost or duplicated and that each race item was
//! decided exactly once. Prints figures; asserts only the database checks.
//!
//! Run: `cargo bench --bench review_load` (`HYPOTHESES`, `REVIEWERS`, `EACH`, `RACERS`,
//! `RACE_ITEMS` to vary). With `HYPOGRAPH_BENCH_POSTGRES` (an admin URL: `.ci/postgres start
//! DIR` prints one) the same load also runs against a review server on PostgreSQL.

mod common;

use hypograph::plugin::Outcome;
use hypograph::store::{Role, RoundState, RoundUpdate, StageMeta, Store};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir_in("target")?;
    println!("== SQLite");
    load(hypograph::store::Location::Sqlite(
        work.path().join("bench.db"),
    ))
    .await?;
    if let Some(pg) = common::postgres_database("review").await? {
        println!("== PostgreSQL");
        load(hypograph::store::Location::Postgres(pg.url.clone())).await?;
    }
    Ok(())
}

/// The whole load against a fresh database at `at`.
async fn load(at: hypograph::store::Location) -> anyhow::Result<()> {
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
    let (racers, race_items) = (env("RACERS", 12), env("RACE_ITEMS", 200));
    let (store, graph) = common::umls_store_at(at).await?;
    let mut ranked = common::unknown_batch(&graph, n, 3);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for h in &mut ranked {
        h.acquisition = rng.random();
    }
    let spec = "name: bench\nstages:\n  - name: experts\n    plugin: human\n";
    let round = common::round_at_ranking(&store, "bench", spec).await?;
    let ids = awaiting_review(&store, round.id, 1, &ranked).await?;
    let mut tokens = Vec::new();
    for i in 0..reviewers {
        tokens.push(store.add_user(&format!("r{i:02}"), Role::Reviewer).await?);
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(hypograph::server::serve(
        store.clone(),
        hypograph::server::ServeOptions::default(),
        listener,
        stop,
    ));
    let client = reqwest::Client::new();
    // The first reviewer's web session, as signing in makes it.
    let reviewer = store
        .user_by_token(&tokens[0])
        .await?
        .ok_or(anyhow::anyhow!("no reviewer"))?;
    let session = format!(
        "hg_session={}",
        store.start_session(&reviewer, &tokens[0]).await?
    );

    // The queue page: server time of a paged render with every waiting hypothesis in the table.
    let mut html_ms = Vec::new();
    let mut api_ms = Vec::new();
    for i in 0..20 {
        let t = Instant::now();
        let r = client
            .get(format!("{base}/queue?page={}", i % 3))
            .header("Cookie", session.as_str())
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

    for quorum in [2, 3] {
        race(
            &store,
            &client,
            &base,
            &tokens[..racers.min(tokens.len())],
            quorum,
            race_items,
        )
        .await?;
    }
    Ok(())
}

/// Stores `ranked` at a one-stage human round with `quorum`, submitted and awaiting review;
/// returns the hypothesis ids.
async fn awaiting_review(
    store: &Store,
    round: i64,
    quorum: i64,
    ranked: &[hypograph::store::NewHypothesis],
) -> anyhow::Result<Vec<i64>> {
    let stage = StageMeta {
        stage: 0,
        name: "experts".into(),
        kind: "human".into(),
        quorum,
        rule: "majority".into(),
        stale_below: None,
        callbacks: false,
    };
    store
        .insert_hypotheses(round, RoundState::Ranking, None, 1, &[stage], ranked)
        .await?;
    let ids: Vec<i64> = store
        .stage_items(round, 0, "queued")
        .await?
        .iter()
        .map(|h| h.id)
        .collect();
    store.mark_submitted(0, &ids, None).await?;
    store
        .advance_round(
            round,
            RoundState::Dispatching,
            RoundState::Awaiting,
            0,
            RoundUpdate::default(),
        )
        .await?;
    Ok(ids)
}

/// One race: every reviewer answers every item of a quorum-`quorum` stage, each in its own
/// shuffled order, all at once. Exactly `quorum` answers per item may stand (the rest are
/// refused with 409 once the item is complete), exactly one of them reports the item
/// answered, the stored verdicts are exactly the accepted ones, and closing the stage decides
/// each item once, as the majority of its accepted answers says.
async fn race(
    store: &Store,
    client: &reqwest::Client,
    base: &str,
    tokens: &[String],
    quorum: i64,
    items: usize,
) -> anyhow::Result<()> {
    let graph = store.load_graph(1).await?;
    let ranked = common::unknown_batch(&graph, items, 10 + quorum as u64);
    let spec = format!(
        "name: race{quorum}\nstages:\n  - name: experts\n    plugin: human\n    quorum: {quorum}\n"
    );
    let round = common::round_at_ranking(store, &format!("race{quorum}"), &spec).await?;
    let ids = awaiting_review(store, round.id, quorum, &ranked).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (r, token) in tokens.iter().enumerate() {
        let (client, base, token) = (client.clone(), base.to_owned(), token.clone());
        let mut mine = ids.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1000 * quorum as u64 + r as u64);
        mine.shuffle(&mut rng);
        tasks.push(tokio::spawn(async move {
            // (hypothesis, verdict, reported the item answered) per accepted post.
            let mut accepted = Vec::new();
            let (mut lat, mut refused) = (Vec::new(), 0usize);
            for id in mine {
                let verdict = if rng.random_bool(0.5) {
                    "confirmed"
                } else {
                    "refuted"
                };
                let t = Instant::now();
                let resp = client
                    .post(format!("{base}/api/v1/hypotheses/{id}/verdict"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "verdict": verdict }))
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                match status {
                    200 => accepted.push((id, verdict, body["answered"] == true)),
                    409 => refused += 1,
                    s => anyhow::bail!("verdict answered HTTP {s}: {body}"),
                }
            }
            Ok::<_, anyhow::Error>((accepted, lat, refused))
        }));
    }
    let mut per_item: BTreeMap<i64, Vec<&'static str>> = BTreeMap::new();
    let mut decided_by_post: BTreeMap<i64, usize> = BTreeMap::new();
    let (mut lat, mut refused) = (Vec::new(), 0usize);
    for t in tasks {
        let (a, l, r) = t.await??;
        for (id, verdict, answered) in a {
            per_item.entry(id).or_default().push(verdict);
            *decided_by_post.entry(id).or_default() += usize::from(answered);
        }
        lat.extend(l);
        refused += r;
    }
    let wall = started.elapsed().as_secs_f64();
    let posts = lat.len();

    let mut problems = Vec::new();
    let mut stored_total = 0usize;
    let mut expected: BTreeMap<&'static str, usize> = BTreeMap::new();
    for id in &ids {
        let mine = per_item.get(id).cloned().unwrap_or_default();
        if mine.len() as i64 != quorum {
            problems.push(format!("item {id}: {} answers accepted", mine.len()));
        }
        if decided_by_post.get(id).copied().unwrap_or(0) != 1 {
            problems.push(format!(
                "item {id}: reported answered {:?} times",
                decided_by_post.get(id)
            ));
        }
        let mut stored: Vec<String> = store
            .verdicts(*id)
            .await?
            .iter()
            .filter_map(|v| v["verdict"].as_str().map(str::to_owned))
            .collect();
        stored_total += stored.len();
        let mut posted: Vec<String> = mine.iter().map(|v| (*v).to_owned()).collect();
        stored.sort();
        posted.sort();
        if stored != posted {
            problems.push(format!("item {id}: stored {stored:?}, accepted {posted:?}"));
        }
        let votes: Vec<(Outcome, bool)> = mine
            .iter()
            .map(|v| {
                (
                    if *v == "confirmed" {
                        Outcome::Confirmed
                    } else {
                        Outcome::Refuted
                    },
                    false,
                )
            })
            .collect();
        if let Some(o) = hypograph::store::decide(&votes, false) {
            *expected.entry(o.as_str()).or_default() += 1;
        }
    }
    let close = store
        .close_stage(
            round.id,
            0,
            &[Outcome::Confirmed],
            true,
            false,
            RoundState::Awaiting,
            RoundState::Ingesting,
            0,
        )
        .await?
        .ok_or_else(|| anyhow::anyhow!("an item was still open when the stage closed"))?;
    let again = store
        .close_stage(
            round.id,
            0,
            &[Outcome::Confirmed],
            true,
            false,
            RoundState::Awaiting,
            RoundState::Ingesting,
            0,
        )
        .await;
    let counts = store.hypothesis_counts(round.id).await?;
    let got: BTreeMap<&'static str, usize> = [
        ("confirmed", close.confirmed),
        ("inconclusive", close.inconclusive),
        ("refuted", close.refuted),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    println!(
        "race, quorum {quorum}: {} reviewers on the same {items} items, {posts} posts in {wall:.2} s ({:.0}/s); latency median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        tokens.len(),
        posts as f64 / wall,
        pct(&mut lat.clone(), 0.5),
        pct(&mut lat.clone(), 0.99),
        pct(&mut lat, 1.0)
    );
    println!(
        "check: {} answers accepted ({quorum} per item), {stored_total} stored, {refused} refused (409) once items were complete; decided at close {got:?} (expected from the accepted answers {expected:?}); statuses {counts:?}; a second close refused: {}",
        per_item.values().map(Vec::len).sum::<usize>(),
        again.is_err()
    );
    if got != expected {
        problems.push(format!(
            "close decided {got:?}, the answers say {expected:?}"
        ));
    }
    if again.is_ok() || counts.contains_key("active") {
        problems.push("the stage closed twice or left items open".into());
    }
    anyhow::ensure!(
        problems.is_empty(),
        "quorum {quorum}: {} problems, first: {}",
        problems.len(),
        problems.join("; ").chars().take(2000).collect::<String>()
    );
    println!(
        "race, quorum {quorum}: no verdict lost or duplicated, each item decided exactly once"
    );
    Ok(())
}
