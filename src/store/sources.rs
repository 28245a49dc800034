//! Edge sources as versioned rows: who asserts each edge (a KGX `primary_knowledge_source`,
//! a mapped `source` column). A `(triple, source)` row follows the edge rule: live at v when
//! `added_in <= v` and `removed_in` is NULL or later, at most one live row per pair, and a
//! live source's edge is live (`commit` removes an edge's sources with it). Here: the source
//! part of an import's or a revert's delta, how rows are written, and the reads (a version's
//! sources, their diff, blame, counts).

use super::hash::SourceKey;
use super::read::VersionInfo;
use super::scan;
use super::write::{Keys, MAX_PARAMS, values_sql};
use super::{Result, Store, StoreError};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe};
use std::collections::BTreeSet;

/// A triple (store ids) and a source (store id).
pub(super) type Pair = ([i64; 3], i64);

/// A source that a triple gained or lost between two versions, as `graph diff` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SourceChange {
    pub triple: [String; 3],
    pub source: String,
    /// `true` when the triple has the source at the later version of the pair compared.
    pub added: bool,
}

/// A live source of an edge and the version that added it, as `graph blame` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceBlameRow {
    pub source: String,
    pub added_in: VersionInfo,
}

/// A delta's sources in the terms the hash covers.
pub(super) fn hashed<'a>(keys: &'a Keys, list: &[Pair]) -> Result<Vec<SourceKey<'a>>> {
    list.iter()
        .map(|&(t, s)| Ok((keys.triple(t)?, keys.source_key(s)?)))
        .collect()
}

/// The live sources of `triples`, in chunks that respect SQLite's parameter cap.
pub(super) async fn live_of(conn: &mut AnyConnection, triples: &[[i64; 3]]) -> Result<Vec<Pair>> {
    let mut out = Vec::new();
    for chunk in triples.chunks(MAX_PARAMS / 3) {
        let sql = values_sql(
            super::backend_of(conn),
            "SELECT head, relation, tail, source FROM edge_sources WHERE removed_in IS NULL \
             AND (head, relation, tail) IN (VALUES ",
            3,
            chunk.len(),
        ) + ")";
        let mut q = sqlx::query_as::<_, (i64, i64, i64, i64)>(AssertSqlSafe(sql));
        for t in chunk {
            q = q.bind(t[0]).bind(t[1]).bind(t[2]);
        }
        for (h, r, t, s) in q.fetch_all(&mut *conn).await? {
            out.push(([h, r, t], s));
        }
    }
    Ok(out)
}

/// Above this many live triples to look up, [`delta`] reads every live source row in one
/// packed scan instead: re-importing a 2M-edge KGX file took 19 s through chunked lookups.
const SCAN_ABOVE: usize = 50_000;

/// The source part of an import's delta. `wanted` are the batch's pairs (distinct), `live`
/// the triples live before the import. A pair whose triple is not live is new (a live
/// source's edge is live); the others are looked up. With `replace`, a live triple the batch
/// gives sources for keeps exactly those: its other live sources are removed. A triple the
/// batch gives without sources keeps its own (a plain triples file says nothing of them).
/// Both lists come sorted, so that the live index grows at its right edge.
pub(super) async fn delta(
    conn: &mut AnyConnection,
    mut wanted: Vec<Pair>,
    live: &FxHashSet<[i64; 3]>,
    replace: bool,
) -> Result<(Vec<Pair>, Vec<Pair>)> {
    wanted.sort_unstable();
    let mut asked: Vec<[i64; 3]> = wanted
        .iter()
        .map(|p| p.0)
        .filter(|t| live.contains(t))
        .collect();
    asked.dedup();
    if asked.is_empty() {
        return Ok((wanted, Vec::new()));
    }
    let mut present = if asked.len() > SCAN_ABOVE {
        scan::sources(conn, true)
            .await?
            .into_iter()
            .filter(|r| asked.binary_search(&r.triple).is_ok())
            .map(|r| (r.triple, r.source))
            .collect()
    } else {
        live_of(conn, &asked).await?
    };
    present.sort_unstable();
    let added = minus(&wanted, &present);
    let removed = if replace {
        minus(&present, &wanted)
    } else {
        Vec::new()
    };
    Ok((added, removed))
}

/// The pairs of `a` not in `b`; both sorted and distinct.
fn minus(a: &[Pair], b: &[Pair]) -> Vec<Pair> {
    let mut out = Vec::new();
    let mut j = 0;
    for p in a {
        while j < b.len() && b[j] < *p {
            j += 1;
        }
        if b.get(j) != Some(p) {
            out.push(*p);
        }
    }
    out
}

