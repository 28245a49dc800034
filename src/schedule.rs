//! Cron schedules on tokio. Every slot is claimed in the database before its work starts
//! (keyed by workflow, kind and scheduled time), so a slot runs at most once across crashes
//! and daemons; a lease per workflow keeps two daemons from running one workflow at once.
//! What a fire does is the caller's: the daemon runs rounds, the benchmark a no-op.

use crate::store::{Store, StoreError, stamp};
use crate::workflow::{self, Loaded, Missed, Overlap};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("workflow `{workflow}`: {message}")]
    Cron { workflow: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireKind {
    Round,
    Retrain,
}

impl FireKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Round => "round",
            Self::Retrain => "retrain",
        }
    }
}

/// One slot being run.
#[derive(Debug, Clone)]
pub struct Fire {
    pub workflow: String,
    pub kind: FireKind,
    pub at: DateTime<Utc>,
    /// Turns true if the workflow's lease is lost while the fire runs: the work must stop
    /// at its next step boundary.
    pub lease_lost: watch::Receiver<bool>,
}

/// This process's name in fires and leases: `KIND@HOST:PID`.
pub fn holder_name(kind: &str) -> String {
    format!("{kind}@{}:{}", host_name(), std::process::id())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether `holder` names a process of this machine that no longer exists (Linux: no
/// `/proc/PID`). Names of other machines, or in another form, are never judged gone.
fn holder_is_gone(holder: &str) -> bool {
    let Some((_, rest)) = holder.split_once('@') else {
        return false;
    };
    let Some((host, pid)) = rest.rsplit_once(':') else {
        return false;
    };
    let proc_works = std::path::Path::new("/proc/self").exists();
    host == host_name()
        && proc_works
        && pid.parse::<u32>().is_ok_and(|p| {
            p != std::process::id() && !std::path::Path::new("/proc").join(p.to_string()).exists()
        })
}

/// A workflow's lease, held by one process (a daemon fire or a `run`) while it drives the
/// workflow, and renewed every third of its time to live. A renewal that finds another
/// holder raises [`Lease::lost`]; the lease is released when dropped through
/// [`Lease::release`].
pub struct Lease {
    store: Store,
    workflow: String,
    holder: String,
    renew: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl Lease {
    /// Takes the workflow's lease, or `None` while another holder's is unexpired.
    pub async fn acquire(
        store: &Store,
        workflow: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Self>, StoreError> {
        if !store.acquire_lease(workflow, holder, ttl).await? {
            // A killed process cannot release its lease; on this machine we can tell that it
            // is gone and take over at once instead of making its resume wait for the expiry.
            let Some((current, _)) = store.lease_holder(workflow).await? else {
                return Ok(None);
            };
            if !holder_is_gone(&current)
                || !store
                    .take_lease_from(workflow, &current, holder, ttl)
                    .await?
            {
                return Ok(None);
            }
            info!(%workflow, previous = %current, "took over the lease of a process that is gone");
        }
        Ok(Some(Self::adopt(store, workflow, holder, ttl)))
    }

    /// A lease `holder` already holds (just taken over), renewed from now on.
    pub fn adopt(store: &Store, workflow: &str, holder: &str, ttl: Duration) -> Self {
        let (tx, lost) = watch::channel(false);
        let renew = {
            let (store, workflow, holder) = (store.clone(), workflow.to_owned(), holder.to_owned());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(ttl / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match store.acquire_lease(&workflow, &holder, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(%workflow, "lost the workflow's lease to another process");
                            let _ = tx.send(true);
                            return;
                        }
                        Err(e) => warn!(%workflow, error = %e, "renewing the lease failed"),
                    }
                }
            })
        };
        Self {
            store: store.clone(),
            workflow: workflow.to_owned(),
            holder: holder.to_owned(),
            renew,
            lost,
        }
    }

    /// A flag that turns true when the lease is lost.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Stops renewing and gives the lease up (if still ours).
    pub async fn release(self) {
        self.renew.abort();
        if let Err(e) = self.store.release_lease(&self.workflow, &self.holder).await {
            warn!(workflow = %self.workflow, error = %e, "releasing the lease failed");
        }
    }

    /// Who holds the workflow's lease now, and until when.
    pub async fn holder_of(
        store: &Store,
        workflow: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        store.lease_holder(workflow).await
    }
}

/// What a fire did: the round it ran, if any, or why it failed.
pub type FireResult = Result<Option<i64>, String>;

/// The work behind a fire.
pub type Handler =
    Arc<dyn Fn(Fire) -> Pin<Box<dyn Future<Output = FireResult> + Send>> + Send + Sync>;

/// One schedule to keep.
#[derive(Debug, Clone)]
pub struct Entry {
    pub workflow: String,
    pub kind: FireKind,
    pub schedule: cron::Schedule,
    pub overlap: Overlap,
    pub missed: Missed,
}

/// The schedules a workflow asks for.
pub fn entries(l: &Loaded) -> Result<Vec<Entry>, ScheduleError> {
    let w = &l.workflow;
    let mut out = Vec::new();
    let cron = |expr: &str| {
        workflow::cron_schedule(expr).map_err(|message| ScheduleError::Cron {
            workflow: w.name.clone(),
            message,
        })
    };
    if let Some(expr) = &w.schedule {
        out.push(Entry {
            workflow: w.name.clone(),
            kind: FireKind::Round,
            schedule: cron(expr)?,
            overlap: w.overlap,
            missed: w.missed,
        });
    }
    if let Some(r) = &w.retrain {
        out.push(Entry {
            workflow: w.name.clone(),
            kind: FireKind::Retrain,
            schedule: cron(&r.schedule)?,
            overlap: Overlap::Skip,
            missed: w.missed,
        });
    }
    Ok(out)
}

/// Keeps a set of schedules until told to stop.
pub struct Scheduler {
    pub store: Store,
    /// This daemon's name in fires and leases.
    pub holder: String,
    pub entries: Vec<Entry>,
    pub handler: Handler,
    /// How long a lease lasts without renewal (renewed every third of it while running).
    pub lease_ttl: Duration,
}

impl Scheduler {
    /// Runs every schedule until `stop` turns true, then waits for running fires to return
    /// (the handler sees the same flag and stops at its next step boundary).
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<(), ScheduleError> {
        let shared = Arc::new(Shared {
            store: self.store,
            holder: self.holder,
            handler: self.handler,
            lease_ttl: self.lease_ttl,
        });
        let mut tasks = Vec::new();
        let mut rounds: Vec<String> = self
            .entries
            .iter()
            .filter(|e| e.kind == FireKind::Round)
            .map(|e| e.workflow.clone())
            .collect();
        rounds.dedup();
        {
            let shared = shared.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(adopt_orphans(shared, rounds, stop)));
        }
        for entry in self.entries {
            let shared = shared.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = keep(shared, entry.clone(), stop).await {
                    warn!(workflow = %entry.workflow, error = %e, "schedule stopped");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    }
}

struct Shared {
    store: Store,
    holder: String,
    handler: Handler,
    lease_ttl: Duration,
}

/// Resumes rounds whose driver died: every half lease time, this daemon takes over expired
/// leases of its workflows (daemons divide them: `Store::claim_expired_leases`) and drives
/// each open round on, under a holder name of its own so its schedule loop cannot drive the
/// same round at once (that loop's fires skip while the takeover holds the lease).
async fn adopt_orphans(
    shared: Arc<Shared>,
    workflows: Vec<String>,
    mut stop: watch::Receiver<bool>,
) {
    let every = (shared.lease_ttl / 2).max(Duration::from_secs(1));
    let holder = format!("takeover-{}", shared.holder);
    let mut running: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        running.retain(|h| !h.is_finished());
        let taken = match shared
            .store
            .claim_expired_leases(&workflows, &holder, shared.lease_ttl, 16)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "looking for expired leases failed");
                continue;
            }
        };
        for (workflow, previous) in taken {
            info!(%workflow, %previous, "took over an expired lease");
            let (shared, holder) = (shared.clone(), holder.clone());
            running.push(tokio::spawn(async move {
                let lease = Lease::adopt(&shared.store, &workflow, &holder, shared.lease_ttl);
                match shared.store.open_round(&workflow).await {
                    Ok(Some(round)) => {
                        info!(%workflow, round = round.number, state = %round.state, "resuming a round whose driver died");
                        let fire = Fire {
                            workflow: workflow.clone(),
                            kind: FireKind::Round,
                            at: Utc::now(),
                            lease_lost: lease.lost(),
                        };
                        if let Err(e) = (shared.handler)(fire).await {
                            warn!(%workflow, error = %e, "resuming the round failed");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => warn!(%workflow, error = %e, "reading the open round failed"),
                }
                lease.release().await;
            }));
        }
    }
    for h in running {
        let _ = h.await;
    }
}

