//! `hypograph fetch`: download a public graph into the cache (or `--to DIR`), verified, with a
//! progress bar; `--list` prints the catalog.

use crate::fetch::{self, Dataset, FetchOptions, Fetched, Origin, Progress, SumState, catalog};
use crate::store::{ImportOptions, Location, OpenMode, Outcome, Store};
use anyhow::Context;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The dataset (see --list).
    #[arg(required_unless_present = "list")]
    name: Option<String>,
    /// List the datasets: version, files, sizes, how each sum is known, licence.
    #[arg(long, conflicts_with_all = ["to", "from", "mirror", "repin"])]
    list: bool,
    /// Put the files in DIR instead of the cache ($HYPOGRAPH_CACHE, else
    /// $XDG_CACHE_HOME/hypograph, else ~/.cache/hypograph).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// Take the files from a local file or directory (by file name) instead of the network;
    /// the same checks apply, then they are cached.
    #[arg(long, value_name = "PATH", conflicts_with = "mirror")]
    from: Option<PathBuf>,
    /// Fetch each file from URL/<dataset>/<file name> instead of the publisher.
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Accept a file whose sum differs from the one pinned on first use, and pin its new sum.
    #[arg(long)]
    repin: bool,
    /// A catalog file (YAML or JSON, the shape of `--list --json`) replacing the built-in
    /// table: for mirrors that serve other files, and for tests.
    #[arg(
        long,
        value_name = "FILE",
        env = "HYPOGRAPH_FETCH_CATALOG",
        hide = true
    )]
    catalog: Option<PathBuf>,
    /// Only fetch: do not import the files into the database.
    #[arg(long)]
    no_import: bool,
    /// Print the result (each file's path, sha256, bytes, how its sum is known) as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: FetchArgs, db: &Location) -> anyhow::Result<ExitCode> {
    let datasets = match &args.catalog {
        Some(path) => catalog::load(path)?,
        None => catalog::builtin(),
    };
    if args.list {
        return list(&datasets, args.json);
    }
    let Some(name) = args.name.as_deref() else {
        anyhow::bail!("name a dataset, or use --list");
    };
    let dataset = catalog::find(&datasets, name)?;
    let mut opts = FetchOptions::new(fetch::default_cache_dir()?);
    opts.to = args.to;
    opts.from = args.from;
    opts.mirror = args.mirror;
    opts.repin = args.repin;
    let bar = Bar::new(!args.json && std::io::stderr().is_terminal());
    let fetched = fetch::fetch(dataset, &opts, &bar)
        .await
        .with_context(|| format!("fetching {name}"));
    bar.clear();
    let fetched = fetched?;
    if args.no_import {
        if args.json {
            out!("{}", serde_json::to_string_pretty(&fetched)?);
        } else {
            print(dataset, &fetched);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        print(dataset, &fetched);
    }
    let outcome = import(&fetched, db).await?;
    if args.json {
        let report = serde_json::json!({ "fetched": fetched, "import": outcome });
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    match outcome {
        Outcome::Committed(c) => out!(
            "imported {} {} into {} as version {}: +{} triples, {} new entities, {} new relations",
            fetched.dataset,
            fetched.version,
            db,
            c.version,
            c.added,
            c.entities_added,
            c.relations_added
        ),
        Outcome::Unchanged { head, triples } => out!(
            "nothing to import: {} {} is already in {}{} ({triples} triples)",
            fetched.dataset,
            fetched.version,
            db,
            head.map(|h| format!(" at version {h}")).unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Imports verified files as one graph version whose message names the dataset, its version
/// and each file's checksum. The files are parsed before the database is opened, so a file
/// the reader refuses leaves no database behind.
async fn import(fetched: &Fetched, db: &Location) -> anyhow::Result<Outcome> {
    let owned = fetched.clone();
    let batch = tokio::task::spawn_blocking(move || owned.read())
        .await
        .context("reading the fetched files")??;
    let opts = ImportOptions {
        message: format!("fetch {}", fetched.describe()),
        source: fetched.provenance("fetch"),
        replace: false,
    };
    let store = Store::open(db, OpenMode::Create)
        .await
        .with_context(|| format!("opening {db}"))?;
    let outcome = store.import(&batch, &opts).await;
    store.close().await;
    Ok(outcome?)
}

fn print(dataset: &Dataset, f: &Fetched) {
    out!(
        "{} {} ({}) in {}",
        f.dataset,
        f.version,
        f.licence,
        f.dir.display()
    );
    for file in &f.files {
        let how = match &file.origin {
            Origin::Cache => "cached".to_owned(),
            Origin::Download { resumed_from, .. } if *resumed_from > 0 => {
                format!("downloaded, resumed at {}", bytes(*resumed_from))
            }
            Origin::Download { .. } => "downloaded".to_owned(),
            Origin::Copy { from } => format!("copied from {}", from.display()),
        };
        let sum = match file.sum {
            SumState::Published => "matches the published sum",
            SumState::PinnedNow => "sum pinned now",
            SumState::AlreadyPinned => "matches the pinned sum",
        };
        out!(
            "  {}  {}  sha256 {}  {how}, {sum}",
            file.name,
            bytes(file.bytes),
            file.sha256
        );
    }
    out!("cite: {}", dataset.citation);
}

fn list(datasets: &[Dataset], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        out!("{}", serde_json::to_string_pretty(datasets)?);
        return Ok(ExitCode::SUCCESS);
    }
    for d in datasets {
        out!(
            "{} {}  licence: {}  ({})",
            d.name,
            d.version,
            d.licence,
            d.homepage
        );
        for f in &d.files {
            let size = f.size.map(bytes).unwrap_or_else(|| "size unknown".into());
            out!("  {:<30} {:>12}  sum {}", f.name, size, f.sum.label());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The progress bar on stderr: hidden when stderr is not a terminal or the output is JSON.
struct Bar {
    bar: indicatif::ProgressBar,
}

impl Bar {
    fn new(visible: bool) -> Self {
        let bar = if visible {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        Self { bar }
    }

    fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn file(&self, name: &str) {
        self.bar.set_prefix(name.to_owned());
    }

    fn begin(&self, total: Option<u64>, done: u64) {
        let style = match total {
            Some(total) => {
                self.bar.set_length(total);
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
            }
            None => "{spinner} {prefix} {bytes} {bytes_per_sec}",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(style) {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.disable_steady_tick();
        self.bar.set_position(done);
        self.bar.reset_eta();
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn verifying(&self, name: &str, _size: u64) {
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg}") {
            self.bar.set_style(style);
        }
        self.bar
            .set_message(format!("checking the sha256 of {name}"));
        // Hashing a large file reports nothing until it ends: keep the spinner turning.
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(120));
    }

    fn end(&self) {
        self.bar.disable_steady_tick();
        self.bar.set_message("");
    }
}
