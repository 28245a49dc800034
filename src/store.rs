//! The store, on SQLite or PostgreSQL (one code path over sqlx's `Any` driver; the dialects
//! differ only in `Backend`): the only module that speaks SQL. Owns the connection pool, both
//! engines' embedded migrations, the versioned edge table and everything read from or written
//! to it.

mod access;
mod features;
mod hash;
mod lookup;
mod models;
mod notify;
mod pinned;
mod read;
mod review;
mod rounds;
mod scan;
mod schedule;
mod sources;
mod verify;
mod write;

pub use access::{Account, SESSION_SECONDS, Scope, UserEvent, random_token};
pub use features::{Change, FeatureBlameRow, FeatureChange};
pub use lookup::{EntityEdge, EntityHit};
pub use models::{ModelInfo, NewModel, Storage, StoredFile};
pub use notify::AnswerWait;
pub use pinned::{
    AskSubmission, KnownRow, PinnedClaims, PinnedInfo, PinnedMark, PinnedOrigin, PinnedRow,
    PinnedStatus, SubmitSummary,
};
pub use read::{Blame, BlameRow, Diff, Stats, VersionInfo};
pub use review::{
    Action, QueueFilter, QueueItem, Retracted, Review, Reviewed, Role, StageMeta, User, decide,
    token_hash,
};
pub use rounds::{
    HypothesisInfo, Ingested, NewHypothesis, Recorded, RoundInfo, RoundState, RoundUpdate,
    StageClose,
};
pub use schedule::{FireInfo, stamp};
pub use sources::{SourceBlameRow, SourceChange};
pub use verify::Verification;
pub use write::{CommitSummary, ImportOptions, Outcome};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Connection, Executor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The SQLite schema, one migration per change.
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./db/migrations");
/// The PostgreSQL schema: the SQLite schema's end state as one migration of the same number,
/// so both report one schema version (`db/postgres/README.md`).
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./db/postgres");

/// Everything that can go wrong at the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no hypograph database at {0}")]
    Missing(Location),
    #[error("{at} is not a hypograph database: {reason}")]
    NotHypograph { at: Location, reason: String },
    #[error(
        "{at} was written by a newer hypograph (schema version {found}; this build knows up to {known}): upgrade hypograph"
    )]
    NewerSchema {
        at: Location,
        found: i64,
        known: i64,
    },
    #[error("connecting to {at}: {source}")]
    Connect {
        at: Location,
        #[source]
        source: sqlx::Error,
    },
    #[error("the graph has no versions yet: import a file first")]
    NoVersions,
    #[error("version {0} does not exist")]
    UnknownVersion(String),
    #[error("`{0}` is not a version: use a number, HEAD or HEAD~N")]
    BadVersionRef(String),
    #[error("unknown entity `{0}`")]
    UnknownEntity(String),
    #[error(
        "entity `{entity}` has category `{given}` in this import but `{stored}` in the graph (since version {since})"
    )]
    CategoryConflict {
        entity: String,
        given: String,
        stored: String,
        since: i64,
    },
    /// An ask declared an entity the graph already has: asks create entities, they never
    /// replace one's category, name or features. `index`: its place among the declared ones.
    #[error(
        "entity `{key}` is already in the graph (since version {since}): an ask may only declare new entities"
    )]
    EntityExists {
        index: usize,
        key: String,
        since: i64,
    },
    /// A feature value the store will not keep (the parser holds files to the same rules).
    #[error("feature `{kind}` of `{entity}`: {message}")]
    BadFeature {
        entity: String,
        kind: String,
        message: String,
    },
    /// A batch whose parts do not agree (built in code, not read from a file).
    #[error("invalid batch: {0}")]
    BadBatch(String),
    #[error("unknown relation `{0}`")]
    UnknownRelation(String),
    #[error("model {0} does not exist")]
    UnknownModel(i64),
    #[error("round {0} does not exist")]
    UnknownRound(i64),
    #[error("hypothesis {0} does not exist")]
    UnknownHypothesis(i64),
    #[error("conflict: {0}")]
    Conflict(String),
    /// No token, or one that belongs to nobody.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token whose role may not do what was asked.
    #[error("{0}")]
    Forbidden(String),
    #[error("the store is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
    #[error("writing export: {0}")]
    Io(#[from] std::io::Error),
    // Not a `source`: the message already carries it.
    #[error("reading checkpoint file {}: {cause}", path.display())]
    CheckpointFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Whether the database could not be reached (down, restarting, cut off) rather than
    /// refusing the request: worth retrying, and nothing was written.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Sql(e) | Self::Connect { source: e, .. } => match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
                sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
                // PostgreSQL: connection exceptions (08) and operator intervention (57P:
                // shutting down, cannot connect now).
                sqlx::Error::Database(d) => d
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether opening may create a new database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Create,
    Existing,
}

