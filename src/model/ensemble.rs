//! Ensembles: k members trained with different seeds on bootstrap samples of the training
//! triples. Their calibrated probabilities give each candidate a mean, a spread, and the
//! per-member values from which BALD's mutual information is computed (in `acquire`).

use super::any::{AnyScorer, Model, train};
use super::calibrate::{self, Calibrator, Method, Report};
use super::context::{Categories, Context};
use super::eval::LinkPredictor;
use super::popularity::PopularityWeights;
use super::recalibrate::VerdictCalibration;
use super::train::{TrainEvent, TrainOutcome, TrainSet};
use super::{ModelError, TrainConfig};
use crate::graph::Triple;
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// A member's weights and its own score-to-probability map.
#[derive(Debug, Clone)]
pub struct Member {
    pub model: Model,
    pub calibrator: Calibrator,
}

#[derive(Debug, Clone)]
pub struct Ensemble {
    pub members: Vec<Member>,
    /// The popularity baseline blended into every member's scores, when training chose to
    /// (`TrainConfig::popularity_prior`); the counts come from the graph asked about
    /// ([`Ensemble::context_of`]).
    pub popularity: Option<PopularityWeights>,
    /// Per relation, the map from the calibrated probability to the rate review confirmed,
    /// fitted on earlier rounds' verdicts (`model::recalibrate`); empty until a relation has
    /// enough of them.
    pub verdicts: VerdictCalibration,
}

/// A candidate's probability under the ensemble.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub mean: f64,
    pub std: f64,
    pub members: Vec<f64>,
    /// The members' mean before the verdict recalibration: what the next fit reads.
    pub base: f64,
}

impl Prediction {
    /// Mean and (population) standard deviation of the members' probabilities.
    pub fn of(members: Vec<f64>) -> Self {
        let k = members.len().max(1) as f64;
        let mean = members.iter().sum::<f64>() / k;
        let var = members.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / k;
        Self {
            mean,
            std: var.sqrt(),
            members,
            base: mean,
        }
    }
}

/// Calibration quality before (sigmoid of raw scores) and after fitting, measured on the half
/// of the validation split the calibrators were not fitted on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationSummary {
    pub method: Method,
    pub before: Report,
    pub after: Report,
    pub fitted_on: usize,
    pub measured_on: usize,
    /// Negatives per positive in both halves: the base rate the probabilities assume.
    pub negatives_per_positive: f64,
}

/// Trains `k` members. Member `i` uses seed `config.seed + i` and, when `k > 1`, a bootstrap
/// sample of the training triples; `warm[i]`, if present, is its starting point.
/// `on_progress(i, event)` hears of member `i`'s batches and epochs.
pub fn train_members(
    config: &TrainConfig,
    set: &TrainSet<'_>,
    categories: &Categories,
    k: usize,
    mut warm: Vec<Option<Model>>,
    device: &Device,
    on_progress: &mut (dyn FnMut(usize, &TrainEvent) + Send),
) -> Result<Vec<TrainOutcome<Model>>, ModelError> {
    if k == 0 {
        return Err(ModelError::BadConfig(
            "an ensemble needs at least one member".into(),
        ));
    }
    warm.resize(k, None);
    let mut out = Vec::with_capacity(k);
    for (i, start) in warm.into_iter().enumerate() {
        let member_config = config.clone().with_seed(config.seed.wrapping_add(i as u64));
        let sample: Vec<Triple>;
        let train_triples = if k > 1 {
            let mut rng = StdRng::seed_from_u64(member_config.seed ^ 0xb007_u64);
            sample = (0..set.train.len())
                .map(|_| set.train[rng.random_range(0..set.train.len())])
                .collect();
            &sample[..]
        } else {
            set.train
        };
        let member_set = TrainSet {
            train: train_triples,
            ..*set
        };
        out.push(train(
            &member_config,
            &member_set,
            categories,
            start,
            device,
            &mut |e| on_progress(i, e),
        )?);
    }
    Ok(out)
}

impl Ensemble {
    /// Fits each member's calibrator on the even-numbered validation positives and their
    /// negatives (`negatives[i]` belongs to `valid[i]`), and reports calibration on the odd ones.
    /// The caller draws the negatives, so they can be of the kind candidates are. `context` is
    /// the graph the members are trained on, for members that read it.
    pub fn calibrate(
        models: Vec<Model>,
        popularity: Option<PopularityWeights>,
        method: Method,
        valid: &[Triple],
        negatives: &[Vec<Triple>],
        device: &Device,
        context: &Context,
    ) -> (Self, Option<CalibrationSummary>) {
        let labelled = |parity: usize| {
            let mut triples = Vec::new();
            let mut labels = Vec::new();
            let mut positives = 0usize;
            for (i, p) in valid.iter().enumerate().filter(|(i, _)| i % 2 == parity) {
                triples.push(*p);
                labels.push(true);
                positives += 1;
                for n in negatives.get(i).map(Vec::as_slice).unwrap_or(&[]) {
                    triples.push(*n);
                    labels.push(false);
                }
            }
            (triples, labels, positives)
        };
        let (fit_t, fit_l, fit_pos) = labelled(0);
        let (test_t, test_l, test_pos) = labelled(1);
        // Nothing to fit means nothing to score: a message-passing member would pay a graph
        // pass per validation pair only to report the raw sigmoid twice.
        let can_fit =
            method != Method::None && fit_pos > 0 && test_pos > 0 && fit_t.len() > fit_pos;
        let mut members = Vec::with_capacity(models.len());
        let mut raw_test: Vec<Vec<f64>> = Vec::new();
        for model in models {
            let scorer = model
                .scorer(device, context)
                .blended(popularity.as_ref(), context.popularity());
            let calibrator = if can_fit {
                let s: Vec<f64> = scorer.triples(&fit_t).into_iter().map(f64::from).collect();
                Calibrator::fit(method, &s, &fit_l)
            } else {
                Calibrator::Sigmoid
            };
            if can_fit {
                raw_test.push(scorer.triples(&test_t).into_iter().map(f64::from).collect());
            }
            drop(scorer);
            members.push(Member { model, calibrator });
        }
        let ensemble = Self {
            members,
            popularity,
            verdicts: VerdictCalibration::default(),
        };
        if !can_fit {
            return (ensemble, None);
        }
        let mean_over = |f: &dyn Fn(usize, f64) -> f64| -> Vec<f64> {
            (0..test_t.len())
                .map(|j| {
                    raw_test
                        .iter()
                        .enumerate()
                        .map(|(i, s)| f(i, s[j]))
                        .sum::<f64>()
                        / raw_test.len() as f64
                })
                .collect()
        };
        let before = mean_over(&|_, s| Calibrator::Sigmoid.prob(s));
        let after = mean_over(&|i, s| ensemble.members[i].calibrator.prob(s));
        let summary = CalibrationSummary {
            method,
            before: calibrate::report(&before, &test_l, 10),
            after: calibrate::report(&after, &test_l, 10),
            fitted_on: fit_t.len(),
            measured_on: test_t.len(),
            negatives_per_positive: (fit_t.len() + test_t.len() - fit_pos - test_pos) as f64
                / (fit_pos + test_pos) as f64,
        };
        (ensemble, Some(summary))
    }

