//! Review stages as plugins: each takes a batch of hypotheses and answers now (verdicts),
//! later (pending, with a job id to poll or a callback to wait for), or not at all (a failure
//! with its reason). Built-ins are a closed enum; external services and programs are
//! described by manifests (`plugins/*.yaml`) and run through the `http` and `command` kinds.
//! Plugins know nothing of rounds or ranking: the engine hands them batches.

pub mod command;
pub mod http;
pub mod llm;
pub mod manifest;
pub mod oracle;
pub mod stats;

use serde::{Deserialize, Serialize};

/// A known edge next to a hypothesis's head or tail: what a reviewer weighs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub relation: String,
    pub entity: String,
    pub name: String,
    pub category: String,
    /// `out`: (node, relation, entity); `in`: (entity, relation, node).
    pub direction: String,
}

/// The graph around a hypothesis.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub head: Vec<Neighbour>,
    pub tail: Vec<Neighbour>,
}

/// A hypothesis as a plugin sees it. `key` is the idempotency key `round:hypothesis:stage`:
/// a service that sees a key twice must answer the same and do the work once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub id: i64,
    pub key: String,
    pub head: String,
    pub relation: String,
    pub tail: String,
    #[serde(default)]
    pub head_name: String,
    #[serde(default)]
    pub tail_name: String,
    #[serde(default)]
    pub head_category: String,
    #[serde(default)]
    pub tail_category: String,
    /// The model's calibrated probability and the ensemble's spread.
    #[serde(default)]
    pub score: f64,
    #[serde(default)]
    pub spread: f64,
    #[serde(default)]
    pub context: Context,
}

impl Hypothesis {
    /// A bare hypothesis (tests, the oracle): keys only.
    pub fn bare(id: i64, head: &str, relation: &str, tail: &str) -> Self {
        Self {
            id,
            key: format!("0:{id}:0"),
            head: head.into(),
            relation: relation.into(),
            tail: tail.into(),
            head_name: String::new(),
            tail_name: String::new(),
            head_category: String::new(),
            tail_category: String::new(),
            score: 0.0,
            spread: 0.0,
            context: Context::default(),
        }
    }
}

/// The idempotency key of a hypothesis at a stage.
pub fn idempotency_key(round: i64, hypothesis: i64, stage: i64) -> String {
    format!("{round}:{hypothesis}:{stage}")
}

/// Parses `round:hypothesis:stage`.
pub fn parse_key(key: &str) -> Option<(i64, i64, i64)> {
    let mut it = key.split(':').map(|p| p.parse::<i64>().ok());
    let k = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(k)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Confirmed,
    Refuted,
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Refuted => "refuted",
            Self::Inconclusive => "inconclusive",
        }
    }
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

/// What a submission produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submission {
    pub verdicts: Vec<Verdict>,
    /// Accepted, answer later: the hypothesis and the service's job id, if it gave one.
    pub pending: Vec<(i64, Option<String>)>,
    /// Given up on, with the reason (e.g. a line the program never answered).
    pub failed: Vec<(i64, String)>,
    /// Answers that could not be used (unknown hypothesis, malformed entry), for the log.
    pub rejected: Vec<String>,
}

/// Errors at the plugin boundary: `Retryable` ones are tried again by the engine (with
/// backoff), `Failed` ones are recorded as the batch's failure reason at once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    #[error("{0} (will retry)")]
    Retryable(String),
    #[error("{0}")]
    Failed(String),
}

impl PluginError {
    pub fn reason(&self) -> &str {
        match self {
            Self::Retryable(r) | Self::Failed(r) => r,
        }
    }
}

/// Review by people: submitting puts hypotheses in the review queue; verdicts arrive through
/// the REST API or `hypograph review`.
#[derive(Debug, Clone)]
pub struct Human {
    /// Distinct reviewers whose verdicts a hypothesis needs.
    pub quorum: u32,
}

/// The built-in stages.
#[derive(Debug)]
pub enum Plugin {
    Oracle(oracle::Oracle),
    Http(http::Http),
    Command(command::CommandPlugin),
    Llm(llm::Llm),
    Human(Human),
}

impl Plugin {
    /// Whether every answer comes back from `submit` itself: a hypothesis a synchronous
    /// plugin neither answered nor failed is a failure, and a resumed dispatch resends it.
    pub fn is_synchronous(&self) -> bool {
        match self {
            Self::Oracle(_) | Self::Command(_) | Self::Llm(_) => true,
            // Without polling or callbacks the service answers in the POST's response.
            Self::Http(h) => h.poll_url.is_none() && h.callback_url.is_none(),
            Self::Human(_) => false,
        }
    }

    /// Whether hypotheses should carry their graph context.
    pub fn needs_context(&self) -> bool {
        matches!(self, Self::Http(_) | Self::Llm(_) | Self::Command(_))
    }

    /// Batches in flight at once.
    pub fn concurrency(&self) -> usize {
        match self {
            Self::Http(h) => h.concurrency.max(1),
            Self::Llm(l) => l.concurrency.max(1),
            _ => 1,
        }
    }

    /// Submits a batch.
    pub async fn submit(&self, batch: &[Hypothesis]) -> Result<Submission, PluginError> {
        match self {
            Self::Oracle(o) => {
                if o.in_outage() {
                    return Err(PluginError::Retryable(
                        "oracle unavailable (simulated outage)".into(),
                    ));
                }
                Ok(Submission {
                    verdicts: o.judge(batch).await,
                    ..Submission::default()
                })
            }
            Self::Http(h) => h.submit(batch).await,
            Self::Command(c) => c.submit(batch).await,
            Self::Llm(l) => l.submit(batch).await,
            Self::Human(_) => Ok(Submission {
                pending: batch.iter().map(|h| (h.id, None)).collect(),
                ..Submission::default()
            }),
        }
    }

