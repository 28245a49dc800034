//! The write path: every change to the graph becomes one version, committed in one
//! transaction with its hash. Imports and reverts compute a delta here and share `commit`.

use super::features::{self, FeatureRow};
use super::hash::{CanonicalDelta, FORMAT, ROOT};
use super::scan::{self, Filter};
use super::sources::{self, Pair};
use super::{Result, Store, StoreError};
use crate::graph::{EntityRecord, FeatureRecord, FeatureValue, TripleBatch};
use rustc_hash::{FxHashMap, FxHashSet};
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments, AssertSqlSafe};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{debug, info};

/// SQLite allows 32,766 parameters a statement; stay well below.
pub(super) const MAX_PARAMS: usize = 15_000;

/// Deltas at least this large rebuild the by-tail index instead of updating it row by row.
const BULK_REINDEX: usize = 100_000;

/// New entities at least this many rebuild the entity search indexes (PostgreSQL).
const BULK_ENTITIES: usize = 10_000;

/// The by-tail index the review evidence reads (see `Store::ensure_review_indexes`).
pub(super) const TAIL_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS edges_live_tail ON edges(tail) WHERE removed_in IS NULL";

/// What produced a version, and how an import treats edges absent from the file.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub message: String,
    /// JSON describing the source (file path, checksum, ...), kept with the version.
    pub source: serde_json::Value,
    /// Make the new version equal to the batch: live edges absent from it are removed (with
    /// their sources), and an edge the batch gives sources for keeps exactly those (one it
    /// gives without any keeps its own). Features are never removed this way: an import sets
    /// the values it names.
    pub replace: bool,
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing changed; no version was written.
    Unchanged {
        head: Option<i64>,
        triples: u64,
    },
    Committed(CommitSummary),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitSummary {
    pub version: i64,
    pub added: u64,
    pub removed: u64,
    pub entities_added: u64,
    pub relations_added: u64,
    /// Feature values set (new, or replacing a different value) and removed.
    pub features_set: u64,
    pub features_removed: u64,
    /// Edge sources added and removed (with their edges, or by a `--replace` import).
    pub sources_added: u64,
    pub sources_removed: u64,
    pub hash: String,
}

/// Key tables indexed by store id (slot 0 unused), loaded once per write.
pub(crate) struct Keys {
    pub entity: Vec<String>,
    pub category: Vec<String>,
    pub relation: Vec<String>,
    pub entity_ids: HashMap<String, i64>,
    pub relation_ids: HashMap<String, i64>,
    /// Edge source names, indexed like the others.
    pub source: Vec<String>,
    pub source_ids: HashMap<String, i64>,
}

impl Keys {
    pub async fn load(conn: &mut AnyConnection) -> Result<Self> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, key, category FROM entities ORDER BY id")
                .fetch_all(&mut *conn)
                .await?;
        let n = rows.last().map_or(0, |r| r.0 as usize);
        let mut entity = vec![String::new(); n + 1];
        let mut category = vec![String::new(); n + 1];
        let mut entity_ids = HashMap::with_capacity(rows.len());
        for (id, key, cat) in rows {
            entity_ids.insert(key.clone(), id);
            entity[id as usize] = key;
            category[id as usize] = cat;
        }
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, key FROM relations ORDER BY id")
            .fetch_all(&mut *conn)
            .await?;
        let n = rows.last().map_or(0, |r| r.0 as usize);
        let mut relation = vec![String::new(); n + 1];
        let mut relation_ids = HashMap::with_capacity(rows.len());
        for (id, key) in rows {
            relation_ids.insert(key.clone(), id);
            relation[id as usize] = key;
        }
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, key FROM sources ORDER BY id")
            .fetch_all(&mut *conn)
            .await?;
        let n = rows.last().map_or(0, |r| r.0 as usize);
        let mut source = vec![String::new(); n + 1];
        let mut source_ids = HashMap::with_capacity(rows.len());
        for (id, key) in rows {
            source_ids.insert(key.clone(), id);
            source[id as usize] = key;
        }
        Ok(Self {
            entity,
            category,
            relation,
            entity_ids,
            relation_ids,
            source,
            source_ids,
        })
    }

    /// A source's name, as a store error when the id does not resolve.
    pub fn source_key(&self, id: i64) -> Result<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.source.get(i))
            .filter(|k| !k.is_empty())
            .map(String::as_str)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "source id {id} does not resolve; run `graph verify`"
                ))
            })
    }

    /// The keys of a triple of store ids; `None` if an id does not resolve (only possible
    /// when the database was edited behind the store's back).
    pub fn get(&self, t: [i64; 3]) -> Option<[&str; 3]> {
        let entity = |id: i64| usize::try_from(id).ok().and_then(|i| self.entity.get(i));
        let relation = usize::try_from(t[1])
            .ok()
            .and_then(|i| self.relation.get(i))?;
        Some([entity(t[0])?, relation, entity(t[2])?])
            .filter(|k| k.iter().all(|s| !s.is_empty()))
            .map(|k| k.map(String::as_str))
    }

    /// An entity's key, as a store error when the id does not resolve.
    pub fn entity_key(&self, id: i64) -> Result<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.entity.get(i))
            .filter(|k| !k.is_empty())
            .map(String::as_str)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "entity id {id} does not resolve; run `graph verify`"
                ))
            })
    }

    /// Like [`Keys::get`], as a store error.
    pub fn triple(&self, t: [i64; 3]) -> Result<[&str; 3]> {
        self.get(t).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "edge ({}, {}, {}) names an id with no entity or relation; run `graph verify`",
                t[0], t[1], t[2]
            ))
        })
    }
}

