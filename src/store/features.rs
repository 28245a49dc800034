//! Entity features as versioned rows: how values are stored and compared, the feature part of
//! an import's or a revert's delta, and the reads (a version's features, their diff, blame,
//! export). Rows follow the edge rule: live at v when `added_in <= v` and `removed_in` is NULL
//! or later; a changed value is the old row removed and a new one added in one version.

use super::hash::FeatureKey;
use super::read::VersionInfo;
use super::write::{Keys, MAX_PARAMS, values_sql};
use super::{Result, Store, StoreError};
use crate::graph::features::{KINDS, check};
use crate::graph::{FeatureRecord, FeatureValue};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// A value as stored: text for SMILES and sequences, `f32` little-endian bytes for vectors.
/// Its bytes are what the hash covers and what "unchanged" compares (bit for bit, so `-0`
/// differs from `0`, as it would in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stored {
    Text(String),
    Vector(Vec<u8>),
}

impl Stored {
    pub fn encode(value: &FeatureValue) -> Self {
        match value {
            FeatureValue::Smiles(s) | FeatureValue::Sequence(s) => Self::Text(s.clone()),
            FeatureValue::Vector(v) => {
                Self::Vector(v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        }
    }

    /// The canonical bytes of the value (hash format 4).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Text(s) => s.as_bytes(),
            Self::Vector(b) => b,
        }
    }

    /// Reads a row's `text` and `vector` columns.
    fn from_columns(kind: &str, text: Option<String>, vector: Option<Vec<u8>>) -> Result<Self> {
        match (kind, text, vector) {
            ("vector", None, Some(b)) if b.len() % 4 == 0 => Ok(Self::Vector(b)),
            ("smiles" | "sequence", Some(t), None) => Ok(Self::Text(t)),
            _ => Err(StoreError::Corrupt(format!(
                "a `{kind}` feature row holds the wrong columns"
            ))),
        }
    }

    fn decode(self, kind: &str) -> FeatureValue {
        match self {
            Self::Text(t) if kind == "smiles" => FeatureValue::Smiles(t),
            Self::Text(t) => FeatureValue::Sequence(t),
            Self::Vector(b) => FeatureValue::Vector(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        }
    }

    fn dim(&self) -> Option<i64> {
        match self {
            Self::Text(_) => None,
            Self::Vector(b) => Some(b.len() as i64 / 4),
        }
    }
}

/// One feature value in a delta, in store ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FeatureRow {
    /// The stored row (for a value being removed); 0 for a value not written yet.
    pub row: i64,
    pub entity: i64,
    pub kind: &'static str,
    pub value: Stored,
}

/// A stored row as the reads select it: `id, entity, kind, text, vector, added_in, removed_in`.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Row {
    pub id: i64,
    pub entity: i64,
    pub kind: String,
    pub text: Option<String>,
    pub vector: Option<Vec<u8>>,
    pub added_in: i64,
    pub removed_in: Option<i64>,
}

impl Row {
    /// The row's value and kind, checked.
    pub fn into_feature(self) -> Result<FeatureRow> {
        let kind = kind_of(&self.kind)?;
        Ok(FeatureRow {
            row: self.id,
            entity: self.entity,
            kind,
            value: Stored::from_columns(kind, self.text, self.vector)?,
        })
    }
}

/// A [`Row`] with its entity's key (`e.key`).
#[derive(Debug, sqlx::FromRow)]
struct KeyedRow {
    key: String,
    #[sqlx(flatten)]
    row: Row,
}

/// A feature's change between two versions, as `graph diff` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FeatureChange {
    pub entity: String,
    pub kind: String,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Changed,
    Removed,
}

/// One stored value of an entity's feature and the versions that set and removed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureBlameRow {
    pub value: FeatureValue,
    pub added_in: VersionInfo,
    pub removed_in: Option<VersionInfo>,
}