    /// Asks for answers to pending jobs (plugins that are polled); empty for the others.
    pub async fn poll(&self, jobs: &[(i64, String)]) -> Result<Vec<Verdict>, PluginError> {
        match self {
            Self::Http(h) => h.poll(jobs).await,
            _ => Ok(Vec::new()),
        }
    }

    /// Whether `poll` does anything.
    pub fn polls(&self) -> bool {
        matches!(self, Self::Http(h) if h.poll_url.is_some())
    }
}

/// One answer as services, programs and models write it: by hypothesis id or by key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireVerdict {
    #[serde(default)]
    pub hypothesis: Option<i64>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub job: Option<String>,
    #[serde(default)]
    pub verdict: Option<Outcome>,
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub evidence: Option<serde_json::Value>,
    #[serde(default)]
    pub cost: Option<f64>,
}

impl WireVerdict {
    /// The hypothesis this answer is about, checked against the batch: a wrong key or an id
    /// not in the batch is rejected.
    pub fn target(&self, batch: &[Hypothesis]) -> Result<i64, String> {
        let by_key = self
            .key
            .as_deref()
            .map(|k| batch.iter().find(|h| h.key == k).map(|h| h.id).ok_or(k));
        let by_id = self
            .hypothesis
            .map(|id| batch.iter().find(|h| h.id == id).map(|h| h.id).ok_or(id));
        match (by_key, by_id) {
            (Some(Ok(a)), Some(Ok(b))) if a != b => {
                Err(format!("key and hypothesis disagree ({a} vs {b})"))
            }
            (Some(Ok(a)), _) | (None, Some(Ok(a))) => Ok(a),
            (Some(Err(k)), _) => Err(format!("unknown key `{k}`")),
            (None, Some(Err(id))) => Err(format!("unknown hypothesis {id}")),
            (None, None) => Err("an answer without `key` or `hypothesis`".into()),
        }
    }

    /// A verdict, if this answer carries one with a valid confidence.
    pub fn verdict(&self, hypothesis: i64, default_cost: f64) -> Result<Option<Verdict>, String> {
        let Some(v) = self.verdict else {
            return Ok(None);
        };
        let confidence = self.confidence.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&confidence) {
            return Err(format!("confidence {confidence} is outside 0..=1"));
        }
        // A negative cost would give back budget (`stop.budget`) that was never spent.
        if let Some(cost) = self.cost
            && !(cost.is_finite() && cost >= 0.0)
        {
            return Err(format!("cost {cost} is not a finite number >= 0"));
        }
        Ok(Some(Verdict {
            hypothesis,
            verdict: v,
            confidence,
            evidence: self.evidence.clone().unwrap_or(serde_json::Value::Null),
            cost: self.cost.unwrap_or(default_cost),
            reviewer: None,
        }))
    }
}

/// Sorts a service's answers into verdicts, pending jobs and rejections.
pub fn sort_answers(batch: &[Hypothesis], answers: Vec<WireVerdict>, cost: f64) -> Submission {
    let mut out = Submission::default();
    let mut seen = std::collections::HashSet::new();
    for a in answers {
        let id = match a.target(batch) {
            Ok(id) => id,
            Err(why) => {
                out.rejected.push(why);
                continue;
            }
        };
        if !seen.insert(id) {
            out.rejected
                .push(format!("a second answer for hypothesis {id}"));
            continue;
        }
        match a.verdict(id, cost) {
            Ok(Some(v)) => out.verdicts.push(v),
            Ok(None) if a.job.is_some() => out.pending.push((id, a.job.clone())),
            Ok(None) => {
                seen.remove(&id);
                out.rejected
                    .push(format!("hypothesis {id}: neither a verdict nor a job"));
            }
            Err(why) => {
                seen.remove(&id);
                out.rejected.push(format!("hypothesis {id}: {why}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let k = idempotency_key(3, 41, 2);
        assert_eq!(k, "3:41:2");
        assert_eq!(parse_key(&k), Some((3, 41, 2)));
        assert_eq!(parse_key("3:41"), None);
        assert_eq!(parse_key("3:41:2:9"), None);
        assert_eq!(parse_key("a:b:c"), None);
    }

    #[test]
    fn answers_are_checked_against_the_batch() {
        let batch = vec![
            Hypothesis::bare(1, "a", "r", "b"),
            Hypothesis::bare(2, "c", "r", "d"),
        ];
        let wire = |s: &str| serde_json::from_str::<WireVerdict>(s).expect("json");
        let s = sort_answers(
            &batch,
            vec![
                wire(r#"{"key": "0:1:0", "verdict": "confirmed", "confidence": 0.8}"#),
                wire(r#"{"hypothesis": 2, "job": "j-2"}"#),
                wire(r#"{"hypothesis": 99, "verdict": "refuted"}"#),
                wire(r#"{"key": "9:9:9", "verdict": "refuted"}"#),
                wire(r#"{"hypothesis": 1, "verdict": "refuted"}"#),
            ],
            2.0,
        );
        assert_eq!(s.verdicts.len(), 1);
        assert_eq!(s.verdicts[0].hypothesis, 1);
        assert_eq!(s.verdicts[0].cost, 2.0);
        assert_eq!(s.pending, vec![(2, Some("j-2".into()))]);
        assert_eq!(s.rejected.len(), 3, "{:?}", s.rejected);
        let bad = sort_answers(
            &batch,
            vec![wire(
                r#"{"hypothesis": 1, "verdict": "confirmed", "confidence": 7}"#,
            )],
            0.0,
        );
        assert!(bad.verdicts.is_empty());
        assert!(
            bad.rejected[0].contains("confidence 7"),
            "{:?}",
            bad.rejected
        );
    }
}
