//! Users and their tokens, the human review queue, quorum verdicts, and retractions.

use super::rounds::{Disposition, HypothesisInfo, hypothesis_from, now};
use super::write::{Delta, Keys, Meta, commit};
use super::{Result, Store, StoreError};
use crate::plugin::Outcome;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reviewer,
    Admin,
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reviewer => "reviewer",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Reviewer, Self::Admin, Self::Service]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What a token is used for. Each action allows a fixed set of roles; the API and the CLI
/// (`review`, `retract`) check tokens against this one table, so a command line can do no more
/// than the same token could over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Assay callbacks: `POST /api/v1/results`.
    PostResults,
    /// The review queue, a hypothesis's detail, a verdict (API, `hypograph review`).
    Review,
    /// Withdrawing a verdict (API, `hypograph retract`).
    Retract,
    /// The list of rounds.
    ReadRounds,
    /// `/metrics`, unless the server was started with `--metrics-public`.
    ReadMetrics,
    /// Failing a stuck round by hand (`hypograph round abandon`).
    AbandonRound,
    /// Prompting the graph and submitting chosen rows to a workflow (`hypograph ask`,
    /// `POST /api/v1/ask`): it writes a graph version, so not for services.
    Ask,
}

impl Action {
    pub fn roles(self) -> &'static [Role] {
        match self {
            Self::PostResults => &[Role::Service, Role::Admin],
            Self::Review | Self::Ask => &[Role::Reviewer, Role::Admin],
            Self::Retract | Self::ReadMetrics | Self::AbandonRound => &[Role::Admin],
            Self::ReadRounds => &[Role::Reviewer, Role::Admin, Role::Service],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::PostResults => "post results",
            Self::Review => "review",
            Self::Retract => "retract verdicts",
            Self::ReadRounds => "list rounds",
            Self::ReadMetrics => "read metrics",
            Self::AbandonRound => "abandon rounds",
            Self::Ask => "ask and submit hypotheses",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created_at: String,
}

/// A stage of a round as declared when it was ranked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageMeta {
    pub stage: i64,
    pub name: String,
    pub kind: String,
    pub quorum: i64,
    /// `majority` or `escalate`.
    pub rule: String,
    /// Waiting items whose fresh score falls below this are shown as stale.
    pub stale_below: Option<f64>,
    /// The stage takes verdicts posted to `POST /api/v1/results` (an http stage with a
    /// `callback_url`); no other stage may be answered that way.
    pub callbacks: bool,
}

/// A person's answer.
#[derive(Debug, Clone)]
pub struct Review<'a> {
    pub hypothesis: i64,
    pub reviewer: &'a User,
    pub verdict: Outcome,
    pub confidence: f64,
    pub comment: Option<&'a str>,
    /// Where it came from: `cli`, `api`, `web`.
    pub client: &'a str,
}

/// What a review did to its hypothesis's stage item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reviewed {
    pub verdict_id: i64,
    pub stage: i64,
    /// Distinct reviewers so far, and how many the stage wants.
    pub reviews: i64,
    pub quorum: i64,
    /// The stage item is complete (quorum met, disagreement resolved).
    pub answered: bool,
    /// Reviewers disagree and the stage escalates: an admin's verdict decides.
    pub escalated: bool,
}

/// A hypothesis waiting for review, with where it waits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueItem {
    #[serde(flatten)]
    pub hypothesis: HypothesisInfo,
    pub workflow: String,
    pub round_number: i64,
    pub stage_name: String,
    pub quorum: i64,
    pub reviews: i64,
    pub deadline: Option<String>,
    /// Its fresh score fell below the stage's `stale_below`.
    pub stale: bool,
}

/// Filters of the review queue.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub workflow: Option<String>,
    pub relation: Option<String>,
    /// Head or tail key.
    pub entity: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The decision of a stage's verdicts: an admin's decides an escalated stage, else the
/// majority; a tie is inconclusive.
pub fn decide(verdicts: &[(Outcome, bool)], escalate: bool) -> Option<Outcome> {
    if escalate && let Some((v, _)) = verdicts.iter().rev().find(|(_, admin)| *admin) {
        return Some(*v);
    }
    let count = |o: Outcome| verdicts.iter().filter(|(v, _)| *v == o).count();
    let mut tally = [
        (Outcome::Confirmed, count(Outcome::Confirmed)),
        (Outcome::Refuted, count(Outcome::Refuted)),
        (Outcome::Inconclusive, count(Outcome::Inconclusive)),
    ];
    tally.sort_by_key(|t| std::cmp::Reverse(t.1));
    match tally {
        [(_, 0), ..] => None,
        [(a, n), (_, m), _] if n > m => Some(a),
        _ => Some(Outcome::Inconclusive),
    }
}

