//! Waking a round that waits on answers. On PostgreSQL every write that answers a stage item
//! (a callback, a poll's verdicts, a reviewer, a retraction or undo) sends `NOTIFY` in its
//! transaction, delivered at commit to every host that listens; the waiting round wakes at
//! once instead of polling the database. SQLite has no such channel: a wait there is a pause.

use super::{Backend, Result, Store, backend_of};
use sqlx::AnyConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// The channel answers are announced on; the payload is the round id.
const CHANNEL: &str = "hypograph_answers";

/// One process's listener: a single connection for every waiting round, started on first use.
#[derive(Debug)]
pub(super) struct Listener {
    url: String,
    tx: broadcast::Sender<i64>,
    started: tokio::sync::OnceCell<()>,
}

impl Listener {
    pub(super) fn new(url: &str) -> Arc<Self> {
        Arc::new(Self {
            url: url.to_owned(),
            tx: broadcast::channel(1024).0,
            started: tokio::sync::OnceCell::new(),
        })
    }

    /// Starts the listening task once. It reconnects on its own when the connection drops
    /// (sqlx's listener does); what is announced meanwhile is lost, which the waiters' time
    /// limit covers.
    async fn start(self: &Arc<Self>) {
        let me = self.clone();
        self.started
            .get_or_init(|| async move {
                tokio::spawn(async move {
                    loop {
                        let mut listener = match sqlx::postgres::PgListener::connect(&me.url).await
                        {
                            Ok(l) => l,
                            Err(e) => {
                                warn!(error = %e, "answer listener: connecting failed, retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                continue;
                            }
                        };
                        if let Err(e) = listener.listen(CHANNEL).await {
                            warn!(error = %e, "answer listener: LISTEN failed, retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        loop {
                            match listener.recv().await {
                                Ok(n) => {
                                    if let Ok(round) = n.payload().parse::<i64>() {
                                        debug!(round, "answers announced");
                                        let _ = me.tx.send(round);
                                    }
                                }
                                Err(e) => {
                                    warn!(error = %e, "answer listener: receiving failed");
                                    break;
                                }
                            }
                        }
                    }
                });
            })
            .await;
    }
}

/// A waiter on the answers of rounds: subscribe before checking, then wait, so an answer
/// that lands in between still wakes it.
pub struct AnswerWait {
    rx: Option<broadcast::Receiver<i64>>,
}

impl AnswerWait {
    /// Returns when `round` gets an answer (PostgreSQL) or after `limit`, whichever is first.
    /// Returns true when woken by an announcement.
    pub async fn wait(&mut self, round: i64, limit: Duration) -> bool {
        let Some(rx) = self.rx.as_mut() else {
            tokio::time::sleep(limit).await;
            return false;
        };
        let woken = async {
            loop {
                match rx.recv().await {
                    Ok(r) if r == round => return true,
                    Ok(_) => {}
                    // Missed some: look at the database now rather than wait.
                    Err(broadcast::error::RecvError::Lagged(_)) => return true,
                    Err(broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        tokio::time::timeout(limit, woken).await.unwrap_or(false)
    }

    /// Whether announcements can wake this waiter (PostgreSQL) or it only pauses (SQLite).
    pub fn is_live(&self) -> bool {
        self.rx.is_some()
    }
}

impl Store {
    /// A waiter for announced answers.
    pub async fn answer_wait(&self) -> AnswerWait {
        match &self.listener {
            Some(l) => {
                let rx = l.tx.subscribe();
                l.start().await;
                AnswerWait { rx: Some(rx) }
            }
            None => AnswerWait { rx: None },
        }
    }
}

/// Announces new answers for `round`, inside the caller's transaction (PostgreSQL delivers it
/// at commit; nothing on SQLite).
pub(super) async fn announce_round(conn: &mut AnyConnection, round: i64) -> Result<()> {
    if backend_of(conn) == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(round.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// [`announce_round`] for the round of a hypothesis.
pub(super) async fn announce_hypothesis(conn: &mut AnyConnection, hypothesis: i64) -> Result<()> {
    if backend_of(conn) == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, CAST(round_id AS TEXT)) FROM hypotheses WHERE id = $2")
            .bind(CHANNEL)
            .bind(hypothesis)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
