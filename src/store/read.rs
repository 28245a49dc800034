//! Read queries: history, checkouts, diffs, blame, statistics and the in-memory graph.

use super::features::{Change, FeatureChange};
use super::scan::{self, EdgeRow, Filter};
use super::sources::{SourceBlameRow, SourceChange, SourcesAt};
use super::write::Keys;
use super::{Result, Store, StoreError};
use crate::graph::{Graph, Triple};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// One version's metadata, as `graph log` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub round_id: Option<i64>,
    pub created_at: String,
    pub message: String,
    pub source: serde_json::Value,
    pub n_added: i64,
    pub n_removed: i64,
    pub n_entities: i64,
    /// Refutations recorded and withdrawn by this version.
    pub n_refuted: i64,
    pub n_unrefuted: i64,
    /// Feature values set (new or changed) and removed (replaced ones included).
    pub n_features: i64,
    pub n_features_removed: i64,
    /// Edge sources added and removed by this version.
    pub n_sources: i64,
    pub n_sources_removed: i64,
    /// How `hash` was computed (see `store::hash`).
    pub hash_format: i64,
    pub hash: String,
}

impl sqlx::FromRow<'_, sqlx::any::AnyRow> for VersionInfo {
    fn from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<Self> {
        use sqlx::Row;
        Ok(Self {
            id: row.try_get("id")?,
            parent_id: row.try_get("parent_id")?,
            round_id: row.try_get("round_id")?,
            created_at: row.try_get("created_at")?,
            message: row.try_get("message")?,
            source: super::json_column(row, "source")?,
            n_added: row.try_get("n_added")?,
            n_removed: row.try_get("n_removed")?,
            n_entities: row.try_get("n_entities")?,
            n_refuted: row.try_get("n_refuted")?,
            n_unrefuted: row.try_get("n_unrefuted")?,
            n_features: row.try_get("n_features")?,
            n_features_removed: row.try_get("n_features_removed")?,
            n_sources: row.try_get("n_sources")?,
            n_sources_removed: row.try_get("n_sources_removed")?,
            hash_format: row.try_get("hash_format")?,
            hash: row.try_get("hash")?,
        })
    }
}

/// Triples live at `to` but not at `from` (added), and the reverse (removed), sorted by key;
/// features whose value differs, sorted by entity and kind; edge sources gained and lost,
/// sorted by triple and source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub from: i64,
    pub to: i64,
    pub added: Vec<[String; 3]>,
    pub removed: Vec<[String; 3]>,
    pub features: Vec<FeatureChange>,
    pub sources: Vec<SourceChange>,
}

/// One stored copy of a triple and the versions that added and removed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlameRow {
    pub added_in: VersionInfo,
    pub removed_in: Option<VersionInfo>,
    pub provenance: Option<serde_json::Value>,
}

/// What `graph blame` knows of a triple: every stored copy (oldest first), its live sources,
/// and its latest refutation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blame {
    pub history: Vec<BlameRow>,
    pub sources: Vec<SourceBlameRow>,
    pub refuted: Option<serde_json::Value>,
}

/// Counts at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub version: i64,
    pub entities: u64,
    pub relations: u64,
    pub triples: u64,
    pub refutations: u64,
    /// Entities by category (`""` for none).
    pub categories: BTreeMap<String, u64>,
    /// Live triples by relation.
    pub by_relation: BTreeMap<String, u64>,
    /// `(head category, tail category)` pairs each relation has been seen with.
    pub signatures: BTreeMap<String, Vec<(String, String)>>,
    /// Entities with a live feature, by kind.
    pub features: BTreeMap<String, u64>,
    /// Live triples with at least one recorded source, and with two or more.
    pub triples_with_sources: u64,
    pub triples_with_several_sources: u64,
}

const VERSION_COLUMNS: &str = "id, parent_id, round_id, created_at, message, source, n_added, n_removed, n_entities, \
     n_refuted, n_unrefuted, n_features, n_features_removed, n_sources, n_sources_removed, \
     hash_format, hash";

