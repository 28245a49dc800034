//! Submissions from `hypograph ask`: the asker's new entities (and the edges they assert)
//! enter the graph as a version of their own, and the rows they chose wait as pinned
//! candidates of a workflow until its next round ranks. The engine reads the waiting rows
//! (`waiting_pinned`) and `Store::insert_ranked` claims them in the transaction that stores
//! the batch, so a crash before it leaves them waiting and a crash after it leaves them with
//! the round.

use super::rounds::now;
use super::write::{Delta, Keys, Meta, commit, live_refutations, present};
use super::{Result, Store, StoreError};
use crate::graph::{EntityRecord, FeatureRecord};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a submitted row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinnedOrigin {
    /// A prediction the ask computed and the asker chose.
    Prediction,
    /// An edge of the prompt: the asker's claim, tested like a prediction.
    Claim,
}

impl PinnedOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prediction => "prediction",
            Self::Claim => "claim",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "prediction" => Ok(Self::Prediction),
            "claim" => Ok(Self::Claim),
            other => Err(StoreError::Corrupt(format!("pinned origin `{other}`"))),
        }
    }
}

/// One row chosen for review, with what the ask computed for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedRow {
    /// Keys: head, relation, tail.
    pub triple: [String; 3],
    pub probability: f64,
    pub spread: f64,
    pub origin: PinnedOrigin,
}

/// What `hypograph ask --submit WORKFLOW` (or `POST /api/v1/ask`) sends into a workflow.
#[derive(Debug, Clone, Default)]
pub struct AskSubmission {
    /// The workflow's name, as rounds record it.
    pub workflow: String,
    /// The user name of the token holder.
    pub asker: String,
    /// The prompt as the asker wrote it, kept as provenance.
    pub prompt: serde_json::Value,
    /// New entities: a key the graph already has is refused (`StoreError::EntityExists`).
    pub entities: Vec<EntityRecord>,
    /// Their features (may be empty).
    pub features: Vec<FeatureRecord>,
    /// Prompt edges the asker asserts (`--assert`): graph facts, named as the asker's.
    pub asserted: Vec<[String; 3]>,
    /// Chosen predictions and (without `--assert`) the prompt's edges.
    pub rows: Vec<PinnedRow>,
}

/// A submitted row that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnownRow {
    pub triple: [String; 3],
    pub reason: String,
}

/// What a submission wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitSummary {
    pub submission: i64,
    /// The graph version of its entities and asserted edges; `None` when nothing was new.
    pub version: Option<i64>,
    pub entities_added: usize,
    /// Asserted edges added (ones already live are not added again).
    pub asserted_added: usize,
    /// Stored pinned rows' ids, in the order of the submission's rows.
    pub pinned: Vec<i64>,
    /// Rows already decided or already on their way: reported, not stored twice.
    pub already_known: Vec<KnownRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinnedStatus {
    /// Waiting for the workflow's next round.
    Waiting,
    /// In a round's batch, as `hypothesis`.
    Claimed,
    /// Not sent, with the reason.
    Skipped,
}

impl PinnedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Claimed => "claimed",
            Self::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "waiting" => Ok(Self::Waiting),
            "claimed" => Ok(Self::Claimed),
            "skipped" => Ok(Self::Skipped),
            other => Err(StoreError::Corrupt(format!("pinned status `{other}`"))),
        }
    }
}

/// A stored pinned row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinnedInfo {
    pub id: i64,
    pub submission: i64,
    pub workflow: String,
    pub head: String,
    pub relation: String,
    pub tail: String,
    /// The ends' display names (empty when the graph has none).
    pub head_name: String,
    pub tail_name: String,
    pub probability: f64,
    pub spread: f64,
    pub origin: PinnedOrigin,
    pub asker: String,
    pub created_at: String,
    pub status: PinnedStatus,
    /// The round that claimed or skipped it.
    pub round_id: Option<i64>,
    pub round_number: Option<i64>,
    pub hypothesis: Option<i64>,
    /// The claimed hypothesis's status (`active`, `confirmed`, ...).
    pub hypothesis_status: Option<String>,
    pub reason: Option<String>,
}

/// How a hypothesis that was a pinned row says so (review cards, `round show`, exports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedMark {
    /// The pinned row.
    pub row: i64,
    pub submission: i64,
    pub asker: String,
    pub origin: PinnedOrigin,
    /// Always `ask`: the one way rows are pinned today.
    pub via: String,
}

/// The pinned rows a ranked batch takes, stored with it by `Store::insert_ranked`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PinnedClaims {
    /// (pinned row, rank of the batch entry that is its triple).
    pub claimed: Vec<(i64, i64)>,
    /// Rows not sent, with the reason.
    pub skipped: Vec<(i64, String)>,
}

