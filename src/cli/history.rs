//! `hypograph graph ...`: the history commands (log, show, diff, export, revert, blame, verify).

use crate::graph::FeatureValue;
use crate::store::{Change, Diff, Outcome, Store, VersionInfo, VersionRef};
use anyhow::{Context, bail};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `head<TAB>relation<TAB>tail` lines (re-importable).
    Tsv,
    /// A directory with KGX nodes.tsv and edges.tsv (and features.tsv when there are features).
    Kgx,
}

/// A feature kind, as `graph blame --feature` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeatureKind {
    Smiles,
    Sequence,
    Vector,
}

impl FeatureKind {
    fn name(self) -> &'static str {
        match self {
            Self::Smiles => "smiles",
            Self::Sequence => "sequence",
            Self::Vector => "vector",
        }
    }
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
    /// Triples added and removed between two versions (and features and edge sources).
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
        /// Also write the entity features at that version to this file, in the form
        /// `import --features` reads (kgx: default features.tsv in the directory).
        #[arg(long, value_name = "FILE")]
        features: Option<PathBuf>,
    },
    /// Write a new version that undoes the given one.
    Revert {
        version: VersionRef,
        #[arg(short, long)]
        message: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Which version, round and evidence added a triple (and removed it, if it was), and every
    /// live source of it with the version that added it; with `--feature KIND`, which versions
    /// set an entity's feature values.
    Blame {
        /// The triple's head, or the entity whose feature to blame.
        head: String,
        #[arg(required_unless_present = "feature")]
        relation: Option<String>,
        #[arg(required_unless_present = "feature")]
        tail: Option<String>,
        /// Blame HEAD's feature of this kind instead of a triple.
        #[arg(long, value_enum, conflicts_with_all = ["relation", "tail"])]
        feature: Option<FeatureKind>,
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
                let out = serde_json::json!({
                    "version": info, "added": diff.added, "removed": diff.removed,
                    "features": diff.features, "sources": diff.sources,
                });
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
                    "changes  +{} -{} ({} new entities){}{}",
                    info.n_added,
                    info.n_removed,
                    info.n_entities,
                    if info.n_features + info.n_features_removed > 0 {
                        format!(
                            ", features +{} -{}",
                            info.n_features, info.n_features_removed
                        )
                    } else {
                        String::new()
                    },
                    if info.n_sources + info.n_sources_removed > 0 {
                        format!(", sources +{} -{}", info.n_sources, info.n_sources_removed)
                    } else {
                        String::new()
                    }
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
            features,
        } => {
            let v = store.resolve(version).await?;
            let features = match format {
                ExportFormat::Kgx => Some(features.unwrap_or_else(|| out.join("features.tsv"))),
                ExportFormat::Tsv => features,
            };
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
            if let Some(path) = features {
                match store.export_features(v, &path).await? {
                    0 if format == ExportFormat::Tsv => {
                        eprintln!(
                            "version {v} has no features: {} not written",
                            path.display()
                        )
                    }
                    0 => {}
                    n => eprintln!(
                        "exported the features of {n} entities of version {v} to {}",
                        path.display()
                    ),
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
                        "version {} reverts version {v}: +{} -{} triples{}{}",
                        s.version,
                        s.added,
                        s.removed,
                        if s.features_set + s.features_removed > 0 {
                            format!(", features +{} -{}", s.features_set, s.features_removed)
                        } else {
                            String::new()
                        },
                        if s.sources_added + s.sources_removed > 0 {
                            format!(", sources +{} -{}", s.sources_added, s.sources_removed)
                        } else {
                            String::new()
                        }
                    ),
                }
            }
        }
        GraphCommand::Blame {
            head,
            feature: Some(kind),
            json,
            ..
        } => {
            let rows = store.blame_feature(&head, kind.name()).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                out!("{head}\t{}", kind.name());
                for row in &rows {
                    out!("  value      {}", brief(&row.value));
                    out!("  set in     {}", blame_version(&row.added_in));
                    out!("  source     {}", row.added_in.source);
                    match &row.removed_in {
                        Some(r) => out!("  replaced in {}", blame_version(r)),
                        None => out!("  live"),
                    }
                }
            }
            if rows.is_empty() {
                bail!("{head} never had a {} feature", kind.name());
            }
        }
        GraphCommand::Blame {
            head,
            relation: Some(relation),
            tail: Some(tail),
            json,
            ..
        } => {
            let blame = store.blame([&head, &relation, &tail]).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&blame)?);
            } else {
                out!("{head}\t{relation}\t{tail}");
                for row in &blame.history {
                    out!("  added in   {}", blame_version(&row.added_in));
                    if let Some(p) = &row.provenance {
                        out!("  evidence   {p}");
                    }
                    match &row.removed_in {
                        Some(r) => out!("  removed in {}", blame_version(r)),
                        None => out!("  live"),
                    }
                }
                for s in &blame.sources {
                    out!("  source     {}  {}", s.source, blame_version(&s.added_in));
                }
                if let Some(r) = &blame.refuted {
                    out!("  refuted    {r}");
                }
            }
            if blame.history.is_empty() && blame.refuted.is_none() {
                bail!("{head} {relation} {tail} was never in the graph");
            }
        }
        GraphCommand::Blame { .. } => {
            bail!("blame takes a triple (HEAD RELATION TAIL) or an entity and --feature KIND")
        }
        GraphCommand::Verify { json } => {
            let report = store.verify().await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&report)?);
            }
            match &report.first_mismatch {
                None => {
                    if !json {
                        let counted = [
                            (report.versions_checked, "versions"),
                            (report.edges_checked, "edges"),
                            (report.features_checked, "feature values"),
                            (report.sources_checked, "edge sources"),
                        ];
                        let mut parts: Vec<String> = counted
                            .iter()
                            .enumerate()
                            .filter(|(i, (n, _))| *i < 2 || *n > 0)
                            .map(|(_, (n, what))| format!("{n} {what}"))
                            .collect();
                        let last = parts.pop().unwrap_or_default();
                        out!("ok: {} and {last} match their hash chain", parts.join(", "));
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
        "{:>5}  {}  {:>9} {:>9}  {}  {}{}{}{}",
        v.id,
        v.created_at,
        format!("+{}", v.n_added),
        format!("-{}", v.n_removed),
        &v.hash[..v.hash.len().min(12)],
        if v.n_features + v.n_features_removed > 0 {
            format!("[features +{} -{}] ", v.n_features, v.n_features_removed)
        } else {
            String::new()
        },
        if v.n_sources + v.n_sources_removed > 0 {
            format!("[sources +{} -{}] ", v.n_sources, v.n_sources_removed)
        } else {
            String::new()
        },
        v.round_id
            .map(|r| format!("[round {r}] "))
            .unwrap_or_default(),
        v.message
    )
}

/// A feature value short enough for a terminal line.
fn brief(value: &FeatureValue) -> String {
    match value {
        FeatureValue::Vector(x) => format!("vector of {} values", x.len()),
        FeatureValue::Smiles(s) | FeatureValue::Sequence(s) if s.chars().count() > 60 => {
            let head: String = s.chars().take(57).collect();
            format!("{head}... ({} characters)", s.chars().count())
        }
        FeatureValue::Smiles(s) | FeatureValue::Sequence(s) => s.clone(),
    }
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
    for f in diff.features.iter().take(limit) {
        let sign = match f.change {
            Change::Added => '+',
            Change::Changed => '~',
            Change::Removed => '-',
        };
        out!("{sign} feature {}\t{}", f.entity, f.kind);
    }
    if diff.features.len() > limit {
        out!(
            "... {} more feature changes (use --limit 0 for all)",
            diff.features.len() - limit
        );
    }
    for s in diff.sources.iter().take(limit) {
        let [h, r, t] = &s.triple;
        out!(
            "{} source {}\t{h}\t{r}\t{t}",
            if s.added { '+' } else { '-' },
            s.source
        );
    }
    if diff.sources.len() > limit {
        out!(
            "... {} more source changes (use --limit 0 for all)",
            diff.sources.len() - limit
        );
    }
    if !diff.sources.is_empty() {
        let added = diff.sources.iter().filter(|s| s.added).count();
        out!(
            "sources: {added} added, {} removed",
            diff.sources.len() - added
        );
    }
    if !diff.features.is_empty() {
        let n = |c: Change| diff.features.iter().filter(|f| f.change == c).count();
        out!(
            "features: {} added, {} changed, {} removed",
            n(Change::Added),
            n(Change::Changed),
            n(Change::Removed)
        );
    }
    out!(
        "{} added, {} removed between versions {} and {}",
        diff.added.len(),
        diff.removed.len(),
        diff.from,
        diff.to
    );
}
