//! The oracle: answers from held-out truth, for simulations. `confirmed` if the triple is in
//! the truth file, else `refuted`; optionally noisy (each verdict flipped with a seeded
//! probability that depends only on the triple, so a resubmission answers the same), slow and
//! costly.

use super::{Hypothesis, Outcome, Verdict};
use crate::graph::{OnInvalid, ParseError, tsv};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Oracle {
    truth: HashSet<(String, String, String)>,
    /// Probability that a verdict is flipped.
    pub flip_rate: f64,
    /// How long each batch takes to answer.
    pub latency: Duration,
    /// Cost charged per hypothesis.
    pub cost: f64,
    pub seed: u64,
    /// Simulated outage: the first this-many submissions fail with a retryable error, so a
    /// workflow's retry and failure handling can be rehearsed without a real service.
    pub outage: u32,
    calls: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl Oracle {
    pub fn new(truth: impl IntoIterator<Item = (String, String, String)>) -> Self {
        Self {
            truth: truth.into_iter().collect(),
            flip_rate: 0.0,
            latency: Duration::ZERO,
            cost: 1.0,
            seed: 0,
            outage: 0,
            calls: Default::default(),
        }
    }

    /// Reads the truth from a triples TSV (strict: a bad line is an error naming it).
    pub fn from_file(path: &Path) -> Result<Self, ParseError> {
        let batch = tsv::read_triples(path, OnInvalid::Fail)?;
        let truth = batch.triples.iter().map(|&[h, r, t]| {
            (
                batch.entities[h as usize].key.clone(),
                batch.relations[r as usize].clone(),
                batch.entities[t as usize].key.clone(),
            )
        });
        Ok(Self::new(truth))
    }

    pub fn len(&self) -> usize {
        self.truth.len()
    }

    pub fn is_empty(&self) -> bool {
        self.truth.is_empty()
    }

    /// Counts a submission; true while the simulated outage lasts.
    pub fn in_outage(&self) -> bool {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            < self.outage
    }

    /// A uniform draw in [0, 1) fixed by the seed and the triple.
    fn draw(&self, h: &Hypothesis) -> f64 {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.seed.to_le_bytes());
        for part in [&h.head, &h.relation, &h.tail] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let bytes = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes.as_bytes()[..8]);
        (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub async fn judge(&self, batch: &[Hypothesis]) -> Vec<Verdict> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        batch
            .iter()
            .map(|h| {
                let true_edge =
                    self.truth
                        .contains(&(h.head.clone(), h.relation.clone(), h.tail.clone()));
                let flipped = self.draw(h) < self.flip_rate;
                let verdict = if true_edge != flipped {
                    Outcome::Confirmed
                } else {
                    Outcome::Refuted
                };
                Verdict {
                    hypothesis: h.id,
                    verdict,
                    confidence: 1.0 - self.flip_rate,
                    evidence: serde_json::json!({ "source": "oracle", "noisy": self.flip_rate > 0.0 }),
                    cost: self.cost,
                    reviewer: Some("oracle".into()),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyp(i: i64) -> Hypothesis {
        Hypothesis::bare(i, &format!("h{i}"), "r", &format!("t{}", i % 17))
    }

    fn truth(n: i64) -> Vec<(String, String, String)> {
        (0..n)
            .filter(|i| i % 2 == 0)
            .map(|i| (format!("h{i}"), "r".into(), format!("t{}", i % 17)))
            .collect()
    }

    #[tokio::test]
    async fn answers_from_truth() {
        let o = Oracle::new(truth(10));
        let v = o.judge(&[hyp(0), hyp(1)]).await;
        assert_eq!(v[0].verdict, Outcome::Confirmed);
        assert_eq!(v[1].verdict, Outcome::Refuted);
        assert_eq!(v[1].hypothesis, 1);
        assert_eq!(v[0].cost, 1.0);
    }

    #[tokio::test]
    async fn noise_rate_holds_and_is_reproducible() {
        let n = 20_000;
        let mut o = Oracle::new(truth(n));
        o.flip_rate = 0.1;
        o.seed = 9;
        let batch: Vec<Hypothesis> = (0..n).map(hyp).collect();
        let v = o.judge(&batch).await;
        let wrong = v
            .iter()
            .zip(&batch)
            .filter(|(v, h)| (v.verdict == Outcome::Confirmed) != (h.id % 2 == 0))
            .count() as f64
            / n as f64;
        // Binomial(20000, 0.1): standard deviation 0.0021.
        assert!((wrong - 0.1).abs() < 0.01, "flip rate {wrong}");
        assert_eq!(
            o.judge(&batch).await,
            v,
            "the same triple gets the same verdict"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn latency_is_waited_for() {
        let mut o = Oracle::new(truth(2));
        o.latency = Duration::from_secs(3600);
        let started = tokio::time::Instant::now();
        o.judge(&[hyp(0)]).await;
        assert!(started.elapsed() >= Duration::from_secs(3600));
    }
}