const PINNED_SELECT: &str = "SELECT p.id, p.submission_id, p.workflow, he.key AS head, \
    r.key AS relation, te.key AS tail, he.name AS head_name, te.name AS tail_name, p.probability, p.spread, p.origin, s.asker, s.created_at, \
    p.status, p.round_id, rd.number AS round_number, p.hypothesis_id, h.status AS hypothesis_status, \
    p.reason \
    FROM pinned_candidates p JOIN ask_submissions s ON s.id = p.submission_id \
    JOIN entities he ON he.id = p.head JOIN relations r ON r.id = p.relation \
    JOIN entities te ON te.id = p.tail \
    LEFT JOIN rounds rd ON rd.id = p.round_id LEFT JOIN hypotheses h ON h.id = p.hypothesis_id";

fn pinned_from(row: &sqlx::any::AnyRow) -> Result<PinnedInfo> {
    let origin: String = row.try_get("origin")?;
    let status: String = row.try_get("status")?;
    Ok(PinnedInfo {
        id: row.try_get("id")?,
        submission: row.try_get("submission_id")?,
        workflow: row.try_get("workflow")?,
        head: row.try_get("head")?,
        relation: row.try_get("relation")?,
        tail: row.try_get("tail")?,
        head_name: row.try_get("head_name")?,
        tail_name: row.try_get("tail_name")?,
        probability: row.try_get("probability")?,
        spread: row.try_get("spread")?,
        origin: PinnedOrigin::parse(&origin)?,
        asker: row.try_get("asker")?,
        created_at: row.try_get("created_at")?,
        status: PinnedStatus::parse(&status)?,
        round_id: row.try_get("round_id")?,
        round_number: row.try_get("round_number")?,
        hypothesis: row.try_get("hypothesis_id")?,
        hypothesis_status: row.try_get("hypothesis_status")?,
        reason: row.try_get("reason")?,
    })
}

/// A hypothesis's mark from the `pinned` column of `HYPOTHESIS_SELECT`.
pub(super) fn mark_from(json: Option<String>) -> Result<Option<PinnedMark>> {
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("pinned mark: {e}")))
    })
    .transpose()
}

impl Store {
    /// Stores an ask submission in one transaction: a graph version (when anything is new)
    /// with the new entities and the asserted edges, then the rows as pinned candidates of
    /// the workflow. Rows already live, refuted, waiting or under review in the workflow are
    /// reported in the summary and not stored. Errors (an entity the graph already has, an
    /// unknown entity or relation, a probability outside [0, 1]) write nothing.
    pub async fn submit_ask(&self, s: &AskSubmission) -> Result<SubmitSummary> {
        let mut tx = self.write_tx().await?;
        let mut keys = Keys::load(&mut tx).await?;
        let mut delta = Delta::default();
        for (index, e) in s.entities.iter().enumerate() {
            if e.key.trim().is_empty() {
                return Err(StoreError::Conflict("a new entity needs a key".into()));
            }
            // Declared twice in one submission: one entity, added once.
            if delta.entities.iter().any(|d| d.key == e.key) {
                continue;
            }
            // An existing entity (imported, or an earlier ask's) is never redeclared: its
            // features would be replaced by the asker's.
            if let Some(&id) = keys.entity_ids.get(&e.key) {
                let since: i64 = sqlx::query_scalar("SELECT added_in FROM entities WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                return Err(StoreError::EntityExists {
                    index,
                    key: e.key.clone(),
                    since,
                });
            }
            keys.entity_ids
                .insert(e.key.clone(), keys.entity.len() as i64);
            keys.entity.push(e.key.clone());
            keys.category.push(e.category.clone());
            delta.entities.push(e);
        }
        // The new entities' features join the same version, checked as an import's are.
        let mut wanted = Vec::with_capacity(s.features.len());
        for f in &s.features {
            let id = keys
                .entity_ids
                .get(&f.entity)
                .ok_or_else(|| StoreError::UnknownEntity(f.entity.clone()))?;
            wanted.push((*id, &f.value));
        }
        let (features_set, features_removed) =
            super::features::delta(&mut tx, &keys, &wanted).await?;
        drop(wanted);
        delta.features = std::sync::Arc::new(features_set);
        delta.features_removed = std::sync::Arc::new(features_removed);
        let ids = |t: &[String; 3]| -> Result<[i64; 3]> {
            let entity = |k: &String| {
                keys.entity_ids
                    .get(k)
                    .copied()
                    .ok_or_else(|| StoreError::UnknownEntity(k.clone()))
            };
            let relation = keys
                .relation_ids
                .get(&t[1])
                .copied()
                .ok_or_else(|| StoreError::UnknownRelation(t[1].clone()))?;
            Ok([entity(&t[0])?, relation, entity(&t[2])?])
        };
        let mut asserted: Vec<[i64; 3]> = s.asserted.iter().map(ids).collect::<Result<_>>()?;
        let rows: Vec<[i64; 3]> = s
            .rows
            .iter()
            .map(|r| ids(&r.triple))
            .collect::<Result<_>>()?;
        for r in &s.rows {
            let valid =
                (0.0..=1.0).contains(&r.probability) && r.spread.is_finite() && r.spread >= 0.0;
            if !valid {
                return Err(StoreError::Conflict(format!(
                    "row {} {} {}: the probability must lie in [0, 1] and the spread be \
                     finite and non-negative (got {} and {})",
                    r.triple[0], r.triple[1], r.triple[2], r.probability, r.spread
                )));
            }
        }
        let mut seen = rustc_hash::FxHashSet::default();
        asserted.retain(|t| seen.insert(*t));
        let live = present(&mut tx, "edges", &asserted).await?;
        asserted.retain(|t| !live.contains(t));
        let asserted_added = asserted.len();
        let entities_added = delta.entities.len();
        let at = now();
        let mut version = None;
        if !delta.entities.is_empty() || !asserted.is_empty() || !delta.features.is_empty() {
            let provenance = serde_json::json!({
                "ask": true, "asserted_by": s.asker, "workflow": s.workflow,
            })
            .to_string();
            delta.provenance = vec![Some(provenance); asserted.len()];
            delta.added = Arc::new(asserted);
            let mut message = format!(
                "ask by {}: {entities_added} {}",
                s.asker,
                if entities_added == 1 {
                    "entity"
                } else {
                    "entities"
                }
            );
            if asserted_added > 0 {
                message.push_str(&format!(
                    ", {asserted_added} asserted {}",
                    if asserted_added == 1 { "edge" } else { "edges" }
                ));
            }
            // The time is the version's `created_at`: the wall clock stays out of the hash.
            let meta = Meta {
                message,
                source: serde_json::json!({
                    "kind": "ask", "asker": s.asker, "workflow": s.workflow, "prompt": s.prompt,
                })
                .to_string(),
                round_id: None,
            };
            version = Some(commit(&mut tx, Arc::new(keys), delta, meta).await?.version);
        }
        let head: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM graph_versions")
            .fetch_one(&mut *tx)
            .await?;
        let head = head.ok_or(StoreError::NoVersions)?;

