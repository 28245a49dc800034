//! `hypograph graph ...`: the history commands (log, show, diff, export, revert, blame, verify).

use crate::store::{Diff, Outcome, Store, VersionInfo, VersionRef};
use anyhow::{Context, bail};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `head<TAB>relation<TAB>tail` lines (re-importable).
    Tsv,
    /// A directory with KGX nodes.tsv and edges.tsv.
    Kgx,
}

#[derive(Debug, clap::Subcommand)]
pub enum GraphCommand {
    /// Versions, newest first.
    Log {
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// One version's metadata and changes.
    Show {
        version: VersionRef,
        /// Changes to list (0 for all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Triples added and removed between two versions.
    Diff {
        from: VersionRef,
        to: VersionRef,
        #[arg(long)]
        json: bool,
    },
    /// Write the graph exactly as it was at a version.
    Export {
        #[arg(long, default_value = "HEAD")]
        version: VersionRef,
        #[arg(long, value_enum, default_value_t = ExportFormat::Tsv)]
        format: ExportFormat,
        /// Output file (tsv; `-` for stdout) or directory (kgx).
        out: PathBuf,
    },
    /// Write a new version that undoes the given one.
    Revert {
        version: VersionRef,
        #[arg(short, long)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Which version, round and evidence added a triple (and removed it, if it was).
    Blame {
        head: String,
        relation: String,
        tail: String,
        #[arg(long)]
        json: bool,
    },
    /// Recompute the hash chain and report the first version that does not match.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(store: &Store, cmd: GraphCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        GraphCommand::Log { limit, json } => {
            let versions = store.log(limit).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&versions)?);
            } else if versions.is_empty() {
                out!("no versions yet");
            } else {
                for v in &versions {
                    out!("{}", log_line(v));
                }
            }
        }
        GraphCommand::Show {
            version,
            limit,
            json,
        } => {
            let id = store.resolve(version).await?;
            let info = store.version(id).await?;
            let diff = store.diff(info.parent_id.unwrap_or(0), id).await?;
            if json {
                let out = serde_json::json!({ "version": info, "added": diff.added, "removed": diff.removed });
                out!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                out!("version {}", info.id);
                if let Some(p) = info.parent_id {
                    out!("parent   {p}");
                }
                if let Some(r) = info.round_id {
                    out!("round    {r}");
                }
                out!("date     {}", info.created_at);
                out!("hash     {}", info.hash);
                out!("source   {}", info.source);
                out!(
                    "changes  +{} -{} ({} new entities)",
                    info.n_added,
                    info.n_removed,
                    info.n_entities
                );
                out!("\n    {}\n", info.message);
                print_diff(&diff, limit);
            }
        }
        GraphCommand::Diff { from, to, json } => {
            let (a, b) = (store.resolve(from).await?, store.resolve(to).await?);
            let diff = store.diff(a, b).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&diff)?);
            } else {
                print_diff(&diff, 0);
            }
        }
        GraphCommand::Export {
            version,
            format,
            out,
        } => {
            let v = store.resolve(version).await?;
            match format {
                ExportFormat::Tsv if out.as_os_str() == "-" => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    store.export_tsv(v, &mut lock).await?;
                    lock.flush()?;
                }
                ExportFormat::Tsv => {
                    let file = std::fs::File::create(&out)
                        .with_context(|| format!("creating {}", out.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    let n = store.export_tsv(v, &mut w).await?;
                    w.flush()
                        .with_context(|| format!("writing {}", out.display()))?;
                    eprintln!("exported {n} triples of version {v} to {}", out.display());
                }
                ExportFormat::Kgx => {
                    let (nodes, edges) = store.export_kgx(v, &out).await?;
                    eprintln!(
                        "exported {nodes} nodes and {edges} edges of version {v} to {}",
                        out.display()
                    );
                }
            }
        }
        GraphCommand::Revert {
            version,
            message,
            json,
        } => {
            let v = store.resolve(version).await?;
            let outcome = store.revert(v, message.as_deref()).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                match outcome {
                    Outcome::Unchanged { .. } => {
                        out!("nothing to revert: the changes of version {v} are already undone")
                    }
                    Outcome::Committed(s) => out!(
                        "version {} reverts version {v}: +{} -{} triples",
                        s.version,
                        s.added,
                        s.removed
                    ),
                }
            }
        }
        GraphCommand::Blame {
            head,
            relation,
            tail,
            json,
        } => {
            let (rows, refuted) = store.blame([&head, &relation, &tail]).await?;
            if json {
                let out = serde_json::json!({ "history": rows, "refuted": refuted });
                out!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                out!("{head}\t{relation}\t{tail}");
                for row in &rows {
                    out!("  added in   {}", blame_version(&row.added_in));
                    if let Some(p) = &row.provenance {
                        out!("  evidence   {p}");
                    }
                    match &row.removed_in {
                        Some(r) => out!("  removed in {}", blame_version(r)),
                        None => out!("  live"),
                    }
                }
                if let Some(r) = &refuted {
                    out!("  refuted    {r}");
                }
            }
            if rows.is_empty() && refuted.is_none() {
                bail!("{head} {relation} {tail} was never in the graph");
            }
        }
        GraphCommand::Verify { json } => {
            let report = store.verify().await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&report)?);
            }
            match &report.first_mismatch {
                None => {
                    if !json {
                        out!(
                            "ok: {} versions and {} edges match their hash chain",
                            report.versions_checked,
                            report.edges_checked
                        );
                    }
                }
                Some(m) => {
                    eprintln!("version {} does not verify: {}", m.version, m.reason);
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn log_line(v: &VersionInfo) -> String {
    format!(
        "{:>5}  {}  {:>9} {:>9}  {}  {}{}",
        v.id,
        v.created_at,
        format!("+{}", v.n_added),
        format!("-{}", v.n_removed),
        &v.hash[..v.hash.len().min(12)],
        v.round_id
            .map(|r| format!("[round {r}] "))
            .unwrap_or_default(),
        v.message
    )
}

fn blame_version(v: &VersionInfo) -> String {
    format!(
        "version {} ({}{}): {}",
        v.id,
        v.created_at,
        v.round_id
            .map(|r| format!(", round {r}"))
            .unwrap_or_default(),
        v.message
    )
}

fn print_diff(diff: &Diff, limit: usize) {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let total = diff.added.len() + diff.removed.len();
    let lines = diff
        .added
        .iter()
        .map(|t| ('+', t))
        .chain(diff.removed.iter().map(|t| ('-', t)));
    for (sign, [h, r, t]) in lines.take(limit) {
        out!("{sign} {h}\t{r}\t{t}");
    }
    if total > limit {
        out!("... {} more (use --limit 0 for all)", total - limit);
    }
    out!(
        "{} added, {} removed between versions {} and {}",
        diff.added.len(),
        diff.removed.len(),
        diff.from,
        diff.to
    );
}