impl Store {
    /// Versions, newest first.
    pub async fn log(&self, limit: Option<u32>) -> Result<Vec<VersionInfo>> {
        let limit = limit.map_or(i64::MAX, i64::from);
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM graph_versions ORDER BY id DESC LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn version(&self, v: i64) -> Result<VersionInfo> {
        let row: Option<VersionInfo> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM graph_versions WHERE id = $1"
        )))
        .bind(v)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::UnknownVersion(v.to_string()))
    }

    /// The change from `from` to `to` (either may be the older).
    pub async fn diff(&self, from: i64, to: i64) -> Result<Diff> {
        let (lo, hi) = (from.min(to), from.max(to));
        // Rows that changed state between lo and hi, with their keys; only the changed rows
        // are touched (through the added_in and removed_in indexes).
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT h.key, r.key, t.key, e.added_in FROM \
               (SELECT head, relation, tail, added_in FROM edges \
                  WHERE added_in > $1 AND added_in <= $2 AND (removed_in IS NULL OR removed_in > $2) \
                UNION ALL \
                SELECT head, relation, tail, added_in FROM edges \
                  WHERE removed_in > $1 AND removed_in <= $2 AND added_in <= $1) e \
             JOIN entities h ON h.id = e.head \
             JOIN relations r ON r.id = e.relation \
             JOIN entities t ON t.id = e.tail",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut gained = BTreeSet::new();
        let mut lost = BTreeSet::new();
        for (h, r, t, added_in) in rows {
            if added_in > lo {
                gained.insert([h, r, t]);
            } else {
                lost.insert([h, r, t]);
            }
        }
        // A triple removed and re-added in between is unchanged.
        let plus: Vec<[String; 3]> = gained.difference(&lost).cloned().collect();
        let minus: Vec<[String; 3]> = lost.difference(&gained).cloned().collect();
        let (added, removed) = if from <= to {
            (plus, minus)
        } else {
            (minus, plus)
        };
        let mut features = self.feature_changes(lo, hi).await?;
        let mut sources = self.source_changes(lo, hi).await?;
        if from > to {
            for f in &mut features {
                f.change = match f.change {
                    Change::Added => Change::Removed,
                    Change::Removed => Change::Added,
                    Change::Changed => Change::Changed,
                };
            }
            for s in &mut sources {
                s.added = !s.added;
            }
        }
        Ok(Diff {
            from,
            to,
            added,
            removed,
            features,
            sources,
        })
    }

    /// Writes the graph as it was at `v` as `head<TAB>relation<TAB>tail` lines, in the order
    /// the edges were stored. Returns the number of triples.
    pub async fn export_tsv(&self, v: i64, out: &mut impl Write) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        let keys = Keys::load(&mut conn).await?;
        let rows = scan::edges(&mut conn, Filter::At(v)).await?;
        write_triples(&keys, &rows, out)?;
        Ok(rows.len() as u64)
    }

    /// Writes KGX `nodes.tsv` and `edges.tsv` for version `v` into `dir`; edges carry their
    /// sources as `primary_knowledge_source` (`|`-joined) when any edge has one.
    pub async fn export_kgx(&self, v: i64, dir: &std::path::Path) -> Result<(u64, u64)> {
        std::fs::create_dir_all(dir)?;
        let mut conn = self.pool.acquire().await?;
        let nodes: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT key, category, name, attributes FROM entities WHERE added_in <= $1 ORDER BY id",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let mut parsed = Vec::with_capacity(nodes.len());
        let mut columns = std::collections::BTreeSet::new();
        for (key, category, name, attributes) in nodes {
            let attrs: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&attributes).map_err(|e| {
                    StoreError::Corrupt(format!("attributes of entity `{key}`: {e}"))
                })?;
            columns.extend(attrs.keys().cloned());
            parsed.push((key, category, name, attrs));
        }
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("nodes.tsv"))?);
        write!(w, "id\tcategory\tname")?;
        for c in &columns {
            write!(w, "\t{}", clean(c))?;
        }
        writeln!(w)?;
        for (key, category, name, attrs) in &parsed {
            write!(w, "{}\t{}\t{}", clean(key), clean(category), clean(name))?;
            for c in &columns {
                let value = match attrs.get(c) {
                    Some(serde_json::Value::String(s)) => clean(s),
                    Some(other) => clean(&other.to_string()),
                    None => String::new(),
                };
                write!(w, "\t{value}")?;
            }
            writeln!(w)?;
        }
        w.flush()?;
        let keys = Keys::load(&mut conn).await?;
        let rows = scan::edges(&mut conn, Filter::At(v)).await?;
        let sources = self.sources_at(&mut conn, v).await?;
        let mut w = std::io::BufWriter::new(std::fs::File::create(dir.join("edges.tsv"))?);
        write_kgx_edges(&keys, &rows, &sources, &mut w)?;
        w.flush()?;
        Ok((parsed.len() as u64, rows.len() as u64))
    }

    /// Every stored copy of a triple (oldest first), its live sources and its refutation.
    pub async fn blame(&self, triple: [&str; 3]) -> Result<Blame> {
        let mut conn = self.pool.acquire().await?;
        let [h, r, t] = self.ids(&mut conn, triple).await?;
        let rows: Vec<(i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT added_in, removed_in, provenance FROM edges \
             WHERE head = $1 AND relation = $2 AND tail = $3 ORDER BY added_in",
        )
        .bind(h)
        .bind(r)
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        drop(conn);
        let mut out = Vec::with_capacity(rows.len());
        for (added_in, removed_in, provenance) in rows {
            let removed_in = match removed_in {
                Some(v) => Some(self.version(v).await?),
                None => None,
            };
            let provenance = provenance
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("edge provenance: {e}")))?;
            out.push(BlameRow {
                added_in: self.version(added_in).await?,
                removed_in,
                provenance,
            });
        }
        let refuted: Option<(i64, Option<i64>, String)> = sqlx::query_as(
            "SELECT version, removed_in, evidence FROM refutations \
             WHERE head = $1 AND relation = $2 AND tail = $3 ORDER BY id DESC LIMIT 1",
        )
        .bind(h)
        .bind(r)
        .bind(t)
        .fetch_optional(&self.pool)
        .await?;
        let refuted = refuted
            .map(|(version, removed_in, evidence)| {
                serde_json::from_str::<serde_json::Value>(&evidence).map(|e| {
                    serde_json::json!({ "version": version, "removed_in": removed_in, "evidence": e })
                })
            })
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("refutation evidence: {e}")))?;
        Ok(Blame {
            history: out,
            sources: self.blame_sources([h, r, t]).await?,
            refuted,
        })
    }

    pub(crate) async fn ids(
        &self,
        conn: &mut sqlx::AnyConnection,
        triple: [&str; 3],
    ) -> Result<[i64; 3]> {
        let mut ids = [0i64; 3];
        for (i, key) in triple.iter().enumerate() {
            let sql = if i == 1 {
                "SELECT id FROM relations WHERE key = $1"
            } else {
                "SELECT id FROM entities WHERE key = $1"
            };
            let id: Option<i64> = sqlx::query_scalar(sql)
                .bind(*key)
                .fetch_optional(&mut *conn)
                .await?;
            ids[i] = id.ok_or_else(|| match i {
                1 => StoreError::UnknownRelation((*key).to_owned()),
                _ => StoreError::UnknownEntity((*key).to_owned()),
            })?;
        }
        Ok(ids)
    }

    /// Counts by category and relation at version `v`.
    pub async fn stats(&self, v: i64) -> Result<Stats> {
        let mut conn = self.pool.acquire().await?;
        let categories: Vec<(String, i64)> = sqlx::query_as(
            "SELECT category, count(*) FROM entities WHERE added_in <= $1 GROUP BY category ORDER BY category",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let by_relation: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.key, count(*) FROM edges e JOIN relations r ON r.id = e.relation \
             WHERE e.added_in <= $1 AND (e.removed_in IS NULL OR e.removed_in > $1) \
             GROUP BY e.relation, r.key ORDER BY r.key",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let refutations: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM refutations WHERE version <= $1 \
                 AND (removed_in IS NULL OR removed_in > $1)",
        )
        .bind(v)
        .fetch_one(&mut *conn)
        .await?;
        let features: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, count(*) FROM entity_features WHERE added_in <= $1 \
                 AND (removed_in IS NULL OR removed_in > $1) GROUP BY kind ORDER BY kind",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let (triples_with_sources, triples_with_several_sources) =
            self.source_counts(&mut conn, v).await?;
        let relations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM relations WHERE added_in <= $1")
                .bind(v)
                .fetch_one(&mut *conn)
                .await?;
        let signature_rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT r.key, s.head_category, s.tail_category FROM relation_signatures s \
             JOIN relations r ON r.id = s.relation_id WHERE r.added_in <= $1 \
             ORDER BY r.key, s.head_category, s.tail_category",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let mut signatures: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (r, h, t) in signature_rows {
            signatures.entry(r).or_default().push((h, t));
        }
        let to_map = |rows: Vec<(String, i64)>| -> BTreeMap<String, u64> {
            rows.into_iter().map(|(k, n)| (k, n as u64)).collect()
        };
        let categories = to_map(categories);
        let by_relation = to_map(by_relation);
        Ok(Stats {
            version: v,
            entities: categories.values().sum(),
            relations: relations as u64,
            triples: by_relation.values().sum(),
            refutations: refutations as u64,
            categories,
            by_relation,
            signatures,
            features: to_map(features),
            triples_with_sources,
            triples_with_several_sources,
        })
    }

    /// Loads version `v` as the dense in-memory view models train on. Entities and relations
    /// that existed at `v` are numbered in store order, so ids are stable across versions.
    pub async fn load_graph(&self, v: i64) -> Result<Graph> {
        let mut conn = self.pool.acquire().await?;
        let entities: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, key, category FROM entities WHERE added_in <= $1 ORDER BY id",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let relations: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, key FROM relations WHERE added_in <= $1 ORDER BY id")
                .bind(v)
                .fetch_all(&mut *conn)
                .await?;
        let dense = |ids: &mut dyn Iterator<Item = i64>| {
            let ids: Vec<i64> = ids.collect();
            let mut map = vec![u32::MAX; ids.last().map_or(0, |&m| m as usize + 1)];
            for (i, id) in ids.iter().enumerate() {
                map[*id as usize] = i as u32;
            }
            map
        };
        let entity_map = dense(&mut entities.iter().map(|e| e.0));
        let relation_map = dense(&mut relations.iter().map(|r| r.0));
        let rows = scan::edges(&mut conn, Filter::At(v)).await?;
        drop(conn);
        // Mapping millions of rows and building the indexed view is CPU work: off the
        // runtime's threads, so a server in the same process keeps answering.
        tokio::task::spawn_blocking(move || -> Result<Graph> {
            let lookup = |map: &[u32], id: i64| -> Result<u32> {
                map.get(id as usize)
                    .copied()
                    .filter(|&d| d != u32::MAX)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("edge names id {id}, unknown at version {v}"))
                    })
            };
            let mut triples = Vec::with_capacity(rows.len());
            for e in &rows {
                triples.push(Triple::new(
                    lookup(&entity_map, e.head)?,
                    lookup(&relation_map, e.relation)?,
                    lookup(&entity_map, e.tail)?,
                ));
            }
            drop(rows);
            Ok(Graph::new(
                entities
                    .into_iter()
                    .map(|(_, k, c)| (k.into_boxed_str(), c.into_boxed_str()))
                    .collect(),
                relations
                    .into_iter()
                    .map(|(_, k)| k.into_boxed_str())
                    .collect(),
                triples,
            )?)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("the graph loading thread failed: {e}")))?
    }
}

