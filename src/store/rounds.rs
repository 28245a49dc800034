//! Rounds, hypotheses, per-stage progress and verdicts. Each engine transition is one
//! statement or one transaction here, guarded by the state it expects, so a resumed process
//! can neither skip nor repeat a step.

use super::pinned::PinnedClaims;
use super::write::{
    Delta, Keys, Meta, PG_CHUNK, commit, pg_array, pg_float_array, pg_optional_float_array,
    pg_text_array, values_sql,
};
use super::{Result, Store, StoreError};
use crate::plugin::{Outcome, Verdict};
use rustc_hash::FxHashSet;
use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a round is. The order is the order of a round's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundState {
    Planned,
    Training,
    Generating,
    Ranking,
    Dispatching,
    Awaiting,
    Ingesting,
    Retraining,
    Done,
    Failed,
}

impl RoundState {
    pub const ALL: [Self; 10] = [
        Self::Planned,
        Self::Training,
        Self::Generating,
        Self::Ranking,
        Self::Dispatching,
        Self::Awaiting,
        Self::Ingesting,
        Self::Retraining,
        Self::Done,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Training => "training",
            Self::Generating => "generating",
            Self::Ranking => "ranking",
            Self::Dispatching => "dispatching",
            Self::Awaiting => "awaiting",
            Self::Ingesting => "ingesting",
            Self::Retraining => "retraining",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        !matches!(self, Self::Done | Self::Failed)
    }
}

impl std::fmt::Display for RoundState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A round as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundInfo {
    pub id: i64,
    pub workflow: String,
    pub number: i64,
    pub state: RoundState,
    pub stage: i64,
    #[serde(skip)]
    pub spec: String,
    pub seed: i64,
    pub base_version: Option<i64>,
    pub model_id: Option<i64>,
    pub result_version: Option<i64>,
    pub retrained_model: Option<i64>,
    pub metrics: serde_json::Value,
    pub error: Option<String>,
    /// Runs that drove this round and ended in an error or died inside a step, and the run
    /// driving it now, if any (`Store::begin_attempt`).
    pub attempts: i64,
    pub fire_time: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const ROUND_COLUMNS: &str = "id, workflow, number, state, stage, spec, seed, base_version, \
    model_id, result_version, retrained_model, metrics, error, attempts, fire_time, created_at, \
    updated_at";

fn round_from(row: &sqlx::any::AnyRow) -> Result<RoundInfo> {
    let state: String = row.try_get("state")?;
    let metrics: String = row.try_get("metrics")?;
    Ok(RoundInfo {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        number: row.try_get("number")?,
        state: RoundState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("round state `{state}`")))?,
        stage: row.try_get("stage")?,
        spec: row.try_get("spec")?,
        seed: row.try_get("seed")?,
        base_version: row.try_get("base_version")?,
        model_id: row.try_get("model_id")?,
        result_version: row.try_get("result_version")?,
        retrained_model: row.try_get("retrained_model")?,
        metrics: serde_json::from_str(&metrics).unwrap_or(serde_json::Value::Null),
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        fire_time: row.try_get("fire_time")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Fields a transition may set along with the new state.
#[derive(Debug, Clone, Default)]
pub struct RoundUpdate {
    pub base_version: Option<i64>,
    pub model_id: Option<i64>,
    pub result_version: Option<i64>,
    pub retrained_model: Option<i64>,
    /// Merged into the stored metrics object.
    pub metrics: Option<serde_json::Value>,
    pub error: Option<String>,
}

/// A ranked candidate to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHypothesis {
    pub head: String,
    pub relation: String,
    pub tail: String,
    pub score: f64,
    pub spread: f64,
    pub acquisition: f64,
    pub rank: i64,
    /// `score` before the verdict recalibration; `None` where no ensemble computed it.
    pub base_score: Option<f64>,
    /// The paths that carried the score, found by the model itself, as JSON (see
    /// `db/migrations/0020`); `None` where it found none.
    pub model_paths: Option<String>,
}

/// A stored hypothesis, with what a plugin or reviewer needs to see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HypothesisInfo {
    pub id: i64,
    pub round_id: i64,
    pub head: String,
    pub relation: String,
    pub tail: String,
    pub head_name: String,
    pub tail_name: String,
    pub head_category: String,
    pub tail_category: String,
    pub score: f64,
    pub spread: f64,
    pub acquisition: f64,
    pub rank: i64,
    pub model_id: Option<i64>,
    pub graph_version: i64,
    pub stage: i64,
    pub status: String,
    pub reason: Option<String>,
    /// The newest model's probability, when it retrained after this was ranked.
    pub fresh_score: Option<f64>,
    pub fresh_model: Option<i64>,
    /// The model's own evidence paths (JSON), where it found any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_paths: Option<serde_json::Value>,
    /// Set when it was a pinned row (submitted via `ask`) rather than acquired: its score
    /// and spread are then the ask's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<super::pinned::PinnedMark>,
}

/// The hypothesis columns `hypothesis_from` reads, with `$json_object` the engine's JSON
/// object builder. `pinned`: the hypothesis's `PinnedMark` as JSON text, NULL when it was
/// acquired; a correlated lookup, so the queries that extend this one keep their plans.
macro_rules! hypothesis_select {
    ($json_object:literal) => {
        concat!(
            "SELECT h.id, h.round_id, he.key AS head, r.key AS relation, \
             te.key AS tail, he.name AS head_name, te.name AS tail_name, he.category AS head_category, \
             te.category AS tail_category, h.score, h.spread, h.acquisition, h.rank, h.model_id, \
             h.graph_version, h.stage, h.status, h.reason, h.fresh_score, h.fresh_model, \
             h.model_paths, (SELECT CAST(",
            $json_object,
            "('row', pc.id, 'submission', ps.id, 'asker', ps.asker, \
             'origin', pc.origin, 'via', 'ask') AS TEXT) FROM pinned_candidates pc \
             JOIN ask_submissions ps ON ps.id = pc.submission_id WHERE pc.hypothesis_id = h.id) AS pinned \
             FROM hypotheses h JOIN entities he ON he.id = h.head JOIN entities te ON te.id = h.tail \
             JOIN relations r ON r.id = h.relation"
        )
    };
}

