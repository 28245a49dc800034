//! Calibration: maps raw scores to probabilities (Platt or isotonic), fitted on validation
//! positives against negatives the caller draws (candidate-like pairs), and measured by expected calibration error, Brier
//! score and a reliability diagram.

use crate::plot::{Panel, Series};
use serde::{Deserialize, Serialize};

/// Which calibration to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The logistic sigmoid of the raw score, no fitting.
    None,
    /// Logistic regression on the score (Platt 1999).
    Platt,
    /// A monotone step function fitted by pool-adjacent-violators.
    Isotonic,
}

/// A fitted score-to-probability map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Calibrator {
    Sigmoid,
    Platt {
        a: f64,
        b: f64,
    },
    /// Block right edges `x` (ascending) and their probabilities `y`.
    Isotonic {
        x: Vec<f64>,
        y: Vec<f64>,
    },
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Calibrator {
    pub fn fit(method: Method, scores: &[f64], labels: &[bool]) -> Self {
        match method {
            Method::None => Self::Sigmoid,
            Method::Platt => Self::fit_platt(scores, labels),
            Method::Isotonic => Self::fit_isotonic(scores, labels),
        }
    }

    /// Logistic regression on the score with Platt's smoothed targets.
    pub fn fit_platt(scores: &[f64], labels: &[bool]) -> Self {
        let pos = labels.iter().filter(|&&l| l).count() as f64;
        let neg = labels.len() as f64 - pos;
        let (a, b) = fit_logistic(scores, labels, (0.0, ((neg + 1.0) / (pos + 1.0)).ln()), 0.0);
        Self::Platt { a, b }
    }

    /// Pool-adjacent-violators on scores sorted ascending.
    pub fn fit_isotonic(scores: &[f64], labels: &[bool]) -> Self {
        let mut pairs: Vec<(f64, f64)> = scores
            .iter()
            .zip(labels)
            .map(|(&s, &l)| (s, if l { 1.0 } else { 0.0 }))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Blocks of (right edge, sum, count).
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        for (s, y) in pairs {
            blocks.push((s, y, 1.0));
            while blocks.len() > 1 {
                let n = blocks.len();
                let (a, b) = (blocks[n - 2], blocks[n - 1]);
                if a.1 / a.2 >= b.1 / b.2 {
                    blocks[n - 2] = (b.0, a.1 + b.1, a.2 + b.2);
                    blocks.pop();
                } else {
                    break;
                }
            }
        }
        Self::Isotonic {
            x: blocks.iter().map(|b| b.0).collect(),
            y: blocks.iter().map(|b| b.1 / b.2).collect(),
        }
    }

    pub fn prob(&self, score: f64) -> f64 {
        match self {
            Self::Sigmoid => sigmoid(score),
            Self::Platt { a, b } => sigmoid(a * score + b),
            Self::Isotonic { x, y } => {
                if x.is_empty() {
                    return 0.5;
                }
                let i = x.partition_point(|&e| e < score).min(x.len() - 1);
                y[i]
            }
        }
    }
}

/// Fits sigmoid(a s + b) to `labels` with Platt's smoothed targets, minimizing the log-loss
/// plus `slope_prior / 2 (a - a0)^2` from `start = (a0, b0)`, by Newton's method with a
/// backtracking line search (Lin, Lin and Weng 2007): plain Newton steps diverge when the
/// scores are large (a blended model's reach tens), where the sigmoid saturates and the
/// Hessian vanishes. The objective is convex, so each accepted step makes progress.
pub fn fit_logistic(
    scores: &[f64],
    labels: &[bool],
    start: (f64, f64),
    slope_prior: f64,
) -> (f64, f64) {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let target = |l: bool| if l { t_pos } else { t_neg };
    let a0 = start.0;
    let objective = |a: f64, b: f64| -> f64 {
        let data: f64 = scores
            .iter()
            .zip(labels)
            .map(|(&s, &l)| {
                let z = a * s + b;
                // -(t log p + (1 - t) log(1 - p)) = softplus(z) - t z, stable for any z.
                let softplus = if z > 0.0 {
                    z + (-z).exp().ln_1p()
                } else {
                    z.exp().ln_1p()
                };
                softplus - target(l) * z
            })
            .sum();
        data + 0.5 * slope_prior * (a - a0).powi(2)
    };
    let (mut a, mut b) = start;
    let mut current = objective(a, b);
    for _ in 0..100 {
        let (mut ga, mut gb) = (slope_prior * (a - a0), 0.0);
        let (mut haa, mut hab, mut hbb) = (slope_prior + 1e-12, 0.0, 1e-12);
        for (&s, &l) in scores.iter().zip(labels) {
            let p = sigmoid(a * s + b);
            let d = p - target(l);
            let w = p * (1.0 - p);
            ga += d * s;
            gb += d;
            haa += w * s * s;
            hab += w * s;
            hbb += w;
        }
        if ga.abs() < 1e-9 && gb.abs() < 1e-9 {
            break;
        }
        let det = haa * hbb - hab * hab;
        let (da, db) = if det.abs() > 1e-18 {
            ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det)
        } else {
            (ga, gb)
        };
        let mut step = 1.0;
        let mut improved = false;
        while step > 1e-10 {
            let (na, nb) = (a - step * da, b - step * db);
            let value = objective(na, nb);
            if value < current - 1e-4 * step * (ga * da + gb * db) {
                (a, b, current) = (na, nb, value);
                improved = true;
                break;
            }
            step /= 2.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub fraction_positive: f64,
}

/// Calibration quality of some probabilities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Expected calibration error over equal-width bins.
    pub ece: f64,
    pub brier: f64,
    pub bins: Vec<Bin>,
}