impl Store {
    /// Creates a user and returns their token (shown once; only its hash is stored).
    pub async fn add_user(&self, name: &str, role: Role) -> Result<String> {
        self.create_user(name, role, None, "cli").await
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT id, name, role, created_at FROM users ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from).collect()
    }

    /// The user a bearer token belongs to, unless their account is disabled.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>> {
        Ok(self
            .token_owner(token)
            .await?
            .filter(|(_, off)| !off)
            .map(|(u, _)| u))
    }

    /// The user a token belongs to, and whether their account is disabled. A revoked token
    /// belongs to nobody: its stored hash was replaced.
    async fn token_owner(&self, token: &str) -> Result<Option<(User, bool)>> {
        let row = sqlx::query(
            "SELECT id, name, role, created_at, disabled FROM users WHERE token_hash = $1",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(Some((
                user_from(&r)?,
                r.try_get::<i64, _>("disabled")? != 0,
            ))),
            None => Ok(None),
        }
    }

    /// The user a token belongs to, if their role may do `action`: the one check behind every
    /// API route and every command that acts as a user. An unknown (or revoked) token and a
    /// disabled account are `Unauthorized`, a role that may not act is `Forbidden`.
    pub async fn authorize(&self, token: &str, action: Action) -> Result<User> {
        let (user, disabled) = self
            .token_owner(token)
            .await?
            .ok_or_else(|| StoreError::Unauthorized("unknown token".into()))?;
        if disabled {
            return Err(StoreError::Unauthorized(format!(
                "the account `{}` is disabled",
                user.name
            )));
        }
        if !action.roles().contains(&user.role) {
            return Err(StoreError::Forbidden(format!(
                "a {} token cannot {}",
                user.role.as_str(),
                action.describe()
            )));
        }
        Ok(user)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query("SELECT id, name, role, created_at FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from).transpose()
    }

    pub async fn round_stages(&self, round: i64) -> Result<Vec<StageMeta>> {
        let rows: Vec<StageRow> = sqlx::query_as(
            "SELECT stage, name, kind, quorum, rule, stale_below, callbacks FROM round_stages \
             WHERE round_id = $1 ORDER BY stage",
        )
        .bind(round)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StageRow::meta).collect())
    }

    /// One stage of a round as declared when it was ranked, if the round has it.
    pub async fn round_stage(&self, round: i64, stage: i64) -> Result<Option<StageMeta>> {
        let row: Option<StageRow> = sqlx::query_as(
            "SELECT stage, name, kind, quorum, rule, stale_below, callbacks FROM round_stages \
             WHERE round_id = $1 AND stage = $2",
        )
        .bind(round)
        .bind(stage)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(StageRow::meta))
    }

    /// The stage whose verdicts by others `viewer` may not see yet: the hypothesis's current
    /// stage while it is still open and `viewer` has no standing verdict there. Reviewers
    /// answer blind (as on the web page), so one reviewer's call does not sway the next.
    pub async fn sealed_stage(&self, hypothesis: i64, viewer: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT h.stage FROM hypotheses h \
             JOIN stage_items s ON s.hypothesis_id = h.id AND s.stage = h.stage \
             WHERE h.id = $1 AND h.status = 'active' AND s.status IN ('queued', 'submitted') \
             AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.hypothesis_id = h.id \
                 AND v.stage = h.stage AND v.reviewer = $2 AND v.withdrawn = 0)",
        )
        .bind(hypothesis)
        .bind(viewer)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Hypotheses waiting at human stages that `reviewer` has not answered, best first.
    pub async fn review_queue(&self, reviewer: &str, f: &QueueFilter) -> Result<Vec<QueueItem>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{select} JOIN stage_items s ON s.hypothesis_id = h.id AND s.stage = h.stage \
             JOIN rounds rd ON rd.id = h.round_id \
             JOIN round_stages st ON st.round_id = h.round_id AND st.stage = h.stage \
             WHERE st.kind = 'human' AND s.status = 'submitted' AND h.status = 'active' \
             AND NOT EXISTS (SELECT 1 FROM verdicts v WHERE v.hypothesis_id = h.id \
                 AND v.stage = h.stage AND v.reviewer = $1 AND v.withdrawn = 0) \
             AND ($2 IS NULL OR rd.workflow = $2) AND ($3 IS NULL OR r.key = $3) \
             AND ($4 IS NULL OR he.key = $4 OR te.key = $4) \
             ORDER BY (h.fresh_score IS NOT NULL AND st.stale_below IS NOT NULL \
                 AND h.fresh_score < st.stale_below), h.acquisition DESC, h.id LIMIT $5 OFFSET $6",
            select = self.backend.hypothesis_select()
        )))
        .bind(reviewer)
        .bind(&f.workflow)
        .bind(&f.relation)
        .bind(&f.entity)
        .bind(if f.limit <= 0 { 50 } else { f.limit })
        .bind(f.offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let hypothesis = hypothesis_from(row)?;
            let extra: (String, i64, String, i64, Option<String>, i64, Option<f64>) =
                sqlx::query_as(
                    "SELECT rd.workflow, rd.number, st.name, st.quorum, s.deadline, \
                 (SELECT count(DISTINCT v.reviewer) FROM verdicts v WHERE v.hypothesis_id = h.id \
                  AND v.stage = h.stage AND v.withdrawn = 0), st.stale_below \
                 FROM hypotheses h JOIN rounds rd ON rd.id = h.round_id \
                 JOIN round_stages st ON st.round_id = h.round_id AND st.stage = h.stage \
                 JOIN stage_items s ON s.hypothesis_id = h.id AND s.stage = h.stage WHERE h.id = $1",
                )
                .bind(hypothesis.id)
                .fetch_one(&self.pool)
                .await?;
            out.push(QueueItem {
                workflow: extra.0,
                round_number: extra.1,
                stage_name: extra.2,
                quorum: extra.3,
                deadline: extra.4,
                reviews: extra.5,
                stale: matches!((hypothesis.fresh_score, extra.6), (Some(f), Some(t)) if f < t),
                hypothesis,
            });
        }
        Ok(out)
    }

    /// Records a person's verdict on a hypothesis waiting at a human stage, applying the
    /// stage's quorum and disagreement rule. One verdict per reviewer per stage.
    pub async fn record_review(&self, r: &Review<'_>) -> Result<Reviewed> {
        let mut tx = self.write_tx().await?;
        let row: Option<(i64, i64, String, String, i64, String)> = sqlx::query_as(
            "SELECT h.round_id, h.stage, h.status, s.status, st.quorum, st.rule FROM hypotheses h \
             JOIN stage_items s ON s.hypothesis_id = h.id AND s.stage = h.stage \
             JOIN round_stages st ON st.round_id = h.round_id AND st.stage = h.stage \
             WHERE h.id = $1 AND st.kind = 'human'",
        )
        .bind(r.hypothesis)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((_, stage, h_status, item, quorum, rule)) = row else {
            return Err(StoreError::Conflict(format!(
                "hypothesis {} is not waiting for human review",
                r.hypothesis
            )));
        };
        if h_status != "active" || item != "submitted" {
            return Err(StoreError::Conflict(format!(
                "hypothesis {} is no longer open for review (it is {h_status}, its stage item {item})",
                r.hypothesis
            )));
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO verdicts (hypothesis_id, stage, verdict, confidence, evidence, cost, \
             reviewer, created_at, comment, client, role) VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9, $10) \
             ON CONFLICT (hypothesis_id, stage, reviewer) WHERE withdrawn = 0 DO NOTHING RETURNING id",
        )
        .bind(r.hypothesis)
        .bind(stage)
        .bind(r.verdict.as_str())
        .bind(r.confidence)
        .bind(
            serde_json::json!({ "source": "human", "comment": r.comment, "client": r.client })
                .to_string(),
        )
        .bind(&r.reviewer.name)
        .bind(now())
        .bind(r.comment)
        .bind(r.client)
        .bind(r.reviewer.role.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(verdict_id) = id else {
            return Err(StoreError::Conflict(format!(
                "{} has already answered hypothesis {}",
                r.reviewer.name, r.hypothesis
            )));
        };
        let given: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT v.verdict, v.role FROM verdicts v WHERE v.hypothesis_id = $1 AND v.stage = $2 \
             AND v.withdrawn = 0 ORDER BY v.id",
        )
        .bind(r.hypothesis)
        .bind(stage)
        .fetch_all(&mut *tx)
        .await?;
        let outcomes: Vec<(Outcome, bool)> = given
            .iter()
            .filter_map(|(v, role)| Some((parse_outcome(v)?, role.as_deref() == Some("admin"))))
            .collect();
        let (answered, escalated) = completion(&outcomes, quorum, rule == "escalate");
        if answered {
            sqlx::query(
                "UPDATE stage_items SET status = 'answered', answered_at = $1 \
                 WHERE hypothesis_id = $2 AND stage = $3",
            )
            .bind(now())
            .bind(r.hypothesis)
            .bind(stage)
            .execute(&mut *tx)
            .await?;
            super::notify::announce_hypothesis(&mut tx, r.hypothesis).await?;
        }
        tx.commit().await?;
        Ok(Reviewed {
            verdict_id,
            stage,
            reviews: outcomes.len() as i64,
            quorum,
            answered,
            escalated,
        })
    }

    /// Withdraws a verdict found wrong after the fact and re-decides its stage from the
    /// verdicts still standing, with the stage's rule:
    /// - while the round still waits at that stage, the item stays answered if the standing
    ///   verdicts still complete it, else it goes back to the queue;
    /// - after the stage closed, the standing verdicts decide again (none standing is
    ///   inconclusive) and the hypothesis takes the status that decision gives; once the round
    ///   has ingested, the graph follows in one new version naming the retraction (an edge it
    ///   no longer confirms is removed, a refutation it no longer supports is withdrawn, and
    ///   the reverse). Nothing is deleted.
    pub async fn retract(&self, verdict_id: i64, reason: &str, by: &str) -> Result<Retracted> {
        let mut tx = self.write_tx().await?;
        let done = redecide(&mut tx, verdict_id, reason, by).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Withdraws `reviewer`'s standing verdict on a hypothesis while its stage is still open
    /// (the round waits there and the hypothesis is not decided): the undo is a retraction
    /// record by the reviewer, the verdict stays for the audit, and they may answer again.
    /// The stage is re-decided as a retraction re-decides it: when the verdicts still standing
    /// complete the item (an admin's call on an escalation, a quorum still met), it stays
    /// answered (`unchanged`); else it goes back to the queue (`requeued`).
    pub async fn undo_review(&self, hypothesis: i64, reviewer: &str) -> Result<Retracted> {
        let mut tx = self.write_tx().await?;
        let verdict_id: Option<i64> = sqlx::query_scalar(
            "SELECT v.id FROM verdicts v JOIN hypotheses h ON h.id = v.hypothesis_id \
             JOIN rounds rd ON rd.id = h.round_id WHERE v.hypothesis_id = $1 AND v.reviewer = $2 \
             AND v.withdrawn = 0 AND v.stage = h.stage AND h.status = 'active' \
             AND rd.state IN ('dispatching', 'awaiting') AND rd.stage = h.stage \
             ORDER BY v.id DESC LIMIT 1",
        )
        .bind(hypothesis)
        .bind(reviewer)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(verdict_id) = verdict_id else {
            return Err(StoreError::Conflict(format!(
                "{reviewer} has no verdict on hypothesis {hypothesis} that can still be undone"
            )));
        };
        let done = redecide(&mut tx, verdict_id, "undo", reviewer).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// A hypothesis with its verdicts (and retractions) and the graph around it: what a
    /// reviewer sees. With a `viewer`, other reviewers' verdicts at a stage the viewer has yet
    /// to answer are left out (see `sealed_stage`); without one (an admin), all are shown.
    pub async fn hypothesis_detail(
        &self,
        id: i64,
        neighbours: i64,
        viewer: Option<&str>,
    ) -> Result<serde_json::Value> {
        let h = self.hypothesis(id).await?;
        let mut verdicts = self.verdicts(id).await?;
        if let Some(viewer) = viewer
            && let Some(stage) = self.sealed_stage(id, viewer).await?
        {
            verdicts.retain(|v| {
                v["stage"].as_i64() != Some(stage) || v["reviewer"].as_str() == Some(viewer)
            });
        }
        let shown: Vec<i64> = verdicts.iter().filter_map(|v| v["id"].as_i64()).collect();
        let mut retracted: Vec<i64> = sqlx::query_scalar(
            "SELECT x.verdict_id FROM retractions x JOIN verdicts v ON v.id = x.verdict_id \
             WHERE v.hypothesis_id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        retracted.retain(|r| shown.contains(r));
        let head = self.neighbours(&h.head, neighbours).await?;
        let tail = self.neighbours(&h.tail, neighbours).await?;
        let stages = self.round_stages(h.round_id).await?;
        Ok(serde_json::json!({
            "hypothesis": h,
            "verdicts": verdicts,
            "retracted": retracted,
            "stages": stages,
            "context": { "head": head, "tail": tail },
        }))
    }

    /// Every verdict (newest first) and every retraction: the audit trail.
    pub async fn audit(
        &self,
        limit: i64,
    ) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>)> {
        let verdicts: Vec<AuditVerdict> = sqlx::query_as(
            "SELECT id, hypothesis_id, stage, verdict, reviewer, role, client, created_at, \
                 withdrawn, comment FROM verdicts ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let retractions: Vec<AuditRetraction> = sqlx::query_as(
            "SELECT id, verdict_id, reason, by_user, version, outcome, created_at FROM retractions \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            verdicts
                .into_iter()
                .map(|v| serde_json::json!({
                    "id": v.0, "hypothesis": v.1, "stage": v.2, "verdict": v.3, "reviewer": v.4,
                    "role": v.5, "client": v.6, "at": v.7, "withdrawn": v.8 == 1, "comment": v.9,
                }))
                .collect(),
            retractions
                .into_iter()
                .map(|r| serde_json::json!({
                    "id": r.0, "verdict": r.1, "reason": r.2, "by": r.3, "version": r.4,
                    "outcome": r.5, "at": r.6,
                }))
                .collect(),
        ))
    }

    /// Counts for `/metrics`: rounds by state and hypotheses by status.
    pub async fn metric_counts(&self) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>)> {
        let rounds =
            sqlx::query_as("SELECT state, count(*) FROM rounds GROUP BY state ORDER BY state")
                .fetch_all(&self.pool)
                .await?;
        let hyps = sqlx::query_as(
            "SELECT status, count(*) FROM hypotheses GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok((rounds, hyps))
    }

    /// Live edges touching an entity, up to `limit`, as plugin context.
    pub async fn neighbours(&self, key: &str, limit: i64) -> Result<Vec<crate::plugin::Neighbour>> {
        let rows = sqlx::query(
            "SELECT r.key AS relation, o.key AS entity, o.name AS name, o.category AS category, 'out' AS direction \
             FROM entities e JOIN edges x ON x.head = e.id AND x.removed_in IS NULL \
             JOIN relations r ON r.id = x.relation JOIN entities o ON o.id = x.tail WHERE e.key = $1 \
             UNION ALL \
             SELECT r.key, o.key, o.name, o.category, 'in' \
             FROM entities e JOIN edges x ON x.tail = e.id AND x.removed_in IS NULL \
             JOIN relations r ON r.id = x.relation JOIN entities o ON o.id = x.head WHERE e.key = $1 \
             LIMIT $2",
        )
        .bind(key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::plugin::Neighbour {
                    relation: r.try_get("relation")?,
                    entity: r.try_get("entity")?,
                    name: r.try_get("name")?,
                    category: r.try_get("category")?,
                    direction: r.try_get("direction")?,
                })
            })
            .collect()
    }
}

