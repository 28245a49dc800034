//! Reads for people: entity names by key, for answers that a person reads.

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
