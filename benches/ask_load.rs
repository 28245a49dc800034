//! `POST /api/v1/ask` under load (issue 24): 20 reviewers each send a maximal prompt (every
//! limit of `ask::limits` reached, the candidates close to theirs) at once to the real
//! server on a Hetionet-shaped synthetic graph. Samples the server's memory (VmRSS, VmHWM
//! from /proc) and the latency of `/healthz` and the queue page throughout, and prints them
//! with the asks' statuses and times. Goal: RSS under 2 GiB, both pages under 200 ms.
//!
//! Run: `cargo bench --bench ask_load` (`SCALE`: the graph's size, 1 = Hetionet's; `USERS`;
//! `SYNTH_DIR`: a graph `synth_kg.py` already generated; `SYNTH_KG`: the generator's path,
//! default `../shared/tools/synth_kg.py` beside the repository). The graph is generated into
//! a temporary directory, imported, and a small model (one member, dim 16, one epoch)
//! trained: the cheapest kind `ask` answers with, since the limits, not the model, are
//! under test.

use hypograph::ask::limits;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_hypograph");

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// `hypograph --db DB ARGS`, its stdout; fails with its stderr.
fn hg(db: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(EXE).arg("--db").arg(db).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "hypograph {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The generated graph's directory: `SYNTH_DIR`, or one generated into `work`.
fn synth(work: &Path, scale: f64) -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("SYNTH_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::env::var("SYNTH_KG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            [
                "../shared/tools/synth_kg.py",
                "../../shared/tools/synth_kg.py",
            ]
            .iter()
            .map(|p| manifest.join(p))
            .find(|p| p.is_file())
            .unwrap_or_else(|| manifest.join("../shared/tools/synth_kg.py"))
        });
    let out = work.join("synth");
    let status = Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .args(["--scale", &scale.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "{} failed", script.display());
    Ok(out)
}

