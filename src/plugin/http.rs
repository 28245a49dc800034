//! `http`: an assay service. Each batch is one POST of JSON; the service answers with
//! verdicts at once, or with job ids answered later by polling `poll_url` or by the service
//! calling `POST /api/v1/results` back. Server errors, timeouts and unreadable answers are
//! retryable; client errors (4xx) are not: the body becomes the failure reason.

use super::{Hypothesis, PluginError, Submission, Verdict, WireVerdict, sort_answers};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Http {
    pub stage: String,
    pub url: String,
    /// Where pending jobs are polled (POST `{"jobs": [...]}`); none when the service calls back.
    pub poll_url: Option<String>,
    /// Sent to the service so it knows where to post results.
    pub callback_url: Option<String>,
    /// Bearer token for the service (from the environment).
    pub token: Option<String>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub cost: f64,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<WireVerdict>,
}

impl Http {
    pub fn new(
        stage: &str,
        url: &str,
        timeout: Duration,
        concurrency: usize,
        cost: f64,
    ) -> Result<Self, PluginError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(concurrency.max(1))
            .build()
            .map_err(|e| PluginError::Failed(format!("HTTP client: {e}")))?;
        Ok(Self {
            stage: stage.to_owned(),
            url: url.to_owned(),
            poll_url: None,
            callback_url: None,
            token: None,
            timeout,
            concurrency,
            cost,
            client,
        })
    }

    async fn post(&self, url: &str, body: &serde_json::Value) -> Result<Answer, PluginError> {
        let mut req = self.client.post(url).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| send_error(url, &e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            PluginError::Retryable(format!("reading the answer of {url}: {}", root_cause(&e)))
        })?;
        let snippet: String = text.chars().take(300).collect();
        if status.is_server_error() {
            return Err(PluginError::Retryable(format!(
                "HTTP {status} from {url}: {snippet}"
            )));
        }
        if !status.is_success() {
            return Err(PluginError::Failed(format!(
                "HTTP {status} from {url}: {snippet}"
            )));
        }
        if text.trim().is_empty() {
            return Ok(Answer {
                results: Vec::new(),
            });
        }
        serde_json::from_str(&text).map_err(|e| {
            PluginError::Retryable(format!("invalid JSON from {url} ({e}): {snippet}"))
        })
    }

    pub async fn submit(&self, batch: &[Hypothesis]) -> Result<Submission, PluginError> {
        let body = serde_json::json!({
            "stage": self.stage,
            "callback_url": self.callback_url,
            "hypotheses": batch,
        });
        let answer = self.post(&self.url, &body).await?;
        let mut sub = sort_answers(batch, answer.results, self.cost);
        let answered: std::collections::HashSet<i64> = sub
            .verdicts
            .iter()
            .map(|v| v.hypothesis)
            .chain(sub.pending.iter().map(|p| p.0))
            .collect();
        let later = self.poll_url.is_some() || self.callback_url.is_some();
        for h in batch.iter().filter(|h| !answered.contains(&h.id)) {
            if later {
                sub.pending.push((h.id, None));
            } else {
                sub.failed
                    .push((h.id, format!("{} did not answer it", self.url)));
            }
        }
        Ok(sub)
    }

    /// Asks the poll URL about pending jobs; answers that are not in yet are simply absent.
    pub async fn poll(&self, jobs: &[(i64, String)]) -> Result<Vec<Verdict>, PluginError> {
        let Some(url) = &self.poll_url else {
            return Ok(Vec::new());
        };
        let ids: Vec<&str> = jobs.iter().map(|j| j.1.as_str()).collect();
        let answer = self.post(url, &serde_json::json!({ "jobs": ids })).await?;
        let mut out = Vec::new();
        for a in answer.results {
            let Some(job) = &a.job else { continue };
            let Some((id, _)) = jobs.iter().find(|j| &j.1 == job) else {
                tracing::warn!(stage = %self.stage, %job, "poll answered an unknown job");
                continue;
            };
            match a.verdict(*id, self.cost) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => {}
                Err(why) => tracing::warn!(stage = %self.stage, %job, %why, "unusable poll answer"),
            }
        }
        Ok(out)
    }
}

/// A request that got no answer: an outage to retry (the engine's backoff and breaker), named
/// by what failed.
pub(super) fn send_error(url: &str, e: &reqwest::Error) -> PluginError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    PluginError::Retryable(format!("{kind}: POST {url}: {}", root_cause(e)))
}

/// The innermost error message (reqwest's Display stops at the outer layer).
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