/// A `round_stages` row.
#[derive(sqlx::FromRow)]
struct StageRow {
    stage: i64,
    name: String,
    kind: String,
    quorum: i64,
    rule: String,
    stale_below: Option<f64>,
    /// 0 or 1 (an integer column: the engines disagree on booleans).
    callbacks: i64,
}

impl StageRow {
    fn meta(self) -> StageMeta {
        StageMeta {
            stage: self.stage,
            name: self.name,
            kind: self.kind,
            quorum: self.quorum,
            rule: self.rule,
            stale_below: self.stale_below,
            callbacks: self.callbacks != 0,
        }
    }
}

/// id, hypothesis, stage, verdict, reviewer, role, client, at, withdrawn, comment.
type AuditVerdict = (
    i64,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<String>,
);

/// id, verdict, reason, by, version, outcome, at.
type AuditRetraction = (i64, i64, String, String, Option<i64>, String, String);

/// Withdraws `verdict_id` and re-decides its stage from the verdicts still standing: the one
/// rule of retractions and undos (see [`Store::retract`]).
async fn redecide(
    tx: &mut sqlx::AnyConnection,
    verdict_id: i64,
    reason: &str,
    by: &str,
) -> Result<Retracted> {
    let row: Option<RetractTarget> = sqlx::query_as(
        "SELECT v.hypothesis_id AS hyp, v.stage, h.round_id AS round, h.head, h.relation, \
         h.tail, h.status, h.stage AS hyp_stage, rd.state, rd.stage AS round_stage, \
         rd.result_version, st.quorum, st.rule, st.advance, st.is_final, st.refute_any, \
         (SELECT max(stage) FROM round_stages WHERE round_id = h.round_id) AS last_stage \
         FROM verdicts v JOIN hypotheses h ON h.id = v.hypothesis_id \
         JOIN rounds rd ON rd.id = h.round_id \
         LEFT JOIN round_stages st ON st.round_id = h.round_id AND st.stage = v.stage \
         WHERE v.id = $1",
    )
    .bind(verdict_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(t) = row else {
        return Err(StoreError::Conflict(format!(
            "verdict {verdict_id} does not exist"
        )));
    };
    let already: Option<i64> =
        sqlx::query_scalar("SELECT id FROM retractions WHERE verdict_id = $1")
            .bind(verdict_id)
            .fetch_optional(&mut *tx)
            .await?;
    if already.is_some() {
        return Err(StoreError::Conflict(format!(
            "verdict {verdict_id} is already retracted"
        )));
    }
    let standing: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT verdict, role FROM verdicts WHERE hypothesis_id = $1 AND stage = $2 \
         AND withdrawn = 0 AND id != $3 ORDER BY id",
    )
    .bind(t.hyp)
    .bind(t.stage)
    .bind(verdict_id)
    .fetch_all(&mut *tx)
    .await?;
    let standing: Vec<(Outcome, bool)> = standing
        .iter()
        .filter_map(|(v, role)| Some((parse_outcome(v)?, role.as_deref() == Some("admin"))))
        .collect();
    let escalate = t.rule.as_deref() == Some("escalate");
    let rules = StageRules::of(&t);
    // The stage closes only from `awaiting`: at its own stage the round has not closed it.
    let stage_open = matches!(t.state.as_str(), "dispatching" | "awaiting")
        && t.round_stage == t.stage
        && t.hyp_stage == t.stage;
    let mut version = None;
    let outcome: String = if t.status == "failed" || t.status == "expired" {
        // It never reached a decision; nothing else depended on this verdict.
        "unchanged".into()
    } else if stage_open {
        let (answered, _) = completion(&standing, t.quorum.unwrap_or(1), escalate);
        if answered {
            "unchanged".into()
        } else {
            sqlx::query(
                "UPDATE stage_items SET status = 'submitted', answered_at = NULL \
                 WHERE hypothesis_id = $1 AND stage = $2 AND status = 'answered'",
            )
            .bind(t.hyp)
            .bind(t.stage)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE hypotheses SET status = 'active', reason = NULL WHERE id = $1")
                .bind(t.hyp)
                .execute(&mut *tx)
                .await?;
            "requeued".into()
        }
    } else {
        let decision = decide(&standing, escalate).unwrap_or(Outcome::Inconclusive);
        let passed_on = t.hyp_stage > t.stage;
        let next_open =
            matches!(t.state.as_str(), "dispatching" | "awaiting") && t.round_stage == t.stage + 1;
        let placed =
            super::rounds::dispose(decision, &rules.advance, rules.is_final, rules.refute_any);
        let advances = placed == Disposition::Advance;
        let (status, why): (&str, Option<String>) = match placed {
            Disposition::Advance if passed_on => (t.status.as_str(), None),
            Disposition::Advance if next_open => {
                sqlx::query("UPDATE hypotheses SET stage = $1 WHERE id = $2")
                    .bind(t.stage + 1)
                    .bind(t.hyp)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO stage_items (hypothesis_id, stage, status) VALUES ($1, $2, 'queued') \
                     ON CONFLICT DO NOTHING",
                )
                .bind(t.hyp)
                .bind(t.stage + 1)
                .execute(&mut *tx)
                .await?;
                ("active", None)
            }
            Disposition::Advance => {
                let why = format!(
                    "stage {} now answers {} after retraction {verdict_id}, but the round has moved past the next stage",
                    t.stage,
                    decision.as_str()
                );
                ("stopped", Some(why))
            }
            Disposition::Final(o) => (o.as_str(), None),
            Disposition::Stop => {
                let why = format!("stage {} answered {}", t.stage, decision.as_str());
                ("stopped", Some(why))
            }
        };
        if passed_on && !advances {
            // The later stages no longer hold it.
            sqlx::query(
                "UPDATE stage_items SET status = 'failed', reason = $1 WHERE hypothesis_id = $2 \
                 AND stage > $3 AND status IN ('queued', 'submitted')",
            )
            .bind(format!(
                "withdrawn: stage {} re-decided after retraction {verdict_id}",
                t.stage
            ))
            .bind(t.hyp)
            .bind(t.stage)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE hypotheses SET stage = $1 WHERE id = $2")
                .bind(t.stage)
                .bind(t.hyp)
                .execute(&mut *tx)
                .await?;
        }
        if status != t.status {
            sqlx::query("UPDATE hypotheses SET status = $1, reason = $2 WHERE id = $3")
                .bind(status)
                .bind(why.unwrap_or_else(|| {
                    format!("re-decided after verdict {verdict_id} was retracted: {reason}")
                }))
                .bind(t.hyp)
                .execute(&mut *tx)
                .await?;
        }
        if t.result_version.is_some() {
            version = follow_in_graph(&mut *tx, &t, status, verdict_id, reason, by).await?;
        }
        if status == t.status {
            "unchanged".into()
        } else {
            status.to_owned()
        }
    };
    let id = withdraw(&mut *tx, verdict_id, reason, by, version, &outcome).await?;
    super::notify::announce_hypothesis(&mut *tx, t.hyp).await?;
    Ok(Retracted {
        id,
        verdict_id,
        hypothesis: t.hyp,
        version,
        outcome,
    })
}

