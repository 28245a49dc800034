//! Command-line interface: argument parsing, dispatch, human and JSON output, exit codes.
//! The only place (with `main.rs`) that uses `anyhow`.

/// Prints a line to stdout; a closed pipe (`| head`) ends the program quietly, as Unix tools do.
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::emit(format_args!($($arg)*)) };
}

mod ask;
mod daemon;
mod entity;
mod fetch;
mod history;
mod import;
mod pinned;
mod review;
mod rounds;
mod simulate;
mod train;

use crate::logging::{self, LogFormat};
use crate::store::{Location, OpenMode, Store, VersionRef};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "hypograph",
    version,
    about = "Turns a knowledge graph into a hypothesis-testing machine"
)]
pub struct Cli {
    /// The database holding the versioned graph: a SQLite file, or a PostgreSQL URL
    /// (`postgres://user@host/db`; the password from the URL, PGPASSWORD or ~/.pgpass).
    #[arg(
        long,
        global = true,
        env = "HYPOGRAPH_DB",
        default_value = "hypograph.db"
    )]
    db: Location,
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Where new checkpoints are written before the database stores them, plots, and caches
    /// of checkpoints this host reads from the database (default: hypograph-data beside a
    /// SQLite database, in the working directory for PostgreSQL).
    #[arg(long, global = true, env = "HYPOGRAPH_DATA")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Download a public graph (hetionet, primekg, drkg, monarch) into the cache, verified by
    /// SHA-256; `--list` shows the catalog.
    Fetch(fetch::FetchArgs),
    /// Import a triples TSV or a KGX nodes/edges pair, and/or entity features, as one new
    /// graph version.
    Import(import::ImportArgs),
    /// Counts of entities by category and triples by relation.
    Stats {
        /// Version to count (a number, HEAD or HEAD~N).
        #[arg(long, default_value = "HEAD")]
        version: VersionRef,
        #[arg(long)]
        json: bool,
    },
    /// Find entities by name or id.
    #[command(subcommand)]
    Entity(entity::EntityCommand),
    /// History of the graph: log, show, diff, export, revert, blame, verify.
    #[command(subcommand)]
    Graph(history::GraphCommand),
    /// Train a link-prediction model on a graph version (warm-started from the last one).
    Train(Box<train::TrainArgs>),
    /// Filtered ranking metrics of a trained model on test triples.
    Eval(train::EvalArgs),
    /// Calibrated probability, spread and BALD of candidate triples under the newest model.
    Predict(train::PredictArgs),
    /// Compare acquisition strategies: rounds of generate, rank, oracle, ingest and retrain on
    /// a graph with hidden truth (no database needed).
    Simulate(Box<simulate::SimulateArgs>),
    /// Prompt the graph with new entities (features, claimed edges, context) and rank what
    /// the model expects of them.
    Ask(Box<ask::AskArgs>),
    /// Check workflow files; every problem is printed as FILE:LINE:COL: field: message.
    Validate(rounds::ValidateArgs),
    /// Run rounds of a workflow now (resuming an unfinished one first).
    Run(rounds::RunArgs),
    /// Rounds, their states, counts per stage and what each waits on.
    Status(rounds::StatusArgs),
    /// Rows submitted from `ask`: waiting for a workflow's next round, claimed, or skipped.
    #[command(subcommand)]
    Pinned(pinned::PinnedCommand),
    /// Operations on one round (abandon).
    #[command(subcommand)]
    Round(rounds::RoundCommand),
    /// Run every workflow in a directory on its cron schedule until SIGINT/SIGTERM.
    Daemon(daemon::DaemonArgs),
    /// Schedules: next fire times and recent fires.
    #[command(subcommand)]
    Schedule(daemon::ScheduleCommand),
    /// Serve the REST API (assay callbacks, review queue, verdicts, retractions).
    Serve(review::ServeArgs),
    /// Users and their bearer tokens.
    #[command(subcommand)]
    User(review::UserCommand),
    /// Review queued hypotheses in the terminal, one key per answer.
    Review(review::ReviewArgs),
    /// Withdraw a verdict found wrong: its edges leave the graph in a new version.
    Retract(review::RetractArgs),
    /// Print the JSON Schema of a file format, for editors (see workflows/README.md).
    Schema {
        #[arg(value_enum)]
        format: SchemaFormat,
    },
}

/// The YAML formats `hypograph schema` describes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemaFormat {
    /// Workflow files (workflows/*.yaml).
    Workflow,
    /// Plugin manifests (plugins/*.yaml).
    Manifest,
    /// `hypograph ask` prompt files.
    Prompt,
}

