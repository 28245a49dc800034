//! Simulated active learning: hide part of a graph as the truth, then run rounds of
//! generate -> rank -> oracle -> ingest -> warm retrain per strategy and seed, recording
//! discoveries, precision, test MRR and cost per round. In memory: the store is not touched.

use crate::acquire::{self, Acquisition, Candidate, GenerateSpec};
use crate::graph::{Graph, GraphError, Triple};
use crate::model::calibrate::Method;
use crate::model::recalibrate::{Verdict, VerdictCalibration};
use crate::model::{
    self, Categories, Context, Ensemble, Known, Model, ModelError, TrainConfig, TrainSet,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// How a simulated lab picks its hypotheses.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The ensemble's candidates ranked by an acquisition function (`Random`: a uniform draw
    /// over the allowed pairs, the unguided baseline).
    Acquire(Acquisition),
    /// No model at all: the untested pairs whose head and tail answer the relation most often
    /// in what the lab knows (the product of the two counts), the baseline every model must
    /// beat. Its test MRR is the popularity baseline's on the same test triples.
    Popularity,
}

/// One simulation's settings.
#[derive(Debug, Clone)]
pub struct SimSpec {
    pub strategies: Vec<(String, Strategy)>,
    pub seeds: Vec<u64>,
    pub rounds: usize,
    /// Hypotheses tested per round.
    pub batch: usize,
    pub max_per_entity: Option<usize>,
    /// Candidates kept per relation before acquisition.
    pub top_k: usize,
    /// The only relations proposed (all when empty).
    pub relations: Vec<u32>,
    pub ensemble: usize,
    /// The first training of each run.
    pub config: TrainConfig,
    /// Epochs of each warm retrain after a round.
    pub retrain_epochs: usize,
    /// Cost of one oracle verdict.
    pub cost: f64,
    /// How member scores become probabilities, fitted on the validation split each round as
    /// the engine does.
    pub calibration: Method,
    /// Whether each round's probabilities are recalibrated on the earlier rounds' verdicts
    /// (`model::recalibrate`), as the engine does.
    pub verdict_calibration: bool,
}

/// What one round of one run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    pub strategy: String,
    pub seed: u64,
    pub round: usize,
    pub tested: usize,
    pub confirmed: usize,
    pub precision: f64,
    pub cumulative_discoveries: usize,
    pub cumulative_cost: f64,
    pub test_mrr: f64,
    /// Calibration of the ensemble that ranked this round, on the held-out half of the
    /// validation split against candidate-like negatives.
    pub ece: Option<f64>,
    pub brier: Option<f64>,
    /// Where decisions are made: ECE (10 bins) of the round's `TOP_CALIBRATION` best
    /// candidates by calibrated mean against the hidden truth, their mean probability and the
    /// fraction of them true. None when nothing ranked them (`popularity`).
    pub top_ece: Option<f64>,
    pub top_predicted: Option<f64>,
    pub top_observed: Option<f64>,
    /// Seconds spent generating and scoring candidates.
    pub generate_s: f64,
    /// Seconds spent on the ensemble's mean and spread and on acquisition.
    pub rank_s: f64,
    /// Seconds spent asking the oracle and ingesting its verdicts.
    pub judge_s: f64,
    /// Seconds spent on the warm retrain after the round.
    pub train_s: f64,
    /// The triples this round tested.
    #[serde(skip)]
    pub proposed: Vec<Triple>,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// The graph's entities and relations, fixed for the whole simulation.
pub struct Universe {
    pub entities: Vec<(Box<str>, Box<str>)>,
    pub relations: Vec<Box<str>>,
}

