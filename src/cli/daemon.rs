//! `hypograph daemon` and `hypograph schedule list`: workflows on their cron schedules.

use crate::engine::{self, Options};
use crate::schedule::{self, Entry, Fire, FireKind, Handler, Scheduler};
use crate::store::{RoundState, Store};
use crate::workflow::{self, Loaded};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Directory of workflow files (*.yaml, *.yml).
    #[arg(long, default_value = "workflows")]
    workflows: PathBuf,
    /// This daemon's name in the fire log and leases (default: host and process id).
    #[arg(long)]
    holder: Option<String>,
    /// Also serve the REST API (callbacks, review queue) on this address.
    #[arg(long)]
    bind: Option<String>,
    /// With --bind: serve /metrics to anyone (for a scraper on a trusted network); by default it
    /// needs an admin's bearer token.
    #[arg(long, requires = "bind")]
    metrics_public: bool,
    /// With --bind: where people reach the server (e.g. behind a TLS proxy); an `https://` URL
    /// marks the sign-in cookies `Secure`.
    #[arg(long, requires = "bind", value_parser = super::review::public_url)]
    public_url: Option<String>,
    /// How long a workflow's lease lasts without renewal (renewed every third of it): after a
    /// daemon dies mid-round, another takes the round over within about 1.5 times this.
    #[arg(long, default_value = "30s")]
    lease_ttl: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule with its next fire times and the last recorded fires.
    List {
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// Upcoming fire times to show per schedule.
        #[arg(long, default_value_t = 3)]
        next: usize,
    },
}

/// Loads every workflow file in `dir`; invalid ones are reported and left out.
fn load_dir(dir: &Path) -> anyhow::Result<Vec<Loaded>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        match workflow::load(&f) {
            Ok(l) => out.push(l),
            Err(e) => tracing::error!("skipping an invalid workflow:\n{e}"),
        }
    }
    Ok(out)
}

pub async fn daemon(store: &Store, data_dir: &Path, args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let lease_ttl = super::rounds::lease_ttl(&args.lease_ttl)?;
    let loaded = load_dir(&args.workflows)?;
    let mut entries: Vec<Entry> = Vec::new();
    for l in &loaded {
        entries.extend(schedule::entries(l)?);
    }
    if entries.is_empty() {
        anyhow::bail!(
            "no scheduled workflow in {} (give one a `schedule` or `retrain.schedule`)",
            args.workflows.display()
        );
    }
    let holder = args
        .holder
        .unwrap_or_else(|| crate::schedule::holder_name("daemon"));
    let stop = super::rounds::stop_on_signals();
    let by_name: Arc<std::collections::HashMap<String, Loaded>> = Arc::new(
        loaded
            .into_iter()
            .map(|l| (l.workflow.name.clone(), l))
            .collect(),
    );
    let handler: Handler = {
        let (store, data_dir, stop) = (store.clone(), data_dir.to_owned(), stop.clone());
        Arc::new(move |fire: Fire| {
            let (store, data_dir, stop, by_name) = (
                store.clone(),
                data_dir.clone(),
                stop.clone(),
                by_name.clone(),
            );
            Box::pin(async move {
                let l = by_name
                    .get(&fire.workflow)
                    .ok_or_else(|| format!("workflow `{}` is not loaded", fire.workflow))?;
                match fire.kind {
                    FireKind::Retrain => engine::retrain(&store, l, &data_dir)
                        .await
                        .map(|_| None)
                        .map_err(|e| e.to_string()),
                    FireKind::Round => {
                        if store
                            .open_round(&fire.workflow)
                            .await
                            .map_err(|e| e.to_string())?
                            .is_none()
                            && let Some(why) = engine::stop_reason(&store, l)
                                .await
                                .map_err(|e| e.to_string())?
                        {
                            return Err(format!("no new round: {why}"));
                        }
                        let mut on_event = |_: &engine::Event| {};
                        let mut opts = Options {
                            data_dir,
                            fire_time: Some(crate::store::stamp(fire.at)),
                            on_event: &mut on_event,
                            stop: Some(stop),
                            // Stages that answer later are looked at again on the next fire.
                            wait: Duration::ZERO,
                            until: None,
                            lease_lost: Some(fire.lease_lost.clone()),
                        };
                        let round = engine::run_round(&store, l, &mut opts)
                            .await
                            .map_err(|e| e.to_string())?;
                        tracing::info!(workflow = %fire.workflow, round = round.number, state = %round.state, "fire handled");
                        Ok(Some(round.id).filter(|_| round.state != RoundState::Failed))
                    }
                }
            })
        })
    };
    let server = match &args.bind {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
            eprintln!("hypograph daemon: API on http://{}", listener.local_addr()?);
            let options = crate::server::ServeOptions {
                workflows: Some(args.workflows.clone()),
                metrics_public: args.metrics_public,
                data_dir: data_dir.to_owned(),
                public_url: args.public_url.clone(),
            };
            Some(tokio::spawn(crate::server::serve(
                store.clone(),
                options,
                listener,
                stop.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(schedules = entries.len(), %holder, "daemon started");
    eprintln!(
        "hypograph daemon: {} schedule{} from {}; SIGINT/SIGTERM to stop",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        args.workflows.display()
    );
    Scheduler {
        store: store.clone(),
        holder,
        entries,
        handler,
        lease_ttl,
    }
    .run(stop)
    .await?;
    if let Some(s) = server {
        s.await??;
    }
    eprintln!("hypograph daemon: stopped");
    Ok(ExitCode::SUCCESS)
}

pub async fn schedule(store: Option<&Store>, cmd: ScheduleCommand) -> anyhow::Result<ExitCode> {
    let ScheduleCommand::List { workflows, next } = cmd;
    let loaded = load_dir(&workflows)?;
    let now = chrono::Utc::now();
    let mut any = false;
    for l in &loaded {
        for e in schedule::entries(l)? {
            any = true;
            let expr = match e.kind {
                FireKind::Round => l.workflow.schedule.clone(),
                FireKind::Retrain => l.workflow.retrain.as_ref().map(|r| r.schedule.clone()),
            }
            .unwrap_or_default();
            out!(
                "{} ({}): \"{expr}\", overlap {:?}, missed {:?}",
                e.workflow,
                e.kind.as_str(),
                e.overlap,
                e.missed
            );
            for t in e.schedule.after(&now).take(next) {
                out!("  next {}", crate::store::stamp(t));
            }
            if let Some(store) = store {
                for f in store
                    .fires(Some(&e.workflow), 50)
                    .await?
                    .into_iter()
                    .filter(|f| f.kind == e.kind.as_str())
                    .take(3)
                {
                    out!(
                        "  last {} {}{}",
                        f.scheduled_at,
                        f.status,
                        f.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    );
                }
            }
        }
    }
    if !any {
        out!("no scheduled workflows in {}", workflows.display());
    }
    Ok(ExitCode::SUCCESS)
}
