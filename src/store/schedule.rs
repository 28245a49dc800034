//! Schedule slots and workflow leases: the durable side of the scheduler.

use super::{Result, Store};
use serde::Serialize;

/// One recorded schedule slot.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct FireInfo {
    pub workflow: String,
    pub kind: String,
    pub scheduled_at: String,
    pub status: String,
    pub reason: Option<String>,
    pub holder: String,
    pub fired_at: String,
    pub round_id: Option<i64>,
}

/// Timestamps as stored: RFC 3339 UTC with milliseconds, so text order is time order.
pub fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Claims a slot. False when it is already recorded: by another daemon, or by this one
    /// before a crash. Either way it must not run again.
    pub async fn claim_fire(
        &self,
        workflow: &str,
        kind: &str,
        scheduled_at: &str,
        status: &str,
        reason: Option<&str>,
        holder: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO fires (workflow, kind, scheduled_at, status, reason, holder, fired_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(workflow)
        .bind(kind)
        .bind(scheduled_at)
        .bind(status)
        .bind(reason)
        .bind(holder)
        .bind(stamp(chrono::Utc::now()))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Records how a started slot ended.
    pub async fn finish_fire(
        &self,
        workflow: &str,
        kind: &str,
        scheduled_at: &str,
        status: &str,
        reason: Option<&str>,
        round_id: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE fires SET status = $1, reason = coalesce($2, reason), round_id = coalesce($3, round_id) \
             WHERE workflow = $4 AND kind = $5 AND scheduled_at = $6",
        )
        .bind(status)
        .bind(reason)
        .bind(round_id)
        .bind(workflow)
        .bind(kind)
        .bind(scheduled_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest recorded slot of a workflow's schedule.
    pub async fn last_fire(&self, workflow: &str, kind: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT max(scheduled_at) FROM fires WHERE workflow = $1 AND kind = $2",
        )
        .bind(workflow)
        .bind(kind)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Recorded slots, newest first; of one workflow when named.
    pub async fn fires(&self, workflow: Option<&str>, limit: i64) -> Result<Vec<FireInfo>> {
        Ok(sqlx::query_as(
            "SELECT workflow, kind, scheduled_at, status, reason, holder, fired_at, round_id \
             FROM fires WHERE $1 IS NULL OR workflow = $1 ORDER BY scheduled_at DESC, workflow LIMIT $2",
        )
        .bind(workflow)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The time leases are stamped and compared with: the database server's clock on
    /// PostgreSQL, so hosts whose clocks disagree still agree on when a lease expires; this
    /// machine's with SQLite (one machine).
    async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        match self.backend {
            super::Backend::Sqlite => Ok(chrono::Utc::now()),
            super::Backend::Postgres => {
                let micros: i64 = sqlx::query_scalar(
                    "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(
                    chrono::DateTime::from_timestamp_micros(micros)
                        .unwrap_or_else(chrono::Utc::now),
                )
            }
        }
    }

    /// Takes or renews the workflow's lease for `ttl`. False while another holder's lease
    /// is unexpired.
    pub async fn acquire_lease(
        &self,
        workflow: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let now = self.clock().await?;
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        let done = sqlx::query(
            "INSERT INTO leases (workflow, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (workflow) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(workflow)
        .bind(holder)
        .bind(stamp(until))
        .bind(stamp(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Takes the workflow's lease from `previous` (a holder known to be gone). False if
    /// someone else took it first.
    pub async fn take_lease_from(
        &self,
        workflow: &str,
        previous: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let until = self.clock().await?
            + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        let done = sqlx::query(
            "UPDATE leases SET holder = $1, expires_at = $2 WHERE workflow = $3 AND holder = $4",
        )
        .bind(holder)
        .bind(stamp(until))
        .bind(workflow)
        .bind(previous)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Takes over, for `holder`, up to `limit` of `workflows`' leases that expired: their
    /// holder stopped renewing (a killed process, a lost host) while it drove a round.
    /// Returns the workflows taken with their previous holders. On PostgreSQL the expired
    /// rows are claimed `FOR UPDATE SKIP LOCKED`, so daemons scanning at once divide them
    /// instead of queueing on each other; SQLite's single writer does the same by itself.
    pub async fn claim_expired_leases(
        &self,
        workflows: &[String],
        holder: &str,
        ttl: std::time::Duration,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        if workflows.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock().await?;
        let until = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let names = serde_json::to_string(workflows).unwrap_or_else(|_| "[]".into());
        // Not the store's one write lock on PostgreSQL: row locks are the point here.
        let mut tx = match self.backend {
            super::Backend::Postgres => self.pool.begin().await?,
            super::Backend::Sqlite => self.write_tx().await?,
        };
        let expired: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT workflow, holder FROM leases WHERE expires_at < $1 \
             AND workflow IN ({names}) ORDER BY workflow LIMIT $3{lock}",
            names = self.backend.texts("$2")
        )))
        .bind(stamp(now))
        .bind(names)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = Vec::with_capacity(expired.len());
        for (workflow, previous) in expired {
            let done = sqlx::query(
                "UPDATE leases SET holder = $1, expires_at = $2 \
                 WHERE workflow = $3 AND holder = $4 AND expires_at < $5",
            )
            .bind(holder)
            .bind(stamp(until))
            .bind(&workflow)
            .bind(&previous)
            .bind(stamp(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done == 1 {
                taken.push((workflow, previous));
            }
        }
        tx.commit().await?;
        Ok(taken)
    }

    /// The workflow's lease holder and expiry, if a lease is recorded.
    pub async fn lease_holder(&self, workflow: &str) -> Result<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT holder, expires_at FROM leases WHERE workflow = $1")
                .bind(workflow)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn release_lease(&self, workflow: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE workflow = $1 AND holder = $2")
            .bind(workflow)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
