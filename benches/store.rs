//! Store benchmarks on the Hetionet-shaped synthetic graph (issue 2). Prints figures, asserts
//! nothing: import wall time and peak memory against the `sqlite3` shell's `.import` of the
//! same file, export throughput, adjacent-version diff latency, `Graph` load time/size, and
//! a KGX import with and without edge sources.
//!
//! Run: `python3 ../shared/tools/synth_kg.py --out target/synth1 --scale 1 && cargo bench --bench store`
//! (`SYNTH_DIR` picks another generated graph).

use hypograph::graph::{OnInvalid, tsv};
use hypograph::store::{ImportOptions, OpenMode, Outcome, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::var("SYNTH_DIR").unwrap_or_else(|_| "target/synth1".into()));
    let triples = dir.join("triples.tsv");
    if !triples.is_file() {
        anyhow::bail!(
            "{} not found: generate it with `python3 ../shared/tools/synth_kg.py --out {} --scale 1`",
            triples.display(),
            dir.display()
        );
    }
    let work = tempfile::tempdir_in("target")?;
    let lines = std::fs::read_to_string(&triples)?.lines().count();
    println!("graph: {} ({lines} triples)", triples.display());
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );

    // 1. Import through the real binary, and the sqlite3 shell on the same file.
    let db = work.path().join("bench.db");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(&db)
        .args(["import", "--json"])
        .arg(&triples)
        .output()?;
    let import_wall = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let peak = report["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / (1u64 << 30) as f64;
    let sqlite = sqlite3_import(&triples, &work.path().join("plain.db"));
    println!(
        "import:  hypograph {:.2} s wall, peak RSS {:.2} GiB  (goal < 15 s, < 1.5 GiB)",
        import_wall.as_secs_f64(),
        peak
    );
    match sqlite {
        Ok(t) => println!(
            "         sqlite3 .import {:.2} s  -> ratio {:.2}x  (goal <= 2x)",
            t.as_secs_f64(),
            import_wall.as_secs_f64() / t.as_secs_f64()
        ),
        Err(e) => println!("         sqlite3 .import not measured: {e}"),
    }

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = Store::open(&db, OpenMode::Existing).await?;

        // 2. Export the whole graph at version 1.
        let path = work.path().join("export.tsv");
        let started = Instant::now();
        let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let n = store.export_tsv(1, &mut w).await?;
        w.flush()?;
        let t = started.elapsed();
        println!(
            "export:  {n} triples in {:.2} s = {:.2} M triples/s  (goal >= 1 M/s)",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64() / 1e6
        );

        // 3. A version with 10,000 changes (5,000 removed, 5,000 new), then diff it.
        let v2 = make_changed_version(&store, &triples, &dir.join("hidden.tsv"), work.path()).await?;
        let mut times = Vec::new();
        let mut changes = 0;
        for _ in 0..5 {
            let started = Instant::now();
            let d = store.diff(v2 - 1, v2).await?;
            times.push(started.elapsed());
            changes = d.added.len() + d.removed.len();
        }
        times.sort();
        println!(
            "diff:    {changes} changes between adjacent versions, median {:.1} ms  (goal < 100 ms)",
            ms(times[2])
        );

        // 4. Load the in-memory graph.
        let rss_before = rss_bytes();
        let started = Instant::now();
        let graph = store.load_graph(v2).await?;
        let t = started.elapsed();
        let rss_after = rss_bytes();
        let per_triple = graph.heap_bytes() as f64 / graph.num_triples() as f64;
        println!(
            "graph:   {} entities, {} triples loaded in {:.2} s, {:.1} bytes/triple held (RSS +{:.0} MiB)  (goal < 3 s, < 100 B/triple)",
            graph.num_entities(),
            graph.num_triples(),
            t.as_secs_f64(),
            per_triple,
            (rss_after.saturating_sub(rss_before)) as f64 / (1 << 20) as f64
        );
        store.close().await;
        anyhow::Ok(())
    })?;

    // 5. KGX with edge sources: the same edges without and with a `primary_knowledge_source`
    // column (one source per edge, a second on every third), then the sourced file again.
    kgx_sources(&dir, work.path())?;
    Ok(())
}

