//! `hypograph validate`, `run` and `status`: workflows from the command line.

use crate::engine::{self, Event, Options, RoundSummary};
use crate::plot::{Panel, Series};
use crate::schedule::Lease;
use crate::store::{Location, RoundInfo, RoundState, Store};
use crate::workflow::{self, Loaded};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Workflow files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow file.
    pub file: PathBuf,
    /// Rounds to run (an unfinished round, resumed, counts as one).
    #[arg(long, default_value_t = 1)]
    rounds: u64,
    /// How long to wait for stages that answer later before returning (the round stays
    /// `awaiting` and the next run continues it): e.g. 0s, 30s, 10m.
    #[arg(long, default_value = "10s")]
    wait: String,
    /// How long this run's hold on the workflow lasts without renewal (renewed every third
    /// of it); another process may take the workflow over once it lapses.
    #[arg(long, default_value = "30s")]
    lease_ttl: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this workflow's rounds.
    #[arg(long)]
    workflow: Option<String>,
    /// Rounds to show.
    #[arg(long, default_value_t = 20)]
    limit: i64,
    #[arg(long)]
    json: bool,
}

/// Loads every file and prints every problem; the exit code says whether all were valid.
/// Relations are checked against the graph the workflow names (its file, or its fetched
/// dataset when the cache holds it), else against the database's graph; what cannot be
/// checked yet, or would stop a run on this database, is a note.
pub async fn validate(db: &Location, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let store = if db.exists() {
        Some(Store::open(db, crate::store::OpenMode::Existing).await?)
    } else {
        None
    };
    let mut ok = true;
    for f in &args.files {
        let checked = match workflow::load(f) {
            // Validation never downloads: a `graph.fetch` the cache lacks is checked at the
            // first run instead, which the notes say.
            Ok(l) => match workflow::source::check_offline(store.as_ref(), &l).await {
                Ok(notes) => Ok((l, notes)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match checked {
            Ok((l, notes)) => {
                for n in notes {
                    eprintln!("{}: note: {n}", f.display());
                }
                out!(
                    "{}: ok (workflow `{}`, {} stage{})",
                    f.display(),
                    l.workflow.name,
                    l.workflow.stages.len(),
                    if l.workflow.stages.len() == 1 {
                        ""
                    } else {
                        "s"
                    }
                )
            }
            Err(e) => {
                ok = false;
                eprintln!("{e}");
            }
        }
    }
    if let Some(s) = store {
        s.close().await;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Loads a workflow, printing its problems as `FILE:LINE:COL` lines.
/// `--lease-ttl` of `run` and `daemon` (at least 300 ms: renewals come every third of it).
pub fn lease_ttl(text: &str) -> anyhow::Result<Duration> {
    Ok(workflow::parse_duration(text)
        .map_err(|e| anyhow::anyhow!("--lease-ttl: {e}"))?
        .max(Duration::from_millis(300)))
}

pub fn load(file: &Path) -> anyhow::Result<Loaded> {
    workflow::load(file).map_err(|e| anyhow::anyhow!("invalid workflow\n{e}"))
}

/// A stop flag raised by SIGINT or SIGTERM: the engine finishes its step and returns.
pub fn stop_on_signals() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::warn!("signal received: finishing the current step");
        let _ = tx.send(true);
    });
    rx
}

pub async fn run(
    store: &Store,
    db: &Location,
    data_dir: &Path,
    loaded: Loaded,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    let wait = workflow::parse_duration(&args.wait).map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
    let lease_ttl = lease_ttl(&args.lease_ttl)?;
    let name = loaded.workflow.name.clone();
    // The same lease a daemon takes: one process drives a workflow at a time.
    let holder = crate::schedule::holder_name("run");
    let Some(lease) = Lease::acquire(store, &name, &holder, lease_ttl).await? else {
        let (by, until) = Lease::holder_of(store, &name)
            .await?
            .unwrap_or_else(|| ("another process".into(), "soon".into()));
        bail!(
            "workflow `{name}` is being run by {by} (its lease runs until {until}); \
             wait for it to finish, or stop it first"
        );
    };
    let result = if loaded.workflow.stages.is_empty() {
        retrain_only(store, data_dir, &loaded, args.json).await
    } else {
        run_leased(store, db, data_dir, &loaded, &args, wait, lease.lost()).await
    };
    lease.release().await;
    result
}

async fn retrain_only(
    store: &Store,
    data_dir: &Path,
    loaded: &Loaded,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let m = engine::retrain(store, loaded, data_dir).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        out!(
            "{}: model {} on graph version {}{} ({})",
            loaded.workflow.name,
            m.id,
            m.graph_version,
            m.parent_id
                .map(|p| format!(", warm from model {p}"))
                .unwrap_or_default(),
            m.path
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_leased(
    store: &Store,
    db: &Location,
    data_dir: &Path,
    loaded: &Loaded,
    args: &RunArgs,
    wait: Duration,
    lease_lost: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let stop = stop_on_signals();
    let name = loaded.workflow.name.clone();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut summaries: Vec<RoundSummary> = Vec::new();
    for _ in 0..args.rounds {
        if store.open_round(&name).await?.is_none()
            && let Some(why) = engine::stop_reason(store, loaded).await?
        {
            bar.suspend(|| out!("{name}: no new round: {why}"));
            break;
        }
        let mut on_event = |e: &Event| match e {
            Event::Imported { version, triples } => bar.suspend(|| {
                if !json {
                    out!("imported the workflow's graph: version {version}, {triples} triples")
                }
            }),
            Event::Resumed { number, state, .. } => bar.suspend(|| {
                if !json {
                    out!("resuming round {number} of {name} at `{state}`")
                }
            }),
            Event::State {
                number,
                state,
                stage,
                ..
            } => {
                let stage_name = loaded
                    .workflow
                    .stages
                    .get(*stage as usize)
                    .map(|s| s.name.as_str())
                    .unwrap_or("");
                let detail = match state {
                    RoundState::Dispatching | RoundState::Awaiting => {
                        format!(" (stage {stage_name})")
                    }
                    _ => String::new(),
                };
                bar.set_message(format!("{name} round {number}: {state}{detail}"));
            }
            Event::Finished(s) => {
                bar.suspend(|| {
                    if !json {
                        out!(
                            "round {}: {} hypotheses, {} confirmed, {} refuted{}, precision {:.2}{}, version {}",
                            s.number,
                            s.hypotheses,
                            s.confirmed,
                            s.refuted,
                            if s.failed + s.expired > 0 {
                                format!(", {} failed, {} expired", s.failed, s.expired)
                            } else {
                                String::new()
                            },
                            s.precision,
                            s.test_mrr.map(|m| format!(", test MRR {m:.3}")).unwrap_or_default(),
                            s.version.map(|v| v.to_string()).unwrap_or_default()
                        )
                    }
                });
                summaries.push(s.clone());
            }
        };
        let mut opts = Options {
            data_dir: data_dir.to_owned(),
            fire_time: None,
            on_event: &mut on_event,
            stop: Some(stop.clone()),
            wait,
            until: None,
            lease_lost: Some(lease_lost.clone()),
        };
        let round = match engine::run_round(store, loaded, &mut opts).await {
            Ok(r) => r,
            Err(engine::EngineError::Interrupted(state)) => {
                bar.finish_and_clear();
                out!("stopped by a signal at `{state}`; the same command resumes the round");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("running {}", args.file.display()))
                );
            }
        };
        if round.state == RoundState::Dispatching {
            bar.finish_and_clear();
            out!(
                "round {} of {name}: stage `{}` paused after repeated failures (circuit open); \
                 the remaining hypotheses stay queued: run again later",
                round.number,
                loaded
                    .workflow
                    .stages
                    .get(round.stage as usize)
                    .map(|s| s.name.as_str())
                    .unwrap_or("?")
            );
            return Ok(ExitCode::SUCCESS);
        }
        if round.state == RoundState::Awaiting {
            bar.finish_and_clear();
            out!(
                "round {} of {name} is awaiting answers at stage `{}`: run again (or `hypograph status`) later",
                round.number,
                loaded
                    .workflow
                    .stages
                    .get(round.stage as usize)
                    .map(|s| s.name.as_str())
                    .unwrap_or("?")
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    bar.finish_and_clear();
    let all: Vec<RoundInfo> = {
        let mut r = store.rounds(Some(&name), 10_000).await?;
        r.reverse();
        r
    };
    let plot = write_plot(data_dir, &name, &all)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!("");
    out!("{}", summary_table(&all));
    out!("database: {db}");
    if let Some(p) = plot {
        out!("plots:    {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Discoveries and MRR per finished round, as a Markdown table.
pub fn summary_table(rounds: &[RoundInfo]) -> String {
    let mut s = String::from(
        "| round | state | hypotheses | confirmed | refuted | precision | discoveries | test MRR | popularity MRR | version |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let mut discoveries = 0i64;
    for r in rounds {
        let m = &r.metrics;
        let get = |k: &str| m.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
        discoveries += get("confirmed");
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.number,
            r.state,
            get("hypotheses"),
            get("confirmed"),
            get("refuted"),
            m.get("precision")
                .and_then(|v| v.as_f64())
                .map(|p| format!("{p:.2}"))
                .unwrap_or_default(),
            discoveries,
            m.get("test_mrr")
                .and_then(|v| v.as_f64())
                .map(|p| format!("{p:.3}"))
                .unwrap_or_default(),
            m.get("popularity_test_mrr")
                .and_then(|v| v.as_f64())
                .map(|p| format!("{p:.3}"))
                .unwrap_or_default(),
            r.result_version.map(|v| v.to_string()).unwrap_or_default(),
        ));
    }
    s
}

/// Discoveries and test MRR per round as an SVG beside the checkpoints.
fn write_plot(
    data_dir: &Path,
    name: &str,
    rounds: &[RoundInfo],
) -> anyhow::Result<Option<PathBuf>> {
    let done: Vec<&RoundInfo> = rounds
        .iter()
        .filter(|r| r.state == RoundState::Done)
        .collect();
    if done.is_empty() {
        return Ok(None);
    }
    let mut cumulative = 0.0;
    let discoveries: Vec<(f64, f64)> = done
        .iter()
        .map(|r| {
            cumulative += r
                .metrics
                .get("confirmed")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            (r.number as f64, cumulative)
        })
        .collect();
    let mrr: Vec<(f64, f64)> = done
        .iter()
        .filter_map(|r| Some((r.number as f64, r.metrics.get("test_mrr")?.as_f64()?)))
        .collect();
    let panel = |title: &str, y: &str, points: Vec<(f64, f64)>, range| Panel {
        title: title.into(),
        x_label: "round".into(),
        y_label: y.into(),
        series: vec![Series {
            name: name.into(),
            points,
            markers: true,
        }],
        y_range: range,
    };
    let mut panels = vec![panel(
        "confirmed edges (cumulative)",
        "discoveries",
        discoveries,
        None,
    )];
    if !mrr.is_empty() {
        panels.push(panel("test MRR (filtered)", "MRR", mrr, Some((0.0, 1.0))));
    }
    let dir = data_dir.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, crate::plot::svg(&panels))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

pub async fn status(store: &Store, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let rounds = store.rounds(args.workflow.as_deref(), args.limit).await?;
    if args.json {
        let mut out = Vec::new();
        for r in &rounds {
            let stages: Vec<serde_json::Value> = store
                .stage_counts(r.id)
                .await?
                .into_iter()
                .map(|((stage, status), n)| serde_json::json!({ "stage": stage, "status": status, "count": n }))
                .collect();
            let mut v = serde_json::to_value(r)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("stages".into(), serde_json::Value::Array(stages));
                o.insert(
                    "hypotheses".into(),
                    serde_json::to_value(store.hypothesis_counts(r.id).await?)?,
                );
            }
            out.push(v);
        }
        out!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rounds.is_empty() {
        out!("no rounds yet");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rounds {
        let stage_names: Vec<String> = serde_yaml::from_str::<serde_yaml::Value>(&r.spec)
            .ok()
            .and_then(|v| v.get("stages").cloned())
            .and_then(|s| s.as_sequence().cloned())
            .unwrap_or_default()
            .iter()
            .map(|s| {
                s.get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("?")
                    .to_owned()
            })
            .collect();
        let counts = store.stage_counts(r.id).await?;
        let hyp = store.hypothesis_counts(r.id).await?;
        let waits = match r.state {
            RoundState::Awaiting | RoundState::Dispatching => {
                let open: i64 = ["queued", "submitted"]
                    .iter()
                    .filter_map(|s| counts.get(&(r.stage, (*s).to_owned())))
                    .sum();
                format!(
                    " - waits on stage `{}` for {open} answer{}",
                    stage_names
                        .get(r.stage as usize)
                        .map(String::as_str)
                        .unwrap_or("?"),
                    if open == 1 { "" } else { "s" }
                )
            }
            RoundState::Failed => format!(" - {}", r.error.clone().unwrap_or_default()),
            // A run driving the round now counts as an attempt too (counted as it begins).
            _ if r.attempts > 0 => match &r.error {
                Some(e) => format!(
                    " - {} attempt{} so far, the last error: {e}",
                    r.attempts,
                    if r.attempts == 1 { "" } else { "s" },
                ),
                None => format!(
                    " - {} attempt{} so far, none reported an error (a run driving it now, or \
                     one that died inside a step)",
                    r.attempts,
                    if r.attempts == 1 { "" } else { "s" },
                ),
            },
            _ => String::new(),
        };
        out!(
            "{} round {} (id {}): {}{}  [{}]",
            r.workflow,
            r.number,
            r.id,
            r.state,
            waits,
            r.updated_at
        );
        if !hyp.is_empty() {
            let parts: Vec<String> = hyp.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out!("  hypotheses: {}", parts.join(", "));
        }
        let mut by_stage: std::collections::BTreeMap<i64, Vec<String>> = Default::default();
        for ((stage, status), n) in &counts {
            by_stage
                .entry(*stage)
                .or_default()
                .push(format!("{status} {n}"));
        }
        for (stage, parts) in by_stage {
            out!(
                "  stage {stage} ({}): {}",
                stage_names
                    .get(stage as usize)
                    .map(String::as_str)
                    .unwrap_or("?"),
                parts.join(", ")
            );
        }
        if let Some(m) = r.metrics.get("test_mrr").and_then(|v| v.as_f64()) {
            out!(
                "  test MRR {m:.3}, version {}",
                r.result_version.unwrap_or(0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hypograph round ...`: operations on one round.
#[derive(Debug, clap::Subcommand)]
pub enum RoundCommand {
    /// Give up on an open round: it becomes `failed` with the reason, its waiting hypotheses
    /// stop waiting, and the workflow's next run starts a new round. Admins only.
    Abandon {
        /// The round's id (see `hypograph status`).
        id: i64,
        #[arg(long)]
        reason: String,
        /// An admin's bearer token.
        #[arg(long, env = "HYPOGRAPH_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn round(store: &Store, cmd: RoundCommand) -> anyhow::Result<ExitCode> {
    let RoundCommand::Abandon {
        id,
        reason,
        token,
        json,
    } = cmd;
    if reason.trim().is_empty() {
        bail!("abandoning a round needs a reason");
    }
    let user = store
        .authorize(&token, crate::store::Action::AbandonRound)
        .await?;
    let r = store.abandon_round(id, &reason, &user.name).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        out!(
            "round {} of {} (id {}) is failed: {}",
            r.number,
            r.workflow,
            r.id,
            r.error.unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