/// Parses arguments, runs the command, prints any error, and returns the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, `outer: inner`, each cause once: many errors already quote their
/// source in their own message (thiserror's `{0}` with `#[from]`), and a database error
/// printed three times over hides the one line that matters.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Simulate(args) = cli.command {
        return tokio::task::spawn_blocking(move || simulate::run(*args)).await?;
    }
    if let Command::Schedule(cmd) = cli.command {
        let store = if cli.db.exists() {
            Some(Store::open(&cli.db, OpenMode::Existing).await?)
        } else {
            None
        };
        let result = daemon::schedule(store.as_ref(), cmd).await;
        if let Some(s) = store {
            s.close().await;
        }
        return result;
    }
    if let Command::Fetch(args) = cli.command {
        return fetch::run(args, &cli.db).await;
    }
    if let Command::Validate(args) = cli.command {
        return rounds::validate(&cli.db, args).await;
    }
    if let Command::Schema { format } = cli.command {
        let schema = match format {
            SchemaFormat::Workflow => crate::workflow::schema(),
            SchemaFormat::Manifest => crate::plugin::manifest::schema(),
            SchemaFormat::Prompt => {
                crate::spec_parse::schema::generate::<crate::ask::Prompt>("hypograph ask prompt")
            }
        };
        out!("{}", serde_json::to_string_pretty(&schema)?);
        return Ok(ExitCode::SUCCESS);
    }
    let db = cli.db;
    let data_dir = cli.data_dir.unwrap_or_else(|| {
        db.path()
            .and_then(Path::parent)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("hypograph-data")
    });
    let open = |mode| {
        let db = db.clone();
        async move {
            Store::open(&db, mode)
                .await
                .with_context(|| format!("opening {db}"))
        }
    };
    let (store, result) = match cli.command {
        Command::Import(args) => {
            let prepared = import::prepare(args)?;
            let store = open(OpenMode::Create).await?;
            let result = import::run(&store, prepared).await;
            (store, result)
        }
        Command::Stats { version, json } => {
            let store = open(OpenMode::Existing).await?;
            let result = stats(&store, version, json).await;
            (store, result)
        }
        Command::Entity(cmd) => {
            let store = open(OpenMode::Existing).await?;
            let result = entity::run(&store, cmd).await;
            (store, result)
        }
        Command::Graph(cmd) => {
            let store = open(OpenMode::Existing).await?;
            let result = history::run(&store, cmd).await;
            (store, result)
        }
        Command::Train(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = train::train(&store, &data_dir, *args).await;
            (store, result)
        }
        Command::Eval(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = train::eval(&store, &data_dir, args).await;
            (store, result)
        }
        Command::Predict(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = train::predict(&store, &data_dir, args).await;
            (store, result)
        }
        Command::Ask(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = ask::ask(&store, &data_dir, *args).await;
            (store, result)
        }
        Command::Run(args) => {
            // Validate before the database exists: a bad workflow writes nothing.
            let loaded = rounds::load(&args.file)?;
            let store = open(OpenMode::Create).await?;
            let result = rounds::run(&store, &db, &data_dir, loaded, args).await;
            (store, result)
        }
        Command::Status(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = rounds::status(&store, args).await;
            (store, result)
        }
        Command::Pinned(cmd) => {
            let store = open(OpenMode::Existing).await?;
            let result = pinned::run(&store, cmd).await;
            (store, result)
        }
        Command::Round(cmd) => {
            let store = open(OpenMode::Existing).await?;
            let result = rounds::round(&store, cmd).await;
            (store, result)
        }
        Command::Daemon(args) => {
            let store = open(OpenMode::Create).await?;
            let result = daemon::daemon(&store, &data_dir, args).await;
            (store, result)
        }
        Command::Serve(args) => {
            let store = open(OpenMode::Create).await?;
            let result = review::serve(&store, &data_dir, args).await;
            (store, result)
        }
        Command::User(cmd) => {
            let store = open(OpenMode::Create).await?;
            let result = review::user(&store, cmd).await;
            (store, result)
        }
        Command::Review(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = review::review(&store, args).await;
            (store, result)
        }
        Command::Retract(args) => {
            let store = open(OpenMode::Existing).await?;
            let result = review::retract(&store, args).await;
            (store, result)
        }
        Command::Simulate(_)
        | Command::Fetch(_)
        | Command::Validate(_)
        | Command::Schedule(_)
        | Command::Schema { .. } => {
            unreachable!("handled before a database is opened")
        }
    };
    store.close().await;
    result
}

async fn stats(store: &Store, version: VersionRef, json: bool) -> anyhow::Result<ExitCode> {
    let v = store.resolve(version).await?;
    let s = store.stats(v).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "version {}: {} entities, {} relations, {} triples, {} refuted triples",
        s.version,
        s.entities,
        s.relations,
        s.triples,
        s.refutations
    );
    if s.triples_with_sources > 0 {
        out!(
            "triples with a recorded source: {} ({} with two or more)",
            s.triples_with_sources,
            s.triples_with_several_sources
        );
    }
    out!("entities by category:");
    print_counts(&s.categories);
    if !s.features.is_empty() {
        out!("entities with features, by kind:");
        print_counts(&s.features);
    }
    out!("triples by relation (head category -> tail category):");
    let width = s
        .by_relation
        .keys()
        .map(|k| k.len().max(6))
        .max()
        .unwrap_or(6);
    for (relation, n) in &s.by_relation {
        let shown = |c: &str| {
            if c.is_empty() {
                "(none)".to_owned()
            } else {
                c.to_owned()
            }
        };
        let pairs: Vec<String> = s
            .signatures
            .get(relation)
            .into_iter()
            .flatten()
            .map(|(h, t)| format!("{} -> {}", shown(h), shown(t)))
            .collect();
        out!("  {relation:<width$}  {n:>10}  {}", pairs.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_counts(counts: &std::collections::BTreeMap<String, u64>) {
    let width = counts.keys().map(|k| k.len().max(6)).max().unwrap_or(6);
    for (k, n) in counts {
        let k = if k.is_empty() { "(none)" } else { k };
        out!("  {k:<width$}  {n:>10}");
    }
}

pub(crate) fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// An entity as a person reads it: `KEY (name)`, or the key alone when it has no name.
pub(crate) fn named(key: &str, name: &str) -> String {
    if name.is_empty() {
        key.to_owned()
    } else {
        format!("{key} ({name})")
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("connecting to db: {0}")]
    struct Outer(#[from] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("password authentication failed")]
    struct Inner;

    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::from(Outer(Inner));
        assert_eq!(
            describe(&e),
            "connecting to db: password authentication failed"
        );
        let e = anyhow::Error::from(Inner).context("opening graph.db");
        assert_eq!(
            describe(&e),
            "opening graph.db: password authentication failed"
        );
    }
}