/// The source part of reverting version `v`: sources `v` added that are still live leave, and
/// sources it removed come back where the pair is not live and `live_after` says the triple
/// will be (edges `v` added and the revert removes take their sources with them in `commit`).
pub(super) async fn revert(
    conn: &mut AnyConnection,
    v: i64,
    live_after: impl Fn(&[i64; 3]) -> bool,
) -> Result<(Vec<Pair>, Vec<Pair>)> {
    let rows: Vec<(i64, i64, i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT head, relation, tail, source, added_in, removed_in FROM edge_sources \
         WHERE added_in = $1 UNION ALL \
         SELECT head, relation, tail, source, added_in, removed_in FROM edge_sources \
         WHERE removed_in = $1",
    )
    .bind(v)
    .fetch_all(&mut *conn)
    .await?;
    let mut removed = Vec::new();
    let mut lost = Vec::new();
    for (h, r, t, s, added_in, removed_in) in rows {
        let pair = ([h, r, t], s);
        if added_in == v && removed_in.is_none() {
            removed.push(pair);
        } else if removed_in == Some(v) {
            lost.push(pair);
        }
    }
    let mut triples: Vec<[i64; 3]> = lost.iter().map(|p| p.0).collect();
    triples.sort_unstable();
    triples.dedup();
    let present: FxHashSet<Pair> = live_of(conn, &triples).await?.into_iter().collect();
    let mut added: Vec<Pair> = lost
        .into_iter()
        .filter(|p| !present.contains(p) && live_after(&p.0))
        .collect();
    added.sort_unstable();
    added.dedup();
    removed.sort_unstable();
    Ok((added, removed))
}