/// One version's changes in store ids. New entities and relations are the last ones in
/// [`Keys`]; the triple lists are shared with the thread that hashes them.
#[derive(Default)]
pub(super) struct Delta<'a> {
    pub entities: Vec<&'a EntityRecord>,
    pub relations: Vec<&'a str>,
    pub added: Arc<Vec<[i64; 3]>>,
    /// Parallel to `added` when non-empty.
    pub provenance: Vec<Option<String>>,
    pub removed: Arc<Vec<[i64; 3]>>,
    /// Refutations recorded in this version, with their evidence (JSON). One already live is
    /// left as it is and not counted.
    pub refuted: Vec<([i64; 3], String)>,
    /// Live refutations this version withdraws. One not live is ignored.
    pub unrefuted: Vec<[i64; 3]>,
    /// Feature values this version sets; each replaced live value is in `features_removed`.
    pub features: Arc<Vec<FeatureRow>>,
    /// Live feature values this version removes (by stored row).
    pub features_removed: Arc<Vec<FeatureRow>>,
    /// Source names first seen in this version (the last ones in [`Keys`]).
    pub new_sources: Vec<&'a str>,
    /// Edge sources this version adds; each pair's triple is live after it.
    pub sources: Arc<Vec<Pair>>,
    /// Live edge sources this version removes. `commit` adds those of the removed edges.
    pub sources_removed: Arc<Vec<Pair>>,
}

impl Delta<'_> {
    /// Whether the version would change nothing.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
            && self.relations.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.refuted.is_empty()
            && self.unrefuted.is_empty()
            && self.features.is_empty()
            && self.features_removed.is_empty()
            && self.sources.is_empty()
            && self.sources_removed.is_empty()
    }
}

#[derive(Clone)]
pub(super) struct Meta {
    pub message: String,
    pub source: String,
    pub round_id: Option<i64>,
}

impl Store {
    /// Imports a parsed batch (its entities, triples and features) as one new version, or
    /// reports that nothing changed.
    pub async fn import(&self, batch: &TripleBatch, opts: &ImportOptions) -> Result<Outcome> {
        self.import_with_features(batch, &[], opts).await
    }

    /// Sets the features of existing entities as one new version; values equal to the live
    /// ones change nothing (no version when none differs). Features never create entities:
    /// an unknown key is an error naming it. `opts.replace` does not apply.
    pub async fn import_features(
        &self,
        records: &[FeatureRecord],
        opts: &ImportOptions,
    ) -> Result<Outcome> {
        let opts = ImportOptions {
            replace: false,
            ..opts.clone()
        };
        self.import_with_features(&TripleBatch::default(), records, &opts)
            .await
    }

    /// A batch and features of entities named by key (the batch's, or ones already stored)
    /// as one version: `import --features` with a graph file.
    pub async fn import_with_features(
        &self,
        batch: &TripleBatch,
        records: &[FeatureRecord],
        opts: &ImportOptions,
    ) -> Result<Outcome> {
        let mut tx = self.write_tx().await?;
        let mut keys = Keys::load(&mut tx).await?;
        let mut delta = Delta::default();

        let mut next_entity = keys.entity.len() as i64;
        // An entity keeps its category: a file that says otherwise is an error naming the
        // version that gave the first one (the reader already caught disagreements within
        // the import's own files).
        if let Some((e, id)) = batch.entities.iter().find_map(|e| {
            let &id = keys.entity_ids.get(&e.key)?;
            let stored = keys.category.get(id as usize)?;
            (!e.category.is_empty() && !stored.is_empty() && *stored != e.category)
                .then_some((e, id))
        }) {
            let since: Option<i64> =
                sqlx::query_scalar("SELECT added_in FROM entities WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(StoreError::CategoryConflict {
                entity: e.key.clone(),
                given: e.category.clone(),
                stored: keys.category[id as usize].clone(),
                since: since.unwrap_or_default(),
            });
        }
        let entity_map: Vec<i64> = batch
            .entities
            .iter()
            .map(|e| match keys.entity_ids.get(&e.key) {
                Some(&id) => id,
                None => {
                    let id = next_entity;
                    next_entity += 1;
                    keys.entity_ids.insert(e.key.clone(), id);
                    keys.entity.push(e.key.clone());
                    keys.category.push(e.category.clone());
                    delta.entities.push(e);
                    id
                }
            })
            .collect();
        let mut next_relation = keys.relation.len() as i64;
        let relation_map: Vec<i64> = batch
            .relations
            .iter()
            .map(|r| match keys.relation_ids.get(r) {
                Some(&id) => id,
                None => {
                    let id = next_relation;
                    next_relation += 1;
                    keys.relation_ids.insert(r.clone(), id);
                    keys.relation.push(r.clone());
                    delta.relations.push(r);
                    id
                }
            })
            .collect();

        if let Some(i) = batch.sources.iter().position(|s| s.trim().is_empty()) {
            return Err(StoreError::BadBatch(format!(
                "source #{i} has an empty name"
            )));
        }
        let mut next_source = keys.source.len() as i64;
        let source_map: Vec<i64> = batch
            .sources
            .iter()
            .map(|s| match keys.source_ids.get(s) {
                Some(&id) => id,
                None => {
                    let id = next_source;
                    next_source += 1;
                    keys.source_ids.insert(s.clone(), id);
                    keys.source.push(s.clone());
                    delta.new_sources.push(s);
                    id
                }
            })
            .collect();
        let source_pairs = batch_sources(batch, &entity_map, &relation_map, &source_map)?;

        let mut wanted: Vec<(i64, &FeatureValue)> =
            Vec::with_capacity(batch.features.len() + records.len());
        for (i, value) in &batch.features {
            let id = entity_map
                .get(*i as usize)
                .ok_or_else(|| StoreError::BadFeature {
                    entity: format!("#{i}"),
                    kind: value.kind().to_owned(),
                    message: format!("the batch has {} entities", batch.entities.len()),
                })?;
            wanted.push((*id, value));
        }
        for r in records {
            let id = keys
                .entity_ids
                .get(&r.entity)
                .ok_or_else(|| StoreError::UnknownEntity(r.entity.clone()))?;
            wanted.push((*id, &r.value));
        }
        let (features_set, features_removed) = features::delta(&mut tx, &keys, &wanted).await?;
        drop(wanted);

