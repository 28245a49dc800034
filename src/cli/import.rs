//! `hypograph import`: pick the reader (triples or KGX), parse, hand the batch to the store,
//! with a features file in the same version (or alone).

use crate::graph::features::{FeatureFile, read_features};
use crate::graph::table::{
    ColumnMap, Format, Preset, TableOptions, TableSource, implied_by_name, parse_delimiter,
    read_table,
};
use crate::graph::{OnInvalid, TripleBatch, kgx, tsv};
use crate::logging::peak_rss_bytes;
use crate::store::{ImportOptions, Outcome, Store, StoreError};
use anyhow::{Context, bail};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A triples TSV, a KGX edges.tsv, an edge table (CSV/TSV, `--map`), a directory or
    /// tarball holding a format's files; `.gz`, `.bz2`, `.zst` are read directly.
    #[arg(required_unless_present = "features")]
    file: Option<PathBuf>,
    /// The nodes file (default: nodes.tsv beside a KGX edges file; found by name in a
    /// directory or tarball).
    #[arg(long, requires = "file")]
    nodes: Option<PathBuf>,
    /// Which columns are what, e.g. `subject=x_id,object=y_id,predicate=relation,category=kind`.
    /// Keys: subject, predicate, object, subject_category, subject_name, object_category,
    /// object_name, source (edge rows); id, name, category (nodes rows); category_from_key=SEP.
    /// `a+b` joins columns into one key with `:`; numbers (1, 2, ...) name columns of a
    /// headerless file. Applied on top of a `--format` preset.
    #[arg(long, value_name = "KEY=COLUMN,...", requires = "file")]
    map: Option<String>,
    /// The tables have no header row (name columns by number in `--map`).
    #[arg(long, requires = "file")]
    no_header: bool,
    /// Field separator of the tables: one character, or `tab` (default: `,` for .csv, tab
    /// otherwise).
    #[arg(long, value_name = "CHAR", requires = "file")]
    delimiter: Option<String>,
    /// Entity features: a TSV (or .csv) with a header `id`, then `smiles`, `sequence` and/or
    /// vector columns (f0, f1, ...). Imported in the same version as FILE, or alone; the
    /// entities must be in FILE or in the graph already.
    #[arg(long, value_name = "FILE")]
    features: Option<PathBuf>,
    /// How FILE is read (default: decided from the path and its first line).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Skip malformed lines (each is reported) instead of importing nothing.
    #[arg(long)]
    skip_invalid: bool,
    /// Make the new version equal the file: edges absent from it are removed with their
    /// sources, and an edge the file gives sources for keeps exactly those (features are only
    /// ever set, never removed this way).
    #[arg(long, requires = "file")]
    replace: bool,
    /// Message recorded with the version.
    #[arg(short, long)]
    message: Option<String>,
    #[arg(long)]
    json: bool,
}

/// The files one import reads, once the format is decided.
enum Source {
    Triples(PathBuf),
    Kgx { nodes: PathBuf, edges: PathBuf },
    Table(Box<TableSource>),
}

/// The table options the flags ask for, if any.
fn table_options(args: &ImportArgs) -> anyhow::Result<Option<TableOptions>> {
    if args.delimiter.is_none() && !args.no_header {
        return Ok(None);
    }
    let delimiter = args
        .delimiter
        .as_deref()
        .map(parse_delimiter)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--delimiter: {e}"))?;
    Ok(Some(TableOptions {
        delimiter,
        header: !args.no_header,
    }))
}

fn decide(args: &ImportArgs, path: &Path) -> anyhow::Result<Source> {
    let map = match &args.map {
        Some(spec) => ColumnMap::parse(spec).map_err(|e| anyhow::anyhow!("--map: {e}"))?,
        None => ColumnMap::default(),
    };
    let options = table_options(args)?;
    let tabular = args.map.is_some() || options.is_some() || implied_by_name(path);
    let table = |preset| {
        Source::Table(Box::new(TableSource {
            edges: path.to_owned(),
            nodes: args.nodes.clone(),
            preset,
            map: map.clone(),
            options,
        }))
    };
    if let Some(preset) = args.format.and_then(Format::preset) {
        return Ok(table(Some(preset)));
    }
    if args.format == Some(Format::Table)
        || (tabular && matches!(args.format, None | Some(Format::Kgx)))
    {
        return Ok(table(None));
    }
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let kgx_pair = |edges: PathBuf| {
        let nodes = args
            .nodes
            .clone()
            .unwrap_or_else(|| edges.parent().unwrap_or(Path::new(".")).join("nodes.tsv"));
        Source::Kgx { nodes, edges }
    };
    if meta.is_dir() {
        if args.format == Some(Format::Triples) {
            bail!("{} is a directory, not a triples file", path.display());
        }
        return Ok(kgx_pair(path.join("edges.tsv")));
    }
    Ok(match args.format {
        Some(Format::Triples) => Source::Triples(path.to_owned()),
        Some(Format::Kgx) => kgx_pair(path.to_owned()),
        None if args.nodes.is_some() => kgx_pair(path.to_owned()),
        None => {
            let sibling = path.parent().unwrap_or(Path::new(".")).join("nodes.tsv");
            if has_kgx_edge_header(path)? && sibling.is_file() {
                kgx_pair(path.to_owned())
            } else {
                Source::Triples(path.to_owned())
            }
        }
        Some(f) => table(f.preset()),
    })
}

