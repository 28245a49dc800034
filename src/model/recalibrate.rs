//! Recalibration on review verdicts. The calibrators are fitted on held-out true triples
//! against candidate-like negatives, and they overrate the top of a ranking (the winner's
//! curse: CtD discovery's 200 best candidates read 0.99 where 0.19 were true). The verdicts on
//! earlier rounds' picks are labels from exactly that region, so each relation with enough of
//! them gets a map from the calibrated probability to the rate review confirmed.
//!
//! The map is logistic in the logit of the calibrated probability, `sigmoid(a logit(p) + b)`,
//! fitted on the probability each hypothesis had when it was picked (before any earlier
//! recalibration, so fits do not compound). Its slope is pulled towards 1 (a ridge worth
//! [`SLOPE_PRIOR`] verdicts): picks sit in a narrow band of probabilities, where slope and
//! intercept are nearly interchangeable, and the ranking must stay the model's.

use super::calibrate::fit_logistic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fewest verdicts on a relation before its probabilities are recalibrated.
pub const MIN_VERDICTS: usize = 20;
/// Weight of the prior that the slope is 1, in verdicts.
const SLOPE_PRIOR: f64 = 2.0;
/// Probabilities are clamped this far from 0 and 1 before taking logits.
const EDGE: f64 = 1e-6;

/// One judged hypothesis: its relation, its calibrated probability when picked, the outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub relation: u32,
    pub probability: f64,
    pub confirmed: bool,
}

/// One relation's map and what it was fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub a: f64,
    pub b: f64,
    pub verdicts: usize,
    pub confirmed: usize,
}

impl Shift {
    pub fn prob(&self, p: f64) -> f64 {
        sigmoid(self.a * logit(p) + self.b)
    }
}

/// Per relation id, the map fitted on its verdicts (relations with too few have none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerdictCalibration {
    relations: BTreeMap<u32, Shift>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(EDGE, 1.0 - EDGE);
    (p / (1.0 - p)).ln()
}

impl VerdictCalibration {
    /// Fits every relation with at least [`MIN_VERDICTS`] verdicts.
    pub fn fit(verdicts: &[Verdict]) -> Self {
        let mut by_relation: BTreeMap<u32, Vec<(f64, bool)>> = BTreeMap::new();
        for v in verdicts {
            if v.probability.is_finite() {
                by_relation
                    .entry(v.relation)
                    .or_default()
                    .push((logit(v.probability), v.confirmed));
            }
        }
        let relations = by_relation
            .into_iter()
            .filter(|(_, xs)| xs.len() >= MIN_VERDICTS)
            .map(|(r, xs)| (r, fit_shift(&xs)))
            .collect();
        Self { relations }
    }

    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// `p` as recalibrated for `relation` (unchanged where the relation has no map).
    pub fn prob(&self, relation: u32, p: f64) -> f64 {
        match self.relations.get(&relation) {
            Some(s) => s.prob(p),
            None => p,
        }
    }

    /// The fitted relations, by id.
    pub fn relations(&self) -> impl Iterator<Item = (u32, &Shift)> {
        self.relations.iter().map(|(&r, s)| (r, s))
    }
}

/// Logistic regression on the logit with the slope pulled towards 1 (`SLOPE_PRIOR`).
fn fit_shift(xs: &[(f64, bool)]) -> Shift {
    let (x, labels): (Vec<f64>, Vec<bool>) = xs.iter().copied().unzip();
    let (a, b) = fit_logistic(&x, &labels, (1.0, 0.0), SLOPE_PRIOR);
    Shift {
        // A falling map would reverse the model's ranking; a flat one is the most it may say.
        a: a.max(0.0),
        b,
        verdicts: xs.len(),
        confirmed: labels.iter().filter(|&&l| l).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(relation: u32, n: usize, p: f64, confirmed: usize) -> Vec<Verdict> {
        (0..n)
            .map(|i| Verdict {
                relation,
                probability: p + 0.01 * (i % 3) as f64,
                confirmed: i < confirmed,
            })
            .collect()
    }

    #[test]
    fn overconfident_picks_are_brought_down_to_the_confirmed_rate() {
        // 40 picks read about 0.98; 8 were confirmed.
        let fit = VerdictCalibration::fit(&verdicts(3, 40, 0.97, 8));
        let p = fit.prob(3, 0.98);
        assert!((p - 0.2).abs() < 0.06, "{p}");
        // The ranking is kept: a higher probability stays higher.
        assert!(fit.prob(3, 0.99) >= fit.prob(3, 0.9));
        // Other relations are untouched.
        assert_eq!(fit.prob(4, 0.98), 0.98);
    }

    #[test]
    fn too_few_verdicts_change_nothing() {
        let fit = VerdictCalibration::fit(&verdicts(1, MIN_VERDICTS - 1, 0.9, 0));
        assert!(fit.is_empty());
        assert_eq!(fit.prob(1, 0.9), 0.9);
        let fit = VerdictCalibration::fit(&verdicts(1, MIN_VERDICTS, 0.9, 0));
        let p = fit.prob(1, 0.9);
        // No confirmation at all: low, but Platt's smoothing keeps it above zero.
        assert!(p > 0.0 && p < 0.1, "{p}");
    }

    #[test]
    fn underrated_picks_are_raised() {
        let fit = VerdictCalibration::fit(&verdicts(0, 30, 0.1, 24));
        let p = fit.prob(0, 0.11);
        assert!((p - 0.8).abs() < 0.08, "{p}");
    }
}