/// Runs every strategy for every seed. `visible` is what the model starts from, `hidden` the
/// truth the oracle answers from, `valid` the calibration split and `test` the fixed
/// evaluation split; neither of the last two is ever proposed, labelled or trained on.
pub fn run(
    universe: &Universe,
    visible: &[Triple],
    hidden: &[Triple],
    valid: &[Triple],
    test: &[Triple],
    spec: &SimSpec,
    on_round: &mut dyn FnMut(&RoundRecord),
) -> Result<Vec<RoundRecord>, SimError> {
    let sim = Sim {
        universe,
        spec,
        valid,
        test,
        truth: hidden.iter().copied().collect(),
        all_true: Known::new(&[visible, hidden, valid, test]),
        evaluation: valid.iter().chain(test).copied().collect(),
        device: model::default_device(),
        categories: Categories::from_names(universe.entities.iter().map(|(_, c)| &**c)),
    };
    let mut records = Vec::new();
    let mut initial: HashMap<u64, Vec<Model>> = HashMap::new();
    for (name, strategy) in &spec.strategies {
        for &seed in &spec.seeds {
            let acquisition = match strategy {
                Strategy::Acquire(a) => a,
                Strategy::Popularity => {
                    let mut lab = Lab::new(visible);
                    for round in 1..=spec.rounds {
                        let record = sim.popularity_round(&mut lab, name, seed, round);
                        on_round(&record);
                        records.push(record);
                    }
                    continue;
                }
            };
            let config = spec
                .config
                .clone()
                .with_seed(seed)
                .with_eval_every(0)
                .with_patience(0);
            let mut lab = Lab::new(visible);
            // Every strategy of a seed starts from the same model: one cold training, not one
            // per strategy (on real Hetionet that is minutes each), and a fairer comparison.
            lab.members = match initial.get(&seed) {
                Some(members) => Vec::clone(members),
                None => {
                    let members = sim.train(&lab, &config, Vec::new())?;
                    initial.insert(seed, members.clone());
                    members
                }
            };
            for round in 1..=spec.rounds {
                let record = sim.round(&mut lab, name, acquisition, &config, seed, round)?;
                on_round(&record);
                records.push(record);
            }
        }
    }
    Ok(records)
}

/// What every run of a simulation shares.
struct Sim<'a> {
    universe: &'a Universe,
    spec: &'a SimSpec,
    valid: &'a [Triple],
    test: &'a [Triple],
    truth: HashSet<Triple>,
    /// Every true triple, for filtered ranks.
    all_true: Known,
    /// Never proposed, labelled or trained on.
    evaluation: HashSet<Triple>,
    device: burn::tensor::Device,
    categories: Categories,
}

/// What the simulated lab knows between the rounds of one strategy and seed.
struct Lab {
    known: Vec<Triple>,
    refuted: HashSet<Triple>,
    /// Every verdict so far, with the probability its pick had before recalibration.
    verdicts: Vec<Verdict>,
    members: Vec<Model>,
    discoveries: usize,
    cost: f64,
}

impl Lab {
    fn new(visible: &[Triple]) -> Self {
        Self {
            known: visible.to_vec(),
            refuted: HashSet::new(),
            verdicts: Vec::new(),
            members: Vec::new(),
            discoveries: 0,
            cost: 0.0,
        }
    }
}

/// How many of a round's best candidates its top-of-ranking calibration is measured on.
pub const TOP_CALIBRATION: usize = 200;