impl super::Backend {
    /// The `SELECT ... FROM hypotheses h ...` that [`hypothesis_from`] reads.
    pub(super) fn hypothesis_select(self) -> &'static str {
        match self {
            Self::Sqlite => hypothesis_select!("json_object"),
            Self::Postgres => hypothesis_select!("json_build_object"),
        }
    }
}

pub(super) fn hypothesis_from(row: &sqlx::any::AnyRow) -> Result<HypothesisInfo> {
    Ok(HypothesisInfo {
        id: row.try_get("id")?,
        round_id: row.try_get("round_id")?,
        head: row.try_get("head")?,
        relation: row.try_get("relation")?,
        tail: row.try_get("tail")?,
        head_name: row.try_get("head_name")?,
        tail_name: row.try_get("tail_name")?,
        head_category: row.try_get("head_category")?,
        tail_category: row.try_get("tail_category")?,
        score: row.try_get("score")?,
        spread: row.try_get("spread")?,
        acquisition: row.try_get("acquisition")?,
        rank: row.try_get("rank")?,
        model_id: row.try_get("model_id")?,
        graph_version: row.try_get("graph_version")?,
        stage: row.try_get("stage")?,
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        fresh_score: row.try_get("fresh_score")?,
        fresh_model: row.try_get("fresh_model")?,
        model_paths: row
            .try_get::<Option<String>, _>("model_paths")?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("hypothesis model paths: {e}")))?,
        pinned: super::pinned::mark_from(row.try_get("pinned")?)?,
    })
}

/// What happened to a batch of verdicts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Recorded {
    pub accepted: usize,
    /// The same answer again (a repeated callback): nothing changed.
    pub duplicates: usize,
    /// Verdicts naming a hypothesis not waiting at that stage: rejected.
    pub rejected: Vec<i64>,
}

/// How a closed stage sorted its hypotheses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageClose {
    pub advanced: usize,
    pub confirmed: usize,
    pub refuted: usize,
    pub inconclusive: usize,
    pub stopped: usize,
}

