//! PostgreSQL as the store (issue 15), side by side with SQLite in one run: the import of the
//! synthetic Hetionet-shaped graph through the real binary into each, against PostgreSQL's own
//! `COPY` of the same rows into a plain table (goal <= 2x). Prints figures, asserts nothing.
//!
//! Run: `python3 ../shared/tools/synth_kg.py --out target/synth1 --scale 1`, then with a
//! server (`PG_FSYNC=on .ci/postgres start DIR` prints an admin URL):
//! `HYPOGRAPH_BENCH_POSTGRES=URL cargo bench --bench postgres` (`SYNTH_DIR` picks another graph).
//! Each run creates its own databases on that server and drops them after.

use sqlx::Connection;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let admin = std::env::var("HYPOGRAPH_BENCH_POSTGRES").map_err(|_| {
        anyhow::anyhow!("set HYPOGRAPH_BENCH_POSTGRES to an admin URL (.ci/postgres start DIR)")
    })?;
    let dir = PathBuf::from(std::env::var("SYNTH_DIR").unwrap_or_else(|_| "target/synth1".into()));
    let triples = dir.join("triples.tsv");
    anyhow::ensure!(
        triples.is_file(),
        "{} not found: python3 ../shared/tools/synth_kg.py --out {} --scale 1",
        triples.display(),
        dir.display()
    );
    let text = std::fs::read(&triples)?;
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    println!(
        "graph: {} ({lines} triples); machine: {} cores",
        triples.display(),
        std::thread::available_parallelism()?.get()
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    println!("PostgreSQL {version}, fsync {fsync}, over a Unix socket");
    let tag = std::process::id();
    let (db_import, db_copy) = (format!("bench_import_{tag}"), format!("bench_copy_{tag}"));
    for db in [&db_import, &db_copy] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await?;
    }
    let url = |db: &str| -> anyhow::Result<String> {
        let mut u = url::Url::parse(&admin)?;
        u.set_path(&format!("/{db}"));
        Ok(u.to_string())
    };
    let result = run(&triples, &text, &url(&db_import)?, &url(&db_copy)?).await;
    for db in [&db_import, &db_copy] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await?;
    }
    result
}

async fn run(
    triples: &std::path::Path,
    text: &[u8],
    import_url: &str,
    copy_url: &str,
) -> anyhow::Result<()> {
    let work = tempfile::tempdir_in("target")?;
    let import = |db: &str| -> anyhow::Result<(f64, serde_json::Value)> {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .args(["--db", db, "--data-dir"])
            .arg(work.path().join("data"))
            .args(["import", "--json"])
            .arg(triples)
            .output()?;
        let secs = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "import into {db} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((secs, serde_json::from_slice(&out.stdout)?))
    };
    let sqlite_db = work.path().join("bench.db");
    let (sqlite_secs, sqlite_report) = import(&sqlite_db.to_string_lossy())?;
    let (pg_secs, report) = import(import_url)?;

    // PostgreSQL's own COPY of the same rows (three text columns) into a plain table, in one
    // transaction, the file streamed in 1 MiB pieces.
    let mut conn = sqlx::PgConnection::connect(copy_url).await?;
    sqlx::raw_sql("CREATE TABLE plain (head TEXT, relation TEXT, tail TEXT)")
        .execute(&mut conn)
        .await?;
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let mut copy = tx
        .copy_in_raw("COPY plain FROM STDIN (FORMAT text)")
        .await?;
    for piece in text.chunks(1 << 20) {
        copy.send(piece).await?;
    }
    let rows = copy.finish().await?;
    tx.commit().await?;
    let copy_secs = started.elapsed().as_secs_f64();

    // Both stores hold the same graph.
    let head = |db: &str| -> anyhow::Result<String> {
        let out = Command::new(env!("CARGO_BIN_EXE_hypograph"))
            .args(["--db", db, "graph", "log", "--json"])
            .output()?;
        let log: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(log[0]["hash"].as_str().unwrap_or("?").to_owned())
    };
    let (h_sqlite, h_pg) = (head(&sqlite_db.to_string_lossy())?, head(import_url)?);
    println!(
        "import into SQLite:      {sqlite_secs:.2} s wall ({} edges), peak RSS {:.2} GiB",
        sqlite_report["outcome"]["added"],
        sqlite_report["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 30)
    );
    println!(
        "import into PostgreSQL:  {pg_secs:.2} s wall, peak RSS {:.2} GiB",
        report["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 30)
    );
    println!(
        "COPY into a plain table: {copy_secs:.2} s ({rows} rows) -> hypograph/COPY {:.2}x (goal <= 2x)",
        pg_secs / copy_secs
    );
    println!(
        "same version hash on both: {} ({}...)",
        h_sqlite == h_pg,
        &h_pg[..h_pg.len().min(12)]
    );
    Ok(())
}