        // A features-only import need not read the edges.
        let live: FxHashSet<[i64; 3]> = if batch.triples.is_empty() && !opts.replace {
            FxHashSet::default()
        } else {
            scan::edges(&mut tx, Filter::Live)
                .await?
                .into_iter()
                .map(|e| [e.head, e.relation, e.tail])
                .collect()
        };
        let mapped = batch.triples.iter().map(|&[h, r, t]| {
            [
                entity_map[h as usize],
                relation_map[r as usize],
                entity_map[t as usize],
            ]
        });
        let added: Vec<[i64; 3]> = mapped.clone().filter(|t| !live.contains(t)).collect();
        let mut removed = Vec::new();
        if opts.replace {
            let wanted: FxHashSet<[i64; 3]> = mapped.collect();
            removed = live
                .iter()
                .filter(|t| !wanted.contains(*t))
                .copied()
                .collect();
            removed.sort_unstable();
        }
        let (sources_added, sources_removed) =
            sources::delta(&mut tx, source_pairs, &live, opts.replace).await?;
        if added.is_empty()
            && removed.is_empty()
            && delta.entities.is_empty()
            && features_set.is_empty()
            && features_removed.is_empty()
            && sources_added.is_empty()
            && sources_removed.is_empty()
        {
            let triples = if live.is_empty() {
                sqlx::query_scalar("SELECT count(*) FROM edges WHERE removed_in IS NULL")
                    .fetch_one(&mut *tx)
                    .await?
            } else {
                live.len() as i64
            };
            tx.rollback().await?;
            return Ok(Outcome::Unchanged {
                head: self.head().await?,
                triples: triples as u64,
            });
        }
        debug!(
            added = added.len(),
            removed = removed.len(),
            "delta computed"
        );
        drop(live);
        delta.added = Arc::new(added);
        delta.removed = Arc::new(removed);
        delta.features = Arc::new(features_set);
        delta.features_removed = Arc::new(features_removed);
        delta.sources = Arc::new(sources_added);
        delta.sources_removed = Arc::new(sources_removed);
        let meta = Meta {
            message: opts.message.clone(),
            source: opts.source.to_string(),
            round_id: None,
        };
        let summary = commit(&mut tx, Arc::new(keys), delta, meta).await?;
        tx.commit().await?;
        Ok(Outcome::Committed(summary))
    }

    /// Writes a new version that undoes version `v`: triples it added that are live are
    /// removed, triples it removed that are not live are restored, and so are feature values
    /// where no later version changed them. Entities are never removed.
    pub async fn revert(&self, v: i64, message: Option<&str>) -> Result<Outcome> {
        let mut tx = self.write_tx().await?;
        let original: Option<String> =
            sqlx::query_scalar("SELECT message FROM graph_versions WHERE id = $1")
                .bind(v)
                .fetch_optional(&mut *tx)
                .await?;
        let original = original.ok_or_else(|| StoreError::UnknownVersion(v.to_string()))?;
        let keys = Keys::load(&mut tx).await?;
        let rows = scan::edges(&mut tx, Filter::All).await?;
        let live: FxHashSet<[i64; 3]> = rows
            .iter()
            .filter(|e| e.removed_in == 0)
            .map(|e| [e.head, e.relation, e.tail])
            .collect();
        // Triple-level inverse of v's delta, applied to the current graph.
        let (mut added, mut removed, mut provenance) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen = FxHashSet::default();
        for e in &rows {
            let t = [e.head, e.relation, e.tail];
            if e.added_in == v && live.contains(&t) && seen.insert(t) {
                removed.push(t);
            } else if e.removed_in == v && !live.contains(&t) && seen.insert(t) {
                added.push(t);
                provenance.push(Some(serde_json::json!({ "revert_of": v }).to_string()));
            }
        }
        let (features_set, features_removed) = features::revert(&mut tx, &keys, v).await?;
        let (sources_added, sources_removed) = {
            let (gone, back): (FxHashSet<&[i64; 3]>, FxHashSet<&[i64; 3]>) =
                (removed.iter().collect(), added.iter().collect());
            let live_after =
                |t: &[i64; 3]| (live.contains(t) && !gone.contains(t)) || back.contains(t);
            sources::revert(&mut tx, v, live_after).await?
        };
        if added.is_empty()
            && removed.is_empty()
            && features_set.is_empty()
            && features_removed.is_empty()
            && sources_added.is_empty()
            && sources_removed.is_empty()
        {
            tx.rollback().await?;
            return Ok(Outcome::Unchanged {
                head: self.head().await?,
                triples: live.len() as u64,
            });
        }
        let delta = Delta {
            added: Arc::new(added),
            removed: Arc::new(removed),
            provenance,
            features: Arc::new(features_set),
            features_removed: Arc::new(features_removed),
            sources: Arc::new(sources_added),
            sources_removed: Arc::new(sources_removed),
            ..Delta::default()
        };
        let meta = Meta {
            message: message
                .map(str::to_owned)
                .unwrap_or_else(|| format!("revert version {v}: {original}")),
            source: serde_json::json!({ "kind": "revert", "of": v }).to_string(),
            round_id: None,
        };
        let summary = commit(&mut tx, Arc::new(keys), delta, meta).await?;
        tx.commit().await?;
        Ok(Outcome::Committed(summary))
    }

    /// Records that `(head, relation, tail)` was found false, as a new version: negative
    /// evidence for training, never proposed again. Unchanged when it is already refuted.
    pub async fn refute(
        &self,
        triple: [&str; 3],
        message: &str,
        evidence: &serde_json::Value,
    ) -> Result<Outcome> {
        let mut tx = self.write_tx().await?;
        let ids = self.ids(&mut tx, triple).await?;
        let live = live_refutations(&mut tx, &[ids]).await?;
        if !live.is_empty() {
            tx.rollback().await?;
            return Ok(Outcome::Unchanged {
                head: self.head().await?,
                triples: 0,
            });
        }
        let keys = Keys::load(&mut tx).await?;
        let delta = Delta {
            refuted: vec![(ids, evidence.to_string())],
            ..Delta::default()
        };
        let meta = Meta {
            message: message.to_owned(),
            source: serde_json::json!({ "kind": "refutation" }).to_string(),
            round_id: None,
        };
        let summary = commit(&mut tx, Arc::new(keys), delta, meta).await?;
        tx.commit().await?;
        Ok(Outcome::Committed(summary))
    }
}