        // Why a row would be sent twice or not at all; the first reason found is reported.
        let live_edges = present(&mut tx, "edges", &rows).await?;
        let refuted = live_refutations(&mut tx, &rows).await?;
        let waiting: FxHashMap<[i64; 3], i64> = sqlx::query_as::<_, (i64, i64, i64, i64)>(
            "SELECT id, head, relation, tail FROM pinned_candidates \
             WHERE workflow = $1 AND status = 'waiting'",
        )
        .bind(&s.workflow)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, h, r, t)| ([h, r, t], id))
        .collect();
        let reviewing: FxHashMap<[i64; 3], (i64, i64)> =
            sqlx::query_as::<_, (i64, i64, i64, i64, i64)>(
                "SELECT h.id, rd.number, h.head, h.relation, h.tail FROM hypotheses h \
                 JOIN rounds rd ON rd.id = h.round_id WHERE rd.workflow = $1 \
                 AND h.status = 'active' AND rd.state NOT IN ('done', 'failed')",
            )
            .bind(&s.workflow)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(id, number, h, r, t)| ([h, r, t], (id, number)))
            .collect();

        let submission: i64 = sqlx::query_scalar(
            "INSERT INTO ask_submissions (workflow, asker, prompt, version, graph_version, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&s.workflow)
        .bind(&s.asker)
        .bind(s.prompt.to_string())
        .bind(version)
        .bind(head)
        .bind(&at)
        .fetch_one(&mut *tx)
        .await?;
        let (mut pinned, mut already_known) = (Vec::new(), Vec::new());
        let mut stored: FxHashMap<[i64; 3], i64> = FxHashMap::default();
        for (row, t) in s.rows.iter().zip(&rows) {
            let reason = if live_edges.contains(t) {
                Some("already an edge of the graph".to_owned())
            } else if refuted.contains(t) {
                Some("already refuted".to_owned())
            } else if let Some(id) = waiting.get(t).or_else(|| stored.get(t)) {
                Some(format!(
                    "already waiting for `{}` (pinned row {id})",
                    s.workflow
                ))
            } else {
                reviewing.get(t).map(|(h, n)| {
                    format!(
                        "under review in round {n} of `{}` (hypothesis {h})",
                        s.workflow
                    )
                })
            };
            if let Some(reason) = reason {
                already_known.push(KnownRow {
                    triple: row.triple.clone(),
                    reason,
                });
                continue;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO pinned_candidates (submission_id, workflow, head, relation, tail, \
                 probability, spread, origin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(submission)
            .bind(&s.workflow)
            .bind(t[0])
            .bind(t[1])
            .bind(t[2])
            .bind(row.probability)
            .bind(row.spread)
            .bind(row.origin.as_str())
            .fetch_one(&mut *tx)
            .await?;
            stored.insert(*t, id);
            pinned.push(id);
        }
        tx.commit().await?;
        Ok(SubmitSummary {
            submission,
            version,
            entities_added,
            asserted_added,
            pinned,
            already_known,
        })
    }

    /// Pinned rows, oldest first: of one workflow when named, of every status.
    pub async fn pinned(&self, workflow: Option<&str>) -> Result<Vec<PinnedInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PINNED_SELECT} WHERE $1 IS NULL OR p.workflow = $1 ORDER BY p.id"
        )))
        .bind(workflow)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pinned_from).collect()
    }

    /// The rows of `workflow` a round ranking on `graph_version` may take, oldest first:
    /// waiting ones whose submission that graph holds, and with `upto` none newer than that
    /// row (what the round saw when it first ranked), so a resumed round sees the same rows.
    pub async fn waiting_pinned(
        &self,
        workflow: &str,
        graph_version: i64,
        upto: Option<i64>,
    ) -> Result<Vec<PinnedInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PINNED_SELECT} WHERE p.workflow = $1 AND p.status = 'waiting' \
             AND s.graph_version <= $2 AND ($3 IS NULL OR p.id <= $3) ORDER BY p.id"
        )))
        .bind(workflow)
        .bind(graph_version)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pinned_from).collect()
    }
}