    /// Whether any member's scores depend on the graph it is handed.
    pub fn reads_context(&self) -> bool {
        self.members.iter().any(|m| m.model.reads_context())
    }

    /// The graph's context if a member reads it, else an empty one (cheap).
    pub fn context_of(&self, graph: &crate::graph::Graph) -> Context {
        let context = Context::of_graph_if(self.reads_context(), graph);
        if self.popularity.is_some() {
            context.with_popularity_of(graph)
        } else {
            context
        }
    }

    /// Member `i`'s scorer, with the popularity blend where the ensemble has one.
    pub fn scorer<'a>(&'a self, i: usize, device: &Device, context: &'a Context) -> AnyScorer<'a> {
        self.members[i]
            .model
            .scorer(device, context)
            .blended(self.popularity.as_ref(), context.popularity())
    }

    /// Every member's scorer: the ensemble as one [`super::LinkPredictor`] (`as_slice()`).
    pub fn scorers<'a>(&'a self, device: &Device, context: &'a Context) -> Vec<AnyScorer<'a>> {
        (0..self.members.len())
            .map(|i| self.scorer(i, device, context))
            .collect()
    }

    /// Whether a member can name the paths that carried its scores (a message-passing one).
    pub fn explains(&self) -> bool {
        self.members
            .iter()
            .any(|m| matches!(m.model, Model::Gnn(_)))
    }

    /// The paths that carried each triple's score (up to `limit` each), from the first
    /// message-passing member; empty for a `None` triple or where no member passes messages.
    pub fn explain(
        &self,
        triples: &[Option<Triple>],
        limit: usize,
        device: &Device,
        context: &Context,
    ) -> Vec<Vec<super::gnn::ModelPath>> {
        let Some(model) = self.members.iter().find_map(|m| match &m.model {
            Model::Gnn(g) => Some(g),
            _ => None,
        }) else {
            return vec![Vec::new(); triples.len()];
        };
        let scorer = model.scorer(device, context);
        triples
            .iter()
            .map(|t| match t {
                Some(t) => scorer.explain((t.head, t.relation), t.tail, limit),
                None => Vec::new(),
            })
            .collect()
    }

    /// Each triple's mean probability before calibration (the sigmoid of every member's score)
    /// and after, from one scoring pass: a message-passing member pays a graph pass per
    /// distinct (head, relation), so scoring twice doubles an evaluation's cost.
    pub fn mean_raw_and_calibrated(
        &self,
        triples: &[Triple],
        device: &Device,
        context: &Context,
    ) -> (Vec<f64>, Vec<f64>) {
        let scores: Vec<Vec<f32>> = (0..self.members.len())
            .map(|i| self.scorer(i, device, context).triples(triples))
            .collect();
        let k = scores.len().max(1) as f64;
        let raw = (0..triples.len())
            .map(|j| {
                scores
                    .iter()
                    .map(|s| Calibrator::Sigmoid.prob(f64::from(s[j])))
                    .sum::<f64>()
                    / k
            })
            .collect();
        let calibrated = triples
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let members = self
                    .members
                    .iter()
                    .zip(&scores)
                    .map(|(m, s)| {
                        self.verdicts
                            .prob(t.relation, m.calibrator.prob(f64::from(s[j])))
                    })
                    .collect();
                Prediction::of(members).mean
            })
            .collect();
        (raw, calibrated)
    }

    /// Calibrated probabilities of `triples` under every member, reading `context` (the graph
    /// the question is asked about) where a member reads context.
    pub fn predict(
        &self,
        triples: &[Triple],
        device: &Device,
        context: &Context,
    ) -> Vec<Prediction> {
        let per_member: Vec<Vec<f64>> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let scorer = self.scorer(i, device, context);
                scorer
                    .triples(triples)
                    .into_iter()
                    .map(|s| m.calibrator.prob(f64::from(s)))
                    .collect()
            })
            .collect();
        let k = per_member.len().max(1) as f64;
        triples
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let base = per_member.iter().map(|p| p[j]).sum::<f64>() / k;
                let members = per_member
                    .iter()
                    .map(|p| self.verdicts.prob(t.relation, p[j]))
                    .collect();
                Prediction {
                    base,
                    ..Prediction::of(members)
                }
            })
            .collect()
    }
}