impl Sim<'_> {
    /// `(ECE, mean predicted, fraction true)` of the best `TOP_CALIBRATION` candidates.
    fn top_calibration(&self, candidates: &[Candidate]) -> Option<(f64, f64, f64)> {
        if candidates.is_empty() {
            return None;
        }
        // Only the best are needed: a partial select, not a sort of every candidate.
        let best_first = |&a: &usize, &b: &usize| {
            candidates[b]
                .mean
                .total_cmp(&candidates[a].mean)
                .then(a.cmp(&b))
        };
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        if order.len() > TOP_CALIBRATION {
            order.select_nth_unstable_by(TOP_CALIBRATION - 1, best_first);
            order.truncate(TOP_CALIBRATION);
        }
        let probs: Vec<f64> = order.iter().map(|&i| candidates[i].mean).collect();
        let labels: Vec<bool> = order
            .iter()
            .map(|&i| self.truth.contains(&candidates[i].triple))
            .collect();
        let n = probs.len() as f64;
        let report = crate::model::calibrate::report(&probs, &labels, 10);
        Some((
            report.ece,
            probs.iter().sum::<f64>() / n,
            labels.iter().filter(|&&l| l).count() as f64 / n,
        ))
    }

    /// One round of the popularity baseline: the most popular untested pairs of each relation,
    /// asked and ingested like any strategy's; nothing is trained.
    fn popularity_round(&self, lab: &mut Lab, name: &str, seed: u64, round: usize) -> RoundRecord {
        let spec = self.spec;
        let (n, r) = (self.universe.entities.len(), self.universe.relations.len());
        let clock = Instant::now();
        let counts = model::Popularity::new(n, r, &lab.known);
        let known: HashSet<Triple> = lab.known.iter().copied().collect();
        let relations: Vec<u32> = if spec.relations.is_empty() {
            (0..r as u32).collect()
        } else {
            spec.relations.clone()
        };
        let mut scored: Vec<(Triple, f64)> = Vec::new();
        for &rel in &relations {
            scored.extend(popular_pairs(&counts, n, rel, spec.top_k, |t| {
                !known.contains(&t) && !lab.refuted.contains(&t) && !self.evaluation.contains(&t)
            }));
        }
        let generate_s = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let top = scored.iter().map(|s| s.1).fold(0.0f64, f64::max).max(1.0);
        let candidates: Vec<Candidate> = scored
            .iter()
            .map(|&(triple, v)| Candidate {
                triple,
                mean: v / top,
                std: 0.0,
                members: Vec::new(),
                cost: spec.cost,
                base: None,
            })
            .collect();
        let picks = acquire::select(
            &Acquisition::Greedy,
            &candidates,
            spec.batch,
            spec.max_per_entity,
            seed.wrapping_mul(1_000_003) ^ round as u64,
        );
        let rank_s = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let proposed: Vec<Triple> = picks.iter().map(|p| candidates[p.index].triple).collect();
        let confirmed = self.judge(lab, &proposed);
        let judge_s = clock.elapsed().as_secs_f64();
        let counts = model::Popularity::new(n, r, &lab.known);
        let mrr = model::evaluate(&counts, self.test, &self.all_true, 256)
            .both
            .mrr;
        RoundRecord {
            strategy: name.to_owned(),
            seed,
            round,
            tested: picks.len(),
            confirmed,
            precision: if picks.is_empty() {
                0.0
            } else {
                confirmed as f64 / picks.len() as f64
            },
            cumulative_discoveries: lab.discoveries,
            cumulative_cost: lab.cost,
            test_mrr: mrr,
            ece: None,
            top_ece: None,
            top_predicted: None,
            top_observed: None,
            brier: None,
            generate_s,
            rank_s,
            judge_s,
            train_s: 0.0,
            proposed,
        }
    }

    /// The graph the members read while scoring: what the simulated lab knows now.
    fn context_of(&self, known: &[Triple]) -> Context {
        let (n, r) = (self.universe.entities.len(), self.universe.relations.len());
        if self.spec.config.model.reads_context() {
            Context::new(n, r, known, self.categories.clone())
        } else {
            Context::empty(n, r)
        }
    }

    fn train(
        &self,
        lab: &Lab,
        config: &TrainConfig,
        warm: Vec<Model>,
    ) -> Result<Vec<Model>, ModelError> {
        train(
            self.universe,
            &self.categories,
            &lab.known,
            &lab.refuted,
            config,
            self.spec.ensemble,
            warm,
        )
    }

    /// One round, as the engine runs it: calibrate, propose, rank, ask the oracle, ingest,
    /// retrain warm, evaluate.
    fn round(
        &self,
        lab: &mut Lab,
        name: &str,
        acquisition: &Acquisition,
        config: &TrainConfig,
        seed: u64,
        round: usize,
    ) -> Result<RoundRecord, SimError> {
        let spec = self.spec;
        let graph = Graph::new(
            self.universe.entities.clone(),
            self.universe.relations.clone(),
            lab.known.clone(),
        )?;
        let excluded: HashSet<Triple> = self.evaluation.union(&lab.refuted).copied().collect();
        let negatives = acquire::sample_like_candidates(
            &graph,
            &excluded,
            self.valid,
            crate::training::CALIBRATION_NEGATIVES,
            seed ^ round as u64 ^ 0xca1b,
        );
        let context = self.context_of(&lab.known);
        let (mut ensemble, calibration) = Ensemble::calibrate(
            lab.members.clone(),
            None,
            spec.calibration,
            self.valid,
            &negatives,
            &self.device,
            &context,
        );
        if spec.verdict_calibration {
            ensemble.verdicts = VerdictCalibration::fit(&lab.verdicts);
        }
        let clock = Instant::now();
        let round_seed = seed ^ round as u64;
        let triples = self.propose(
            &graph,
            &excluded,
            &ensemble,
            &context,
            acquisition,
            round_seed,
        );
        let generate_s = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let candidates = Candidate::from_predictions(
            &triples,
            ensemble.predict(&triples, &self.device, &context),
            spec.cost,
        );
        let picks = acquire::select(
            acquisition,
            &candidates,
            spec.batch,
            spec.max_per_entity,
            seed.wrapping_mul(1_000_003) ^ round as u64,
        );
        let rank_s = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let top = self.top_calibration(&candidates);
        let proposed: Vec<Triple> = picks.iter().map(|p| candidates[p.index].triple).collect();
        let confirmed = self.judge(lab, &proposed);
        lab.verdicts.extend(picks.iter().map(|p| {
            let c = &candidates[p.index];
            Verdict {
                relation: c.triple.relation,
                probability: c.base.unwrap_or(c.mean),
                confirmed: self.truth.contains(&c.triple),
            }
        }));
        let judge_s = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        // Each retrain draws its own shuffles and negatives, as the engine's round seed does:
        // replaying the first training's opening epochs every round biased the model.
        let retrain = config
            .clone()
            .with_epochs(spec.retrain_epochs)
            .with_seed(round_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let members = std::mem::take(&mut lab.members);
        lab.members = self.train(lab, &retrain, members)?;
        let train_s = clock.elapsed().as_secs_f64();
        let context = self.context_of(&lab.known);
        let scorers: Vec<_> = lab
            .members
            .iter()
            .map(|m| m.scorer(&self.device, &context))
            .collect();
        let mrr = model::evaluate(scorers.as_slice(), self.test, &self.all_true, 256)
            .both
            .mrr;
        Ok(RoundRecord {
            strategy: name.to_owned(),
            seed,
            round,
            tested: picks.len(),
            confirmed,
            precision: if picks.is_empty() {
                0.0
            } else {
                confirmed as f64 / picks.len() as f64
            },
            cumulative_discoveries: lab.discoveries,
            cumulative_cost: lab.cost,
            test_mrr: mrr,
            ece: calibration.as_ref().map(|c| c.after.ece),
            top_ece: top.map(|t| t.0),
            top_predicted: top.map(|t| t.1),
            top_observed: top.map(|t| t.2),
            brier: calibration.as_ref().map(|c| c.after.brier),
            generate_s,
            rank_s,
            judge_s,
            train_s,
            proposed,
        })
    }

    /// The round's candidates: the ensemble's favourites among every allowed pair, or, for
    /// `random`, what an unguided experimenter would test: a uniform draw over every allowed
    /// pair, not over the model's favourites. `seed` is the round's.
    fn propose(
        &self,
        graph: &Graph,
        excluded: &HashSet<Triple>,
        ensemble: &Ensemble,
        context: &Context,
        acquisition: &Acquisition,
        seed: u64,
    ) -> Vec<Triple> {
        let spec = self.spec;
        let generate_spec = GenerateSpec {
            relations: spec.relations.clone(),
            top_k: spec.top_k,
            max_candidates: None,
            batch: 64,
            seed,
        };
        if *acquisition == Acquisition::Random {
            return acquire::sample_uniform(
                graph,
                excluded,
                &spec.relations,
                spec.batch.saturating_mul(4),
                generate_spec.seed,
            );
        }
        let scorers = ensemble.scorers(&self.device, context);
        acquire::generate(graph, excluded, scorers.as_slice(), &generate_spec)
            .iter()
            .map(|s| s.triple)
            .collect()
    }

    /// The oracle's verdicts on `proposed`, ingested: true ones join the known graph, the
    /// rest are refuted. Returns how many were confirmed.
    fn judge(&self, lab: &mut Lab, proposed: &[Triple]) -> usize {
        let mut confirmed = 0;
        for &t in proposed {
            if self.truth.contains(&t) {
                confirmed += 1;
                lab.known.push(t);
            } else {
                lab.refuted.insert(t);
            }
        }
        lab.discoveries += confirmed;
        lab.cost += self.spec.cost * proposed.len() as f64;
        confirmed
    }
}