pub fn report(probs: &[f64], labels: &[bool], bins: usize) -> Report {
    let n = probs.len().max(1) as f64;
    let brier = probs
        .iter()
        .zip(labels)
        .map(|(&p, &l)| (p - if l { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / n;
    let mut out = Vec::with_capacity(bins);
    let mut ece = 0.0;
    for b in 0..bins {
        let (lo, hi) = (b as f64 / bins as f64, (b + 1) as f64 / bins as f64);
        let inside: Vec<(f64, bool)> = probs
            .iter()
            .zip(labels)
            .filter(|(p, _)| **p >= lo && (**p < hi || (b == bins - 1 && **p <= hi)))
            .map(|(&p, &l)| (p, l))
            .collect();
        let count = inside.len();
        let (mean_predicted, fraction_positive) = if count == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (
                inside.iter().map(|x| x.0).sum::<f64>() / count as f64,
                inside.iter().filter(|x| x.1).count() as f64 / count as f64,
            )
        };
        if count > 0 {
            ece += count as f64 / n * (mean_predicted - fraction_positive).abs();
        }
        out.push(Bin {
            lo,
            hi,
            count,
            mean_predicted,
            fraction_positive,
        });
    }
    Report {
        ece,
        brier,
        bins: out,
    }
}

/// A reliability diagram: observed frequency against predicted probability per bin.
pub fn reliability_svg(title: &str, reports: &[(&str, &Report)]) -> String {
    let mut series = vec![Series {
        name: "perfect calibration".into(),
        points: vec![(0.0, 0.0), (1.0, 1.0)],
        markers: false,
    }];
    for (name, r) in reports {
        series.push(Series {
            name: format!("{name} (ECE {:.3}, Brier {:.3})", r.ece, r.brier),
            points: r
                .bins
                .iter()
                .filter(|b| b.count > 0)
                .map(|b| (b.mean_predicted, b.fraction_positive))
                .collect(),
            markers: true,
        });
    }
    crate::plot::svg(&[Panel {
        title: title.into(),
        x_label: "predicted probability".into(),
        y_label: "observed frequency".into(),
        series,
        y_range: Some((0.0, 1.0)),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Scores whose true probability of being positive is sigmoid(2 s - 1).
    fn synthetic(n: usize) -> (Vec<f64>, Vec<bool>) {
        let mut rng = StdRng::seed_from_u64(3);
        let scores: Vec<f64> = (0..n).map(|_| rng.random_range(-4.0..4.0)).collect();
        let labels = scores
            .iter()
            .map(|&s| rng.random::<f64>() < sigmoid(2.0 * s - 1.0))
            .collect();
        (scores, labels)
    }

    /// Scores in the tens (a blended model's) saturate the sigmoid at the start: the fit must
    /// still find the map rather than a step function.
    #[test]
    fn platt_fits_large_scores() {
        let (scores, labels) = synthetic(20_000);
        let big: Vec<f64> = scores.iter().map(|s| 40.0 * s + 25.0).collect();
        let Calibrator::Platt { a, b } = Calibrator::fit_platt(&big, &labels) else {
            panic!("platt");
        };
        // s = (big - 25) / 40, and the truth is sigmoid(2 s - 1).
        assert!((a - 2.0 / 40.0).abs() < 0.005, "a {a}");
        assert!((b - (-1.0 - 2.0 * 25.0 / 40.0)).abs() < 0.15, "b {b}");
    }

    #[test]
    fn platt_recovers_the_true_map_and_lowers_ece() {
        let (scores, labels) = synthetic(20_000);
        let Calibrator::Platt { a, b } = Calibrator::fit_platt(&scores, &labels) else {
            panic!("platt");
        };
        assert!(
            (a - 2.0).abs() < 0.15 && (b + 1.0).abs() < 0.15,
            "a {a} b {b}"
        );
        let raw: Vec<f64> = scores.iter().map(|&s| sigmoid(s)).collect();
        let cal = Calibrator::Platt { a, b };
        let fitted: Vec<f64> = scores.iter().map(|&s| cal.prob(s)).collect();
        let (before, after) = (report(&raw, &labels, 10), report(&fitted, &labels, 10));
        assert!(
            after.ece < before.ece / 2.0,
            "{} -> {}",
            before.ece,
            after.ece
        );
        assert!(after.brier < before.brier);
    }

    #[test]
    fn isotonic_is_monotone_and_calibrated() {
        let (scores, labels) = synthetic(20_000);
        let cal = Calibrator::fit_isotonic(&scores, &labels);
        let Calibrator::Isotonic { y, .. } = &cal else {
            panic!("isotonic")
        };
        assert!(y.windows(2).all(|w| w[0] <= w[1]));
        let probs: Vec<f64> = scores.iter().map(|&s| cal.prob(s)).collect();
        assert!(report(&probs, &labels, 10).ece < 0.02);
        assert!(cal.prob(-100.0) <= cal.prob(0.0) && cal.prob(0.0) <= cal.prob(100.0));
    }

    #[test]
    fn ece_and_brier_by_hand() {
        let r = report(&[0.1, 0.1, 0.9, 0.9], &[false, true, true, true], 2);
        // Bin [0, .5): predicted 0.1, observed 0.5; bin [.5, 1]: 0.9 vs 1.0.
        assert!((r.ece - (0.5 * 0.4 + 0.5 * 0.1)).abs() < 1e-12);
        let brier = (0.01 + 0.81 + 0.01 + 0.01) / 4.0;
        assert!((r.brier - brier).abs() < 1e-12);
    }
}