/// What an ingest wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub version: i64,
    pub added: usize,
    /// Confirmed triples that were already live (another workflow added them meanwhile).
    pub already_known: usize,
    pub refuted: usize,
    pub hash: String,
}

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Starts round `number = last + 1` of `workflow` in state `planned`.
    pub async fn create_round(
        &self,
        workflow: &str,
        spec: &str,
        seed: i64,
        fire_time: Option<&str>,
    ) -> Result<RoundInfo> {
        let t = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO rounds (workflow, number, state, spec, seed, fire_time, created_at, updated_at) \
             SELECT $1, coalesce(max(number), 0) + 1, 'planned', $2, $3, $4, $5, $5 \
             FROM rounds WHERE workflow = $1 RETURNING id",
        )
        .bind(workflow)
        .bind(spec)
        .bind(seed)
        .bind(fire_time)
        .bind(&t)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match e {
            // The schema allows one open round per workflow.
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(format!(
                "workflow `{workflow}` already has an open round: another process started it"
            )),
            e => e.into(),
        })?;
        self.round(id).await
    }

    /// Counts the run about to drive the open round `id` as an attempt, before any step runs:
    /// a run the process never comes back from (an abort inside a step, a crash, a kill) has
    /// then counted, so a round whose step kills the process every time ends `failed` after
    /// `max_attempts` runs instead of being retried forever. A round whose attempts such runs
    /// have spent is failed here. A run that ends without an error gives its attempt back
    /// ([`Store::end_attempt`]); one that ends in an error keeps it ([`Store::record_attempt`]).
    /// Returns the attempts so far and whether the round is now failed.
    pub async fn begin_attempt(&self, id: i64, max_attempts: u32) -> Result<(i64, bool)> {
        let mut tx = self.write_tx().await?;
        let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT attempts, state, error FROM rounds \
             WHERE id = $1 AND state NOT IN ('done', 'failed')",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((attempts, state, error)) = row else {
            tx.rollback().await?;
            return Ok((0, false));
        };
        if attempts >= i64::from(max_attempts.max(1)) {
            let before = error
                .map(|e| format!("; the last error reported: {e}"))
                .unwrap_or_default();
            sqlx::query(
                "UPDATE rounds SET state = 'failed', error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(format!(
                "failed after {attempts} attempts: the last run stopped inside `{state}` \
                 without reporting an error (the process died: an abort, a crash or a \
                 kill){before}"
            ))
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok((attempts, true));
        }
        sqlx::query("UPDATE rounds SET attempts = attempts + 1, updated_at = $1 WHERE id = $2")
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((attempts + 1, false))
    }

    /// Gives back the attempt [`Store::begin_attempt`] counted, for a run that ended without
    /// an error (the round done or waiting, or the run stopped by a signal or a lost lease).
    pub async fn end_attempt(&self, id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE rounds SET attempts = attempts - 1 WHERE id = $1 AND attempts > 0")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the `error` a run that began an attempt on the open round `id` ended in (the
    /// attempt was counted when it began). After `max_attempts` such runs the round is failed
    /// with that error, so the next fire starts a new round instead of failing the same way
    /// forever. Returns the attempts so far and whether it failed.
    pub async fn record_attempt(
        &self,
        id: i64,
        error: &str,
        max_attempts: u32,
    ) -> Result<(i64, bool)> {
        let mut tx = self.write_tx().await?;
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE rounds SET error = $1, updated_at = $2 \
             WHERE id = $3 AND state NOT IN ('done', 'failed') RETURNING attempts",
        )
        .bind(error)
        .bind(now())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(attempts) = attempts else {
            tx.rollback().await?;
            return Ok((0, false));
        };
        let failed = attempts >= i64::from(max_attempts.max(1));
        if failed {
            sqlx::query(
                "UPDATE rounds SET state = 'failed', error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(format!("failed after {attempts} attempts: {error}"))
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((attempts, failed))
    }

    /// Gives up on an open round: it becomes `failed` with the reason, its waiting
    /// hypotheses stop waiting, and the workflow's next run starts a new round.
    pub async fn abandon_round(&self, id: i64, reason: &str, by: &str) -> Result<RoundInfo> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query(
            "UPDATE rounds SET state = 'failed', error = $1, updated_at = $2 \
             WHERE id = $3 AND state NOT IN ('done', 'failed')",
        )
        .bind(format!("abandoned by {by}: {reason}"))
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT state FROM rounds WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match exists {
                None => StoreError::UnknownRound(id),
                Some(state) => StoreError::Conflict(format!("round {id} is already {state}")),
            });
        }
        let why = format!("round {id} abandoned: {reason}");
        sqlx::query(
            "UPDATE stage_items SET status = 'failed', reason = $1 WHERE status IN ('queued', 'submitted') \
             AND hypothesis_id IN (SELECT id FROM hypotheses WHERE round_id = $2)",
        )
        .bind(&why)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE hypotheses SET status = 'failed', reason = $1 WHERE round_id = $2 AND status = 'active'",
        )
        .bind(&why)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.round(id).await
    }

    pub async fn round(&self, id: i64) -> Result<RoundInfo> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ROUND_COLUMNS} FROM rounds WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::UnknownRound(id))?;
        round_from(&row)
    }

    /// The workflow's unfinished round, if any (there is at most one).
    pub async fn open_round(&self, workflow: &str) -> Result<Option<RoundInfo>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ROUND_COLUMNS} FROM rounds WHERE workflow = $1 AND state NOT IN ('done', 'failed') \
             ORDER BY number LIMIT 1"
        )))
        .bind(workflow)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(round_from).transpose()
    }

    /// Rounds, newest first; of one workflow when named.
    pub async fn rounds(&self, workflow: Option<&str>, limit: i64) -> Result<Vec<RoundInfo>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {ROUND_COLUMNS} FROM rounds WHERE $1 IS NULL OR workflow = $1 \
             ORDER BY id DESC LIMIT $2"
        )))
        .bind(workflow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(round_from).collect()
    }

    /// Moves a round from `from` to `to` (at `stage`), setting `update`'s fields. Fails if the
    /// round is no longer in `from`: two processes cannot both take a step.
    pub async fn advance_round(
        &self,
        id: i64,
        from: RoundState,
        to: RoundState,
        stage: i64,
        update: RoundUpdate,
    ) -> Result<()> {
        // A write transaction: a metrics patch is read, merged and written back in it.
        let mut tx = self.write_tx().await?;
        advance(&mut tx, id, from, to, stage, &update).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores the ranked batch, queues it at stage 0 and moves the round to `dispatching`,
    /// in one transaction.
    pub async fn insert_hypotheses(
        &self,
        round: i64,
        from: RoundState,
        model_id: Option<i64>,
        graph_version: i64,
        stages: &[super::review::StageMeta],
        batch: &[NewHypothesis],
    ) -> Result<usize> {
        self.insert_ranked(
            round,
            from,
            model_id,
            graph_version,
            stages,
            batch,
            &PinnedClaims::default(),
        )
        .await
    }

    /// [`Store::insert_hypotheses`], also claiming the pinned rows among the batch and
    /// recording the ones skipped, in the same transaction: before it they wait, after it
    /// they belong to the round.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_ranked(
        &self,
        round: i64,
        from: RoundState,
        model_id: Option<i64>,
        graph_version: i64,
        stages: &[super::review::StageMeta],
        batch: &[NewHypothesis],
        pinned: &PinnedClaims,
    ) -> Result<usize> {
        let mut tx = self.write_tx().await?;
        for st in stages {
            sqlx::query(
                "INSERT INTO round_stages (round_id, stage, name, kind, quorum, rule, stale_below, \
                 callbacks) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(round)
            .bind(st.stage)
            .bind(&st.name)
            .bind(&st.kind)
            .bind(st.quorum)
            .bind(&st.rule)
            .bind(st.stale_below)
            .bind(i64::from(st.callbacks))
            .execute(&mut *tx)
            .await?;
        }
        let keys = Keys::load(&mut tx).await?;
        let entity = |k: &str| {
            keys.entity_ids
                .get(k)
                .copied()
                .ok_or_else(|| StoreError::UnknownEntity(k.to_owned()))
        };
        let mut ids = Vec::with_capacity(batch.len());
        for h in batch {
            let r = keys
                .relation_ids
                .get(&h.relation)
                .copied()
                .ok_or_else(|| StoreError::UnknownRelation(h.relation.clone()))?;
            ids.push([entity(&h.head)?, r, entity(&h.tail)?]);
        }
        if self.backend == super::Backend::Postgres {
            // Array parameters, one statement per 100K rows (see `write::pg_array`).
            for (chunk, chunk_ids) in batch.chunks(PG_CHUNK).zip(ids.chunks(PG_CHUNK)) {
                sqlx::query(
                    "INSERT INTO hypotheses (round_id, head, relation, tail, score, spread, \
                     acquisition, rank, model_id, graph_version, base_score, model_paths) \
                     SELECT $1, h, r, t, s, sp, a, k, $9, $10, bs, mp FROM unnest(CAST($2 AS BIGINT[]), \
                     CAST($3 AS BIGINT[]), CAST($4 AS BIGINT[]), CAST($5 AS DOUBLE PRECISION[]), \
                     CAST($6 AS DOUBLE PRECISION[]), CAST($7 AS DOUBLE PRECISION[]), \
                     CAST($8 AS BIGINT[]), CAST($11 AS DOUBLE PRECISION[]), CAST($12 AS TEXT[])) \
                     AS u(h, r, t, s, sp, a, k, bs, mp)",
                )
                .bind(round)
                .bind(pg_array(chunk_ids.iter().map(|t| t[0])))
                .bind(pg_array(chunk_ids.iter().map(|t| t[1])))
                .bind(pg_array(chunk_ids.iter().map(|t| t[2])))
                .bind(pg_float_array(chunk.iter().map(|h| h.score)))
                .bind(pg_float_array(chunk.iter().map(|h| h.spread)))
                .bind(pg_float_array(chunk.iter().map(|h| h.acquisition)))
                .bind(pg_array(chunk.iter().map(|h| h.rank)))
                .bind(model_id)
                .bind(graph_version)
                .bind(pg_optional_float_array(chunk.iter().map(|h| h.base_score)))
                .bind(pg_text_array(chunk.iter().map(|h| h.model_paths.as_deref())))
                .execute(&mut *tx)
                .await?;
            }
        }
        // SQLite: multi-row VALUES, as many rows a statement as its parameter cap allows.
        let on_sqlite = if self.backend == super::Backend::Sqlite {
            batch.len()
        } else {
            0
        };
        let per_chunk = super::write::MAX_PARAMS / 12;
        for (chunk, chunk_ids) in batch[..on_sqlite]
            .chunks(per_chunk)
            .zip(ids[..on_sqlite].chunks(per_chunk))
        {
            let sql = values_sql(
                self.backend,
                "INSERT INTO hypotheses (round_id, head, relation, tail, score, spread, \
                 acquisition, rank, model_id, graph_version, base_score, model_paths) VALUES ",
                12,
                chunk.len(),
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (h, t) in chunk.iter().zip(chunk_ids) {
                q = q
                    .bind(round)
                    .bind(t[0])
                    .bind(t[1])
                    .bind(t[2])
                    .bind(h.score)
                    .bind(h.spread)
                    .bind(h.acquisition)
                    .bind(h.rank)
                    .bind(model_id)
                    .bind(graph_version)
                    .bind(h.base_score)
                    .bind(h.model_paths.as_deref());
            }
            q.execute(&mut *tx).await?;
        }
        super::pinned::claim(&mut tx, round, pinned).await?;
        sqlx::query(
            "INSERT INTO stage_items (hypothesis_id, stage, status) \
             SELECT id, 0, 'queued' FROM hypotheses WHERE round_id = $1",
        )
        .bind(round)
        .execute(&mut *tx)
        .await?;
        if batch.len() >= super::ANALYZE_AFTER {
            super::analyze(&mut tx, &["hypotheses", "stage_items"]).await?;
        }
        advance(
            &mut tx,
            round,
            from,
            RoundState::Dispatching,
            0,
            &RoundUpdate::default(),
        )
        .await?;
        tx.commit().await?;
        Ok(batch.len())
    }

    pub async fn hypothesis(&self, id: i64) -> Result<HypothesisInfo> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "{select} WHERE h.id = $1",
            select = self.backend.hypothesis_select()
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::UnknownHypothesis(id))?;
        hypothesis_from(&row)
    }

    /// Every hypothesis of a round, best rank first.
    pub async fn round_hypotheses(&self, round: i64) -> Result<Vec<HypothesisInfo>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{select} WHERE h.round_id = $1 ORDER BY h.rank",
            select = self.backend.hypothesis_select()
        )))
        .bind(round)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hypothesis_from).collect()
    }

    /// Hypotheses of `round` whose item at `stage` has `status`, best rank first.
    pub async fn stage_items(
        &self,
        round: i64,
        stage: i64,
        status: &str,
    ) -> Result<Vec<HypothesisInfo>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{select} JOIN stage_items s ON s.hypothesis_id = h.id \
             WHERE h.round_id = $1 AND s.stage = $2 AND s.status = $3 ORDER BY h.rank",
            select = self.backend.hypothesis_select()
        )))
        .bind(round)
        .bind(stage)
        .bind(status)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hypothesis_from).collect()
    }

    /// Marks items as handed to the plugin, with the time after which they expire.
    pub async fn mark_submitted(
        &self,
        stage: i64,
        hypotheses: &[i64],
        deadline: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            AssertSqlSafe(format!("UPDATE stage_items SET status = 'submitted', attempts = attempts + 1, \
             submitted_at = $1, deadline = $2 WHERE stage = $3 AND status IN ('queued', 'submitted') \
             AND hypothesis_id IN ({ids})", ids = self.backend.ids("$4"))),
        )
        .bind(now())
        .bind(deadline)
        .bind(stage)
        .bind(id_list(hypotheses))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remembers the job ids a service gave for pending items, for polling.
    pub async fn set_jobs(&self, stage: i64, jobs: &[(i64, String)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (h, job) in jobs {
            sqlx::query(
                "UPDATE stage_items SET external_id = $1 WHERE hypothesis_id = $2 AND stage = $3",
            )
            .bind(job)
            .bind(h)
            .bind(stage)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Items of a stage still waiting on a service job.
    pub async fn pending_jobs(&self, round: i64, stage: i64) -> Result<Vec<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT s.hypothesis_id, s.external_id FROM stage_items s \
             JOIN hypotheses h ON h.id = s.hypothesis_id WHERE h.round_id = $1 AND s.stage = $2 \
             AND s.status = 'submitted' AND s.external_id IS NOT NULL ORDER BY h.rank",
        )
        .bind(round)
        .bind(stage)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records answers at `stage`, in one transaction. A verdict is accepted only for a
    /// hypothesis of `round` waiting at that stage; the same answer twice changes nothing.
    pub async fn record_verdicts(
        &self,
        round: i64,
        stage: i64,
        verdicts: &[Verdict],
    ) -> Result<Recorded> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = verdicts.iter().map(|v| v.hypothesis).collect();
        let status: std::collections::HashMap<i64, String> = sqlx::query_as(
            AssertSqlSafe(format!("SELECT s.hypothesis_id, s.status FROM stage_items s JOIN hypotheses h ON h.id = s.hypothesis_id \
             WHERE s.stage = $1 AND h.round_id = $2 AND s.hypothesis_id IN ({ids})", ids = self.backend.ids("$3"))),
        )
        .bind(stage)
        .bind(round)
        .bind(id_list(&ids))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut out = Recorded::default();
        let mut accepted: Vec<&Verdict> = Vec::new();
        let mut seen = FxHashSet::default();
        for v in verdicts {
            match status.get(&v.hypothesis).map(String::as_str) {
                Some("queued" | "submitted") if seen.insert(v.hypothesis) => accepted.push(v),
                Some("queued" | "submitted" | "answered") => out.duplicates += 1,
                _ => out.rejected.push(v.hypothesis),
            }
        }
        let t = now();
        if self.backend == super::Backend::Postgres {
            for chunk in accepted.chunks(PG_CHUNK) {
                let reviewers: Vec<String> = chunk
                    .iter()
                    .map(|v| v.reviewer.clone().unwrap_or_default())
                    .collect();
                let evidence: Vec<String> = chunk.iter().map(|v| v.evidence.to_string()).collect();
                sqlx::query(
                    "INSERT INTO verdicts (hypothesis_id, stage, verdict, confidence, evidence, \
                     cost, reviewer, created_at) \
                     SELECT h, $2, v, c, e, co, r, $8 FROM unnest(CAST($1 AS BIGINT[]), \
                     CAST($3 AS TEXT[]), CAST($4 AS DOUBLE PRECISION[]), CAST($5 AS TEXT[]), \
                     CAST($6 AS DOUBLE PRECISION[]), CAST($7 AS TEXT[])) AS u(h, v, c, e, co, r) \
                     ON CONFLICT (hypothesis_id, stage, reviewer) WHERE withdrawn = 0 DO NOTHING",
                )
                .bind(pg_array(chunk.iter().map(|v| v.hypothesis)))
                .bind(stage)
                .bind(pg_text_array(
                    chunk.iter().map(|v| Some(outcome_str(v.verdict))),
                ))
                .bind(pg_float_array(chunk.iter().map(|v| v.confidence)))
                .bind(pg_text_array(evidence.iter().map(|e| Some(e.as_str()))))
                .bind(pg_float_array(chunk.iter().map(|v| v.cost)))
                .bind(pg_text_array(reviewers.iter().map(|r| Some(r.as_str()))))
                .bind(&t)
                .execute(&mut *tx)
                .await?;
            }
        }
        let on_sqlite = if self.backend == super::Backend::Sqlite {
            accepted.len()
        } else {
            0
        };
        for chunk in accepted[..on_sqlite].chunks(super::write::MAX_PARAMS / 8) {
            let sql = values_sql(
                self.backend,
                "INSERT INTO verdicts (hypothesis_id, stage, verdict, confidence, evidence, cost, \
                 reviewer, created_at) VALUES ",
                8,
                chunk.len(),
            ) + " ON CONFLICT (hypothesis_id, stage, reviewer) WHERE withdrawn = 0 DO NOTHING";
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for v in chunk {
                q = q
                    .bind(v.hypothesis)
                    .bind(stage)
                    .bind(outcome_str(v.verdict))
                    .bind(v.confidence)
                    .bind(v.evidence.to_string())
                    .bind(v.cost)
                    .bind(v.reviewer.clone().unwrap_or_default())
                    .bind(&t);
            }
            q.execute(&mut *tx).await?;
        }
        let done: Vec<i64> = accepted.iter().map(|v| v.hypothesis).collect();
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE stage_items SET status = 'answered', answered_at = $1 \
             WHERE stage = $2 AND hypothesis_id IN ({ids})",
            ids = self.backend.ids("$3")
        )))
        .bind(&t)
        .bind(stage)
        .bind(id_list(&done))
        .execute(&mut *tx)
        .await?;
        out.accepted = done.len();
        if !done.is_empty() {
            super::notify::announce_round(&mut tx, round).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Gives up on items: the stage item and the hypothesis become `failed` with the reason.
    pub async fn fail_items(&self, stage: i64, hypotheses: &[i64], reason: &str) -> Result<()> {
        self.end_items(stage, hypotheses, "failed", reason).await
    }

    /// Items whose deadline passed become `expired`, as do their hypotheses. Returns how many.
    pub async fn expire_items(&self, round: i64, stage: i64, now_rfc3339: &str) -> Result<usize> {
        let due: Vec<i64> = sqlx::query_scalar(
            "SELECT s.hypothesis_id FROM stage_items s JOIN hypotheses h ON h.id = s.hypothesis_id \
             WHERE h.round_id = $1 AND s.stage = $2 AND s.status IN ('queued', 'submitted') \
             AND s.deadline IS NOT NULL AND s.deadline <= $3",
        )
        .bind(round)
        .bind(stage)
        .bind(now_rfc3339)
        .fetch_all(&self.pool)
        .await?;
        if !due.is_empty() {
            self.end_items(
                stage,
                &due,
                "expired",
                "no answer before the stage's timeout",
            )
            .await?;
        }
        Ok(due.len())
    }

    async fn end_items(
        &self,
        stage: i64,
        hypotheses: &[i64],
        status: &str,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let open: Vec<i64> = sqlx::query_scalar(
            AssertSqlSafe(format!("SELECT hypothesis_id FROM stage_items WHERE stage = $1 AND status IN ('queued', 'submitted') \
             AND hypothesis_id IN ({ids})", ids = self.backend.ids("$2"))),
        )
        .bind(stage)
        .bind(id_list(hypotheses))
        .fetch_all(&mut *tx)
        .await?;
        let open = id_list(&open);
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE stage_items SET status = $1, reason = $2 \
             WHERE stage = $3 AND hypothesis_id IN ({ids})",
            ids = self.backend.ids("$4")
        )))
        .bind(status)
        .bind(reason)
        .bind(stage)
        .bind(&open)
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE hypotheses SET status = $1, reason = $2 \
             WHERE status = 'active' AND id IN ({ids})",
            ids = self.backend.ids("$3")
        )))
        .bind(status)
        .bind(reason)
        .bind(&open)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts of a round's stage items by (stage, status).
    pub async fn stage_counts(&self, round: i64) -> Result<BTreeMap<(i64, String), i64>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT s.stage, s.status, count(*) FROM stage_items s \
             JOIN hypotheses h ON h.id = s.hypothesis_id WHERE h.round_id = $1 \
             GROUP BY s.stage, s.status",
        )
        .bind(round)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, st, n)| ((s, st), n)).collect())
    }

    /// Counts of a round's hypotheses by status.
    pub async fn hypothesis_counts(&self, round: i64) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM hypotheses WHERE round_id = $1 GROUP BY status",
        )
        .bind(round)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Sorts the answered items of `stage`: on a final stage the verdict becomes the
    /// hypothesis's status; elsewhere verdicts in `advance` queue it at `stage + 1` and the
    /// rest stop. Then moves the round to `to` at `to_stage`. One transaction, which first
    /// checks that no item of the stage is open again: `None` (nothing written) if one is.
    #[allow(clippy::too_many_arguments)]
    pub async fn close_stage(
        &self,
        round: i64,
        stage: i64,
        advance_on: &[Outcome],
        is_final: bool,
        refute_any: bool,
        from: RoundState,
        to: RoundState,
        to_stage: i64,
    ) -> Result<Option<StageClose>> {
        let mut tx = self.write_tx().await?;
        // Counted inside the closing transaction: an undo or a retraction since the caller
        // looked may have reopened an item, which must not be left behind a moved-on round.
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM stage_items s JOIN hypotheses h ON h.id = s.hypothesis_id \
             WHERE h.round_id = $1 AND s.stage = $2 AND s.status IN ('queued', 'submitted') \
             AND h.status = 'active'",
        )
        .bind(round)
        .bind(stage)
        .fetch_one(&mut *tx)
        .await?;
        if open > 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let advance_list: Vec<&str> = advance_on.iter().map(|o| outcome_str(*o)).collect();
        sqlx::query(
            "UPDATE round_stages SET advance = $1, is_final = $2, refute_any = $3 \
             WHERE round_id = $4 AND stage = $5",
        )
        .bind(serde_json::json!(advance_list).to_string())
        .bind(i64::from(is_final))
        .bind(i64::from(refute_any))
        .bind(round)
        .bind(stage)
        .execute(&mut *tx)
        .await?;
        let rule: Option<String> =
            sqlx::query_scalar("SELECT rule FROM round_stages WHERE round_id = $1 AND stage = $2")
                .bind(round)
                .bind(stage)
                .fetch_optional(&mut *tx)
                .await?;
        let escalate = rule.as_deref() == Some("escalate");
        // Every standing (unretracted) verdict of the answered items; a quorum is decided by
        // the stage's rule.
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT s.hypothesis_id, v.verdict, v.role \
             FROM stage_items s JOIN hypotheses h ON h.id = s.hypothesis_id \
             JOIN verdicts v ON v.hypothesis_id = s.hypothesis_id AND v.stage = s.stage \
             WHERE h.round_id = $1 AND s.stage = $2 AND s.status = 'answered' AND h.status = 'active' \
             AND v.withdrawn = 0 \
             ORDER BY h.rank, v.id",
        )
        .bind(round)
        .bind(stage)
        .fetch_all(&mut *tx)
        .await?;
        let mut grouped: Vec<(i64, Vec<(Outcome, bool)>)> = Vec::new();
        for (h, v, role) in rows {
            let o = parse_outcome(&v)?;
            match grouped.last_mut() {
                Some((last, list)) if *last == h => {
                    list.push((o, role.as_deref() == Some("admin")))
                }
                _ => grouped.push((h, vec![(o, role.as_deref() == Some("admin"))])),
            }
        }
        let answered: Vec<(i64, String)> = grouped
            .into_iter()
            .filter_map(|(h, list)| {
                super::review::decide(&list, escalate).map(|o| (h, outcome_str(o).to_owned()))
            })
            .collect();
        let mut out = StageClose::default();
        // Final status per group, applied in a few bulk statements.
        let mut finals: BTreeMap<&'static str, Vec<i64>> = BTreeMap::new();
        let mut advanced = Vec::new();
        let mut stopped: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (h, verdict) in &answered {
            let outcome = parse_outcome(verdict)?;
            match dispose(outcome, advance_on, is_final, refute_any) {
                Disposition::Final(o) => {
                    finals.entry(outcome_str(o)).or_default().push(*h);
                    match o {
                        Outcome::Confirmed => out.confirmed += 1,
                        Outcome::Refuted => out.refuted += 1,
                        Outcome::Inconclusive => out.inconclusive += 1,
                    }
                }
                Disposition::Advance => {
                    advanced.push(*h);
                    out.advanced += 1;
                }
                Disposition::Stop => {
                    stopped
                        .entry(format!("stage {stage} answered {verdict}"))
                        .or_default()
                        .push(*h);
                    out.stopped += 1;
                }
            }
        }
        for (status, ids) in &finals {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE hypotheses SET status = $1 WHERE id IN ({ids})",
                ids = self.backend.ids("$2")
            )))
            .bind(*status)
            .bind(id_list(ids))
            .execute(&mut *tx)
            .await?;
        }
        for (reason, ids) in &stopped {
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE hypotheses SET status = 'stopped', reason = $1 \
                 WHERE id IN ({ids})",
                ids = self.backend.ids("$2")
            )))
            .bind(reason)
            .bind(id_list(ids))
            .execute(&mut *tx)
            .await?;
        }
        if !advanced.is_empty() {
            let list = id_list(&advanced);
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE hypotheses SET stage = $1 WHERE id IN ({ids})",
                ids = self.backend.ids("$2")
            )))
            .bind(stage + 1)
            .bind(&list)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                AssertSqlSafe(format!(
                    "INSERT INTO stage_items (hypothesis_id, stage, status) \
                     SELECT id, $1, 'queued' FROM ({ids}) AS list WHERE true ON CONFLICT DO NOTHING",
                    ids = self.backend.ids("$2")
                )),
            )
            .bind(stage + 1)
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        }
        advance(
            &mut tx,
            round,
            from,
            to,
            to_stage,
            &RoundUpdate {
                metrics: Some(serde_json::json!({ format!("stage_{stage}"): &out })),
                ..RoundUpdate::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Some(out))
    }

    /// Writes the round's graph version in one transaction: confirmed hypotheses become edges
    /// carrying their provenance, refuted ones go to the refutations, and the round moves to
    /// `retraining` with the version recorded. Running it twice is impossible: the state guard
    /// fails inside the same transaction.
    pub async fn ingest_round(&self, round: &RoundInfo) -> Result<Ingested> {
        let mut tx = self.write_tx().await?;
        let keys = Keys::load(&mut tx).await?;
        let rows: Vec<(i64, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT id, head, relation, tail, status FROM hypotheses \
             WHERE round_id = $1 AND status IN ('confirmed', 'refuted') ORDER BY rank",
        )
        .bind(round.id)
        .fetch_all(&mut *tx)
        .await?;
        let evidence = verdict_trail(&mut tx, round.id).await?;
        let pinned = super::pinned::round_marks(&mut tx, round.id).await?;
        let confirmed: Vec<&(i64, i64, i64, i64, String)> =
            rows.iter().filter(|r| r.4 == "confirmed").collect();
        let live = live_among(&mut tx, confirmed.iter().map(|r| [r.1, r.2, r.3])).await?;
        let (mut added, mut provenance, mut already) = (Vec::new(), Vec::new(), 0);
        for r in &confirmed {
            let t = [r.1, r.2, r.3];
            if live.contains(&t) {
                already += 1;
                continue;
            }
            added.push(t);
            let mut p = serde_json::json!({
                "workflow": round.workflow,
                "round": round.number,
                "round_id": round.id,
                "hypothesis": r.0,
                "verdicts": evidence.get(&r.0),
            });
            if let Some(mark) = pinned.get(&r.0) {
                p["pinned"] = serde_json::json!(mark);
            }
            provenance.push(Some(p.to_string()));
        }
        let refuted: Vec<&(i64, i64, i64, i64, String)> =
            rows.iter().filter(|r| r.4 == "refuted").collect();
        let n_added = added.len();
        let meta = Meta {
            message: format!(
                "round {} of {}: {} confirmed, {} refuted",
                round.number,
                round.workflow,
                n_added,
                refuted.len()
            ),
            source: serde_json::json!({
                "kind": "round", "workflow": round.workflow, "round": round.number,
            })
            .to_string(),
            round_id: Some(round.id),
        };
        let delta = Delta {
            added: Arc::new(added),
            provenance,
            refuted: refuted
                .iter()
                .map(|r| {
                    let mut evidence = serde_json::json!({
                        "workflow": round.workflow,
                        "round": round.number,
                        "hypothesis": r.0,
                        "verdicts": evidence.get(&r.0),
                    });
                    if let Some(mark) = pinned.get(&r.0) {
                        evidence["pinned"] = serde_json::json!(mark);
                    }
                    ([r.1, r.2, r.3], evidence.to_string())
                })
                .collect(),
            ..Delta::default()
        };
        let summary = commit(&mut tx, Arc::new(keys), delta, meta).await?;
        advance(
            &mut tx,
            round.id,
            RoundState::Ingesting,
            RoundState::Retraining,
            round.stage,
            &RoundUpdate {
                result_version: Some(summary.version),
                ..RoundUpdate::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(Ingested {
            version: summary.version,
            added: n_added,
            already_known: already,
            refuted: refuted.len(),
            hash: summary.hash,
        })
    }

    /// What a round's verdicts cost.
    pub async fn round_cost(&self, round: i64) -> Result<f64> {
        Ok(sqlx::query_scalar(
            "SELECT coalesce(sum(v.cost), 0.0) FROM verdicts v \
             JOIN hypotheses h ON h.id = v.hypothesis_id WHERE h.round_id = $1",
        )
        .bind(round)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A workflow's hypotheses still waiting at some stage: (id, head, relation, tail).
    pub async fn open_hypotheses(
        &self,
        workflow: &str,
    ) -> Result<Vec<(i64, String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT h.id, he.key, r.key, te.key FROM hypotheses h JOIN rounds rd ON rd.id = h.round_id \
             JOIN entities he ON he.id = h.head JOIN relations r ON r.id = h.relation \
             JOIN entities te ON te.id = h.tail \
             WHERE rd.workflow = $1 AND h.status = 'active' AND rd.state NOT IN ('done', 'failed')",
        )
        .bind(workflow)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a newer model's probabilities for waiting hypotheses.
    pub async fn set_fresh_scores(&self, model: i64, scores: &[(i64, f64)]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (id, p) in scores {
            sqlx::query("UPDATE hypotheses SET fresh_score = $1, fresh_model = $2 WHERE id = $3")
                .bind(p)
                .bind(model)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The verdicts given on one hypothesis, oldest first.
    pub async fn verdicts(&self, hypothesis: i64) -> Result<Vec<serde_json::Value>> {
        let rows: Vec<VerdictRow> = sqlx::query_as(
            "SELECT hypothesis_id, id, stage, verdict, confidence, evidence, cost, reviewer, \
             created_at FROM verdicts WHERE hypothesis_id = $1 ORDER BY id",
        )
        .bind(hypothesis)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(VerdictRow::json).collect())
    }
}

#[derive(sqlx::FromRow)]
struct VerdictRow {
    hypothesis_id: i64,
    id: i64,
    stage: i64,
    verdict: String,
    confidence: f64,
    evidence: String,
    cost: f64,
    reviewer: String,
    created_at: String,
}

impl VerdictRow {
    fn json(self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "stage": self.stage,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "evidence": serde_json::from_str::<serde_json::Value>(&self.evidence)
                .unwrap_or(serde_json::Value::Null),
            "cost": self.cost,
            "reviewer": (!self.reviewer.is_empty()).then_some(self.reviewer),
            "at": self.created_at,
        })
    }
}

/// Every verdict of a round's hypotheses, by hypothesis.
async fn verdict_trail(
    conn: &mut AnyConnection,
    round: i64,
) -> Result<BTreeMap<i64, Vec<serde_json::Value>>> {
    let rows: Vec<VerdictRow> = sqlx::query_as(
        "SELECT v.hypothesis_id, v.id, v.stage, v.verdict, v.confidence, v.evidence, v.cost, \
         v.reviewer, v.created_at FROM verdicts v JOIN hypotheses h ON h.id = v.hypothesis_id \
         WHERE h.round_id = $1 ORDER BY v.id",
    )
    .bind(round)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for row in rows {
        let h = row.hypothesis_id;
        let mut v = row.json();
        // The wall-clock time stays in the verdicts table, so a replayed round writes the same
        // provenance.
        if let Some(o) = v.as_object_mut() {
            o.remove("at");
        }
        out.entry(h).or_default().push(v);
    }
    Ok(out)
}

/// Which of `triples` are live edges now.
async fn live_among(
    conn: &mut AnyConnection,
    triples: impl Iterator<Item = [i64; 3]>,
) -> Result<FxHashSet<[i64; 3]>> {
    let triples: Vec<[i64; 3]> = triples.collect();
    super::write::present(conn, "edges", &triples).await
}

async fn advance(
    conn: &mut AnyConnection,
    id: i64,
    from: RoundState,
    to: RoundState,
    stage: i64,
    u: &RoundUpdate,
) -> Result<()> {
    // The metrics patch is merged here (RFC 7396, as SQLite's json_patch does), not in SQL:
    // the engines' JSON functions differ.
    let metrics = match &u.metrics {
        Some(patch) => {
            let stored: Option<String> =
                sqlx::query_scalar("SELECT metrics FROM rounds WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
            let mut doc: serde_json::Value = stored
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_else(|| serde_json::json!({}));
            merge_patch(&mut doc, patch);
            Some(doc.to_string())
        }
        None => None,
    };
    let changed = sqlx::query(
        "UPDATE rounds SET state = $1, stage = $2, updated_at = $3, \
         base_version = coalesce($4, base_version), model_id = coalesce($5, model_id), \
         result_version = coalesce($6, result_version), retrained_model = coalesce($7, retrained_model), \
         metrics = coalesce($8, metrics), error = coalesce($9, error) \
         WHERE id = $10 AND state = $11",
    )
    .bind(to.as_str())
    .bind(stage)
    .bind(now())
    .bind(u.base_version)
    .bind(u.model_id)
    .bind(u.result_version)
    .bind(u.retrained_model)
    .bind(&metrics)
    .bind(&u.error)
    .bind(id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(StoreError::Conflict(format!(
            "round {id} is no longer `{from}` (another process moved it)"
        )));
    }
    Ok(())
}

/// What a stage's decision does to a hypothesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    /// It ends here with this status.
    Final(Outcome),
    /// It goes on to the next stage.
    Advance,
    /// It stops here (`stopped`, with the stage's answer as the reason).
    Stop,
}

/// The one rule by which a stage's decision places a hypothesis: closing a stage and
/// re-deciding it after a retraction both follow it.
pub(super) fn dispose(
    outcome: Outcome,
    advance_on: &[Outcome],
    is_final: bool,
    refute_any: bool,
) -> Disposition {
    if is_final {
        Disposition::Final(outcome)
    } else if advance_on.contains(&outcome) {
        Disposition::Advance
    } else if refute_any && outcome == Outcome::Refuted {
        Disposition::Final(Outcome::Refuted)
    } else {
        Disposition::Stop
    }
}

/// Applies a JSON merge patch (RFC 7396): objects merge key by key, `null` removes a key,
/// anything else replaces.
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::json!({});
    }
    if let serde_json::Value::Object(doc) = target {
        for (key, value) in changes {
            if value.is_null() {
                doc.remove(key);
            } else {
                merge_patch(
                    doc.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

/// Ids as a JSON array, for `IN (...)` with [`super::Backend::ids`]: one parameter for any
/// number of rows.
fn id_list(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Confirmed => "confirmed",
        Outcome::Refuted => "refuted",
        Outcome::Inconclusive => "inconclusive",
    }
}

fn parse_outcome(s: &str) -> Result<Outcome> {
    match s {
        "confirmed" => Ok(Outcome::Confirmed),
        "refuted" => Ok(Outcome::Refuted),
        "inconclusive" => Ok(Outcome::Inconclusive),
        other => Err(StoreError::Corrupt(format!("verdict `{other}`"))),
    }
}
