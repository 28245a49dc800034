//! Who may still act, and on what: service scopes, revoking, rotating and disabling tokens,
//! sign-in sessions held by the server, the server's CSRF key, the account audit trail, and the
//! random keys callbacks answer items by.

use super::review::{Role, User, token_hash};
use super::rounds::now;
use super::{Result, Store, StoreError};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

/// 32 random bytes, hex: tokens, session ids, callback keys, the CSRF key.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a service token may answer by callback: one workflow, one of its stages or all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub workflow: String,
    /// `None`: every stage of the workflow that takes callbacks.
    pub stage: Option<String>,
}

impl Scope {
    pub fn covers(&self, workflow: &str, stage: &str) -> bool {
        self.workflow == workflow && self.stage.as_deref().is_none_or(|s| s == stage)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.stage {
            Some(s) => write!(f, "{}/{s}", self.workflow),
            None => f.write_str(&self.workflow),
        }
    }
}

/// A user as `user list` shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub disabled: bool,
    /// When the token was revoked (`user rotate` issues a new one).
    pub revoked_at: Option<String>,
    pub scopes: Vec<Scope>,
}

/// One change to an account, for the audit page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserEvent {
    pub id: i64,
    pub user: String,
    pub event: String,
    pub detail: Option<String>,
    pub actor: String,
    pub at: String,
}

/// How long a web sign-in lasts (the cookie's Max-Age).
pub const SESSION_SECONDS: i64 = 30 * 24 * 3600;

fn no_user(name: &str) -> StoreError {
    StoreError::Conflict(format!("there is no user `{name}`"))
}