/// The `k` allowed pairs of `relation` with the largest product of head and tail counts, by
/// walking the two count-sorted lists from the top (a pair of rank (i, j) is only looked at
/// once every pair that dominates it was).
fn popular_pairs(
    counts: &model::Popularity,
    n: usize,
    relation: u32,
    k: usize,
    allowed: impl Fn(Triple) -> bool,
) -> Vec<(Triple, f64)> {
    let sorted = |tail: bool| {
        let mut v: Vec<(u32, f64)> = (0..n as u32)
            .map(|e| (e, counts.count(relation, e, tail) as f64))
            .filter(|&(_, c)| c > 0.0)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    };
    let (heads, tails) = (sorted(false), sorted(true));
    let mut out = Vec::new();
    if heads.is_empty() || tails.is_empty() || k == 0 {
        return out;
    }
    // Best-first over the (head rank, tail rank) grid.
    let mut frontier = std::collections::BinaryHeap::new();
    let mut seen = HashSet::new();
    // Equal products go nearest the diagonal first, so ties spread over many heads and tails.
    type Frontier = std::collections::BinaryHeap<(u64, usize, usize, usize)>;
    let push = |i: usize, j: usize, f: &mut Frontier| {
        let v = heads[i].1 * tails[j].1;
        f.push((
            v.to_bits(),
            usize::MAX - (i + j),
            usize::MAX - i,
            usize::MAX - j,
        ));
    };
    push(0, 0, &mut frontier);
    seen.insert((0, 0));
    // A budget on pairs looked at, so a relation whose popular pairs are all known ends.
    let mut budget = k.saturating_mul(50).max(10_000);
    while let Some((bits, _, ni, nj)) = frontier.pop() {
        let (i, j) = (usize::MAX - ni, usize::MAX - nj);
        let t = Triple::new(heads[i].0, relation, tails[j].0);
        if t.head != t.tail && allowed(t) {
            out.push((t, f64::from_bits(bits)));
            if out.len() >= k {
                break;
            }
        }
        budget -= 1;
        if budget == 0 {
            break;
        }
        if i + 1 < heads.len() && seen.insert((i + 1, j)) {
            push(i + 1, j, &mut frontier);
        }
        if j + 1 < tails.len() && seen.insert((i, j + 1)) {
            push(i, j + 1, &mut frontier);
        }
    }
    out
}