/// Claims and skips pinned rows for `round`, inside the transaction that stored its batch.
/// Each row must still be waiting for the round's workflow, and a claimed row's triple must
/// be the batch entry's at its rank: otherwise nothing of the batch is stored.
pub(super) async fn claim(
    conn: &mut AnyConnection,
    round: i64,
    claims: &PinnedClaims,
) -> Result<()> {
    let at = now();
    for (row, rank) in &claims.claimed {
        let hypothesis: Option<i64> = sqlx::query_scalar(
            "SELECT h.id FROM pinned_candidates p JOIN hypotheses h ON h.head = p.head \
             AND h.relation = p.relation AND h.tail = p.tail \
             WHERE p.id = $1 AND p.status = 'waiting' AND h.round_id = $2 AND h.rank = $3 \
             AND p.workflow = (SELECT workflow FROM rounds WHERE id = $2)",
        )
        .bind(row)
        .bind(round)
        .bind(rank)
        .fetch_optional(&mut *conn)
        .await?;
        let hypothesis = hypothesis.ok_or_else(|| {
            StoreError::Conflict(format!(
                "pinned row {row} is not waiting for round {round}'s workflow with the triple ranked {rank}"
            ))
        })?;
        sqlx::query(
            "UPDATE pinned_candidates SET status = 'claimed', round_id = $1, hypothesis_id = $2, \
             taken_at = $3 WHERE id = $4",
        )
        .bind(round)
        .bind(hypothesis)
        .bind(&at)
        .bind(row)
        .execute(&mut *conn)
        .await?;
    }
    for (row, reason) in &claims.skipped {
        let done = sqlx::query(
            "UPDATE pinned_candidates SET status = 'skipped', round_id = $1, reason = $2, \
             taken_at = $3 WHERE id = $4 AND status = 'waiting' \
             AND workflow = (SELECT workflow FROM rounds WHERE id = $1)",
        )
        .bind(round)
        .bind(reason)
        .bind(&at)
        .bind(row)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if done != 1 {
            return Err(StoreError::Conflict(format!(
                "pinned row {row} is not waiting for round {round}'s workflow"
            )));
        }
    }
    Ok(())
}

/// The pinned marks of a round's claimed hypotheses, for the provenance of what it ingests.
pub(super) async fn round_marks(
    conn: &mut AnyConnection,
    round: i64,
) -> Result<BTreeMap<i64, PinnedMark>> {
    let rows: Vec<(i64, i64, i64, String, String)> = sqlx::query_as(
        "SELECT p.hypothesis_id, p.id, s.id, s.asker, p.origin FROM pinned_candidates p \
         JOIN ask_submissions s ON s.id = p.submission_id \
         WHERE p.round_id = $1 AND p.status = 'claimed'",
    )
    .bind(round)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(h, row, submission, asker, origin)| {
            Ok((
                h,
                PinnedMark {
                    row,
                    submission,
                    asker,
                    origin: PinnedOrigin::parse(&origin)?,
                    via: "ask".into(),
                },
            ))
        })
        .collect()
}