/// Writes a version's source changes: removals first (a pair leaves the live index before it
/// may enter it again), then the new rows.
pub(super) async fn write(
    conn: &mut AnyConnection,
    version: i64,
    added: &[Pair],
    removed: &[Pair],
) -> Result<()> {
    for chunk in removed.chunks(MAX_PARAMS / 4) {
        let sql = values_sql(
            super::backend_of(conn),
            "UPDATE edge_sources SET removed_in = $1 WHERE removed_in IS NULL \
             AND (head, relation, tail, source) IN (VALUES ",
            4,
            chunk.len(),
        ) + ")";
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(version);
        for (t, s) in chunk {
            q = q.bind(t[0]).bind(t[1]).bind(t[2]).bind(s);
        }
        let done = q.execute(&mut *conn).await?.rows_affected();
        if done != chunk.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "removing {} edge sources touched {done} rows",
                chunk.len()
            )));
        }
    }
    for chunk in added.chunks(MAX_PARAMS / 5) {
        let sql = values_sql(
            super::backend_of(conn),
            "INSERT INTO edge_sources (head, relation, tail, source, added_in) VALUES ",
            5,
            chunk.len(),
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (t, s) in chunk {
            q = q.bind(t[0]).bind(t[1]).bind(t[2]).bind(s).bind(version);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Sources live at a version, by triple (store ids), each list sorted by name.
pub(super) type SourcesAt = FxHashMap<[i64; 3], Vec<String>>;

impl Store {
    /// The sources of every triple at version `v` (triples without any are absent).
    pub(super) async fn sources_at(&self, conn: &mut AnyConnection, v: i64) -> Result<SourcesAt> {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT e.head, e.relation, e.tail, s.key FROM edge_sources e \
             JOIN sources s ON s.id = e.source \
             WHERE e.added_in <= $1 AND (e.removed_in IS NULL OR e.removed_in > $1)",
        )
        .bind(v)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = SourcesAt::default();
        for (h, r, t, key) in rows {
            out.entry([h, r, t]).or_default().push(key);
        }
        for list in out.values_mut() {
            list.sort_unstable();
        }
        Ok(out)
    }

    /// The live sources of a triple (store ids), by name, with the version that added each.
    pub(super) async fn blame_sources(&self, t: [i64; 3]) -> Result<Vec<SourceBlameRow>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.key, e.added_in FROM edge_sources e JOIN sources s ON s.id = e.source \
             WHERE e.head = $1 AND e.relation = $2 AND e.tail = $3 AND e.removed_in IS NULL \
             ORDER BY s.key",
        )
        .bind(t[0])
        .bind(t[1])
        .bind(t[2])
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (source, added_in) in rows {
            out.push(SourceBlameRow {
                source,
                added_in: self.version(added_in).await?,
            });
        }
        Ok(out)
    }

    /// Sources gained and lost between `lo` and `hi` (`lo <= hi`), sorted by triple and source,
    /// as changes from `lo` to `hi` (`added`: the triple has the source at `hi`).
    pub(super) async fn source_changes(&self, lo: i64, hi: i64) -> Result<Vec<SourceChange>> {
        // Rows that changed state between lo and hi, through the added_in and removed_in indexes.
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
            "SELECT h.key, r.key, t.key, s.key, e.added_in FROM \
               (SELECT head, relation, tail, source, added_in FROM edge_sources \
                  WHERE added_in > $1 AND added_in <= $2 AND (removed_in IS NULL OR removed_in > $2) \
                UNION ALL \
                SELECT head, relation, tail, source, added_in FROM edge_sources \
                  WHERE removed_in > $1 AND removed_in <= $2 AND added_in <= $1) e \
             JOIN entities h ON h.id = e.head \
             JOIN relations r ON r.id = e.relation \
             JOIN entities t ON t.id = e.tail \
             JOIN sources s ON s.id = e.source",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut gained = BTreeSet::new();
        let mut lost = BTreeSet::new();
        for (h, r, t, s, added_in) in rows {
            if added_in > lo {
                gained.insert(([h, r, t], s));
            } else {
                lost.insert(([h, r, t], s));
            }
        }
        // A pair removed and re-added in between is unchanged.
        let mut out: Vec<SourceChange> = gained
            .difference(&lost)
            .map(|(triple, source)| SourceChange {
                triple: triple.clone(),
                source: source.clone(),
                added: true,
            })
            .chain(
                lost.difference(&gained)
                    .map(|(triple, source)| SourceChange {
                        triple: triple.clone(),
                        source: source.clone(),
                        added: false,
                    }),
            )
            .collect();
        out.sort();
        Ok(out)
    }

    /// `(triples with at least one source, triples with two or more)` at version `v`.
    pub(super) async fn source_counts(
        &self,
        conn: &mut AnyConnection,
        v: i64,
    ) -> Result<(u64, u64)> {
        let (any, several): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), CAST(sum(CASE WHEN n >= 2 THEN 1 ELSE 0 END) AS BIGINT) \
             FROM (SELECT count(*) AS n FROM edge_sources \
             WHERE added_in <= $1 AND (removed_in IS NULL OR removed_in > $1) \
             GROUP BY head, relation, tail) AS per_triple",
        )
        .bind(v)
        .fetch_one(&mut *conn)
        .await?;
        Ok((any as u64, several.unwrap_or(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{EdgeSources, EntityRecord, TripleBatch};
    use crate::store::{ImportOptions, OpenMode, Outcome};

    #[test]
    fn minus_of_sorted_pairs() {
        let p = |h: i64, s: i64| ([h, 1, 2], s);
        assert_eq!(
            minus(&[p(1, 1), p(1, 2), p(3, 1)], &[p(1, 2), p(2, 1)]),
            [p(1, 1), p(3, 1)]
        );
        assert_eq!(minus(&[p(1, 1)], &[]), [p(1, 1)]);
        assert!(minus(&[], &[p(1, 1)]).is_empty());
    }

    /// `n` triples `e{i} r f{i}`, the even ones asserted by `even`, every one by `all`.
    fn batch(n: u32, even: &str, all: &str) -> TripleBatch {
        let mut b = TripleBatch::default();
        for i in 0..n {
            for key in [format!("e{i}"), format!("f{i}")] {
                b.entities.push(EntityRecord {
                    key,
                    ..EntityRecord::default()
                });
            }
        }
        b.relations.push("r".into());
        b.triples = (0..n).map(|i| [2 * i, 0, 2 * i + 1]).collect();
        let mut sources = EdgeSources::default();
        for (i, &t) in b.triples.iter().enumerate() {
            sources.add(t, all);
            if i % 2 == 0 {
                sources.add(t, even);
            }
        }
        sources.finish(&mut b);
        b
    }

    /// Both ways of finding the live sources (chunked lookups, and the scan above
    /// `SCAN_ABOVE` live triples) give the same delta.
    #[tokio::test]
    async fn lookups_and_the_scan_agree() {
        for n in [100, SCAN_ABOVE as u32 + 1] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(&dir.path().join("g.db"), OpenMode::Create)
                .await
                .expect("open");
            let import = |b: TripleBatch, replace: bool| {
                let store = store.clone();
                async move {
                    let opts = ImportOptions {
                        replace,
                        ..ImportOptions::default()
                    };
                    match store.import(&b, &opts).await.expect("import") {
                        Outcome::Committed(s) => {
                            Some((s.added, s.sources_added, s.sources_removed))
                        }
                        Outcome::Unchanged { .. } => None,
                    }
                }
            };
            let n64 = u64::from(n);
            let even = n64.div_ceil(2);
            assert_eq!(
                import(batch(n, "x", "y"), false).await,
                Some((n64, n64 + even, 0))
            );
            assert_eq!(import(batch(n, "x", "y"), false).await, None, "n = {n}");
            // A new source on every live edge, and the even ones' `x` replaced by `z`.
            assert_eq!(import(batch(n, "x", "w"), false).await, Some((0, n64, 0)));
            assert_eq!(
                import(batch(n, "z", "w"), true).await,
                Some((0, even, n64 + even)),
                "n = {n}: `y` and `x` leave, `z` comes"
            );
            let report = store.verify().await.expect("verify");
            assert_eq!(report.first_mismatch, None);
            store.close().await;
        }
    }
}
