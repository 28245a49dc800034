//! `llm`: a reviewer behind an OpenAI-compatible chat-completions API (OpenAI, vLLM, Ollama,
//! llama.cpp's server). It asks for `{"verdict", "confidence", "rationale"}`, accepts it bare or
//! inside a code fence, asks again on anything else, and records the tokens used, the cost and
//! the rationale (shown to human reviewers later) as evidence. An outage (no connection, a
//! timeout, 429, 5xx) is the batch's retryable error, so the engine's backoff and circuit
//! breaker handle it as they do the `http` plugin's; hypotheses the model already answered
//! are not asked again when the engine resends the batch.

use super::{Hypothesis, Outcome, PluginError, Submission, Verdict};
use futures_util::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct Llm {
    pub stage: String,
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    /// With `{head}`, `{head_name}`, `{head_category}`, `{relation}`, `{tail}`, `{tail_name}`,
    /// `{tail_category}`, `{score}`, `{spread}` and `{context}`.
    pub prompt: String,
    /// Asks after an unusable answer before giving up on the hypothesis.
    pub attempts: u32,
    /// Requests in flight at once, across all the batches the engine sends together.
    pub concurrency: usize,
    /// Dollars per 1,000 prompt and completion tokens.
    pub price_per_1k: (f64, f64),
    client: reqwest::Client,
    /// `concurrency` permits, made at the first submission (the field is set after `new`).
    permits: OnceLock<Arc<Semaphore>>,
    /// Reviews already given (or given up on), by idempotency key: after an outage the engine
    /// resends the whole batch, and what the model answered is neither asked nor paid for twice.
    reviewed: Arc<Mutex<HashMap<String, Result<Verdict, String>>>>,
}

/// Why a hypothesis got no review.
enum Trouble {
    /// The model's answers were unusable: this hypothesis fails, the batch goes on.
    Unusable(String),
    /// The service failed: the batch's error, for the engine to retry or record.
    Service(PluginError),
}

pub const DEFAULT_PROMPT: &str = "Hypothesis from a biomedical knowledge graph: \
{head_name} ({head}, a {head_category}) --{relation}--> {tail_name} ({tail}, a {tail_category}). \
The link-prediction model gives it probability {score} (ensemble spread {spread}). \
Known facts around it:\n{context}\nIs the hypothesis true?";

const SYSTEM: &str = "You review hypotheses for a knowledge graph. Answer with one JSON object \
and nothing else: {\"verdict\": \"confirmed\" | \"refuted\" | \"inconclusive\", \"confidence\": \
a number from 0 to 1, \"rationale\": \"one or two sentences\"}.";

#[derive(Debug, Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Message,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// The answer a reviewer model must give.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub verdict: Outcome,
    pub confidence: f64,
    pub rationale: String,
}

/// Reads a review from a model's reply: the JSON object alone or in a ``` fence.
pub fn parse_review(content: &str) -> Result<Review, String> {
    let t = content.trim();
    let body = match t.strip_prefix("```") {
        Some(rest) => {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            rest.rsplit_once("```")
                .map(|(inner, _)| inner)
                .ok_or("an unclosed code fence")?
                .trim()
        }
        None => t,
    };
    let review: Review = serde_json::from_str(body).map_err(|e| {
        format!(
            "not the JSON review asked for ({e}): {}",
            body.chars().take(120).collect::<String>()
        )
    })?;
    if !(0.0..=1.0).contains(&review.confidence) {
        return Err(format!("confidence {} is outside 0..=1", review.confidence));
    }
    Ok(review)
}