/// A delta's features in the terms the hash covers.
pub(super) fn hashed<'a>(keys: &'a Keys, list: &'a [FeatureRow]) -> Result<Vec<FeatureKey<'a>>> {
    list.iter()
        .map(|f| Ok((keys.entity_key(f.entity)?, f.kind, f.value.bytes())))
        .collect()
}

/// The `&'static` name of a kind read from the database.
pub(super) fn kind_of(name: &str) -> Result<&'static str> {
    KINDS
        .into_iter()
        .find(|k| *k == name)
        .ok_or_else(|| StoreError::Corrupt(format!("feature kind `{name}`")))
}

fn bad(entity: &str, kind: &str, message: impl Into<String>) -> StoreError {
    StoreError::BadFeature {
        entity: entity.to_owned(),
        kind: kind.to_owned(),
        message: message.into(),
    }
}

/// The feature part of an import's delta: of `wanted` (store entity id and value), the values
/// that are new or differ from the live ones (`set`), and the live values they replace
/// (`removed`). Unchanged values are dropped. Every value is checked as a file's would be,
/// an entity gets at most one value per kind, and a category's live vectors keep one width.
pub(super) async fn delta(
    conn: &mut AnyConnection,
    keys: &Keys,
    wanted: &[(i64, &FeatureValue)],
) -> Result<(Vec<FeatureRow>, Vec<FeatureRow>)> {
    if wanted.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let key = |e: i64| keys.entity_key(e).unwrap_or("?");
    let mut given = FxHashSet::default();
    for (entity, value) in wanted {
        check(value).map_err(|m| bad(key(*entity), value.kind(), m))?;
        if !given.insert((*entity, value.kind())) {
            return Err(bad(key(*entity), value.kind(), "given twice in one import"));
        }
    }
    let mut live = live_rows(conn, wanted.iter().map(|w| w.0).collect()).await?;
    let (mut set, mut removed) = (Vec::new(), Vec::new());
    for &(entity, value) in wanted {
        let kind = value.kind();
        let value = Stored::encode(value);
        match live.remove(&(entity, kind)) {
            Some(old) if old.value == value => continue,
            Some(old) => removed.push(old),
            None => {}
        }
        set.push(FeatureRow {
            row: 0,
            entity,
            kind,
            value,
        });
    }
    check_width(conn, keys, &set, &removed).await?;
    Ok((set, removed))
}