/// A verdict to retract, with its hypothesis, round and stage.
#[derive(sqlx::FromRow)]
struct RetractTarget {
    hyp: i64,
    stage: i64,
    round: i64,
    head: i64,
    relation: i64,
    tail: i64,
    status: String,
    hyp_stage: i64,
    state: String,
    round_stage: i64,
    result_version: Option<i64>,
    quorum: Option<i64>,
    rule: Option<String>,
    /// JSON list of outcomes, recorded when the stage closed.
    advance: Option<String>,
    is_final: Option<i64>,
    refute_any: Option<i64>,
    last_stage: Option<i64>,
}

/// How a closed stage turned decisions into statuses (as `close_stage` recorded them).
struct StageRules {
    advance: Vec<Outcome>,
    is_final: bool,
    refute_any: bool,
}

impl StageRules {
    /// Stages closed before the rules were recorded: advance on `confirmed`, final when last.
    fn of(t: &RetractTarget) -> Self {
        let advance = t
            .advance
            .as_deref()
            .and_then(|a| serde_json::from_str::<Vec<String>>(a).ok())
            .map(|list| list.iter().filter_map(|o| parse_outcome(o)).collect())
            .unwrap_or_else(|| vec![Outcome::Confirmed]);
        Self {
            advance,
            is_final: t.is_final.map_or(t.last_stage == Some(t.stage), |f| f != 0),
            refute_any: t.refute_any.is_some_and(|f| f != 0),
        }
    }
}

