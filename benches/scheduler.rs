//! Scheduler precision (issues 5 and 15): 200 workflows firing every 5 seconds (6-field cron)
//! for 60 s, shared by two schedulers (two daemons: a store handle and a pool each) on one
//! database, each fire a no-op. Reports how late fires ran (from the slot time to the handler
//! starting, after the slot was claimed and the lease taken), slots run twice and slots
//! missed. On SQLite, and with `HYPOGRAPH_BENCH_POSTGRES` (an admin URL: `.ci/postgres start
//! DIR` prints one) also on PostgreSQL, in the same run. Prints figures, asserts nothing.
//!
//! Run: `cargo bench --bench scheduler` (`WORKFLOWS`, `SECONDS`, `DAEMONS` to change the load).

#[allow(dead_code)]
mod common;

use hypograph::schedule::{Entry, Fire, FireKind, Handler, Scheduler};
use hypograph::store::{Location, OpenMode, Store};
use hypograph::workflow::{Missed, Overlap, cron_schedule};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Workflow, slot time, when the handler started, the daemon that ran it.
type Seen = (
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    usize,
);

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let work = tempfile::tempdir_in("target")?;
    println!("== SQLite");
    measure(Location::Sqlite(work.path().join("sched.db"))).await?;
    if let Some(pg) = common::postgres_database("sched").await? {
        println!("== PostgreSQL");
        measure(Location::Postgres(pg.url.clone())).await?;
    }
    Ok(())
}

async fn measure(at: Location) -> anyhow::Result<()> {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (workflows, seconds) = (env("WORKFLOWS", 200) as usize, env("SECONDS", 60));
    let daemons = env("DAEMONS", 2).max(1) as usize;
    let store = Store::open(at.clone(), OpenMode::Create).await?;
    let schedule = cron_schedule("*/5 * * * * *").map_err(|e| anyhow::anyhow!(e))?;
    let entries: Vec<Entry> = (0..workflows)
        .map(|i| Entry {
            workflow: format!("w{i:03}"),
            kind: FireKind::Round,
            schedule: schedule.clone(),
            overlap: Overlap::Skip,
            missed: Missed::Skip,
        })
        .collect();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let start = chrono::Utc::now();
    let mut running = Vec::new();
    for d in 0..daemons {
        let seen = seen.clone();
        let handler: Handler = Arc::new(move |fire: Fire| {
            let seen = seen.clone();
            Box::pin(async move {
                if let Ok(mut s) = seen.lock() {
                    s.push((fire.workflow, fire.at, chrono::Utc::now(), d));
                }
                Ok(None)
            })
        });
        // A store handle of its own: a second pool, as a second daemon process would have.
        let own = Store::open(at.clone(), OpenMode::Existing).await?;
        let scheduler = Scheduler {
            store: own,
            holder: format!("bench-{d}"),
            entries: entries.clone(),
            handler,
            lease_ttl: Duration::from_secs(30),
        };
        running.push(tokio::spawn(scheduler.run(rx.clone())));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let end = chrono::Utc::now();
    tx.send(true)?;
    for r in running {
        r.await??;
    }

    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let expected: Vec<chrono::DateTime<chrono::Utc>> = schedule
        .after(&start)
        .take_while(|t| *t < end - chrono::Duration::seconds(1))
        .collect();
    let mut per_slot: HashMap<(String, chrono::DateTime<chrono::Utc>), usize> = HashMap::new();
    let mut late_ms: Vec<f64> = Vec::new();
    let mut by_daemon = vec![0usize; daemons];
    for (w, at, ran, d) in &seen {
        by_daemon[*d] += 1;
        *per_slot.entry((w.clone(), *at)).or_default() += 1;
        late_ms.push((*ran - *at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
    }
    let duplicates = per_slot.values().filter(|&&n| n > 1).count();
    let missed = (0..workflows)
        .flat_map(|i| expected.iter().map(move |t| (format!("w{i:03}"), *t)))
        .filter(|k| !per_slot.contains_key(k))
        .count();
    late_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| late_ms[((late_ms.len() - 1) as f64 * p).round() as usize];
    let stored = store.fires(None, i64::MAX).await?;
    println!(
        "machine: {} cores; {workflows} workflows x \"*/5 * * * * *\" for {seconds} s, {daemons} daemons",
        std::thread::available_parallelism()?.get()
    );
    println!(
        "fires: {} run (expected {}; by daemon {by_daemon:?}), run twice {duplicates}, missed {missed}, rows in the fire log {}",
        seen.len(),
        expected.len() * workflows,
        stored.len()
    );
    if !late_ms.is_empty() {
        println!(
            "lateness (slot -> handler start): median {:.1} ms, p99 {:.1} ms, max {:.1} ms; within 1 s: {}/{}  (goal: all)",
            pct(0.5),
            pct(0.99),
            late_ms[late_ms.len() - 1],
            late_ms.iter().filter(|&&l| l < 1000.0).count(),
            late_ms.len()
        );
    }
    store.close().await;
    Ok(())
}