fn has_kgx_edge_header(path: &Path) -> anyhow::Result<bool> {
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .take(4096)
        .read_to_end(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&head);
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("");
    let cols: Vec<String> = first
        .split('\t')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    Ok(["subject", "predicate", "object"]
        .iter()
        .all(|c| cols.iter().any(|x| x == c)))
}

fn digest(path: &Path) -> anyhow::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    hasher
        .update_reader(file)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// A parsed import, ready for the store. Parsing happens before the database is opened, so a
/// bad file never creates or touches one.
pub struct Prepared {
    args: ImportArgs,
    batch: TripleBatch,
    features: Option<FeatureFile>,
    opts: ImportOptions,
    shown: String,
    started: Instant,
    parsed: std::time::Duration,
    progress: crate::progress::Reporter,
}

pub fn prepare(args: ImportArgs) -> anyhow::Result<Prepared> {
    let started = Instant::now();
    // A spinner naming the step on a terminal; off one, a line at a step's end only when the
    // import has run `progress::LINE_EVERY` (short imports stay quiet).
    let mut progress = crate::progress::Reporter::steps();
    if let Some(f) = &args.file {
        progress.update(0, 0, || format!("import: reading {}", f.display()));
    }
    let on_invalid = if args.skip_invalid {
        OnInvalid::Skip
    } else {
        OnInvalid::Fail
    };
    let source = args.file.as_deref().map(|f| decide(&args, f)).transpose()?;
    let (batch, format, mut files): (TripleBatch, &str, Vec<&PathBuf>) = match &source {
        Some(Source::Triples(p)) => (tsv::read_triples(p, on_invalid)?, "triples", vec![p]),
        Some(Source::Kgx { nodes, edges }) => (
            kgx::read_kgx(nodes, edges, on_invalid)?,
            "kgx",
            vec![nodes, edges],
        ),
        Some(Source::Table(t)) => (
            read_table(t, on_invalid)?,
            t.preset.map_or("table", Preset::name),
            std::iter::once(&t.edges).chain(&t.nodes).collect(),
        ),
        None => (TripleBatch::default(), "features", Vec::new()),
    };
    if let Some(f) = &args.features {
        progress.update(0, 0, || format!("import: reading features {}", f.display()));
    }
    let features = args.features.as_deref().map(read_features).transpose()?;
    let parsed = started.elapsed();
    progress.update(0, 0, || {
        format!(
            "import: read {} lines ({} distinct triples) in {}; writing the version",
            batch.lines_read,
            batch.triples.len(),
            crate::progress::duration(parsed.as_secs_f64())
        )
    });
    progress.suspend(|| {
        for skipped in &batch.skipped {
            eprintln!("skipped {skipped}");
        }
    });
    // Nothing to import is a mistake (a truncated download, the wrong file), not a no-op:
    // saying "already in the graph" would hide it, and no database should be created for it.
    if source.is_some() && batch.triples.is_empty() && batch.entities.is_empty() {
        let shown = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        if batch.lines_read == 0 && batch.skipped.is_empty() {
            bail!("{shown} is empty (no data lines): nothing to import");
        }
        bail!(
            "{shown} holds no valid triple ({} lines skipped as invalid): nothing to import",
            batch.skipped.len()
        );
    }
    files.extend(args.features.as_ref());
    let mut file_info = Vec::new();
    for f in &files {
        // A directory is recorded as the files it holds, so the version names what was read.
        let inside: Vec<PathBuf> = if f.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(f)
                .with_context(|| format!("reading {}", f.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            v.sort();
            v
        } else {
            vec![(*f).clone()]
        };
        for f in inside {
            file_info.push(
                serde_json::json!({ "path": f.display().to_string(), "blake3": digest(&f)? }),
            );
        }
    }
    let shown = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    let opts = ImportOptions {
        message: args
            .message
            .clone()
            .unwrap_or_else(|| format!("import {shown}")),
        source: serde_json::json!({
            "kind": "import",
            "format": format,
            "files": file_info,
            "replace": args.replace,
            "features": args.features.as_ref().map(|f| f.display().to_string()),
        }),
        replace: args.replace,
    };
    Ok(Prepared {
        args,
        batch,
        features,
        opts,
        shown,
        started,
        parsed,
        progress,
    })
}

pub async fn run(store: &Store, p: Prepared) -> anyhow::Result<ExitCode> {
    let Prepared {
        args,
        batch,
        features,
        opts,
        shown,
        started,
        parsed,
        mut progress,
    } = p;
    let records = features.as_ref().map_or(&[][..], |f| &f.records[..]);
    let outcome = store.import_with_features(&batch, records, &opts).await;
    let elapsed = started.elapsed();
    progress.update(0, 0, || {
        format!(
            "import: done in {}",
            crate::progress::duration(elapsed.as_secs_f64())
        )
    });
    progress.finish();
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return Err(locate(e, features.as_ref())),
    };
    tracing::info!(
        parse_ms = parsed.as_millis() as u64,
        total_ms = elapsed.as_millis() as u64,
        "import finished"
    );
    if args.json {
        let report = serde_json::json!({
            "outcome": outcome,
            "lines": batch.lines_read,
            "distinct_triples": batch.triples.len(),
            "edge_sources": batch.edge_sources.len(),
            "duplicates": batch.duplicates,
            "skipped": batch.skipped.iter().map(|s| serde_json::json!({
                "file": s.file.display().to_string(), "line": s.line, "message": s.message,
            })).collect::<Vec<_>>(),
            "feature_values": records.len(),
            "seconds": elapsed.as_secs_f64(),
            "peak_rss_bytes": peak_rss_bytes(),
        });
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let extra = format!(
        "{} lines, {} duplicates{}",
        batch.lines_read,
        batch.duplicates,
        if batch.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} invalid lines skipped", batch.skipped.len())
        }
    );
    let at = |head: Option<i64>| head.map(|h| format!(" at version {h}")).unwrap_or_default();
    match outcome {
        Outcome::Unchanged { head, .. } if args.file.is_none() => out!(
            "nothing to import: every feature of {shown} is already in the graph{} ({} values)",
            at(head),
            records.len()
        ),
        Outcome::Committed(s) if args.file.is_none() => out!(
            "imported features {shown} as version {}: {} values set, {} replaced ({} in the file) in {:.2}s",
            s.version,
            s.features_set,
            s.features_removed,
            records.len(),
            elapsed.as_secs_f64()
        ),
        Outcome::Unchanged { head, triples } => out!(
            "nothing to import: every {} of {shown} is already in the graph{} ({triples} triples; {extra})",
            if features.is_some() {
                "triple and feature"
            } else {
                "triple"
            },
            at(head)
        ),
        Outcome::Committed(s) => out!(
            "imported {shown} as version {}: +{} triples{}, {} new entities, {} new relations{}{} ({extra}) in {:.2}s",
            s.version,
            s.added,
            if args.replace {
                format!(", -{} triples", s.removed)
            } else {
                String::new()
            },
            s.entities_added,
            s.relations_added,
            if features.is_some() {
                format!(
                    ", {} feature values set ({} replaced)",
                    s.features_set, s.features_removed
                )
            } else {
                String::new()
            },
            match (s.sources_added, s.sources_removed) {
                (0, 0) => String::new(),
                (a, 0) => format!(", +{a} edge sources"),
                (a, r) => format!(", +{a} -{r} edge sources"),
            },
            elapsed.as_secs_f64()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// A store error about one entity's feature, located at the features file line that named
/// it, where there is one.
fn locate(e: StoreError, features: Option<&FeatureFile>) -> anyhow::Error {
    let entity = match &e {
        StoreError::UnknownEntity(k) | StoreError::BadFeature { entity: k, .. } => k,
        _ => return e.into(),
    };
    match features.and_then(|f| Some((f, f.line_of(entity)?))) {
        Some((f, line)) if matches!(e, StoreError::UnknownEntity(_)) => anyhow::anyhow!(
            "{}:{line}: {e} (features never create entities: import the entity with a graph file)",
            f.path.display()
        ),
        Some((f, line)) => anyhow::anyhow!("{}:{line}: {e}", f.path.display()),
        None => e.into(),
    }
}