/// Whether a stage item's verdicts complete it (quorum met, disagreement resolved), and
/// whether it waits for an admin because reviewers disagree under `escalate`.
pub(super) fn completion(
    outcomes: &[(Outcome, bool)],
    quorum: i64,
    escalate: bool,
) -> (bool, bool) {
    let agree = outcomes.windows(2).all(|w| w[0].0 == w[1].0);
    let admin_decided = escalate && outcomes.iter().any(|(_, admin)| *admin);
    let quorum_met = outcomes.len() as i64 >= quorum;
    let answered = quorum_met && (agree || !escalate || admin_decided);
    let escalated = quorum_met && escalate && !agree && !admin_decided;
    (answered, escalated)
}

/// Brings the graph in line with a re-decided hypothesis of an ingested round, as one new
/// version naming the retraction; `None` when nothing had to change.
async fn follow_in_graph(
    tx: &mut sqlx::AnyConnection,
    t: &RetractTarget,
    status: &str,
    verdict_id: i64,
    reason: &str,
    by: &str,
) -> Result<Option<i64>> {
    let triple = [t.head, t.relation, t.tail];
    let live: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT id, provenance FROM edges \
         WHERE head = $1 AND relation = $2 AND tail = $3 AND removed_in IS NULL",
    )
    .bind(t.head)
    .bind(t.relation)
    .bind(t.tail)
    .fetch_optional(&mut *tx)
    .await?;
    let live_edge = live.as_ref().map(|l| l.0);
    // The live edge is this hypothesis's when its provenance names it (read here, not with
    // the engines' differing JSON functions).
    let ours = live.and_then(|(id, provenance)| {
        let p: serde_json::Value = serde_json::from_str(provenance.as_deref()?).ok()?;
        (p.get("hypothesis")?.as_i64()? == t.hyp).then_some(id)
    });
    let refuted_live = !super::write::live_refutations(tx, &[triple])
        .await?
        .is_empty();
    let source = serde_json::json!({
        "kind": "retraction", "verdict": verdict_id, "hypothesis": t.hyp, "by": by,
    });
    let mut delta = Delta::default();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    if status == "confirmed" && live_edge.is_none() {
        added.push(triple);
        delta.provenance.push(Some(
            serde_json::json!({
                "round_id": t.round, "hypothesis": t.hyp, "reinstated_by_retraction": verdict_id,
            })
            .to_string(),
        ));
    }
    if status != "confirmed" && ours.is_some() {
        removed.push(triple);
    }
    if status == "refuted" && !refuted_live {
        delta.refuted.push((
            triple,
            serde_json::json!({
                "hypothesis": t.hyp, "after_retraction": verdict_id, "reason": reason, "by": by,
            })
            .to_string(),
        ));
    }
    if status != "refuted" && refuted_live {
        delta.unrefuted.push(triple);
    }
    delta.added = Arc::new(added);
    delta.removed = Arc::new(removed);
    if delta.is_empty() {
        return Ok(None);
    }
    let keys = Keys::load(&mut *tx).await?;
    let meta = Meta {
        message: format!(
            "retract verdict {verdict_id} (hypothesis {}): {reason}; now {status}",
            t.hyp
        ),
        source: source.to_string(),
        round_id: Some(t.round),
    };
    Ok(Some(
        commit(&mut *tx, Arc::new(keys), delta, meta).await?.version,
    ))
}