/// Slots after `after` and strictly before `until`, at most `cap`.
fn slots_between(
    schedule: &cron::Schedule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    cap: usize,
) -> Vec<DateTime<Utc>> {
    schedule
        .after(&after)
        .take_while(|t| *t < until)
        .take(cap)
        .collect()
}

/// One schedule's loop.
async fn keep(
    shared: Arc<Shared>,
    entry: Entry,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ScheduleError> {
    let kind = entry.kind.as_str();
    let mut current: Option<JoinHandle<()>> = None;
    let mut buffered: Option<DateTime<Utc>> = None;

    // Slots missed while no daemon ran: each is run once (the newest, with `run_once`) or
    // logged as skipped with its reason. A database that is not there yet is waited for.
    let last = loop {
        match shared.store.last_fire(&entry.workflow, kind).await {
            Ok(last) => break last,
            Err(e) => {
                warn!(workflow = %entry.workflow, error = %e, "reading the fire log failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    };
    let now = Utc::now();
    if let Some(last) = last {
        let last = DateTime::parse_from_rfc3339(&last)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        let missed = slots_between(&entry.schedule, last, now, 100_000);
        let run_last = entry.missed == Missed::RunOnce;
        for (i, at) in missed.iter().enumerate() {
            if run_last && i + 1 == missed.len() {
                current = start(&shared, &entry, *at).await.unwrap_or_else(|e| {
                    warn!(workflow = %entry.workflow, error = %e, "claiming a missed slot failed");
                    None
                });
            } else {
                let reason = if run_last {
                    "missed while no daemon ran; a later missed slot ran once instead"
                } else {
                    "missed while no daemon ran (missed: skip)"
                };
                if let Err(e) = shared
                    .store
                    .claim_fire(
                        &entry.workflow,
                        kind,
                        &stamp(*at),
                        "skipped",
                        Some(reason),
                        &shared.holder,
                    )
                    .await
                {
                    warn!(workflow = %entry.workflow, error = %e, "recording a missed slot failed");
                }
            }
        }
        if !missed.is_empty() {
            info!(workflow = %entry.workflow, kind, missed = missed.len(), policy = ?entry.missed, "missed slots handled");
        }
    }

    let mut after = now;
    loop {
        let Some(next) = entry.schedule.after(&after).next() else {
            return Ok(());
        };
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let finished = async {
            match current.as_mut() {
                Some(h) => {
                    let _ = h.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
            _ = finished => {
                current = None;
                if let Some(at) = buffered.take()
                    && !*stop.borrow()
                {
                    current = start(&shared, &entry, at).await.unwrap_or_else(|e| {
                        warn!(workflow = %entry.workflow, error = %e, "claiming the buffered slot failed");
                        None
                    });
                }
                continue;
            }
        }
        if *stop.borrow() {
            break;
        }
        after = next;
        let at = stamp(next);
        let running = current.as_ref().is_some_and(|h| !h.is_finished());
        if running {
            match entry.overlap {
                Overlap::BufferOne if buffered.is_none() => {
                    buffered = Some(next);
                    info!(workflow = %entry.workflow, %at, "fire buffered: the last one still runs");
                }
                _ => {
                    let reason = if entry.overlap == Overlap::BufferOne {
                        "the last fire still runs and one is already buffered"
                    } else {
                        "the last fire still runs (overlap: skip)"
                    };
                    if let Err(e) = shared
                        .store
                        .claim_fire(
                            &entry.workflow,
                            kind,
                            &at,
                            "skipped",
                            Some(reason),
                            &shared.holder,
                        )
                        .await
                    {
                        warn!(workflow = %entry.workflow, %at, error = %e, "recording a skipped fire failed");
                    }
                    info!(workflow = %entry.workflow, %at, reason, "fire skipped");
                }
            }
            continue;
        }
        // A database that is down (restarting, out of reach) loses this slot, not the
        // schedule: the next slot tries again.
        current = match start(&shared, &entry, next).await {
            Ok(h) => h,
            Err(e) => {
                warn!(workflow = %entry.workflow, %at, error = %e, "claiming the slot failed; it is not run");
                None
            }
        };
    }
    if let Some(h) = current {
        let _ = h.await;
    }
    Ok(())
}

/// Claims the slot and, if this daemon got it, runs the work under the workflow's lease.
async fn start(
    shared: &Arc<Shared>,
    entry: &Entry,
    at: DateTime<Utc>,
) -> Result<Option<JoinHandle<()>>, ScheduleError> {
    let kind = entry.kind.as_str();
    let slot = stamp(at);
    if !shared
        .store
        .claim_fire(
            &entry.workflow,
            kind,
            &slot,
            "started",
            None,
            &shared.holder,
        )
        .await?
    {
        return Ok(None);
    }
    let shared = shared.clone();
    let fire = Fire {
        workflow: entry.workflow.clone(),
        kind: entry.kind,
        at,
        lease_lost: watch::channel(false).1,
    };
    Ok(Some(tokio::spawn(async move {
        let (status, reason, round) = run_leased(&shared, fire.clone()).await;
        if let Err(e) = shared
            .store
            .finish_fire(
                &fire.workflow,
                fire.kind.as_str(),
                &slot,
                status,
                reason.as_deref(),
                round,
            )
            .await
        {
            warn!(workflow = %fire.workflow, error = %e, "recording the fire's end failed");
        }
    })))
}

async fn run_leased(
    shared: &Shared,
    mut fire: Fire,
) -> (&'static str, Option<String>, Option<i64>) {
    let lease = match Lease::acquire(
        &shared.store,
        &fire.workflow,
        &shared.holder,
        shared.lease_ttl,
    )
    .await
    {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return (
                "skipped",
                Some("another process holds the workflow's lease".into()),
                None,
            );
        }
        Err(e) => return ("failed", Some(format!("taking the lease: {e}")), None),
    };
    fire.lease_lost = lease.lost();
    let outcome = (shared.handler)(fire.clone()).await;
    lease.release().await;
    match outcome {
        Ok(round) => ("done", None, round),
        Err(reason) => ("failed", Some(reason), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_process_that_is_gone_loses_its_lease() {
        let me = holder_name("run");
        assert!(!holder_is_gone(&me), "this process is alive");
        let host = host_name();
        assert!(holder_is_gone(&format!("run@{host}:4294967295")));
        assert!(!holder_is_gone("run@another-host:4294967295"));
        assert!(!holder_is_gone("a-daemon-named-by-hand"));
    }

    #[test]
    fn slots_between_is_half_open_and_capped() {
        let s = workflow::cron_schedule("*/5 * * * * *").expect("cron");
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::seconds(30);
        let slots = slots_between(&s, t0, t1, 100);
        assert_eq!(
            slots.len(),
            5,
            "05, 10, 15, 20, 25: not 00 (after) nor 30 (before)"
        );
        assert_eq!(slots_between(&s, t0, t1, 2).len(), 2);
    }
}
