//! The registry of trained models, their checkpoint files, and the reads training needs
//! (refuted triples).

use super::{Result, Store, StoreError};
use serde::Serialize;
use std::path::PathBuf;

/// Where a model's checkpoint files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Only on disk, at the recorded path (models recorded before migration 0016).
    Directory,
    /// Every file in `checkpoint_files`; the recorded path is where they were written.
    Database,
}

impl Storage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::Database => "database",
        }
    }
}

/// A model checkpoint as recorded in the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub id: i64,
    pub graph_version: i64,
    pub parent_id: Option<i64>,
    pub kind: String,
    pub config: serde_json::Value,
    pub path: String,
    pub checksum: String,
    pub metrics: serde_json::Value,
    pub created_at: String,
    pub storage: Storage,
}

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for ModelInfo {
    fn from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        Ok(Self {
            id: row.try_get("id")?,
            graph_version: row.try_get("graph_version")?,
            parent_id: row.try_get("parent_id")?,
            kind: row.try_get("kind")?,
            config: super::json_column(row, "config")?,
            path: row.try_get("path")?,
            checksum: row.try_get("checksum")?,
            metrics: super::json_column(row, "metrics")?,
            created_at: row.try_get("created_at")?,
            storage: match row.try_get::<String, _>("storage")?.as_str() {
                "directory" => Storage::Directory,
                "database" => Storage::Database,
                other => {
                    return Err(sqlx::Error::ColumnDecode {
                        index: "storage".into(),
                        source: format!("unknown storage `{other}`").into(),
                    });
                }
            },
        })
    }
}

/// What to record about a new checkpoint.
#[derive(Debug, Clone)]
pub struct NewModel<'a> {
    pub graph_version: i64,
    pub parent_id: Option<i64>,
    pub kind: &'a str,
    pub config: &'a serde_json::Value,
    pub path: &'a str,
    pub checksum: &'a str,
    pub metrics: &'a serde_json::Value,
    /// The workflow that trained it, if any.
    pub workflow: Option<&'a str>,
    /// Every file of the checkpoint directory: its name relative to the directory
    /// ('/'-separated) and where to read it. Stored with the row (storage 'database').
    pub files: &'a [(String, PathBuf)],
}

/// A checkpoint file as listed in the database, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredFile {
    /// Relative to the checkpoint directory, '/'-separated.
    pub name: String,
    /// Hex blake3 of its bytes.
    pub checksum: String,
}

const COLUMNS: &str =
    "id, graph_version, parent_id, kind, config, path, checksum, metrics, created_at, storage";

impl Store {
    /// Records a model and stores every file of its checkpoint in one transaction: a model
    /// row exists only with all of its files. Files are read one at a time (memory holds the
    /// largest, not the whole checkpoint).
    pub async fn record_model(&self, m: &NewModel<'_>) -> Result<i64> {
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO models (graph_version, parent_id, kind, config, path, checksum, metrics, created_at, workflow, storage) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(m.graph_version)
        .bind(m.parent_id)
        .bind(m.kind)
        .bind(m.config.to_string())
        .bind(m.path)
        .bind(m.checksum)
        .bind(m.metrics.to_string())
        .bind(created_at)
        .bind(m.workflow)
        .bind(Storage::Database.as_str())
        .fetch_one(&mut *tx)
        .await?;
        for (name, path) in m.files {
            let bytes =
                tokio::fs::read(path)
                    .await
                    .map_err(|cause| StoreError::CheckpointFile {
                        path: path.clone(),
                        cause,
                    })?;
            let checksum = blake3::hash(&bytes).to_hex().to_string();
            sqlx::query(
                "INSERT INTO checkpoint_files (model_id, name, bytes, checksum) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(name.as_str())
            .bind(bytes)
            .bind(checksum)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// The files of a model's checkpoint stored in the database, by name.
    pub async fn checkpoint_files(&self, model_id: i64) -> Result<Vec<StoredFile>> {
        Ok(sqlx::query_as(
            "SELECT name, checksum FROM checkpoint_files WHERE model_id = $1 ORDER BY name",
        )
        .bind(model_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The bytes of one checkpoint file (one at a time: weights files can be large).
    pub async fn checkpoint_file(&self, model_id: i64, name: &str) -> Result<Vec<u8>> {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT bytes FROM checkpoint_files WHERE model_id = $1 AND name = $2",
        )
        .bind(model_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        bytes.ok_or_else(|| {
            StoreError::Corrupt(format!("model {model_id} has no checkpoint file `{name}`"))
        })
    }

    /// Every relation key the graph has ever had (relations are never removed).
    pub async fn relation_keys(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT key FROM relations ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// The newest model a workflow trained.
    pub async fn workflow_model(&self, workflow: &str) -> Result<Option<ModelInfo>> {
        let row: Option<ModelInfo> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM models WHERE workflow = $1 ORDER BY id DESC LIMIT 1"
        )))
        .bind(workflow)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    pub async fn model(&self, id: i64) -> Result<ModelInfo> {
        let row: Option<ModelInfo> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM models WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or(StoreError::UnknownModel(id))
    }

    /// The newest model, if any.
    pub async fn latest_model(&self) -> Result<Option<ModelInfo>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM models ORDER BY id DESC LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn models(&self) -> Result<Vec<ModelInfo>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM models ORDER BY id DESC"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Refuted triples standing at version `v` (recorded at or before it, not withdrawn by
    /// then), as keys.
    pub async fn refuted(&self, v: i64) -> Result<Vec<[String; 3]>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT h.key, r.key, t.key FROM refutations f \
             JOIN entities h ON h.id = f.head JOIN relations r ON r.id = f.relation \
             JOIN entities t ON t.id = f.tail \
             WHERE f.version <= $1 AND (f.removed_in IS NULL OR f.removed_in > $1) ORDER BY f.id",
        )
        .bind(v)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(h, r, t)| [h, r, t]).collect())
    }

    /// Every hypothesis scored before version `v` (of `workflow`'s rounds, or of every
    /// workflow) that review confirmed or refuted and whose pre-recalibration probability is
    /// known: `(relation key, base_score, confirmed)`, oldest first. What the verdict
    /// recalibration (`model::recalibrate`) is fitted on.
    pub async fn judged(&self, v: i64, workflow: Option<&str>) -> Result<Vec<(String, f64, bool)>> {
        let rows: Vec<(String, f64, String)> = sqlx::query_as(
            "SELECT r.key, h.base_score, h.status FROM hypotheses h \
             JOIN relations r ON r.id = h.relation JOIN rounds o ON o.id = h.round_id \
             WHERE h.graph_version < $1 AND h.base_score IS NOT NULL \
             AND h.status IN ('confirmed', 'refuted') \
             AND (CAST($2 AS TEXT) IS NULL OR o.workflow = $2) ORDER BY h.id",
        )
        .bind(v)
        .bind(workflow)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(r, p, status)| (r, p, status == "confirmed"))
            .collect())
    }
}