/// Marks a verdict withdrawn and records why, by whom and with what effect: the one way a
/// verdict stops counting (retraction or undo). Returns the retraction's id.
async fn withdraw(
    conn: &mut sqlx::AnyConnection,
    verdict_id: i64,
    reason: &str,
    by: &str,
    version: Option<i64>,
    outcome: &str,
) -> Result<i64> {
    sqlx::query("UPDATE verdicts SET withdrawn = 1 WHERE id = $1")
        .bind(verdict_id)
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar(
        "INSERT INTO retractions (verdict_id, reason, by_user, version, outcome, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(verdict_id)
    .bind(reason)
    .bind(by)
    .bind(version)
    .bind(outcome)
    .bind(now())
    .fetch_one(&mut *conn)
    .await?)
}

/// What a retraction did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retracted {
    pub id: i64,
    pub verdict_id: i64,
    pub hypothesis: i64,
    /// The graph version that brought the graph in line (an edge or refutation removed or
    /// added), if one was needed.
    pub version: Option<i64>,
    /// `requeued` (back in its open stage's queue), `unchanged` (the standing verdicts decide
    /// as before), or the hypothesis's new status.
    pub outcome: String,
}

pub(super) fn user_from(row: &sqlx::any::AnyRow) -> Result<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))?,
        created_at: row.try_get("created_at")?,
    })
}

fn parse_outcome(s: &str) -> Option<Outcome> {
    match s {
        "confirmed" => Some(Outcome::Confirmed),
        "refuted" => Some(Outcome::Refuted),
        "inconclusive" => Some(Outcome::Inconclusive),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    #[test]
    fn majority_admin_and_ties() {
        assert_eq!(decide(&[], false), None);
        assert_eq!(decide(&[(Confirmed, false)], false), Some(Confirmed));
        assert_eq!(
            decide(
                &[(Confirmed, false), (Refuted, false), (Confirmed, false)],
                false
            ),
            Some(Confirmed)
        );
        assert_eq!(
            decide(&[(Confirmed, false), (Refuted, false)], false),
            Some(Inconclusive)
        );
        assert_eq!(
            decide(
                &[(Confirmed, false), (Refuted, false), (Refuted, true)],
                true
            ),
            Some(Refuted),
            "escalated: the admin decides"
        );
        assert_eq!(
            decide(
                &[(Confirmed, false), (Confirmed, false), (Refuted, true)],
                false
            ),
            Some(Confirmed),
            "majority rule: an admin is one vote"
        );
    }
}