/// Which of `triples` have a live refutation.
pub(super) async fn live_refutations(
    conn: &mut AnyConnection,
    triples: &[[i64; 3]],
) -> Result<FxHashSet<[i64; 3]>> {
    present(conn, "refutations", triples).await
}

/// Which of `triples` are live rows of `table` (`edges` or `refutations`: both keep
/// `(head, relation, tail)` and `removed_in`), in chunks that respect SQLite's parameter cap.
pub(super) async fn present(
    conn: &mut AnyConnection,
    table: &'static str,
    triples: &[[i64; 3]],
) -> Result<FxHashSet<[i64; 3]>> {
    let mut out = FxHashSet::default();
    if super::backend_of(conn) == super::Backend::Postgres {
        // Three array parameters per chunk (see `pg_array`), not three per row.
        for chunk in triples.chunks(PG_CHUNK) {
            let sql = format!(
                "SELECT head, relation, tail FROM {table} WHERE removed_in IS NULL \
                 AND (head, relation, tail) IN (SELECT h, r, t FROM unnest(CAST($1 AS BIGINT[]), \
                 CAST($2 AS BIGINT[]), CAST($3 AS BIGINT[])) AS u(h, r, t))"
            );
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(sql))
                .bind(pg_array(chunk.iter().map(|t| t[0])))
                .bind(pg_array(chunk.iter().map(|t| t[1])))
                .bind(pg_array(chunk.iter().map(|t| t[2])))
                .fetch_all(&mut *conn)
                .await?;
            out.extend(rows.into_iter().map(|(h, r, t)| [h, r, t]));
        }
        return Ok(out);
    }
    for chunk in triples.chunks(MAX_PARAMS / 3) {
        let sql = values_sql(
            super::backend_of(conn),
            &format!(
                "SELECT head, relation, tail FROM {table} WHERE removed_in IS NULL \
                 AND (head, relation, tail) IN (VALUES "
            ),
            3,
            chunk.len(),
        ) + ")";
        let mut q = sqlx::query_as::<_, (i64, i64, i64)>(AssertSqlSafe(sql));
        for t in chunk {
            q = q.bind(t[0]).bind(t[1]).bind(t[2]);
        }
        for (h, r, t) in q.fetch_all(&mut *conn).await? {
            out.insert([h, r, t]);
        }
    }
    Ok(out)
}

/// Marks the live rows of `table` (`edges` or `refutations`) for `triples` as removed in
/// `version`; returns how many rows changed.
async fn mark_removed(
    conn: &mut AnyConnection,
    table: &'static str,
    version: i64,
    triples: &[[i64; 3]],
) -> Result<u64> {
    let mut done = 0;
    if super::backend_of(conn) == super::Backend::Postgres {
        for chunk in triples.chunks(PG_CHUNK) {
            let sql = format!(
                "UPDATE {table} SET removed_in = $1 WHERE removed_in IS NULL \
                 AND (head, relation, tail) IN (SELECT h, r, t FROM unnest(CAST($2 AS BIGINT[]), \
                 CAST($3 AS BIGINT[]), CAST($4 AS BIGINT[])) AS u(h, r, t))"
            );
            done += sqlx::query(AssertSqlSafe(sql))
                .bind(version)
                .bind(pg_array(chunk.iter().map(|t| t[0])))
                .bind(pg_array(chunk.iter().map(|t| t[1])))
                .bind(pg_array(chunk.iter().map(|t| t[2])))
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }
        return Ok(done);
    }
    for chunk in triples.chunks(MAX_PARAMS / 3) {
        let sql = values_sql(
            super::backend_of(conn),
            &format!(
                "UPDATE {table} SET removed_in = $1 WHERE removed_in IS NULL \
                 AND (head, relation, tail) IN (VALUES "
            ),
            3,
            chunk.len(),
        ) + ")";
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(version);
        for t in chunk {
            q = q.bind(t[0]).bind(t[1]).bind(t[2]);
        }
        done += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(done)
}

/// Rows per statement of the PostgreSQL bulk paths: arrays are bound as one text parameter
/// each, so the cap is memory, not the parameter count.
pub(super) const PG_CHUNK: usize = 100_000;

/// A PostgreSQL array literal of integers (`{1,2,3}`), bound as text and cast in SQL: sqlx's
/// `Any` driver has no array type, and the server parses this about as fast as `COPY`'s text.
pub(super) fn pg_array(values: impl Iterator<Item = i64>) -> String {
    use std::fmt::Write;
    let mut s = String::from("{");
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v}");
    }
    s.push('}');
    s
}

/// A PostgreSQL array literal of floats, each written so it reads back as the same `f64`
/// (`NaN`, `Infinity`, `-Infinity` spelled as PostgreSQL spells them).
pub(super) fn pg_float_array(values: impl Iterator<Item = f64>) -> String {
    pg_optional_float_array(values.map(Some))
}

/// A PostgreSQL array literal of optional floats, `NULL` for none.
pub(super) fn pg_optional_float_array(values: impl Iterator<Item = Option<f64>>) -> String {
    use std::fmt::Write;
    let mut s = String::from("{");
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let Some(v) = v else {
            s.push_str("NULL");
            continue;
        };
        if v.is_nan() {
            s.push_str("NaN");
        } else if v.is_infinite() {
            s.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            let _ = write!(s, "{v:?}");
        }
    }
    s.push('}');
    s
}