/// Starts `hypograph serve` and returns it with its base URL.
fn serve(db: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(EXE)
        .arg("--db")
        .arg(db)
        .args(["serve", "--bind", "127.0.0.1:0"])
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

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn memory(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The graph's nodes by category, and its edges as `(head, relation, tail)` keys.
struct Graph {
    by_category: BTreeMap<String, Vec<String>>,
    category: std::collections::HashMap<String, String>,
    edges: Vec<[String; 3]>,
}

fn read_graph(dir: &Path) -> anyhow::Result<Graph> {
    let mut by_category: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut category = std::collections::HashMap::new();
    for line in std::fs::read_to_string(dir.join("nodes.tsv"))?
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = line.split('\t').collect();
        if let [id, cat, ..] = f[..] {
            by_category
                .entry(cat.to_owned())
                .or_default()
                .push(id.to_owned());
            category.insert(id.to_owned(), cat.to_owned());
        }
    }
    let mut edges = Vec::new();
    for line in std::fs::read_to_string(dir.join("edges.tsv"))?
        .lines()
        .skip(1)
        .step_by(97)
    {
        let f: Vec<&str> = line.split('\t').collect();
        if let [h, r, t] = f[..] {
            edges.push([h.to_owned(), r.to_owned(), t.to_owned()]);
        }
    }
    Ok(Graph {
        by_category,
        category,
        edges,
    })
}

/// A prompt at every limit: 32 new entities (the graph's categories in turn), 256 claimed
/// edges (a real edge's head replaced by a new entity of its category), 1,000 context
/// entities, 64 predict lines (`[e, ?, ?]` for the first `wide` entities, one named relation
/// for the others), 1,000 rows. `tag` keeps each user's entity ids their own.
fn prompt(g: &Graph, tag: &str, wide: usize) -> Value {
    let cats: Vec<&String> = g.by_category.keys().collect();
    let n = limits::MAX_ENTITIES;
    let entities: Vec<Value> = (0..n)
        .map(|i| json!({ "id": format!("{tag}:new{i}"), "category": cats[i % cats.len()] }))
        .collect();
    let cat_of = |i: usize| cats[i % cats.len()].as_str();
    let mut edges = Vec::new();
    let mut named: Vec<Option<String>> = vec![None; n];
    for e in &g.edges {
        if edges.len() >= limits::MAX_EDGES {
            break;
        }
        let Some(c) = g.category.get(&e[0]) else {
            continue;
        };
        // The next entity of this category still short of its share of the edges.
        let share = limits::MAX_EDGES / n;
        if let Some(i) = (0..n).find(|&i| {
            cat_of(i) == c
                && edges
                    .iter()
                    .filter(|x: &&Value| x[0] == format!("{tag}:new{i}"))
                    .count()
                    < share
        }) {
            named[i].get_or_insert_with(|| e[1].clone());
            edges.push(json!([format!("{tag}:new{i}"), e[1], e[2]]));
        }
    }
    let mut predict = Vec::new();
    for (i, relation) in named.iter().enumerate().take(n) {
        let id = format!("{tag}:new{i}");
        if i < wide {
            predict.push(json!([id, "?", "?"]));
        } else if let Some(r) = relation {
            predict.push(json!([id, r, "?"]));
        }
    }
    // Fill up to the limit with one-relation lines of the entities that have edges.
    let mut k = 0;
    while predict.len() < limits::MAX_PREDICT && k < 4 * n {
        if let Some(r) = &named[k % n] {
            predict.push(json!([format!("{tag}:new{}", k % n), r, "?"]));
        }
        k += 1;
    }
    let context: Vec<&String> = g
        .by_category
        .values()
        .flatten()
        .step_by(7)
        .take(limits::MAX_CONTEXT)
        .collect();
    json!({
        "entities": entities,
        "edges": edges,
        "context": { "entities": context },
        "predict": predict,
        "top": limits::MAX_TOP,
    })
}

/// The candidates count a refused prompt names.
fn candidates_of(body: &Value) -> Option<usize> {
    body["problems"].as_array()?.iter().find_map(|p| {
        let m = p["message"].as_str()?;
        m.contains("candidate triples")
            .then(|| m.split_whitespace().next()?.parse().ok())?
    })
}

/// A cookie from `Set-Cookie` headers.
fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Signs in through the sign-in form as a browser does (its login cookie and CSRF token):
/// the session's `Cookie` header.
async fn sign_in(base: &str, token: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = client.get(format!("{base}/login")).send().await?;
    let nonce =
        set_cookie(page.headers(), "hg_login").ok_or_else(|| anyhow::anyhow!("no login cookie"))?;
    let html = page.text().await?;
    let marker = "name=\"csrf\" value=\"";
    let csrf = html
        .split_once(marker)
        .and_then(|(_, rest)| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no csrf field on the sign-in page"))?;
    let resp = client
        .post(format!("{base}/login"))
        .header("Cookie", format!("hg_login={nonce}"))
        .form(&[("token", token), ("csrf", csrf)])
        .send()
        .await?;
    let id = set_cookie(resp.headers(), "hg_session")
        .ok_or_else(|| anyhow::anyhow!("sign-in refused: {}", resp.status()))?;
    Ok(format!("hg_session={id}"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let scale: f64 = env_or("SCALE", 1.0);
    let users: usize = env_or("USERS", 20);
    std::fs::create_dir_all("target")?;
    let work = tempfile::tempdir_in("target")?;
    let t = Instant::now();
    let dir = synth(work.path(), scale)?;
    let graph = read_graph(&dir)?;
    println!(
        "graph: scale {scale}, {} nodes, generated in {:.0} s",
        graph.category.len(),
        t.elapsed().as_secs_f64()
    );
    let db = work.path().join("bench.db");
    let t = Instant::now();
    hg(
        &db,
        &[
            "import",
            dir.join("edges.tsv").to_str().unwrap_or_default(),
            "--nodes",
            dir.join("nodes.tsv").to_str().unwrap_or_default(),
        ],
    )?;
    println!("imported in {:.0} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    hg(
        &db,
        &[
            "train",
            // Negatives shared by the batch: one epoch over Hetionet's size in minutes even
            // with the debug binary (the model is not what this bench measures).
            "--regime",
            "negatives",
            "--negatives",
            "64",
            "--batch-size",
            "8192",
            "--epochs",
            "1",
            "--dim",
            "16",
            "--ensemble",
            "1",
            "--eval-every",
            "0",
        ],
    )?;
    println!("trained in {:.0} s", t.elapsed().as_secs_f64());
    let mut tokens = Vec::new();
    for i in 0..users {
        tokens.push(
            hg(
                &db,
                &["user", "add", &format!("r{i:02}"), "--role", "reviewer"],
            )?
            .trim()
            .to_owned(),
        );
    }

    let (mut server, base) = serve(&db)?;
    let pid = server.id();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()?;
    let ask = format!("{base}/api/v1/ask");
    // The model's load, and the widest prompt that stays under the candidates' limit.
    let t = Instant::now();
    let mut wide = limits::MAX_ENTITIES;
    let (answer, took) = loop {
        let started = Instant::now();
        let resp = client
            .post(&ask)
            .bearer_auth(&tokens[0])
            .json(&prompt(&graph, "probe", wide))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await?;
        match (status, candidates_of(&body)) {
            (200, _) => break (body, started.elapsed().as_secs_f64()),
            (413, Some(n)) if wide > 0 => {
                let fit = (wide as f64 * limits::MAX_CANDIDATES as f64 / n as f64).floor();
                wide = (fit as usize).min(wide - 1);
            }
            _ => anyhow::bail!("probe answered {status}: {body}"),
        }
    };
    println!(
        "first ask (model load + answer) {:.1} s; one maximal ask alone {took:.1} s: {} candidates, {} rows ({wide} of {} entities predicted on every relation)",
        t.elapsed().as_secs_f64(),
        answer["candidates"],
        answer["rows"].as_array().map_or(0, Vec::len),
        limits::MAX_ENTITIES
    );
    let (rss_idle, _) = memory(pid).unwrap_or_default();

    // Samplers: memory every 50 ms; /healthz and the queue page one after another.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak_rss: f64 = 0.0;
            let mut hwm: f64 = 0.0;
            while !done.load(Ordering::Relaxed) {
                if let Some((rss, h)) = memory(pid) {
                    peak_rss = peak_rss.max(rss);
                    hwm = hwm.max(h);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (peak_rss, hwm)
        })
    };
    let probe = |path: &'static str, cookie: Option<String>| {
        let done = done.clone();
        let client = client.clone();
        let url = format!("{base}{path}");
        tokio::spawn(async move {
            let mut ms = Vec::new();
            let mut failures = 0;
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut req = client.get(&url).timeout(Duration::from_secs(30));
                if let Some(c) = &cookie {
                    req = req.header("Cookie", c.as_str());
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ms.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ms, failures)
        })
    };
    let health = probe("/healthz", None);
    let queue = probe("/queue", Some(sign_in(&base, &tokens[0]).await?));

    let t = Instant::now();
    let asks: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let client = client.clone();
            let body = prompt(&graph, &format!("u{i}"), wide);
            let (ask, token) = (ask.clone(), token.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let status = match client
                    .post(&ask)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                (status, started.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut ask_s = Vec::new();
    for a in asks {
        let (status, s) = a.await?;
        *statuses.entry(status).or_default() += 1;
        ask_s.push(s);
    }
    let wall = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (mut health_ms, health_failed) = health.await?;
    let (mut queue_ms, queue_failed) = queue.await?;
    let (peak_rss, hwm) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "{users} concurrent maximal asks from {users} users: statuses {statuses:?}, all done in {wall:.1} s (each: median {:.1} s, max {:.1} s)",
        pct(&mut ask_s, 0.5),
        pct(&mut ask_s, 1.0)
    );
    println!(
        "server memory: {rss_idle:.0} MiB after the first ask; peak VmRSS {peak_rss:.0} MiB, VmHWM {hwm:.0} MiB (goal: < 2048 MiB)"
    );
    for (name, ms, failed) in [
        ("/healthz", &mut health_ms, health_failed),
        ("/queue", &mut queue_ms, queue_failed),
    ] {
        println!(
            "{name} during the asks: {} requests ({failed} failed), median {:.1} ms, p99 {:.1} ms, max {:.1} ms (goal: < 200 ms)",
            ms.len(),
            pct(ms, 0.5),
            pct(ms, 0.99),
            pct(ms, 1.0)
        );
    }
    Ok(())
}