/// Fills the prompt template.
pub fn render(template: &str, h: &Hypothesis) -> String {
    let context: Vec<String> = h
        .context
        .head
        .iter()
        .map(|n| (&h.head, n))
        .chain(h.context.tail.iter().map(|n| (&h.tail, n)))
        .map(|(node, n)| {
            let other = if n.name.is_empty() {
                &n.entity
            } else {
                &n.name
            };
            if n.direction == "out" {
                format!("- {node} --{}--> {other}", n.relation)
            } else {
                format!("- {other} --{}--> {node}", n.relation)
            }
        })
        .collect();
    let name = |n: &str, k: &str| {
        if n.is_empty() {
            k.to_owned()
        } else {
            n.to_owned()
        }
    };
    let context = if context.is_empty() {
        "(none known)".to_owned()
    } else {
        context.join("\n")
    };
    // One pass over the template: a value that looks like a placeholder stays as it is.
    let mut out = String::with_capacity(template.len() + context.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let value = after.find('}').and_then(|close| {
            Some((
                close,
                match &after[1..close] {
                    "head_name" => name(&h.head_name, &h.head),
                    "tail_name" => name(&h.tail_name, &h.tail),
                    "head_category" => h.head_category.clone(),
                    "tail_category" => h.tail_category.clone(),
                    "head" => h.head.clone(),
                    "tail" => h.tail.clone(),
                    "relation" => h.relation.clone(),
                    "score" => format!("{:.3}", h.score),
                    "spread" => format!("{:.3}", h.spread),
                    "context" => context.clone(),
                    _ => return None,
                },
            ))
        });
        match value {
            Some((close, v)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Llm {
    pub fn new(
        stage: &str,
        base_url: &str,
        model: &str,
        timeout: Duration,
    ) -> Result<Self, PluginError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| PluginError::Failed(format!("HTTP client: {e}")))?;
        Ok(Self {
            stage: stage.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key: None,
            prompt: DEFAULT_PROMPT.to_owned(),
            attempts: 3,
            concurrency: 4,
            price_per_1k: (0.0, 0.0),
            client,
            permits: OnceLock::new(),
            reviewed: Arc::default(),
        })
    }

    async fn ask(&self, messages: &serde_json::Value) -> Result<(String, Usage), PluginError> {
        let permits = self
            .permits
            .get_or_init(|| Arc::new(Semaphore::new(self.concurrency.max(1))));
        let _permit = permits
            .acquire()
            .await
            .map_err(|e| PluginError::Failed(format!("request permits: {e}")))?;
        let url = format!("{}/chat/completions", self.base_url);
        let mut req = self.client.post(&url).json(&serde_json::json!({
            "model": self.model,
            "messages": messages,
            "temperature": 0,
        }));
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| super::http::send_error(&url, &e))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| PluginError::Retryable(format!("reading {url}: {e}")))?;
        let snippet: String = text.chars().take(300).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(PluginError::Retryable(format!(
                "HTTP {status} from {url}: {snippet}"
            )));
        }
        if !status.is_success() {
            return Err(PluginError::Failed(format!(
                "HTTP {status} from {url}: {snippet}"
            )));
        }
        let c: Completion = serde_json::from_str(&text).map_err(|e| {
            PluginError::Retryable(format!("not a chat completion ({e}): {snippet}"))
        })?;
        let content = c
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .unwrap_or_default();
        Ok((content, c.usage.unwrap_or_default()))
    }

    /// Reviews one hypothesis: up to `attempts` questions, each unusable answer quoted back
    /// with what was wrong. A failing service ends it at once, for the engine to retry later.
    async fn review(&self, h: &Hypothesis) -> Result<Verdict, Trouble> {
        let known = self
            .reviewed
            .lock()
            .ok()
            .and_then(|done| done.get(&h.key).cloned());
        if let Some(r) = known {
            return r.map_err(Trouble::Unusable);
        }
        let r = match self.ask_until_usable(h).await {
            Err(Trouble::Service(e)) => return Err(Trouble::Service(e)),
            Ok(v) => Ok(v),
            Err(Trouble::Unusable(why)) => Err(why),
        };
        if let Ok(mut done) = self.reviewed.lock() {
            done.insert(h.key.clone(), r.clone());
        }
        r.map_err(Trouble::Unusable)
    }

    async fn ask_until_usable(&self, h: &Hypothesis) -> Result<Verdict, Trouble> {
        let mut messages = vec![
            serde_json::json!({ "role": "system", "content": SYSTEM }),
            serde_json::json!({ "role": "user", "content": render(&self.prompt, h) }),
        ];
        let mut used = Usage::default();
        let mut last = String::new();
        for attempt in 1..=self.attempts.max(1) {
            let (content, usage) = self
                .ask(&serde_json::Value::from(messages.clone()))
                .await
                .map_err(Trouble::Service)?;
            used.prompt_tokens += usage.prompt_tokens;
            used.completion_tokens += usage.completion_tokens;
            match parse_review(&content) {
                Ok(r) => {
                    let cost = used.prompt_tokens as f64 / 1000.0 * self.price_per_1k.0
                        + used.completion_tokens as f64 / 1000.0 * self.price_per_1k.1;
                    return Ok(Verdict {
                        hypothesis: h.id,
                        verdict: r.verdict,
                        confidence: r.confidence,
                        evidence: serde_json::json!({
                            "source": "llm",
                            "model": self.model,
                            "rationale": r.rationale,
                            "attempts": attempt,
                            "prompt_tokens": used.prompt_tokens,
                            "completion_tokens": used.completion_tokens,
                        }),
                        cost,
                        reviewer: Some(format!("llm:{}", self.model)),
                    });
                }
                Err(why) => {
                    last = why.clone();
                    messages.push(serde_json::json!({ "role": "assistant", "content": content }));
                    messages.push(serde_json::json!({
                        "role": "user",
                        "content": format!("That answer was unusable: {why}. Reply with only the JSON object."),
                    }));
                }
            }
        }
        Err(Trouble::Unusable(format!(
            "no usable answer from {} after {} attempts: {last}",
            self.model,
            self.attempts.max(1)
        )))
    }

    /// Reviews a batch, `concurrency` requests at a time. The first service failure ends the
    /// batch as the engine's error (the requests still running are dropped); the reviews
    /// already given are kept for the engine's next try.
    pub async fn submit(&self, batch: &[Hypothesis]) -> Result<Submission, PluginError> {
        let mut reviews: futures_util::stream::FuturesUnordered<_> = batch
            .iter()
            .map(|h| async move { (h.id, self.review(h).await) })
            .collect();
        let mut sub = Submission::default();
        while let Some((id, r)) = reviews.next().await {
            match r {
                Ok(v) => sub.verdicts.push(v),
                Err(Trouble::Unusable(why)) => sub.failed.push((id, why)),
                Err(Trouble::Service(e)) => return Err(e),
            }
        }
        Ok(sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_bare_or_fenced_and_nothing_else() {
        let ok = r#"{"verdict": "confirmed", "confidence": 0.7, "rationale": "known pathway"}"#;
        assert_eq!(parse_review(ok).map(|r| r.verdict), Ok(Outcome::Confirmed));
        let fenced = format!("```json\n{ok}\n```");
        assert_eq!(parse_review(&fenced).map(|r| r.confidence), Ok(0.7));
        assert!(parse_review("I think this is probably true.").is_err());
        assert!(
            parse_review(r#"{"verdict": "confirmed", "confidence": 0.7}"#)
                .is_err_and(|e| e.contains("rationale"))
        );
        assert!(
            parse_review(r#"{"verdict": "confirmed", "confidence": 7, "rationale": "x"}"#)
                .is_err_and(|e| e.contains("confidence 7"))
        );
    }

    #[test]
    fn renders_the_template() {
        let mut h = Hypothesis::bare(1, "D1", "treats", "X1");
        h.head_name = "aspirin".into();
        h.score = 0.8125;
        h.context.head.push(super::super::Neighbour {
            relation: "binds".into(),
            entity: "G1".into(),
            name: "PTGS2".into(),
            category: "Gene".into(),
            direction: "out".into(),
        });
        let s = render(
            "{head_name} {relation} {tail_name}? p={score}\n{context}",
            &h,
        );
        assert_eq!(s, "aspirin treats X1? p=0.812\n- D1 --binds--> PTGS2");
    }

    #[test]
    fn placeholders_inside_the_data_are_left_as_they_are() {
        let mut h = Hypothesis::bare(1, "{context}", "{tail}", "X1");
        h.head_name = "{score}".into();
        let s = render(
            "{head} {head_name} {relation} {tail} {unknown} {tail_name",
            &h,
        );
        assert_eq!(s, "{context} {score} {tail} X1 {unknown} {tail_name");
    }
}
