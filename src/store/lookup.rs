//! Reads for people: entity names by key, and finding entities by name or id.

use super::{Backend, Result, Store};
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

impl Store {
    /// The display name of every entity known at version `v` that has one, by key.
    pub async fn entity_names(&self, v: i64) -> Result<HashMap<String, String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, name FROM entities WHERE added_in <= $1 AND name <> ''")
                .bind(v)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }
}

/// An entity found by [`Store::search_entities`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntityHit {
    pub key: String,
    pub category: String,
    pub name: String,
}

impl Store {
    /// Entities whose key or name contains `text` (case-insensitive), best matches first:
    /// keys that start with it, then names that do, then shorter keys. Three or more
    /// characters use the trigram index (migration 0014), ordering at most 5,000 matches (a
    /// text that nearly everything contains, like `E::`, stays fast); shorter text is a scan.
    pub async fn search_entities(&self, text: &str, limit: i64) -> Result<Vec<EntityHit>> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let lower = text.to_lowercase();
        let fold = *self
            .fold
            .get_or_try_init(|| Fold::of(&self.pool, self.backend))
            .await?;
        let prefix = format!("{}%", like_escape(&lower));
        let rows: Vec<(String, String, String)> =
            if text.chars().count() >= 3 && self.backend == Backend::Sqlite {
                // An FTS5 string: the text quoted, quotes doubled; the trigram tokenizer matches
                // it as a substring of either column.
                let phrase = format!("\"{}\"", text.replace('"', "\"\""));
                sqlx::query_as(
                    "SELECT e.key, e.category, e.name FROM (SELECT rowid FROM entity_search \
                 WHERE entity_search MATCH $1 LIMIT 5000) s JOIN entities e ON e.id = s.rowid \
                 ORDER BY (lower(e.key) LIKE $2 ESCAPE '\\') DESC, \
                 (lower(e.name) LIKE $3 ESCAPE '\\') DESC, length(e.key), e.key LIMIT $4",
                )
                .bind(phrase)
                .bind(&prefix)
                .bind(&prefix)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            } else if text.chars().count() >= 3 {
                // PostgreSQL: the pg_trgm GIN indexes on the lowered key and name serve a
                // substring LIKE directly (the expression must be the index's).
                let inside = format!("%{}%", like_escape(&lower));
                let (k, n) = (fold.lower("key"), fold.lower("name"));
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT key, category, name FROM (SELECT key, category, name FROM entities \
                     WHERE {k} LIKE $1 ESCAPE '\\' OR {n} LIKE $1 ESCAPE '\\' \
                     LIMIT 5000) e \
                     ORDER BY ({k} LIKE $2 ESCAPE '\\') DESC, \
                     ({n} LIKE $2 ESCAPE '\\') DESC, length(key), key LIMIT $3"
                )))
                .bind(inside)
                .bind(&prefix)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            } else {
                let (k, n) = (fold.lower("key"), fold.lower("name"));
                sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT key, category, name FROM entities \
                     WHERE {k} LIKE $1 ESCAPE '\\' OR {n} LIKE $2 ESCAPE '\\' \
                     ORDER BY ({k} LIKE $3 ESCAPE '\\') DESC, length(key), key LIMIT $4"
                )))
                .bind(&prefix)
                .bind(&prefix)
                .bind(&prefix)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            };
        Ok(rows
            .into_iter()
            .map(|(key, category, name)| EntityHit {
                key,
                category,
                name,
            })
            .collect())
    }
}

/// How SQL lowers text for entity search. SQLite lowers ASCII (its FTS5 trigram table folds
/// Unicode for searches of three or more characters); PostgreSQL's trigram indexes are on
/// lower() under ICU's root collation where the server has ICU (migration 0017), else under
/// the columns' "C" collation (ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fold {
    Ascii,
    Icu,
}

impl Fold {
    /// Which one the database's search index was made with.
    pub(super) async fn of(pool: &sqlx::AnyPool, backend: Backend) -> Result<Self> {
        if backend == Backend::Sqlite {
            return Ok(Self::Ascii);
        }
        let def: Option<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname = 'entities_key_trgm'",
        )
        .fetch_optional(pool)
        .await?;
        Ok(match def {
            Some(d) if d.contains("und-x-icu") => Self::Icu,
            _ => Self::Ascii,
        })
    }

    /// SQL lowering `column` (one of the store's own column names).
    pub(super) fn lower(self, column: &'static str) -> String {
        match self {
            Self::Ascii => format!("lower({column})"),
            Self::Icu => format!("lower({column} COLLATE \"und-x-icu\")"),
        }
    }
}

/// `text` with LIKE's wildcards taken literally (escape character `\`).
fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One live edge of an entity, with both ends' names, as [`Store::entity_edges`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntityEdge {
    pub head: String,
    pub head_name: String,
    pub relation: String,
    pub tail: String,
    pub tail_name: String,
}

impl Store {
    /// The entity with this key, if the graph has it.
    pub async fn entity(&self, key: &str) -> Result<Option<EntityHit>> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT key, category, name FROM entities WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(key, category, name)| EntityHit {
            key,
            category,
            name,
        }))
    }

    /// Live edges touching each key (both directions), by key. Counted through the live
    /// by-head index and the by-tail one the review surfaces create
    /// (`Store::ensure_review_indexes`); meant for a page of search hits.
    pub async fn entity_degrees(&self, keys: &[&str]) -> Result<HashMap<String, i64>> {
        let keys = serde_json::to_string(keys).unwrap_or_else(|_| "[]".into());
        let rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT e.key, \
             (SELECT count(*) FROM edges x WHERE x.head = e.id AND x.removed_in IS NULL) + \
             (SELECT count(*) FROM edges x WHERE x.tail = e.id AND x.removed_in IS NULL) \
             FROM entities e WHERE e.key IN ({keys})",
            keys = self.backend.texts("$1")
        )))
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// A page of the live edges touching `key`: edges out of it first, then into it, each by
    /// relation and the other end's key.
    pub async fn entity_edges(
        &self,
        key: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<EntityEdge>> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT h, hn, r, t, tn FROM ( \
             SELECT 0 AS side, e.key AS h, e.name AS hn, r.key AS r, o.key AS t, o.name AS tn \
             FROM entities e JOIN edges x ON x.head = e.id AND x.removed_in IS NULL \
             JOIN relations r ON r.id = x.relation JOIN entities o ON o.id = x.tail WHERE e.key = $1 \
             UNION ALL \
             SELECT 1, o.key, o.name, r.key, e.key, e.name \
             FROM entities e JOIN edges x ON x.tail = e.id AND x.removed_in IS NULL \
             JOIN relations r ON r.id = x.relation JOIN entities o ON o.id = x.head WHERE e.key = $1) AS touching \
             ORDER BY side, r, h, t LIMIT $2 OFFSET $3",
        )
        .bind(key)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(head, head_name, relation, tail, tail_name)| EntityEdge {
                head,
                head_name,
                relation,
                tail,
                tail_name,
            })
            .collect())
    }
}