async fn event(
    conn: &mut sqlx::AnyConnection,
    user: &str,
    event: &str,
    detail: Option<&str>,
    actor: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO user_events (user_name, event, detail, actor, at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user)
    .bind(event)
    .bind(detail)
    .bind(actor)
    .bind(now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The id and role of `name`, in the transaction.
async fn find(conn: &mut sqlx::AnyConnection, name: &str) -> Result<(i64, Role)> {
    let row: Option<(i64, String)> = sqlx::query_as("SELECT id, role FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    let (id, role) = row.ok_or_else(|| no_user(name))?;
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))?;
    Ok((id, role))
}

impl Store {
    /// Creates a user (a service with its first scope) and returns their token, shown once:
    /// only its hash is stored. `actor` is who did it, for the audit page.
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        scope: Option<&Scope>,
        actor: &str,
    ) -> Result<String> {
        if scope.is_some() && role != Role::Service {
            return Err(StoreError::Conflict(
                "only service users have scopes (workflows they answer callbacks for)".into(),
            ));
        }
        let token = random_token();
        let mut tx = self.write_tx().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO users (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(token_hash(&token))
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(StoreError::Conflict(format!(
                "user `{name}` already exists"
            )));
        };
        event(&mut tx, name, "added", Some(role.as_str()), actor).await?;
        if let Some(s) = scope {
            add_scope(&mut tx, id, name, s, actor).await?;
        }
        tx.commit().await?;
        Ok(token)
    }

    /// Lets service `name` answer callbacks of another workflow (or stage).
    pub async fn scope_user(&self, name: &str, scope: &Scope, actor: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (id, role) = find(&mut tx, name).await?;
        if role != Role::Service {
            return Err(StoreError::Conflict(format!(
                "`{name}` is a {} user: only service users have scopes",
                role.as_str()
            )));
        }
        add_scope(&mut tx, id, name, scope, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The workflows and stages a user may answer by callback.
    pub async fn user_scopes(&self, user: i64) -> Result<Vec<Scope>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT workflow, stage FROM user_scopes WHERE user_id = $1 ORDER BY workflow, stage",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(workflow, stage)| Scope {
                workflow,
                stage: Some(stage).filter(|s| !s.is_empty()),
            })
            .collect())
    }

    /// Every user with their state and scopes.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(
            "SELECT id, name, role, created_at, disabled, revoked_at FROM users ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let role: String = row.try_get("role")?;
            let id: i64 = row.try_get("id")?;
            out.push(Account {
                name: row.try_get("name")?,
                role: Role::parse(&role)
                    .ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))?,
                created_at: row.try_get("created_at")?,
                disabled: row.try_get::<i64, _>("disabled")? != 0,
                revoked_at: row.try_get("revoked_at")?,
                scopes: self.user_scopes(id).await?,
            });
        }
        Ok(out)
    }

    /// Revokes `name`'s token: API calls and web sessions with it fail from now on. The
    /// stored hash becomes a value no token hashes to (hashes are hex); `rotate_user` issues
    /// a new token.
    pub async fn revoke_user(&self, name: &str, actor: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (id, _) = find(&mut tx, name).await?;
        sqlx::query("UPDATE users SET token_hash = $1, revoked_at = $2 WHERE id = $3")
            .bind(format!("revoked:{}", random_token()))
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        end_sessions(&mut tx, id).await?;
        event(&mut tx, name, "revoked", None, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces `name`'s token with a new one, returned once; the old one and its web
    /// sessions stop working at once.
    pub async fn rotate_user(&self, name: &str, actor: &str) -> Result<String> {
        let token = random_token();
        let mut tx = self.write_tx().await?;
        let (id, _) = find(&mut tx, name).await?;
        sqlx::query("UPDATE users SET token_hash = $1, revoked_at = NULL WHERE id = $2")
            .bind(token_hash(&token))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        end_sessions(&mut tx, id).await?;
        event(&mut tx, name, "rotated", None, actor).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// Disables (or enables again) `name`: a disabled user's token is refused everywhere and
    /// their web sessions end; enabling brings back the same token.
    pub async fn set_disabled(&self, name: &str, disabled: bool, actor: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (id, _) = find(&mut tx, name).await?;
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if disabled {
            end_sessions(&mut tx, id).await?;
        }
        let what = if disabled { "disabled" } else { "enabled" };
        event(&mut tx, name, what, None, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Account changes, newest first.
    pub async fn user_events(&self, limit: i64) -> Result<Vec<UserEvent>> {
        let rows: Vec<(i64, String, String, Option<String>, String, String)> = sqlx::query_as(
            "SELECT id, user_name, event, detail, actor, at FROM user_events \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, user, event, detail, actor, at)| UserEvent {
                id,
                user,
                event,
                detail,
                actor,
                at,
            })
            .collect())
    }

    /// Starts a web session for `user`, bound to the token they signed in with; returns the
    /// session id for the cookie (only its hash is stored).
    pub async fn start_session(&self, user: &User, token: &str) -> Result<String> {
        let id = random_token();
        let at = chrono::Utc::now();
        let expires = at + chrono::Duration::seconds(SESSION_SECONDS);
        let stamp = |t: chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&id))
        .bind(user.id)
        .bind(token_hash(token))
        .bind(stamp(at))
        .bind(stamp(expires))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The user of a live session: not expired, the user enabled, and their token still the
    /// one they signed in with (a rotated or revoked token ends its sessions).
    pub async fn session_user(&self, session: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, u.created_at FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND u.disabled = 0 \
             AND u.token_hash = s.token_hash",
        )
        .bind(token_hash(session))
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(super::review::user_from).transpose()
    }

    /// Ends one web session (signing out); expired ones of anyone go with it.
    pub async fn end_session(&self, session: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1 OR expires_at <= $2")
            .bind(token_hash(session))
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The server's secret called `name` (32 bytes), made on first use and the same for every
    /// process on this database afterwards.
    pub async fn server_secret(&self, name: &str) -> Result<[u8; 32]> {
        sqlx::query(
            "INSERT INTO server_secrets (name, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(random_token())
        .bind(now())
        .execute(&self.pool)
        .await?;
        let hex: String = sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        // 32 bytes as 64 hex digits: the form blake3's hashes parse from.
        blake3::Hash::from_hex(hex.trim())
            .map(|h| *h.as_bytes())
            .map_err(|_| {
                StoreError::Corrupt(format!("server secret `{name}` is not 32 bytes of hex"))
            })
    }

    /// The callback keys of `hypotheses`' items at `stage`: random, made for the items that
    /// have none yet and kept, so a resend carries the same key (the service's idempotency).
    pub async fn callback_keys(
        &self,
        stage: i64,
        hypotheses: &[i64],
    ) -> Result<HashMap<i64, String>> {
        let mut tx = self.write_tx().await?;
        let mut out = HashMap::with_capacity(hypotheses.len());
        for &h in hypotheses {
            let key: Option<Option<String>> = sqlx::query_scalar(
                "SELECT callback_key FROM stage_items WHERE hypothesis_id = $1 AND stage = $2",
            )
            .bind(h)
            .bind(stage)
            .fetch_optional(&mut *tx)
            .await?;
            let key = match key {
                None => continue,
                Some(Some(k)) => k,
                Some(None) => {
                    let k = random_token();
                    sqlx::query(
                        "UPDATE stage_items SET callback_key = $1 \
                         WHERE hypothesis_id = $2 AND stage = $3",
                    )
                    .bind(&k)
                    .bind(h)
                    .bind(stage)
                    .execute(&mut *tx)
                    .await?;
                    k
                }
            };
            out.insert(h, key);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The item a callback key names: `(round, hypothesis, stage)`.
    pub async fn callback_item(&self, key: &str) -> Result<Option<(i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT h.round_id, s.hypothesis_id, s.stage FROM stage_items s \
             JOIN hypotheses h ON h.id = s.hypothesis_id WHERE s.callback_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }
}

async fn add_scope(
    conn: &mut sqlx::AnyConnection,
    id: i64,
    name: &str,
    scope: &Scope,
    actor: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO user_scopes (user_id, workflow, stage) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, workflow, stage) DO NOTHING",
    )
    .bind(id)
    .bind(&scope.workflow)
    .bind(scope.stage.as_deref().unwrap_or(""))
    .execute(&mut *conn)
    .await?;
    event(conn, name, "scoped", Some(&scope.to_string()), actor).await
}

async fn end_sessions(conn: &mut sqlx::AnyConnection, user: i64) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