/// Times `hypograph import ARGS` into `db` through the binary.
fn timed_import(db: &Path, args: &[&Path]) -> anyhow::Result<(Duration, serde_json::Value)> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
        .arg("--db")
        .arg(db)
        .args(["import", "--json"])
        .args(args)
        .output()?;
    let t = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((t, serde_json::from_slice(&out.stdout)?))
}

fn kgx_sources(dir: &Path, work: &Path) -> anyhow::Result<()> {
    let (nodes, edges) = (dir.join("nodes.tsv"), dir.join("edges.tsv"));
    if !nodes.is_file() || !edges.is_file() {
        println!(
            "kgx:     {} has no nodes.tsv/edges.tsv: skipped",
            dir.display()
        );
        return Ok(());
    }
    let plain = work.join("plain");
    let sourced = work.join("sourced");
    std::fs::create_dir_all(&plain)?;
    std::fs::create_dir_all(&sourced)?;
    std::fs::copy(&nodes, plain.join("nodes.tsv"))?;
    std::fs::copy(&nodes, sourced.join("nodes.tsv"))?;
    std::fs::copy(&edges, plain.join("edges.tsv"))?;
    let text = std::fs::read_to_string(&edges)?;
    let mut w = std::io::BufWriter::new(std::fs::File::create(sourced.join("edges.tsv"))?);
    for (i, line) in text.lines().enumerate() {
        match i {
            0 => writeln!(w, "{line}\tprimary_knowledge_source")?,
            _ if i % 3 == 0 => writeln!(w, "{line}\tinfores:s{}|infores:s{}", i % 7, (i + 1) % 7)?,
            _ => writeln!(w, "{line}\tinfores:s{}", i % 7)?,
        }
    }
    w.flush()?;
    let plain_db = work.join("kgx-plain.db");
    let (t_plain, _) = timed_import(&plain_db, &[&plain])?;
    let (t_plain_again, _) = timed_import(&plain_db, &[&plain])?;
    let db = work.join("kgx-sourced.db");
    let (t_sourced, report) = timed_import(&db, &[&sourced])?;
    let (t_again, again) = timed_import(&db, &[&sourced])?;
    println!(
        "kgx:     import without sources {:.2} s, with {} edge sources {:.2} s (+{:.0}%)",
        t_plain.as_secs_f64(),
        report["edge_sources"],
        t_sourced.as_secs_f64(),
        (t_sourced.as_secs_f64() / t_plain.as_secs_f64() - 1.0) * 100.0,
    );
    println!(
        "         each file again ({}): without sources {:.2} s, with {:.2} s",
        again["outcome"]["status"],
        t_plain_again.as_secs_f64(),
        t_again.as_secs_f64()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sqlite3_import(file: &Path, db: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("CREATE TABLE t(head TEXT, relation TEXT, tail TEXT);")
        .arg(".mode tabs")
        .arg(format!(".import {} t", file.display()))
        .output()?;
    let t = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(t)
}

/// Imports (graph minus 5,000 triples plus 5,000 hidden ones) with `--replace`.
async fn make_changed_version(
    store: &Store,
    triples: &Path,
    hidden: &Path,
    work: &Path,
) -> anyhow::Result<i64> {
    let text = std::fs::read_to_string(triples)?;
    let extra = std::fs::read_to_string(hidden)?;
    let mut next = String::with_capacity(text.len());
    for line in text.lines().skip(5_000) {
        next.push_str(line);
        next.push('\n');
    }
    for line in extra.lines().take(5_000) {
        next.push_str(line);
        next.push('\n');
    }
    let path = work.join("next.tsv");
    std::fs::write(&path, &next)?;
    let batch = tsv::read_triples(&path, OnInvalid::Fail)?;
    let opts = ImportOptions {
        message: "bench: 10,000 changes".into(),
        replace: true,
        ..ImportOptions::default()
    };
    match store.import(&batch, &opts).await? {
        Outcome::Committed(s) => Ok(s.version),
        Outcome::Unchanged { .. } => anyhow::bail!("expected a new version"),
    }
}

fn rss_bytes() -> u64 {
    hypograph::logging::proc_status_bytes("VmRSS").unwrap_or(0)
}