/// A version named by the user: `7`, `v7`, `HEAD`, `HEAD~2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionRef {
    Id(i64),
    Head { back: i64 },
}

impl FromStr for VersionRef {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || StoreError::BadVersionRef(s.to_owned());
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("HEAD").or_else(|| t.strip_prefix("head")) {
            if rest.is_empty() {
                return Ok(Self::Head { back: 0 });
            }
            let n = rest.strip_prefix('~').ok_or_else(bad)?;
            let back = if n.is_empty() {
                1
            } else {
                n.parse().map_err(|_| bad())?
            };
            return Ok(Self::Head { back });
        }
        let digits = t.strip_prefix('v').unwrap_or(t);
        digits.parse().map(Self::Id).map_err(|_| bad())
    }
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(v) => write!(f, "{v}"),
            Self::Head { back: 0 } => f.write_str("HEAD"),
            Self::Head { back } => write!(f, "HEAD~{back}"),
        }
    }
}

/// Where a database lives: a SQLite file (the embedded default, one machine) or a PostgreSQL
/// server (`postgres://user@host/db`, shared by every host that can reach it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// The URL as given; its password is never shown ([`Location`]'s `Display` hides it).
    Postgres(String),
}

impl Location {
    /// Whether there is something to open: a PostgreSQL server is assumed to be there.
    pub fn exists(&self) -> bool {
        match self {
            Self::Sqlite(path) => path.exists(),
            Self::Postgres(_) => true,
        }
    }

    /// The SQLite file, if that is where the database lives.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

impl FromStr for Location {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(
            if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                Self::Postgres(s.to_owned())
            } else {
                Self::Sqlite(PathBuf::from(s))
            },
        )
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_owned())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Self {
        Self::Sqlite(path.clone())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl From<&Location> for Location {
    fn from(at: &Location) -> Self {
        at.clone()
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// A connection URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        Err(_) => "a PostgreSQL URL that does not parse".into(),
    }
}

/// The engine behind a store: the few statements that differ between them branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A query returning the name of the index `name` if it exists: `name` must be a literal
    /// (it is spliced into the statement).
    fn index_named(self, name: &'static str) -> sqlx::AssertSqlSafe<String> {
        sqlx::AssertSqlSafe(match self {
            Self::Sqlite => {
                format!("SELECT name FROM sqlite_master WHERE type = 'index' AND name = '{name}'")
            }
            Self::Postgres => format!(
                "SELECT indexname::text FROM pg_indexes \
                 WHERE schemaname = current_schema() AND indexname = '{name}'"
            ),
        })
    }
}

/// A JSON document kept in a text column (both engines store JSON as text).
fn json_column(row: &sqlx::any::AnyRow, name: &str) -> sqlx::Result<serde_json::Value> {
    use sqlx::Row;
    let text: String = row.try_get(name)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
        index: name.to_owned(),
        source: Box::new(e),
    })
}

impl Backend {
    /// A `SELECT` of the integers in the JSON array bound to `param` (one column, `id`), for
    /// `x IN (...)`: one parameter for any number of ids.
    fn ids(self, param: &'static str) -> String {
        match self {
            Self::Sqlite => format!("SELECT value AS id FROM json_each({param})"),
            Self::Postgres => format!(
                "SELECT CAST(value AS BIGINT) AS id \
                 FROM jsonb_array_elements_text(CAST({param} AS jsonb)) AS value"
            ),
        }
    }

    /// An aggregate packing `row` (text) of every selected row into one space-separated
    /// text, in id order (see `scan`).
    fn packed(self, row: &'static str) -> String {
        match self {
            Self::Sqlite => format!("group_concat({row}, ' ')"),
            Self::Postgres => format!("string_agg({row}, ' ' ORDER BY id)"),
        }
    }

    /// Like [`Backend::ids`] for an array of strings.
    fn texts(self, param: &'static str) -> String {
        match self {
            Self::Sqlite => format!("SELECT value FROM json_each({param})"),
            Self::Postgres => {
                format!(
                    "SELECT value FROM jsonb_array_elements_text(CAST({param} AS jsonb)) AS value"
                )
            }
        }
    }
}

/// Rows written at once after which PostgreSQL's statistics of the tables are refreshed in
/// the same transaction: autovacuum analyses later, and until then the planner takes the
/// tables for tiny (a queue page over 10,000 fresh hypotheses took 2.3 s instead of ms).
pub(crate) const ANALYZE_AFTER: usize = 1_000;

