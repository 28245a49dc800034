//! `graph verify`: recompute every version's hash from the stored edges, refutations,
//! features and edge sources, and find the first version whose stored history no longer
//! matches; check that every id resolves and that each source row lies within a row of its edge.

use super::features::Row;
use super::hash::{CanonicalDelta, FeatureKey, ROOT, SourceKey};
use super::read::VersionInfo;
use super::scan::{self, Filter};
use super::write::Keys;
use super::{Result, Store};
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::collections::HashMap;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub versions_checked: u64,
    pub edges_checked: u64,
    pub features_checked: u64,
    pub sources_checked: u64,
    /// The first version that does not match, if any.
    pub first_mismatch: Option<Mismatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub version: i64,
    pub reason: String,
}

impl Store {
    pub async fn verify(&self) -> Result<Verification> {
        let versions: Vec<VersionInfo> = self.log(None).await?.into_iter().rev().collect();
        let mut conn = self.pool.acquire().await?;
        let keys = Keys::load(&mut conn).await?;
        let rows = scan::edges(&mut conn, Filter::All).await?;
        let entities: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT key, category, added_in FROM entities")
                .fetch_all(&mut *conn)
                .await?;
        let refutations: Vec<(i64, i64, i64, i64, Option<i64>)> =
            sqlx::query_as("SELECT head, relation, tail, version, removed_in FROM refutations")
                .fetch_all(&mut *conn)
                .await?;
        let features: Vec<Row> = sqlx::query_as(
            "SELECT id, entity, kind, text, vector, added_in, removed_in FROM entity_features",
        )
        .fetch_all(&mut *conn)
        .await?;
        let source_rows = scan::sources(&mut conn, false).await?;
        drop(conn);
        let mut features_set: HashMap<i64, Vec<FeatureKey>> = HashMap::new();
        let mut features_removed: HashMap<i64, Vec<FeatureKey>> = HashMap::new();
        let mut dangling = None;
        for f in &features {
            let Ok(key) = keys.entity_key(f.entity) else {
                if dangling
                    .as_ref()
                    .is_none_or(|d: &Mismatch| d.version > f.added_in)
                {
                    dangling = Some(Mismatch {
                        version: f.added_in,
                        reason: format!(
                            "feature row {} names entity id {}, which does not exist",
                            f.id, f.entity
                        ),
                    });
                }
                continue;
            };
            // Canonical bytes: the text, or the vector's stored f32 little-endian bytes.
            let value: &[u8] = match (&f.text, &f.vector) {
                (Some(t), _) => t.as_bytes(),
                (None, Some(b)) => b,
                (None, None) => &[],
            };
            let feature = (key, f.kind.as_str(), value);
            features_set.entry(f.added_in).or_default().push(feature);
            if let Some(v) = f.removed_in {
                features_removed.entry(v).or_default().push(feature);
            }
        }
        let mut refuted: HashMap<i64, Vec<[&str; 3]>> = HashMap::new();
        let mut unrefuted: HashMap<i64, Vec<[&str; 3]>> = HashMap::new();
        for &(h, r, t, added_in, removed_in) in &refutations {
            let Some(keys) = keys.get([h, r, t]) else {
                continue;
            };
            refuted.entry(added_in).or_default().push(keys);
            if let Some(v) = removed_in {
                unrefuted.entry(v).or_default().push(keys);
            }
        }
        let mut added: HashMap<i64, Vec<[&str; 3]>> = HashMap::new();
        let mut removed: HashMap<i64, Vec<[&str; 3]>> = HashMap::new();
        for e in &rows {
            let Some(t) = keys.get([e.head, e.relation, e.tail]) else {
                if dangling.as_ref().is_some_and(|d| d.version <= e.added_in) {
                    continue;
                }
                dangling = Some(Mismatch {
                    version: e.added_in,
                    reason: format!(
                        "edge {} names an entity or relation id that does not exist",
                        e.id
                    ),
                });
                continue;
            };
            added.entry(e.added_in).or_default().push(t);
            if e.removed_in != 0 {
                removed.entry(e.removed_in).or_default().push(t);
            }
        }
        // Each source row must lie within a row of its edge: added no earlier, removed no later.
        let mut spans: FxHashMap<[i64; 3], Vec<(i64, i64)>> =
            source_rows.iter().map(|s| (s.triple, Vec::new())).collect();
        for e in &rows {
            if let Some(list) = spans.get_mut(&[e.head, e.relation, e.tail]) {
                list.push((e.added_in, e.removed_in));
            }
        }
        let mut sources_added: HashMap<i64, Vec<SourceKey>> = HashMap::new();
        let mut sources_removed: HashMap<i64, Vec<SourceKey>> = HashMap::new();
        for s in &source_rows {
            let names = keys.get(s.triple).zip(keys.source_key(s.source).ok());
            let within = |&(a, r): &(i64, i64)| {
                a <= s.added_in && (r == 0 || (s.removed_in != 0 && s.removed_in <= r))
            };
            let problem = match names {
                None => Some("names an entity, relation or source id that does not exist"),
                Some(_) if !spans.get(&s.triple).is_some_and(|l| l.iter().any(within)) => {
                    Some("is live where its edge is not")
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                if dangling
                    .as_ref()
                    .is_none_or(|d: &Mismatch| d.version > s.added_in)
                {
                    dangling = Some(Mismatch {
                        version: s.added_in,
                        reason: format!("edge source row {} {problem}", s.id),
                    });
                }
                continue;
            }
            let Some(key) = names else { continue };
            sources_added.entry(s.added_in).or_default().push(key);
            if s.removed_in != 0 {
                sources_removed.entry(s.removed_in).or_default().push(key);
            }
        }
        let mut new_entities: HashMap<i64, Vec<(&str, &str)>> = HashMap::new();
        for (key, category, v) in &entities {
            new_entities
                .entry(*v)
                .or_default()
                .push((key.as_str(), category.as_str()));
        }
        let mut parent: Option<&VersionInfo> = None;
        let mut first_mismatch = None;
        for v in &versions {
            if dangling.as_ref().is_some_and(|d| d.version <= v.id) {
                first_mismatch = dangling.take();
                break;
            }
            let delta = CanonicalDelta {
                message: &v.message,
                source: &v.source.to_string(),
                round_id: v.round_id,
                entities: new_entities.remove(&v.id).unwrap_or_default(),
                added: added.remove(&v.id).unwrap_or_default(),
                removed: removed.remove(&v.id).unwrap_or_default(),
                refuted: refuted.remove(&v.id).unwrap_or_default(),
                unrefuted: unrefuted.remove(&v.id).unwrap_or_default(),
                features: features_set.remove(&v.id).unwrap_or_default(),
                features_removed: features_removed.remove(&v.id).unwrap_or_default(),
                sources: sources_added.remove(&v.id).unwrap_or_default(),
                sources_removed: sources_removed.remove(&v.id).unwrap_or_default(),
            };
            // Format 2 versions predate versioned refutations: theirs are not in the hash.
            let refutation_counts = if v.hash_format >= 3 {
                (delta.refuted.len() as i64, delta.unrefuted.len() as i64)
            } else {
                (v.n_refuted, v.n_unrefuted)
            };
            let counts = (
                delta.added.len() as i64,
                delta.removed.len() as i64,
                delta.entities.len() as i64,
            );
            let feature_counts = (
                delta.features.len() as i64,
                delta.features_removed.len() as i64,
            );
            let source_counts = (
                delta.sources.len() as i64,
                delta.sources_removed.len() as i64,
            );
            let problem = if v.parent_id != parent.map(|p| p.id) {
                Some(format!(
                    "parent is {:?}, expected {:?}",
                    v.parent_id,
                    parent.map(|p| p.id)
                ))
            } else if refutation_counts != (v.n_refuted, v.n_unrefuted) {
                Some(format!(
                    "stored refutation counts (+{} -{}) differ from the refutations found (+{} -{})",
                    v.n_refuted, v.n_unrefuted, refutation_counts.0, refutation_counts.1
                ))
            } else if feature_counts != (v.n_features, v.n_features_removed) {
                Some(format!(
                    "stored feature counts (+{} -{}) differ from the feature rows found (+{} -{})",
                    v.n_features, v.n_features_removed, feature_counts.0, feature_counts.1
                ))
            } else if !feature_counts.eq(&(0, 0)) && v.hash_format < 4 {
                Some(format!(
                    "it has feature rows, but its hash format {} does not cover them",
                    v.hash_format
                ))
            } else if source_counts != (v.n_sources, v.n_sources_removed) {
                Some(format!(
                    "stored source counts (+{} -{}) differ from the edge source rows found (+{} -{})",
                    v.n_sources, v.n_sources_removed, source_counts.0, source_counts.1
                ))
            } else if !source_counts.eq(&(0, 0)) && v.hash_format < 5 {
                Some(format!(
                    "it has edge source rows, but its hash format {} does not cover them",
                    v.hash_format
                ))
            } else if counts != (v.n_added, v.n_removed, v.n_entities) {
                Some(format!(
                    "stored counts (+{} -{} entities {}) differ from the edges found (+{} -{} entities {})",
                    v.n_added, v.n_removed, v.n_entities, counts.0, counts.1, counts.2
                ))
            } else {
                let computed = delta.hash(parent.map_or(ROOT, |p| p.hash.as_str()), v.hash_format);
                (computed != v.hash).then(|| {
                    format!(
                        "hash mismatch: stored {}, recomputed {computed}: its edges, features, sources or metadata were altered",
                        v.hash
                    )
                })
            };
            if let Some(reason) = problem {
                first_mismatch = Some(Mismatch {
                    version: v.id,
                    reason,
                });
                break;
            }
            parent = Some(v);
        }
        let mut first_mismatch = first_mismatch.or(dangling);
        if first_mismatch.is_none() {
            // Edges or entities pointing at versions that do not exist in the log.
            let stray = added
                .keys()
                .chain(removed.keys())
                .chain(new_entities.keys())
                .chain(refuted.keys())
                .chain(unrefuted.keys())
                .chain(features_set.keys())
                .chain(features_removed.keys())
                .chain(sources_added.keys())
                .chain(sources_removed.keys())
                .min();
            if let Some(&v) = stray {
                first_mismatch = Some(Mismatch {
                    version: v,
                    reason: format!("rows refer to version {v}, which is not in the history"),
                });
            }
        }
        Ok(Verification {
            versions_checked: versions.len() as u64,
            edges_checked: rows.len() as u64,
            features_checked: features.len() as u64,
            sources_checked: source_rows.len() as u64,
            first_mismatch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{EntityRecord, TripleBatch};
    use crate::store::{ImportOptions, OpenMode, Outcome};

    /// `a r b`, asserted by `sources`.
    fn batch(sources: &[&str]) -> TripleBatch {
        let entity = |key: &str| EntityRecord {
            key: key.into(),
            ..EntityRecord::default()
        };
        TripleBatch {
            entities: vec![entity("a"), entity("b")],
            relations: vec!["r".into()],
            triples: vec![[0, 0, 1]],
            edge_sources: (0..sources.len() as u32).map(|i| ([0, 0, 1], i)).collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            ..TripleBatch::default()
        }
    }

    #[tokio::test]
    async fn a_chain_written_in_format_4_still_verifies_under_format_5() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("g.db"), OpenMode::Create)
            .await
            .expect("open");
        let opts = ImportOptions::default();
        store.import(&batch(&[]), &opts).await.expect("v1");
        // Version 1 as a format-4 build wrote it: the same delta, hashed in format 4.
        let v1 = store.version(1).await.expect("v1");
        let format_4 = CanonicalDelta {
            message: &v1.message,
            source: &v1.source.to_string(),
            round_id: None,
            entities: vec![("a", ""), ("b", "")],
            added: vec![["a", "r", "b"]],
            ..CanonicalDelta::default()
        }
        .hash(ROOT, 4);
        assert_ne!(format_4, v1.hash, "the format is part of the hash");
        sqlx::query("UPDATE graph_versions SET hash_format = 4, hash = $1 WHERE id = 1")
            .bind(&format_4)
            .execute(&store.pool)
            .await
            .expect("rewrite v1");

        // A source for the live edge is a version of its own, chained onto the format-4 one.
        let Outcome::Committed(v2) = store.import(&batch(&["x"]), &opts).await.expect("v2") else {
            panic!("a new source is a new version");
        };
        assert_eq!((v2.added, v2.sources_added), (0, 1));
        let report = store.verify().await.expect("verify");
        assert_eq!(report.first_mismatch, None);
        assert_eq!((report.versions_checked, report.sources_checked), (2, 1));

        // Format 4 does not cover sources: a format-4 version with source rows is caught.
        sqlx::query("UPDATE graph_versions SET hash_format = 4 WHERE id = 2")
            .execute(&store.pool)
            .await
            .expect("downgrade v2");
        let mismatch = store.verify().await.expect("verify").first_mismatch;
        assert_eq!(
            mismatch.map(|m| (m.version, m.reason)),
            Some((
                2,
                "it has edge source rows, but its hash format 4 does not cover them".into()
            ))
        );
        store.close().await;
    }
}