/// The live values of `entities`' features, by entity and kind.
async fn live_rows(
    conn: &mut AnyConnection,
    mut entities: Vec<i64>,
) -> Result<FxHashMap<(i64, &'static str), FeatureRow>> {
    entities.sort_unstable();
    entities.dedup();
    let mut live = FxHashMap::default();
    for chunk in entities.chunks(MAX_PARAMS) {
        let sql = values_sql(
            super::backend_of(conn),
            "SELECT id, entity, kind, text, vector, added_in, removed_in FROM entity_features \
             WHERE removed_in IS NULL AND entity IN (VALUES ",
            1,
            chunk.len(),
        ) + ")";
        let mut q = sqlx::query_as::<_, Row>(AssertSqlSafe(sql));
        for id in chunk {
            q = q.bind(id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let f = row.into_feature()?;
            live.insert((f.entity, f.kind), f);
        }
    }
    Ok(live)
}

/// The live vectors of a category have one width, so that its prior map can stack them: new
/// vectors must agree with each other and with the live ones this version does not replace.
async fn check_width(
    conn: &mut AnyConnection,
    keys: &Keys,
    set: &[FeatureRow],
    removed: &[FeatureRow],
) -> Result<()> {
    // One width per category: a category's vectors feed one prior map, while categories
    // may carry embeddings from different models (a protein model's for genes, a chemical
    // one's for compounds).
    let key = |e: i64| keys.entity_key(e).unwrap_or("?");
    let category = |e: i64| {
        usize::try_from(e)
            .ok()
            .and_then(|i| keys.category.get(i))
            .map_or("", String::as_str)
    };
    let mut first: FxHashMap<&str, (&FeatureRow, i64)> = FxHashMap::default();
    for r in set {
        let Some(w) = r.value.dim() else { continue };
        let c = category(r.entity);
        match first.get(c) {
            Some((f, width)) if *width != w => {
                return Err(bad(
                    key(r.entity),
                    "vector",
                    format!(
                        "{w} values, but the vector of `{}` ({}) in the same import has {width}",
                        key(f.entity),
                        shown(c)
                    ),
                ));
            }
            Some(_) => {}
            None => {
                first.insert(c, (r, w));
            }
        }
    }
    if first.is_empty() {
        return Ok(());
    }
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT e.category, f.dim, count(*) FROM entity_features f JOIN entities e ON e.id = \
         f.entity WHERE f.kind = 'vector' AND f.removed_in IS NULL GROUP BY e.category, f.dim",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts: FxHashMap<(String, i64), i64> =
        counts.into_iter().map(|(c, d, n)| ((c, d), n)).collect();
    for r in removed {
        if let Some(d) = r.value.dim() {
            *counts
                .entry((category(r.entity).to_owned(), d))
                .or_default() -= 1;
        }
    }
    for (c, (f, width)) in &first {
        if let Some(((_, live), _)) = counts
            .iter()
            .find(|((cat, d), n)| cat == c && *d != *width && **n > 0)
        {
            return Err(bad(
                key(f.entity),
                "vector",
                format!(
                    "{width} values, but the graph's {} vectors have {live}: a new width must \
                     replace every vector of the category in one import",
                    shown(c)
                ),
            ));
        }
    }
    Ok(())
}

fn shown(category: &str) -> &str {
    if category.is_empty() {
        "uncategorized"
    } else {
        category
    }
}

/// Writes a version's feature changes: removals first (a replaced value's row must leave the
/// live index before its successor enters it), then the new rows.
pub(super) async fn write(
    conn: &mut AnyConnection,
    version: i64,
    set: &[FeatureRow],
    removed: &[FeatureRow],
) -> Result<()> {
    for chunk in removed.chunks(MAX_PARAMS) {
        let sql = values_sql(
            super::backend_of(conn),
            "UPDATE entity_features SET removed_in = $1 WHERE removed_in IS NULL AND id IN (VALUES ",
            1,
            chunk.len(),
        ) + ")";
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(version);
        for r in chunk {
            q = q.bind(r.row);
        }
        let done = q.execute(&mut *conn).await?.rows_affected();
        if done != chunk.len() as u64 {
            return Err(StoreError::Corrupt(format!(
                "removing {} feature values touched {done} rows",
                chunk.len()
            )));
        }
    }
    for chunk in set.chunks(MAX_PARAMS / 6) {
        let sql = values_sql(
            super::backend_of(conn),
            "INSERT INTO entity_features (entity, kind, text, vector, dim, added_in) VALUES ",
            6,
            chunk.len(),
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            let (text, vector) = match &r.value {
                Stored::Text(t) => (Some(t.as_str()), None),
                Stored::Vector(b) => (None, Some(b.as_slice())),
            };
            q = q
                .bind(r.entity)
                .bind(r.kind)
                .bind(text)
                .bind(vector)
                .bind(r.value.dim())
                .bind(version);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The feature part of reverting version `v`: values `v` set that are still live leave, and
/// values it removed come back where nothing later replaced them.
pub(super) async fn revert(
    conn: &mut AnyConnection,
    keys: &Keys,
    v: i64,
) -> Result<(Vec<FeatureRow>, Vec<FeatureRow>)> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, entity, kind, text, vector, added_in, removed_in FROM entity_features \
         WHERE added_in = $1 OR removed_in = $1",
    )
    .bind(v)
    .fetch_all(&mut *conn)
    .await?;
    // Per (entity, kind): the row v set, and the value v removed.
    type Slot = (Option<i64>, Option<FeatureRow>);
    let mut slots: BTreeMap<(i64, &'static str), Slot> = BTreeMap::new();
    for row in rows {
        let (added_in, removed_in) = (row.added_in, row.removed_in);
        let f = row.into_feature()?;
        let slot = slots.entry((f.entity, f.kind)).or_default();
        if added_in == v {
            slot.0 = Some(f.row);
        }
        if removed_in == Some(v) {
            slot.1 = Some(f);
        }
    }
    let mut live = live_rows(conn, slots.keys().map(|k| k.0).collect()).await?;
    let (mut set, mut removed) = (Vec::new(), Vec::new());
    for (slot, (set_by_v, removed_by_v)) in slots {
        match live.remove(&slot) {
            Some(now) if Some(now.row) == set_by_v => removed.push(now),
            // A later version changed it: leave it.
            Some(_) => continue,
            None => {}
        }
        if let Some(old) = removed_by_v {
            set.push(FeatureRow { row: 0, ..old });
        }
    }
    check_width(conn, keys, &set, &removed).await?;
    Ok((set, removed))
}

/// Every feature row that changed state between `lo` and `hi` (`lo < hi`), keyed by entity key
/// and kind: `(gained at hi, lost since lo)`.
type Changed = BTreeMap<(String, String), (Option<Vec<u8>>, Option<Vec<u8>>)>;

impl Store {
    /// Every feature live at version `v`, with entity keys, in entity store order (the order
    /// of `load_graph`'s dense ids) and then by kind.
    pub async fn features_at(&self, v: i64) -> Result<Vec<FeatureRecord>> {
        Ok(self
            .feature_rows(v)
            .await?
            .into_iter()
            .map(|(_, entity, value)| FeatureRecord { entity, value })
            .collect())
    }

    /// `(entity id, key, value)` of every feature live at `v`, by entity id and kind.
    async fn feature_rows(&self, v: i64) -> Result<Vec<(i64, String, FeatureValue)>> {
        let rows: Vec<KeyedRow> = sqlx::query_as(
            "SELECT e.key, f.id, f.entity, f.kind, f.text, f.vector, f.added_in, f.removed_in \
             FROM entity_features f JOIN entities e ON e.id = f.entity \
             WHERE f.added_in <= $1 AND (f.removed_in IS NULL OR f.removed_in > $1) \
             ORDER BY f.entity, f.kind",
        )
        .bind(v)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|KeyedRow { key, row }| {
                let Row {
                    entity: id,
                    kind,
                    text,
                    vector,
                    ..
                } = row;
                let kind = kind_of(&kind)?;
                Ok((
                    id,
                    key,
                    Stored::from_columns(kind, text, vector)?.decode(kind),
                ))
            })
            .collect()
    }

    /// Writes the features live at `v` as a features file at `path` (`id`, then `smiles`,
    /// `sequence` and `f0..` columns as present), which `import --features` reads back.
    /// Returns the number of entities written; with none, no file is written.
    pub async fn export_features(&self, v: i64, path: &Path) -> Result<u64> {
        let rows = self.feature_rows(v).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let has = |k: &str| rows.iter().any(|r| r.2.kind() == k);
        let (smiles, sequence) = (has("smiles"), has("sequence"));
        let mut width = None;
        for (_, key, value) in &rows {
            if let FeatureValue::Vector(x) = value
                && *width.get_or_insert(x.len()) != x.len()
            {
                return Err(StoreError::Corrupt(format!(
                    "vectors of two widths at version {v} (`{key}` has {}); run `graph verify`",
                    x.len()
                )));
            }
        }
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        w.write_all(b"id")?;
        if smiles {
            w.write_all(b"\tsmiles")?;
        }
        if sequence {
            w.write_all(b"\tsequence")?;
        }
        for i in 0..width.unwrap_or(0) {
            write!(w, "\tf{i}")?;
        }
        w.write_all(b"\n")?;
        let mut entities = 0;
        let mut i = 0;
        while i < rows.len() {
            let id = rows[i].0;
            let mut j = i;
            let (mut s, mut q, mut x) = (None, None, None);
            while j < rows.len() && rows[j].0 == id {
                match &rows[j].2 {
                    FeatureValue::Smiles(t) => s = Some(t),
                    FeatureValue::Sequence(t) => q = Some(t),
                    FeatureValue::Vector(v) => x = Some(v),
                }
                j += 1;
            }
            w.write_all(rows[i].1.as_bytes())?;
            for (present, value) in [(smiles, s), (sequence, q)] {
                if present {
                    write!(w, "\t{}", value.map_or("", String::as_str))?;
                }
            }
            for k in 0..width.unwrap_or(0) {
                match x {
                    // `{}` is the shortest text that reads back as the same f32.
                    Some(x) => write!(w, "\t{}", x[k])?,
                    None => w.write_all(b"\t")?,
                }
            }
            w.write_all(b"\n")?;
            entities += 1;
            i = j;
        }
        w.flush()?;
        Ok(entities)
    }

    /// Every stored value of `entity`'s `kind` feature, oldest first; the live one (if any)
    /// has no `removed_in`.
    pub async fn blame_feature(&self, entity: &str, kind: &str) -> Result<Vec<FeatureBlameRow>> {
        let kind = kind_of(kind)
            .map_err(|_| bad(entity, kind, format!("no such kind ({})", KINDS.join(", "))))?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM entities WHERE key = $1")
            .bind(entity)
            .fetch_optional(&self.pool)
            .await?;
        let id = id.ok_or_else(|| StoreError::UnknownEntity(entity.to_owned()))?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, entity, kind, text, vector, added_in, removed_in FROM entity_features \
             WHERE entity = $1 AND kind = $2 ORDER BY id",
        )
        .bind(id)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let removed_in = match row.removed_in {
                Some(v) => Some(self.version(v).await?),
                None => None,
            };
            let added_in = self.version(row.added_in).await?;
            out.push(FeatureBlameRow {
                value: row.into_feature()?.value.decode(kind),
                added_in,
                removed_in,
            });
        }
        Ok(out)
    }

    /// Features whose value differs between `lo` and `hi` (`lo <= hi`), sorted by entity key
    /// and kind, as changes from `lo` to `hi`.
    pub(super) async fn feature_changes(&self, lo: i64, hi: i64) -> Result<Vec<FeatureChange>> {
        // Rows that changed state between lo and hi, through the added_in and removed_in indexes.
        let rows: Vec<KeyedRow> = sqlx::query_as(
            "SELECT e.key, f.* FROM \
               (SELECT id, entity, kind, text, vector, added_in, removed_in FROM entity_features \
                  WHERE added_in > $1 AND added_in <= $2 AND (removed_in IS NULL OR removed_in > $2) \
                UNION ALL \
                SELECT id, entity, kind, text, vector, added_in, removed_in FROM entity_features \
                  WHERE removed_in > $1 AND removed_in <= $2 AND added_in <= $1) f \
             JOIN entities e ON e.id = f.entity",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut changed = Changed::new();
        for KeyedRow { key, row } in rows {
            let added_in = row.added_in;
            let bytes = row.text.map(String::into_bytes).or(row.vector);
            let slot = changed.entry((key, row.kind)).or_default();
            if added_in > lo {
                slot.0 = bytes;
            } else {
                slot.1 = bytes;
            }
        }
        Ok(changed
            .into_iter()
            .filter_map(|((entity, kind), (gained, lost))| {
                let change = match (gained, lost) {
                    (Some(g), Some(l)) if g == l => return None,
                    (Some(_), Some(_)) => Change::Changed,
                    (Some(_), None) => Change::Added,
                    (None, _) => Change::Removed,
                };
                Some(FeatureChange {
                    entity,
                    kind,
                    change,
                })
            })
            .collect())
    }
}
