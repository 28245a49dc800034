//! The SQLite store: the only module that speaks SQL. Owns the connection pool, the embedded
//! migrations, the versioned edge table and everything read from or written to it.

mod features;
mod hash;
mod lookup;
mod models;
mod pinned;
mod read;
mod review;
mod rounds;
mod scan;
mod schedule;
mod sources;
mod verify;
mod write;

pub use features::{Change, FeatureBlameRow, FeatureChange};
pub use lookup::{EntityEdge, EntityHit};
pub use models::{ModelInfo, NewModel};
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

use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./db/migrations");

/// Everything that can go wrong at the store boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no hypograph database at {}", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a hypograph database: {reason}", path.display())]
    NotHypograph { path: PathBuf, reason: String },
    #[error(
        "{} was written by a newer hypograph (schema version {found}; this build knows up to {known}): upgrade hypograph",
        path.display()
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
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
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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

/// A handle on one hypograph database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (or creates) the database at `path`, refusing files that are not ours or that a
    /// newer build migrated, then applies pending migrations.
    pub async fn open(path: &Path, mode: OpenMode) -> Result<Self> {
        if mode == OpenMode::Existing && !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        let not_ours = |reason: String| StoreError::NotHypograph {
            path: path.to_owned(),
            reason,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(mode == OpenMode::Create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Bulk statements legitimately take seconds; that is not worth a warning.
            .log_slow_statements(log::LevelFilter::Debug, Duration::from_secs(1));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("26") => {
                    not_ours("the file is not an SQLite database".into())
                }
                _ => StoreError::Sql(e),
            })?;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&pool)
                .await?;
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
            let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
            if let Some(found) = applied.iter().map(|a| a.0).max().filter(|&f| f > known) {
                return Err(StoreError::NewerSchema {
                    path: path.to_owned(),
                    found,
                    known,
                });
            }
            // A migration table whose history differs from ours belongs to another program.
            // (An empty one is ours, interrupted before its first migration committed.)
            for (version, checksum) in &applied {
                let ours = MIGRATOR.iter().find(|m| m.version == *version);
                if ours.is_none_or(|m| m.checksum.as_ref() != checksum.as_slice()) {
                    return Err(not_ours(format!(
                        "its schema migration {version} is not hypograph's"
                    )));
                }
            }
        }
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
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
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM graph_versions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        exists.ok_or_else(|| StoreError::UnknownVersion(v.to_string()))
    }

    /// Creates the index review evidence needs (live edges by tail). Only the review
    /// surfaces call this: every import into a database that has it pays to keep it (about
    /// 0.6 s per million edges), which plain graph and model work need not.
    pub async fn ensure_review_indexes(&self) -> Result<()> {
        sqlx::query(write::TAIL_INDEX).execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
