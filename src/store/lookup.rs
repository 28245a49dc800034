//! Reads for people: entity names by key, and finding entities by name or id.

use super::{Result, Store};
use std::collections::HashMap;

impl Store {
    /// The display name of every entity known at version `v` that has one, by key.
    pub async fn entity_names(&self, v: i64) -> Result<HashMap<String, String>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, name FROM entities WHERE added_in <= ? AND name <> ''")
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
        let prefix = format!("{}%", like_escape(&lower));
        let rows: Vec<(String, String, String)> = if text.chars().count() >= 3 {
            // An FTS5 string: the text quoted, quotes doubled; the trigram tokenizer matches
            // it as a substring of either column.
            let phrase = format!("\"{}\"", text.replace('"', "\"\""));
            sqlx::query_as(
                "SELECT e.key, e.category, e.name FROM (SELECT rowid FROM entity_search \
                 WHERE entity_search MATCH ? LIMIT 5000) s JOIN entities e ON e.id = s.rowid \
                 ORDER BY (lower(e.key) LIKE ? ESCAPE '\\') DESC, \
                 (lower(e.name) LIKE ? ESCAPE '\\') DESC, length(e.key), e.key LIMIT ?",
            )
            .bind(phrase)
            .bind(&prefix)
            .bind(&prefix)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
        } else {
            sqlx::query_as(
                "SELECT key, category, name FROM entities \
                 WHERE lower(key) LIKE ? ESCAPE '\\' OR lower(name) LIKE ? ESCAPE '\\' \
                 ORDER BY (lower(key) LIKE ? ESCAPE '\\') DESC, length(key), key LIMIT ?",
            )
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