/// A PostgreSQL array literal of optional texts, each quoted (`"` and `\` escaped), `NULL`
/// for none.
pub(super) fn pg_text_array<'a>(values: impl Iterator<Item = Option<&'a str>>) -> String {
    let mut s = String::from("{");
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            None => s.push_str("NULL"),
            Some(t) => {
                s.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        s.push('\\');
                    }
                    s.push(c);
                }
                s.push('"');
            }
        }
    }
    s.push('}');
    s
}

/// What the hashing thread returns: the version hash and the relation signatures seen.
type Hashed = (String, FxHashSet<(i64, String, String)>);

/// Writes `delta` as the version after the current head, inside the caller's transaction.
/// The canonical hash (a sort of every changed triple by key) runs on a blocking thread
/// while SQLite inserts the rows.
pub(super) async fn commit(
    conn: &mut AnyConnection,
    keys: Arc<Keys>,
    mut delta: Delta<'_>,
    meta: Meta,
) -> Result<CommitSummary> {
    let started = std::time::Instant::now();
    // Only real changes of the refutations enter the version (and its hash).
    if !delta.refuted.is_empty() || !delta.unrefuted.is_empty() {
        let mut asked: Vec<[i64; 3]> = delta.refuted.iter().map(|r| r.0).collect();
        asked.extend(&delta.unrefuted);
        let live = live_refutations(conn, &asked).await?;
        let mut seen = FxHashSet::default();
        delta
            .refuted
            .retain(|(t, _)| !live.contains(t) && seen.insert(*t));
        let mut seen = FxHashSet::default();
        delta
            .unrefuted
            .retain(|t| live.contains(t) && seen.insert(*t));
    }
    // A live source's edge is live: removed edges take their live sources with them.
    if !delta.removed.is_empty() {
        let mut gone = sources::live_of(conn, &delta.removed).await?;
        if !gone.is_empty() {
            gone.extend(delta.sources_removed.iter().copied());
            gone.sort_unstable();
            gone.dedup();
            delta.sources_removed = Arc::new(gone);
        }
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT id, hash FROM graph_versions ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (parent, parent_hash) = match head {
        Some((id, hash)) => (Some(id), hash),
        None => (None, ROOT.to_owned()),
    };
    let version = parent.map_or(1, |p| p + 1);
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let first_entity = keys.entity.len() - delta.entities.len();

    let hashing = {
        let (keys, added, removed) = (keys.clone(), delta.added.clone(), delta.removed.clone());
        let refuted: Vec<[i64; 3]> = delta.refuted.iter().map(|r| r.0).collect();
        let unrefuted = delta.unrefuted.clone();
        let (features_set, features_removed) =
            (delta.features.clone(), delta.features_removed.clone());
        let (sources_added, sources_removed) =
            (delta.sources.clone(), delta.sources_removed.clone());
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || -> Result<Hashed> {
            let triples = |list: &[[i64; 3]]| -> Result<Vec<[&str; 3]>> {
                list.iter().map(|&t| keys.triple(t)).collect()
            };
            let canonical = CanonicalDelta {
                message: &meta.message,
                source: &meta.source,
                round_id: meta.round_id,
                entities: (first_entity..keys.entity.len())
                    .map(|i| (keys.entity[i].as_str(), keys.category[i].as_str()))
                    .collect(),
                added: triples(&added)?,
                removed: triples(&removed)?,
                refuted: triples(&refuted)?,
                unrefuted: triples(&unrefuted)?,
                features: features::hashed(&keys, &features_set)?,
                features_removed: features::hashed(&keys, &features_removed)?,
                sources: sources::hashed(&keys, &sources_added)?,
                sources_removed: sources::hashed(&keys, &sources_removed)?,
            };
            let hash = canonical.hash(&parent_hash, FORMAT);
            // Few distinct (relation, categories) triples: dedup on ids, then name them.
            let mut ids: FxHashSet<(i64, i64, i64)> = FxHashSet::default();
            let mut category_of: FxHashMap<&str, i64> = FxHashMap::default();
            let mut names: Vec<&str> = Vec::new();
            let mut cat = |e: i64| -> i64 {
                let c = keys.category[e as usize].as_str();
                *category_of.entry(c).or_insert_with(|| {
                    names.push(c);
                    names.len() as i64 - 1
                })
            };
            for t in added.iter() {
                ids.insert((t[1], cat(t[0]), cat(t[2])));
            }
            let signatures = ids
                .into_iter()
                .map(|(r, h, t)| {
                    (
                        r,
                        names[h as usize].to_owned(),
                        names[t as usize].to_owned(),
                    )
                })
                .collect();
            Ok((hash, signatures))
        })
    };

    sqlx::query(
        "INSERT INTO graph_versions (id, parent_id, round_id, created_at, message, source, \
         n_added, n_removed, n_entities, n_refuted, n_unrefuted, n_features, n_features_removed, \
         n_sources, n_sources_removed, hash_format, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, '')",
    )
    .bind(version)
    .bind(parent)
    .bind(meta.round_id)
    .bind(&created_at)
    .bind(&meta.message)
    .bind(&meta.source)
    .bind(delta.added.len() as i64)
    .bind(delta.removed.len() as i64)
    .bind(delta.entities.len() as i64)
    .bind(delta.refuted.len() as i64)
    .bind(delta.unrefuted.len() as i64)
    .bind(delta.features.len() as i64)
    .bind(delta.features_removed.len() as i64)
    .bind(delta.sources.len() as i64)
    .bind(delta.sources_removed.len() as i64)
    .bind(FORMAT)
    .execute(&mut *conn)
    .await?;
    if super::backend_of(conn) == super::Backend::Postgres {
        for chunk in delta.refuted.chunks(PG_CHUNK) {
            sqlx::query(
                "INSERT INTO refutations (head, relation, tail, version, evidence) \
                 SELECT h, r, t, $4, e FROM unnest(CAST($1 AS BIGINT[]), CAST($2 AS BIGINT[]), \
                 CAST($3 AS BIGINT[]), CAST($5 AS TEXT[])) AS u(h, r, t, e)",
            )
            .bind(pg_array(chunk.iter().map(|(t, _)| t[0])))
            .bind(pg_array(chunk.iter().map(|(t, _)| t[1])))
            .bind(pg_array(chunk.iter().map(|(t, _)| t[2])))
            .bind(version)
            .bind(pg_text_array(chunk.iter().map(|(_, e)| Some(e.as_str()))))
            .execute(&mut *conn)
            .await?;
        }
    } else {
        for chunk in delta.refuted.chunks(MAX_PARAMS / 5) {
            let sql = values_sql(
                super::backend_of(conn),
                "INSERT INTO refutations (head, relation, tail, version, evidence) VALUES ",
                5,
                chunk.len(),
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (t, evidence) in chunk {
                q = q
                    .bind(t[0])
                    .bind(t[1])
                    .bind(t[2])
                    .bind(version)
                    .bind(evidence);
            }
            q.execute(&mut *conn).await?;
        }
    }
    mark_removed(conn, "refutations", version, &delta.unrefuted).await?;

    if super::backend_of(conn) == super::Backend::Postgres {
        // Four array parameters per chunk, as for edges (47K entities took 0.55 s as VALUES),
        // and the search indexes rebuilt when the table at least doubles (0.43 s -> 0.2 s).
        let bulk = delta.entities.len() >= BULK_ENTITIES
            && delta.entities.len() >= first_entity
            && owns(conn, "entities").await?;
        let rebuild = if bulk {
            take_indexes(conn, &PG_ENTITY_INDEXES).await?
        } else {
            Vec::new()
        };
        for (c, chunk) in delta.entities.chunks(PG_CHUNK).enumerate() {
            let first = (first_entity + c * PG_CHUNK) as i64;
            let attributes: Vec<String> = chunk
                .iter()
                .map(|e| serde_json::Value::Object(e.attributes.clone()).to_string())
                .collect();
            sqlx::query(
                "INSERT INTO entities (id, key, category, name, attributes, added_in) \
                 SELECT $1 + n - 1, k, c, m, a, $2 FROM unnest(CAST($3 AS TEXT[]), \
                 CAST($4 AS TEXT[]), CAST($5 AS TEXT[]), CAST($6 AS TEXT[])) \
                 WITH ORDINALITY AS u(k, c, m, a, n)",
            )
            .bind(first)
            .bind(version)
            .bind(pg_text_array(chunk.iter().map(|e| Some(e.key.as_str()))))
            .bind(pg_text_array(
                chunk.iter().map(|e| Some(e.category.as_str())),
            ))
            .bind(pg_text_array(chunk.iter().map(|e| Some(e.name.as_str()))))
            .bind(pg_text_array(attributes.iter().map(|a| Some(a.as_str()))))
            .execute(&mut *conn)
            .await?;
        }
        restore_indexes(conn, rebuild).await?;
    } else {
        let per_chunk = MAX_PARAMS / 6;
        for (c, chunk) in delta.entities.chunks(per_chunk).enumerate() {
            let sql = values_sql(
                super::backend_of(conn),
                "INSERT INTO entities (id, key, category, name, attributes, added_in) VALUES ",
                6,
                chunk.len(),
            );
            let mut args = AnyArguments::default();
            for (i, e) in chunk.iter().enumerate() {
                let id = (first_entity + c * per_chunk + i) as i64;
                args.add(id).map_err(sqlx::Error::Encode)?;
                args.add(e.key.clone()).map_err(sqlx::Error::Encode)?;
                args.add(e.category.clone()).map_err(sqlx::Error::Encode)?;
                args.add(e.name.clone()).map_err(sqlx::Error::Encode)?;
                args.add(serde_json::Value::Object(e.attributes.clone()).to_string())
                    .map_err(sqlx::Error::Encode)?;
                args.add(version).map_err(sqlx::Error::Encode)?;
            }
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *conn)
                .await?;
        }
    }
    let first_relation = keys.relation.len() - delta.relations.len();
    for (i, r) in delta.relations.iter().enumerate() {
        sqlx::query("INSERT INTO relations (id, key, added_in) VALUES ($1, $2, $3)")
            .bind((first_relation + i) as i64)
            .bind(*r)
            .bind(version)
            .execute(&mut *conn)
            .await?;
    }
    features::write(conn, version, &delta.features, &delta.features_removed).await?;
    let first_source = keys.source.len() - delta.new_sources.len();
    for (i, s) in delta.new_sources.iter().enumerate() {
        sqlx::query("INSERT INTO sources (id, key) VALUES ($1, $2)")
            .bind((first_source + i) as i64)
            .bind(*s)
            .execute(&mut *conn)
            .await?;
    }

    // Keeping the by-tail index current row by row tripled a 2M-edge import (2.4 s -> 7.8 s);
    // for bulk deltas it is dropped and rebuilt from sorted data in the same transaction
    // (when it exists at all: only databases a review server has opened carry it).
    let backend = super::backend_of(conn);
    let has_tail_index: Option<String> = sqlx::query_scalar(backend.index_named("edges_live_tail"))
        .fetch_optional(&mut *conn)
        .await?;
    let rebuild_tail_index = has_tail_index.is_some()
        && delta.added.len() >= BULK_REINDEX
        && (backend == super::Backend::Sqlite || owns(conn, "edges").await?);
    if rebuild_tail_index {
        sqlx::query("DROP INDEX IF EXISTS edges_live_tail")
            .execute(&mut *conn)
            .await?;
    }
    if backend == super::Backend::Postgres {
        insert_edges_postgres(conn, version, &delta.added, &delta.provenance).await?;
    } else {
        let per_chunk = MAX_PARAMS / 5;
        for (c, chunk) in delta.added.chunks(per_chunk).enumerate() {
            let sql = values_sql(
                backend,
                "INSERT INTO edges (head, relation, tail, added_in, provenance) VALUES ",
                5,
                chunk.len(),
            );
            let mut args = AnyArguments::default();
            for (i, t) in chunk.iter().enumerate() {
                let provenance = delta.provenance.get(c * per_chunk + i).cloned().flatten();
                for v in [t[0], t[1], t[2], version] {
                    args.add(v).map_err(sqlx::Error::Encode)?;
                }
                args.add(provenance).map_err(sqlx::Error::Encode)?;
            }
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *conn)
                .await?;
        }
    }
    if rebuild_tail_index {
        sqlx::query(TAIL_INDEX).execute(&mut *conn).await?;
    }
    if delta.added.len() >= super::ANALYZE_AFTER {
        super::analyze(conn, &["edges", "entities"]).await?;
    }
    debug!(ms = started.elapsed().as_millis() as u64, "edges inserted");
    let done = mark_removed(conn, "edges", version, &delta.removed).await?;
    if done != delta.removed.len() as u64 {
        return Err(StoreError::Corrupt(format!(
            "removing {} edges touched {done} rows",
            delta.removed.len()
        )));
    }

    sources::write(conn, version, &delta.sources, &delta.sources_removed).await?;

    let (hash, signatures) = hashing
        .await
        .map_err(|e| StoreError::Corrupt(format!("hashing thread failed: {e}")))??;
    debug!(ms = started.elapsed().as_millis() as u64, "hash ready");
    for (r, h, t) in signatures {
        sqlx::query(
            "INSERT INTO relation_signatures (relation_id, head_category, tail_category) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(r)
        .bind(h)
        .bind(t)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE graph_versions SET hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    info!(
        version,
        added = delta.added.len(),
        removed = delta.removed.len(),
        entities = delta.entities.len(),
        refuted = delta.refuted.len(),
        unrefuted = delta.unrefuted.len(),
        features = delta.features.len(),
        features_removed = delta.features_removed.len(),
        sources = delta.sources.len(),
        sources_removed = delta.sources_removed.len(),
        "graph version committed"
    );
    Ok(CommitSummary {
        version,
        added: delta.added.len() as u64,
        removed: delta.removed.len() as u64,
        entities_added: delta.entities.len() as u64,
        relations_added: delta.relations.len() as u64,
        features_set: delta.features.len() as u64,
        features_removed: delta.features_removed.len() as u64,
        sources_added: delta.sources.len() as u64,
        sources_removed: delta.sources_removed.len() as u64,
        hash,
    })
}

/// The indexes of `edges` a bulk PostgreSQL load drops and rebuilds as the catalog defines
/// them, besides its key. The partial indexes over removed rows stay: new rows are live, so
/// they never enter them.
const PG_EDGE_INDEXES: [&str; 2] = ["edges_live", "edges_added"];

/// The trigram indexes of entity search: built at once, 3x faster than row by row. Their
/// definitions depend on the server (0017 makes them under ICU where it can), so a bulk load
/// rebuilds them as the catalog has them.
const PG_ENTITY_INDEXES: [&str; 2] = ["entities_key_trgm", "entities_name_trgm"];

/// Drops `names` (indexes of the current schema, PostgreSQL) and returns how to make each
/// again, as the catalog defines it.
async fn take_indexes(conn: &mut AnyConnection, names: &[&'static str]) -> Result<Vec<String>> {
    let mut made = Vec::with_capacity(names.len());
    for name in names {
        let def: Option<String> = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() \
             AND indexname = $1",
        )
        .bind(*name)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(def) = def else { continue };
        sqlx::query(AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(&mut *conn)
            .await?;
        made.push(def);
    }
    Ok(made)
}

/// Whether the connected role may drop and create `table`'s indexes (PostgreSQL: it owns the
/// table, or is a member of the role that does).
async fn owns(conn: &mut AnyConnection, table: &'static str) -> Result<bool> {
    let owner: Option<i64> = sqlx::query_scalar(
        "SELECT CASE WHEN pg_has_role(current_user, relowner, 'USAGE') THEN 1 ELSE 0 END \
         FROM pg_class WHERE oid = to_regclass($1)",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(owner == Some(1))
}

/// Makes again what [`take_indexes`] dropped, after a bulk load, sorting in memory rather than
/// in temporary files (the default 64 MB `maintenance_work_mem` is short of 2M keys; the
/// setting lasts until the transaction ends).
async fn restore_indexes(conn: &mut AnyConnection, defs: Vec<String>) -> Result<()> {
    if defs.is_empty() {
        return Ok(());
    }
    sqlx::query("SET LOCAL maintenance_work_mem = '512MB'")
        .execute(&mut *conn)
        .await?;
    for def in defs {
        sqlx::query(AssertSqlSafe(def)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts `added` as live edges of `version` on PostgreSQL, in `unnest` array chunks.
///
/// A load that at least doubles the table (the first import of a graph) is what PostgreSQL
/// does fastest without indexes: it drops the key and the two indexes every new row would
/// enter, numbers the rows itself instead of drawing 2M values from the identity sequence,
/// and rebuilds the indexes from sorted data, all in the caller's transaction (readers of
/// `edges` wait for its commit; writers wait anyway). Measured on 2M edges: 4.5 s into the
/// indexed table, 1.0 s into the bare one plus 1.1 s of index builds.
async fn insert_edges_postgres(
    conn: &mut AnyConnection,
    version: i64,
    added: &[[i64; 3]],
    provenance: &[Option<String>],
) -> Result<()> {
    let top: Option<i64> = if added.len() >= BULK_REINDEX {
        sqlx::query_scalar("SELECT max(id) FROM edges")
            .fetch_one(&mut *conn)
            .await?
    } else {
        None
    };
    // Dropping an index takes the table's owner: a role with only write grants loads the
    // slower way rather than failing.
    let bulk = added.len() >= BULK_REINDEX
        && added.len() as i64 >= top.unwrap_or(0)
        && owns(conn, "edges").await?;
    // Ids continue after the largest one: writers hold the write lock, so none interleaves.
    let first_id = top.unwrap_or(0) + 1;
    let rebuild = if bulk {
        sqlx::query("ALTER TABLE edges DROP CONSTRAINT edges_pkey")
            .execute(&mut *conn)
            .await?;
        take_indexes(conn, &PG_EDGE_INDEXES).await?
    } else {
        Vec::new()
    };
    for (c, chunk) in added.chunks(PG_CHUNK).enumerate() {
        let offset = c * PG_CHUNK;
        let at = |i: usize| provenance.get(offset + i).and_then(|p| p.as_deref());
        // Imports carry no provenance: then no array of NULLs travels either.
        let any_provenance = (0..chunk.len()).any(|i| at(i).is_some());
        let (ids, values) = if bulk {
            ("id, ", "$6 + n - 1, ")
        } else {
            ("", "")
        };
        let sql = format!(
            "INSERT INTO edges ({ids}head, relation, tail, added_in, provenance) \
             SELECT {values}h, r, t, $4, {p} FROM unnest(CAST($1 AS BIGINT[]), \
             CAST($2 AS BIGINT[]), CAST($3 AS BIGINT[]), CAST($5 AS TEXT[])) \
             WITH ORDINALITY AS u(h, r, t, p, n)",
            p = if any_provenance { "p" } else { "NULL" },
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(pg_array(chunk.iter().map(|t| t[0])))
            .bind(pg_array(chunk.iter().map(|t| t[1])))
            .bind(pg_array(chunk.iter().map(|t| t[2])))
            .bind(version);
        q = if any_provenance {
            q.bind(pg_text_array((0..chunk.len()).map(at)))
        } else {
            q.bind("{}")
        };
        if bulk {
            q = q.bind(first_id + offset as i64);
        }
        q.execute(&mut *conn).await?;
    }
    if bulk {
        restore_indexes(conn, rebuild).await?;
        sqlx::query("ALTER TABLE edges ADD CONSTRAINT edges_pkey PRIMARY KEY (id)")
            .execute(&mut *conn)
            .await?;
        sqlx::query("SELECT setval(pg_get_serial_sequence('edges', 'id'), $1)")
            .bind(first_id + added.len() as i64 - 1)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The batch's `(triple, source)` pairs in store ids, in the batch's order. A pair must name
/// one of the batch's triples (a source's edge is live) and one of its sources.
fn batch_sources(
    batch: &TripleBatch,
    entity_map: &[i64],
    relation_map: &[i64],
    source_map: &[i64],
) -> Result<Vec<Pair>> {
    batch
        .edge_sources
        .iter()
        .map(|&(t, s)| {
            let bad = |what: String| {
                StoreError::BadBatch(format!(
                    "edge source ({}, {}, {}) #{s}: {what}",
                    t[0], t[1], t[2]
                ))
            };
            let source = *source_map
                .get(s as usize)
                .ok_or_else(|| bad(format!("the batch has {} sources", source_map.len())))?;
            if batch.triples.binary_search(&t).is_err() {
                return Err(bad("not one of the batch's triples".into()));
            }
            let [h, r, tail] = t;
            Ok((
                [
                    entity_map[h as usize],
                    relation_map[r as usize],
                    entity_map[tail as usize],
                ],
                source,
            ))
        })
        .collect()
}

/// `prefix` followed by `rows` groups of `width` placeholders, numbered on from the highest
/// `$N` the prefix uses (its `$N` must appear in order, `$1` first). SQLite gets plain `?`
/// throughout: sqlx binds a named or numbered one by asking SQLite its name, a linear search
/// per parameter (15,000 of them made a 2M-edge import 60 times slower); PostgreSQL knows
/// only `$N`.
pub(super) fn values_sql(
    backend: super::Backend,
    prefix: &str,
    width: usize,
    rows: usize,
) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * width * 7);
    let mut n = 0usize;
    let mut rest = prefix;
    while let Some(at) = rest.find('$') {
        let digits: String = rest[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        sql.push_str(&rest[..at]);
        match digits.parse::<usize>() {
            Ok(k) => {
                n = n.max(k);
                match backend {
                    super::Backend::Sqlite => sql.push('?'),
                    super::Backend::Postgres => {
                        sql.push('$');
                        sql.push_str(&digits);
                    }
                }
            }
            Err(_) => sql.push('$'),
        }
        rest = &rest[at + 1 + digits.len()..];
    }
    sql.push_str(rest);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 0..width {
            if j > 0 {
                sql.push(',');
            }
            n += 1;
            match backend {
                super::Backend::Sqlite => sql.push('?'),
                super::Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_numbers_on_from_its_prefix() {
        use crate::store::Backend::{Postgres, Sqlite};
        assert_eq!(
            values_sql(Postgres, "INSERT INTO t VALUES ", 2, 2),
            "INSERT INTO t VALUES ($1,$2),($3,$4)"
        );
        assert_eq!(
            values_sql(
                Postgres,
                "UPDATE t SET x = $1 WHERE (a, b) IN (VALUES ",
                2,
                1
            ),
            "UPDATE t SET x = $1 WHERE (a, b) IN (VALUES ($2,$3)"
        );
        // SQLite: plain `?` only (a named one makes sqlx search for every parameter).
        assert_eq!(
            values_sql(Sqlite, "INSERT INTO t VALUES ", 2, 2),
            "INSERT INTO t VALUES (?,?),(?,?)"
        );
        assert_eq!(
            values_sql(Sqlite, "UPDATE t SET x = $1 WHERE (a, b) IN (VALUES ", 2, 1),
            "UPDATE t SET x = ? WHERE (a, b) IN (VALUES (?,?)"
        );
    }

    #[test]
    fn postgres_array_literals_quote_what_they_must() {
        assert_eq!(pg_array([3, -1, 0].into_iter()), "{3,-1,0}");
        assert_eq!(pg_array(std::iter::empty()), "{}");
        assert_eq!(
            pg_float_array([0.1, -2.5e-300, f64::NAN, f64::INFINITY].into_iter()),
            "{0.1,-2.5e-300,NaN,Infinity}"
        );
        assert_eq!(
            pg_text_array([Some(r#"{"a":"b\c"}"#), None, Some("")].into_iter()),
            r#"{"{\"a\":\"b\\c\"}",NULL,""}"#
        );
    }
}