/// `ANALYZE` of `tables` on PostgreSQL (SQLite plans well without statistics).
pub(crate) async fn analyze(conn: &mut sqlx::AnyConnection, tables: &[&'static str]) -> Result<()> {
    if backend_of(conn) == Backend::Postgres {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ANALYZE {}",
            tables.join(", ")
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The engine behind a connection (for the helpers that get a connection, not a store).
fn backend_of(conn: &sqlx::AnyConnection) -> Backend {
    if conn.backend_name().eq_ignore_ascii_case("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

/// A handle on one hypograph database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: the process's listener for announced answers (`notify`).
    listener: Option<std::sync::Arc<notify::Listener>>,
    /// How entity search lowers text in SQL, as its trigram indexes were made (`lookup`):
    /// read at the first search, not at every open.
    fold: std::sync::Arc<tokio::sync::OnceCell<lookup::Fold>>,
}

/// The key of the advisory lock that serialises writers on PostgreSQL, as SQLite's single
/// writer does: every write transaction takes it first.
const WRITE_LOCK: i64 = 0x6879_706f_6772_6170; // "hypograp"

impl Store {
    /// Opens (or creates) the database at `at`, refusing one that is not ours or that a newer
    /// build migrated, then applies pending migrations.
    pub async fn open(at: impl Into<Location>, mode: OpenMode) -> Result<Self> {
        let at = &at.into();
        sqlx::any::install_default_drivers();
        let not_ours = |reason: String| StoreError::NotHypograph {
            at: at.clone(),
            reason,
        };
        let (pool, backend, migrator) = match at {
            Location::Sqlite(path) => {
                if mode == OpenMode::Existing && !path.exists() {
                    return Err(StoreError::Missing(at.clone()));
                }
                if !path.exists() {
                    create_sqlite(path).await?;
                }
                let pool = sqlite_pool(path, mode).await.map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("26") => {
                        not_ours("the file is not an SQLite database".into())
                    }
                    _ => StoreError::Sql(e),
                })?;
                (pool, Backend::Sqlite, &SQLITE)
            }
            Location::Postgres(url) => {
                let pool = postgres_pool(url)
                    .await
                    .map_err(|source| StoreError::Connect {
                        at: at.clone(),
                        source,
                    })?;
                (pool, Backend::Postgres, &POSTGRES)
            }
        };
        let tables: Vec<String> = sqlx::query_scalar(match backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Backend::Postgres => {
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()"
            }
        })
        .fetch_all(&pool)
        .await?;
        let mut up_to_date = false;
        if !tables.is_empty() {
            if !tables.iter().any(|t| t == "_sqlx_migrations") {
                return Err(not_ours(format!(
                    "it holds other tables ({})",
                    tables.join(", ")
                )));
            }
            let applied: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                    .fetch_all(&pool)
                    .await?;
            let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
            if let Some(found) = applied.iter().map(|a| a.0).max().filter(|&f| f > known) {
                return Err(StoreError::NewerSchema {
                    at: at.clone(),
                    found,
                    known,
                });
            }
            // A migration table whose history differs from ours belongs to another program.
            // (An empty one is ours, interrupted before its first migration committed.)
            for (version, checksum) in &applied {
                let ours = migrator.iter().find(|m| m.version == *version);
                if ours.is_none_or(|m| m.checksum.as_ref() != checksum.as_slice()) {
                    return Err(not_ours(format!(
                        "its schema migration {version} is not hypograph's"
                    )));
                }
            }
            up_to_date = migrator
                .iter()
                .all(|m| applied.iter().any(|a| a.0 == m.version));
        }
        // Migrating creates tables even when nothing is pending (sqlx's own, `IF NOT EXISTS`):
        // a role that may only write the tables (the owner migrated them) must not try.
        if !up_to_date {
            migrator.run(&pool).await?;
        }
        let listener = match at {
            Location::Postgres(url) => Some(notify::Listener::new(url)),
            Location::Sqlite(_) => None,
        };
        Ok(Self {
            pool,
            backend,
            listener,
            fold: Default::default(),
        })
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A write transaction, holding the database's one write lock from its first statement
    /// (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), so that
    /// writers queue instead of failing when one upgrades a read lock.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    /// The newest version, if any.
    pub async fn head(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT max(id) FROM graph_versions")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Turns a user's version name into an existing version id.
    pub async fn resolve(&self, v: VersionRef) -> Result<i64> {
        let head = self.head().await?.ok_or(StoreError::NoVersions)?;
        let id = match v {
            VersionRef::Id(id) => id,
            VersionRef::Head { back } => head - back,
        };
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM graph_versions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        exists.ok_or_else(|| StoreError::UnknownVersion(v.to_string()))
    }

    /// Creates the index review evidence needs (live edges by tail). Only the review
    /// surfaces call this: every import into a database that has it pays to keep it (about
    /// 0.6 s per million edges), which plain graph and model work need not.
    ///
    /// On PostgreSQL only the tables' owner may create it: a role with write grants alone
    /// serves without it (slower evidence) and says so, rather than not serving.
    pub async fn ensure_review_indexes(&self) -> Result<()> {
        let present: Option<String> =
            sqlx::query_scalar(self.backend.index_named("edges_live_tail"))
                .fetch_optional(&self.pool)
                .await?;
        if present.is_some() {
            return Ok(());
        }
        match sqlx::query(write::TAIL_INDEX).execute(&self.pool).await {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                tracing::warn!(
                    "the review index edges_live_tail is missing and only the tables' owner \
                     may create it: review evidence reads are slower until the owner runs a \
                     review server or `hypograph review` once"
                );
                Ok(())
            }
            done => done.map(drop).map_err(Into::into),
        }
    }

    /// Closes the pool (on SQLite, checkpointing the WAL).
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Creates a new SQLite database fully migrated under a temporary name, then links it into
/// place: a process killed while migrating (some migrations commit in several steps) leaves
/// no half-made database behind, and of two processes creating the same file, one wins and
/// the other opens it.
async fn create_sqlite(path: &Path) -> Result<()> {
    let name = path.file_name().map_or_else(
        || "hypograph.db".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let temp = path.with_file_name(format!(".{name}.creating-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let pool = sqlite_pool(&temp, OpenMode::Create).await?;
    let migrated = SQLITE.run(&pool).await;
    // Closing the last connection checkpoints the WAL into the file and removes it.
    pool.close().await;
    let linked =
        migrated
            .map_err(StoreError::from)
            .and_then(|()| match std::fs::hard_link(&temp, path) {
                Ok(()) => Ok(()),
                // Another process made it first: theirs stands.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(StoreError::Io(e)),
            });
    for suffix in ["", "-wal", "-shm"] {
        let mut p = temp.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    linked
}

/// A pool on a SQLite file.
async fn sqlite_pool(path: &Path, mode: OpenMode) -> std::result::Result<AnyPool, sqlx::Error> {
    // The SQLite driver percent-decodes the path: escape what would end it early.
    let mut escaped = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => escaped.push_str(&format!("%{:02X}", c as u32)),
            c => escaped.push(c),
        }
    }
    let create = if mode == OpenMode::Create {
        "rwc"
    } else {
        "rw"
    };
    let options = AnyConnectOptions::from_str(&format!("sqlite://{escaped}?mode={create}"))?
        // Bulk statements legitimately take seconds; that is not worth a warning.
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    // One connection first, outside the pool: a file that is not a database fails here at
    // once, where the pool would retry its connection setup until it timed out.
    let mut first = options.connect().await?;
    first.execute(SQLITE_PRAGMAS).await?;
    first.close().await?;
    AnyPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(SQLITE_PRAGMAS).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
}

/// Every SQLite connection's settings: WAL (readers never wait for the writer), foreign keys
/// on, a busy timeout so writers queue, a 64 MiB page cache.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
    PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
    PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;";

/// A pool on a PostgreSQL server. The password comes from the URL, `PGPASSWORD` or a
/// `.pgpass` file (the driver reads both); it is never logged.
async fn postgres_pool(url: &str) -> std::result::Result<AnyPool, sqlx::Error> {
    let options = AnyConnectOptions::from_str(url)?
        .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
    AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        for url in [
            "postgres://hypo:s3cret@db.example.org:5432/graph",
            "postgresql://hypo@db.example.org/graph?password=s3cret&sslmode=require",
        ] {
            let at: Location = url.parse().expect("infallible");
            assert!(matches!(at, Location::Postgres(_)));
            let shown = at.to_string();
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("db.example.org"), "{shown}");
        }
        let file: Location = "graph.db".parse().expect("infallible");
        assert_eq!(file.path(), Some(Path::new("graph.db")));
    }

    #[test]
    fn version_refs() {
        let cases = [
            ("7", Some(VersionRef::Id(7))),
            ("v7", Some(VersionRef::Id(7))),
            ("HEAD", Some(VersionRef::Head { back: 0 })),
            ("HEAD~", Some(VersionRef::Head { back: 1 })),
            ("HEAD~3", Some(VersionRef::Head { back: 3 })),
            ("HEAD^", None),
            ("seven", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<VersionRef>().ok(), want, "{input}");
        }
    }
}