fn write_triples(keys: &Keys, rows: &[EdgeRow], out: &mut impl Write) -> Result<()> {
    let mut buf = Vec::with_capacity(1 << 16);
    for e in rows {
        let [h, r, t] = keys.triple([e.head, e.relation, e.tail])?;
        buf.extend_from_slice(h.as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(r.as_bytes());
        buf.push(b'\t');
        buf.extend_from_slice(t.as_bytes());
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    Ok(())
}

/// A KGX edges file: the triples, with a `primary_knowledge_source` column when any has a
/// source (several `|`-joined, as KGX writes multivalued cells).
fn write_kgx_edges(
    keys: &Keys,
    rows: &[EdgeRow],
    sources: &SourcesAt,
    out: &mut impl Write,
) -> Result<()> {
    if sources.is_empty() {
        out.write_all(b"subject\tpredicate\tobject\n")?;
        return write_triples(keys, rows, out);
    }
    out.write_all(b"subject\tpredicate\tobject\tprimary_knowledge_source\n")?;
    let mut buf = Vec::with_capacity(1 << 16);
    for e in rows {
        let t = [e.head, e.relation, e.tail];
        for (i, part) in keys.triple(t)?.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            buf.extend_from_slice(part.as_bytes());
        }
        buf.push(b'\t');
        for (i, s) in sources.get(&t).into_iter().flatten().enumerate() {
            if i > 0 {
                buf.push(b'|');
            }
            buf.extend_from_slice(clean(s).as_bytes());
        }
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    Ok(())
}

/// Keys can't hold tabs or newlines (the importer splits on them), but attributes might.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}
