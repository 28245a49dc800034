//! The review queue page while the same process trains: `hypograph daemon --bind` runs a
//! workflow whose rounds fire back to back (train, rank, oracle, ingest, retrain, evaluate)
//! while a reviewer loads `/queue` of a second workflow waiting at a human stage. Then the
//! daemon is stopped and the same page is timed under `hypograph serve` alone. Prints request
//! latency percentiles for both and how busy the daemon was (seconds spent training per
//! second of the window). Goal: p99 < 200 ms while training, on 2 cores.
//!
//! Run: `cargo bench --bench serve_while_training` (`SECONDS` to vary the window).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_hypograph");

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(rel)
        .display()
        .to_string()
}

/// Starts `hypograph ARGS --bind 127.0.0.1:0` and returns it with its base URL.
fn start(db: &Path, args: &[&str]) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(EXE)
        .arg("--db")
        .arg(db)
        .args(args)
        .args(["--bind", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut reader = BufReader::new(child.stderr.take().ok_or(anyhow::anyhow!("stderr"))?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            anyhow::bail!("the server exited before printing its address");
        }
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            let base = url.to_owned();
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            return Ok((child, base));
        }
    }
}

/// Signs in through the sign-in form as a browser does; the session's `Cookie` header.
async fn sign_in(base: &str, token: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    };
    let page = client.get(format!("{base}/login")).send().await?;
    let login = cookie(&page, "hg_login").ok_or(anyhow::anyhow!("no login cookie"))?;
    let html = page.text().await?;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or(anyhow::anyhow!("no csrf field on the sign-in page"))?
        .to_owned();
    let resp = client
        .post(format!("{base}/login"))
        .header("Cookie", login)
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await?;
    cookie(&resp, "hg_session").ok_or(anyhow::anyhow!("sign-in refused: {}", resp.status()))
}

/// Loads `/queue` for `seconds`, one request after another; returns latencies in ms.
async fn time_queue(base: &str, token: &str, seconds: u64) -> anyhow::Result<Vec<f64>> {
    let client = reqwest::Client::new();
    let session = sign_in(base, token).await?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut ms = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let resp = client
            .get(format!("{base}/queue"))
            .header("Cookie", session.as_str())
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status.is_success(), "queue page: {status}");
        anyhow::ensure!(
            body.contains("model probability"),
            "the queue page shows no waiting item"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(ms)
}

fn report(name: &str, ms: &mut [f64]) {
    let n = ms.len();
    println!(
        "{name}: {n} requests, median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(ms, 0.5),
        pct(ms, 0.99),
        pct(ms, 1.0)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    std::fs::create_dir_all("target")?;
    let work = tempfile::tempdir_in("target")?;
    let db = work.path().join("bench.db");
    let wf = work.path().join("workflows");
    std::fs::create_dir_all(&wf)?;
    let common = format!(
        "graph:\n  import: {}\nevaluate:\n  test: {}\n  valid: {}\n",
        data("umls/demo-visible.tsv"),
        data("umls/test.txt"),
        data("umls/valid.txt")
    );
    // Waits for people: its items fill the queue page.
    std::fs::write(
        wf.join("reviewed.yaml"),
        format!(
            "name: reviewed\nschedule: \"*/2 * * * * *\"\n{common}\
             model:\n  dim: 32\n  epochs: 5\n  ensemble: 1\n\
             rank:\n  batch: 100\n  max_per_entity: 10\n\
             stages:\n  - name: experts\n    plugin: human\n    timeout: 72h\n"
        ),
    )?;
    // Keeps the daemon's CPUs busy: a round every second that trains, ranks, asks the oracle,
    // ingests, retrains and evaluates.
    std::fs::write(
        wf.join("busy.yaml"),
        format!(
            "name: busy\nschedule: \"* * * * * *\"\n{common}\
             model:\n  dim: 128\n  epochs: 60\n  retrain_epochs: 40\n  ensemble: 3\n\
             rank:\n  batch: 50\n  max_per_entity: 3\n\
             stages:\n  - name: assay\n    plugin: oracle\n    truth: {}\n",
            data("umls/demo-hidden.tsv")
        ),
    )?;
    let out = Command::new(EXE)
        .arg("--db")
        .arg(&db)
        .args(["user", "add", "alice", "--role", "reviewer"])
        .output()?;
    anyhow::ensure!(out.status.success(), "user add failed");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let wf_arg = wf.display().to_string();
    let (mut daemon, base) = start(&db, &["daemon", "--workflows", &wf_arg])?;
    // Wait until the reviewed workflow's items wait in the queue.
    let client = reqwest::Client::new();
    let ready_by = Instant::now() + Duration::from_secs(300);
    loop {
        anyhow::ensure!(Instant::now() < ready_by, "no queue after 300 s");
        let r = client
            .get(format!("{base}/api/v1/queue?limit=1"))
            .bearer_auth(&token)
            .send()
            .await;
        if let Ok(r) = r
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["items"].as_array().is_some_and(|a| !a.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let models_before = count_models(&db)?;
    let window = Instant::now();
    let mut busy = time_queue(&base, &token, seconds).await?;
    let elapsed = window.elapsed().as_secs_f64();
    let (trained, train_seconds) = trained_since(&db, models_before)?;
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();

    let (mut serve, base) = start(&db, &["serve"])?;
    let mut idle = time_queue(&base, &token, seconds.min(20)).await?;
    let _ = serve.kill();
    let _ = serve.wait();

    println!(
        "daemon trained {trained} models in the {elapsed:.0} s window: {train_seconds:.1} s of training ({:.0}% of the window), plus ranking and evaluation",
        100.0 * train_seconds / elapsed
    );
    report("queue page while the daemon trains", &mut busy);
    report("queue page, serve alone", &mut idle);
    let ratio = pct(&mut busy, 0.99) / pct(&mut idle, 0.99);
    println!("p99 while training / p99 idle: {ratio:.2}x (goal: p99 < 200 ms while training)");
    Ok(())
}

/// Rows in `models` so far.
fn count_models(db: &Path) -> anyhow::Result<i64> {
    Ok(trained_rows(db)?.len() as i64)
}

fn trained_since(db: &Path, before: i64) -> anyhow::Result<(i64, f64)> {
    let rows = trained_rows(db)?;
    let new: Vec<f64> = rows.into_iter().skip(before as usize).collect();
    Ok((new.len() as i64, new.iter().sum()))
}

/// Training seconds of every model row, oldest first.
fn trained_rows(db: &Path) -> anyhow::Result<Vec<f64>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let db = db.to_owned();
    std::thread::spawn(move || {
        rt.block_on(async move {
            use sqlx::{ConnectOptions, Row};
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db)
                .read_only(true)
                .connect()
                .await?;
            let rows = sqlx::query(
                "SELECT coalesce(json_extract(metrics, '$.seconds'), 0.0) FROM models ORDER BY id",
            )
            .fetch_all(&mut conn)
            .await?;
            rows.iter()
                .map(|r| r.try_get::<f64, _>(0).map_err(anyhow::Error::from))
                .collect()
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("reading models panicked"))?
}
