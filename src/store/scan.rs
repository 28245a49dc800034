//! Bulk reads of the edge table. sqlx hands rows over one channel message at a time, which
//! costs about a microsecond a row; for millions of edges we let SQLite pack a chunk of rows
//! into one text value and parse it here, which is several times faster.

use super::Result;
use sqlx::{AnyConnection, AssertSqlSafe};

/// One edge row with its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EdgeRow {
    pub id: i64,
    pub head: i64,
    pub relation: i64,
    pub tail: i64,
    pub added_in: i64,
    /// 0 when the edge is live.
    pub removed_in: i64,
}

/// Which edges a scan returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Filter {
    /// Live at this version.
    At(i64),
    /// Live now (not removed).
    Live,
    /// Every row, removed ones included.
    All,
}

const CHUNK: i64 = 250_000;

/// Edges matching `filter`, in id order.
pub(crate) async fn edges(conn: &mut AnyConnection, filter: Filter) -> Result<Vec<EdgeRow>> {
    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as("SELECT min(id), max(id) FROM edges")
        .fetch_one(&mut *conn)
        .await?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new());
    };
    let (version, all) = match filter {
        Filter::At(v) => (v, 0),
        Filter::Live => (i64::MAX, 0),
        Filter::All => (0, 1),
    };
    let backend = super::backend_of(conn);
    let mut out = Vec::new();
    let mut start = lo - 1;
    while start < hi {
        let end = start.saturating_add(CHUNK);
        // $4 = 1 selects every row; otherwise rows live at version $3.
        let packed: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {} FROM edges WHERE id > $1 AND id <= $2 \
               AND ($4 = 1 OR (added_in <= $3 AND (removed_in IS NULL OR removed_in > $3)))",
            backend.packed(
                "id || ' ' || head || ' ' || relation || ' ' || tail || ' ' \
                 || added_in || ' ' || coalesce(removed_in, 0)"
            )
        )))
        .bind(start)
        .bind(end)
        .bind(version)
        .bind(all)
        .fetch_one(&mut *conn)
        .await?;
        if let Some(text) = packed {
            parse_into(&text, &mut out)?;
        }
        start = end;
    }
    Ok(out)
}

/// One edge source row with its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceRow {
    pub id: i64,
    pub triple: [i64; 3],
    pub source: i64,
    pub added_in: i64,
    /// 0 when the row is live.
    pub removed_in: i64,
}

/// Edge source rows in id order (packed like [`edges`]): every row, or with `live_only` the
/// live ones.
pub(crate) async fn sources(conn: &mut AnyConnection, live_only: bool) -> Result<Vec<SourceRow>> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT min(id), max(id) FROM edge_sources")
            .fetch_one(&mut *conn)
            .await?;
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return Ok(Vec::new());
    };
    let backend = super::backend_of(conn);
    let mut out = Vec::new();
    let mut start = lo - 1;
    while start < hi {
        let end = start.saturating_add(CHUNK);
        let packed: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT {} FROM edge_sources WHERE id > $1 AND id <= $2 AND ($3 = 0 OR removed_in IS NULL)",
            backend.packed(
                "id || ' ' || head || ' ' || relation || ' ' || tail || ' ' \
                 || source || ' ' || added_in || ' ' || coalesce(removed_in, 0)"
            )
        )))
        .bind(start)
        .bind(end)
        .bind(i64::from(live_only))
        .fetch_one(&mut *conn)
        .await?;
        if let Some(text) = packed {
            let nums = numbers(&text)?;
            let rows = nums.chunks_exact(7);
            if !rows.remainder().is_empty() {
                return Err(super::StoreError::Corrupt(
                    "truncated edge source row".into(),
                ));
            }
            out.extend(rows.map(|r| SourceRow {
                id: r[0],
                triple: [r[1], r[2], r[3]],
                source: r[4],
                added_in: r[5],
                removed_in: r[6],
            }));
        }
        start = end;
    }
    Ok(out)
}

fn numbers(text: &str) -> Result<Vec<i64>> {
    text.split(' ')
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| super::StoreError::Corrupt(format!("non-integer field `{s}`")))
        })
        .collect()
}

fn parse_into(text: &str, out: &mut Vec<EdgeRow>) -> Result<()> {
    let mut nums = text.split(' ').map(|s| {
        s.parse::<i64>()
            .map_err(|_| super::StoreError::Corrupt(format!("non-integer edge field `{s}`")))
    });
    while let Some(id) = nums.next() {
        let mut next = || {
            nums.next()
                .unwrap_or_else(|| Err(super::StoreError::Corrupt("truncated edge row".into())))
        };
        out.push(EdgeRow {
            id: id?,
            head: next()?,
            relation: next()?,
            tail: next()?,
            added_in: next()?,
            removed_in: next()?,
        });
    }
    Ok(())
}
