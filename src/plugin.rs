//! Review stages as plugins: each takes a batch of hypotheses and returns verdicts, now or
//! later. Built-ins are a closed enum (the oracle today; HTTP, command, LLM and human review
//! later); third-party stages will be manifests for HTTP services or commands.

pub mod oracle;

use serde::{Deserialize, Serialize};

/// A hypothesis as a plugin sees it: an id for idempotency and the triple's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub id: i64,
    pub head: String,
    pub relation: String,
    pub tail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Confirmed,
    Refuted,
    Inconclusive,
}

/// A stage's answer about one hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub hypothesis: i64,
    pub verdict: Outcome,
    pub confidence: f64,
    pub evidence: serde_json::Value,
    pub cost: f64,
    pub reviewer: Option<String>,
}

/// Errors at the plugin boundary: `Retryable` ones are tried again by the engine, the others
/// are recorded as the hypothesis's failure reason.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0} (will retry)")]
    Retryable(String),
    #[error("{0}")]
    Failed(String),
}

/// The built-in stages.
#[derive(Debug)]
pub enum Plugin {
    Oracle(oracle::Oracle),
}

impl Plugin {
    /// Whether every verdict comes back from `submit` itself (rather than later, by polling
    /// or callback): a hypothesis a synchronous plugin did not answer is a failure.
    pub fn is_synchronous(&self) -> bool {
        match self {
            Self::Oracle(_) => true,
        }
    }

    /// Submits a batch. The oracle's verdicts depend only on the hypotheses, so resubmitting
    /// after a crash answers the same; stateful plugins (issue 6) will take the idempotency
    /// key `(round, hypothesis, stage)` of DESIGN.md.
    pub async fn submit(&self, batch: &[Hypothesis]) -> Result<Vec<Verdict>, PluginError> {
        match self {
            Self::Oracle(o) => {
                if o.in_outage() {
                    return Err(PluginError::Retryable(
                        "oracle unavailable (simulated outage)".into(),
                    ));
                }
                Ok(o.judge(batch).await)
            }
        }
    }
}