fn train(
    universe: &Universe,
    categories: &Categories,
    known: &[Triple],
    refuted: &HashSet<Triple>,
    config: &TrainConfig,
    k: usize,
    warm: Vec<Model>,
) -> Result<Vec<Model>, ModelError> {
    let filter = Known::new(&[known]);
    let mut refuted: Vec<Triple> = refuted.iter().copied().collect();
    refuted.sort_unstable();
    let set = TrainSet {
        num_entities: universe.entities.len(),
        num_relations: universe.relations.len(),
        train: known,
        valid: &[],
        known: &filter,
        refuted: &refuted,
    };
    let warm = warm.into_iter().map(Some).collect();
    let outcomes = model::ensemble::train_members(
        config,
        &set,
        categories,
        k.max(1),
        warm,
        &model::default_device(),
        &mut |_, _| {},
    )?;
    Ok(outcomes.into_iter().map(|o| o.model).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_simulation_finds_hidden_edges() {
        // Two relations with a planted successor pattern; half the edges hidden.
        let n = 30u32;
        let mut visible = Vec::new();
        let mut hidden = Vec::new();
        for i in 0..n {
            for (r, step) in [(0, 1), (1, 2)] {
                let t = Triple::new(i, r, (i + step) % n);
                if i % 2 == 0 {
                    visible.push(t)
                } else {
                    hidden.push(t)
                }
            }
        }
        // Every third hidden edge is held out for evaluation, every seventh of the rest
        // for calibration: none of them may be proposed.
        let test: Vec<Triple> = hidden.iter().copied().step_by(3).collect();
        let valid: Vec<Triple> = hidden
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0 && i % 7 == 1)
            .map(|(_, t)| t)
            .collect();
        let hidden: Vec<Triple> = hidden
            .into_iter()
            .filter(|t| !test.contains(t) && !valid.contains(t))
            .collect();
        let universe = Universe {
            entities: (0..n)
                .map(|i| (format!("e{i}").into(), "".into()))
                .collect(),
            relations: vec!["r0".into(), "r1".into()],
        };
        let spec = SimSpec {
            strategies: vec![
                ("greedy".into(), Strategy::Acquire(Acquisition::Greedy)),
                ("random".into(), Strategy::Acquire(Acquisition::Random)),
                ("popularity".into(), Strategy::Popularity),
            ],
            seeds: vec![1],
            rounds: 2,
            batch: 5,
            max_per_entity: Some(2),
            top_k: 20,
            relations: Vec::new(),
            ensemble: 2,
            config: TrainConfig::new()
                .with_dim(16)
                .with_epochs(40)
                .with_batch_size(32),
            retrain_epochs: 5,
            cost: 2.0,
            verdict_calibration: true,
            calibration: Method::Platt,
        };
        let mut seen = 0;
        let mut proposed: Vec<Triple> = Vec::new();
        let records = run(
            &universe,
            &visible,
            &hidden,
            &valid,
            &test,
            &spec,
            &mut |r| {
                seen += 1;
                proposed.extend(r.proposed.iter().copied());
            },
        )
        .expect("simulate");
        assert_eq!(records.len(), 6);
        assert_eq!(seen, 6);
        for r in &records {
            assert_eq!(r.tested, 5);
            assert!(r.confirmed <= r.tested);
            assert!((0.0..=1.0).contains(&r.test_mrr));
            assert_eq!(r.cumulative_cost, 10.0 * r.round as f64);
        }
        let total = |s: &str| {
            records
                .iter()
                .filter(|r| r.strategy == s)
                .map(|r| r.confirmed)
                .sum::<usize>()
        };
        assert!(
            total("greedy") >= total("random"),
            "greedy {} random {}",
            total("greedy"),
            total("random")
        );
        assert!(
            total("greedy") > 0,
            "{:?}",
            records
                .iter()
                .map(|r| (&r.strategy, r.round, r.confirmed, r.test_mrr))
                .collect::<Vec<_>>()
        );
        assert_eq!(proposed.len(), 30);
        // The baseline trains nothing: its MRR is counting's, the same every round here
        // (each node has one edge per relation, so its counts tie until it confirms some).
        assert!(
            records
                .iter()
                .filter(|r| r.strategy == "popularity")
                .all(|r| r.train_s == 0.0 && r.ece.is_none())
        );
        for t in &proposed {
            assert!(
                !test.contains(t) && !valid.contains(t),
                "evaluation triple {t:?} was proposed"
            );
        }
    }
}
