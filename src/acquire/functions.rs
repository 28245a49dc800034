//! Acquisition functions, cost and per-entity diversity.

use crate::graph::Triple;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How a candidate's worth is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Acquisition {
    /// The mean probability: exploit.
    Greedy,
    /// Uniformly random: the baseline.
    Random,
    /// Entropy of the mean probability: most uncertain first.
    Uncertainty,
    /// Standard deviation across members.
    Spread,
    /// Mutual information between the label and the members (BALD).
    Bald,
    /// mean + beta * std.
    Ucb { beta: f64 },
    /// The probability under one member drawn at random per candidate.
    Thompson,
    /// Each slot of the batch is random with probability `epsilon`, else from `inner`.
    Epsilon {
        epsilon: f64,
        inner: Box<Acquisition>,
    },
}

/// A candidate as the acquisition sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub triple: Triple,
    pub mean: f64,
    pub std: f64,
    pub members: Vec<f64>,
    /// Cost of testing it; the value is divided by it when positive.
    pub cost: f64,
    /// `mean` before the verdict recalibration (`Prediction::base`); `None` where it was
    /// not computed by an ensemble (popularity, pinned asks).
    pub base: Option<f64>,
}

impl Candidate {
    /// Candidates from an ensemble's predictions for `triples` (in the same order), each
    /// costing `cost` to test.
    pub fn from_predictions(
        triples: &[Triple],
        predictions: Vec<crate::model::Prediction>,
        cost: f64,
    ) -> Vec<Self> {
        predictions
            .into_iter()
            .zip(triples)
            .map(|(p, &triple)| Self {
                triple,
                mean: p.mean,
                std: p.std,
                members: p.members,
                cost,
                base: Some(p.base),
            })
            .collect()
    }
}

/// A chosen candidate: its index in the input, its acquisition value, its rank (0 = first).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pick {
    pub index: usize,
    pub value: f64,
    pub rank: usize,
}

fn entropy(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    -(p * p.ln() + (1.0 - p) * (1.0 - p).ln())
}

/// BALD: entropy of the mean minus the members' mean entropy.
pub fn mutual_information(members: &[f64]) -> f64 {
    if members.is_empty() {
        return 0.0;
    }
    let k = members.len() as f64;
    let mean = members.iter().sum::<f64>() / k;
    entropy(mean) - members.iter().map(|&p| entropy(p)).sum::<f64>() / k
}

impl Acquisition {
    /// The value of every candidate (higher is better), before cost.
    fn values(&self, candidates: &[Candidate], rng: &mut StdRng) -> Vec<f64> {
        candidates
            .iter()
            .map(|c| match self {
                Self::Greedy => c.mean,
                Self::Random => rng.random::<f64>(),
                Self::Uncertainty => entropy(c.mean),
                Self::Spread => c.std,
                Self::Bald => mutual_information(&c.members),
                Self::Ucb { beta } => c.mean + beta * c.std,
                Self::Thompson => {
                    if c.members.is_empty() {
                        c.mean
                    } else {
                        c.members[rng.random_range(0..c.members.len())]
                    }
                }
                Self::Epsilon { inner, .. } => inner.values(std::slice::from_ref(c), rng)[0],
            })
            .collect()
    }
}

/// Picks up to `batch` candidates, best first. With `max_per_entity`, no entity appears (as
/// head or tail) in more than that many picks. Ties break by a seeded shuffle, so equal
/// inputs and seeds give equal batches.
pub fn select(
    acquisition: &Acquisition,
    candidates: &[Candidate],
    batch: usize,
    max_per_entity: Option<usize>,
    seed: u64,
) -> Vec<Pick> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = acquisition.values(candidates, &mut rng);
    for (v, c) in values.iter_mut().zip(candidates) {
        if c.cost > 0.0 {
            *v /= c.cost;
        }
        if v.is_nan() {
            *v = f64::NEG_INFINITY;
        }
    }
    let tiebreak: Vec<u64> = (0..candidates.len()).map(|_| rng.random()).collect();
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        values[b]
            .total_cmp(&values[a])
            .then(tiebreak[a].cmp(&tiebreak[b]))
    });
    let mut random_order = order.clone();
    rand::seq::SliceRandom::shuffle(random_order.as_mut_slice(), &mut rng);
    let epsilon = match acquisition {
        Acquisition::Epsilon { epsilon, .. } => *epsilon,
        _ => 0.0,
    };

    let mut taken = vec![false; candidates.len()];
    let mut per_entity: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let fits = |i: usize, per_entity: &std::collections::HashMap<u32, usize>| {
        max_per_entity.is_none_or(|cap| {
            let t = candidates[i].triple;
            per_entity.get(&t.head).copied().unwrap_or(0) < cap
                && per_entity.get(&t.tail).copied().unwrap_or(0) < cap
        })
    };
    let mut picks = Vec::with_capacity(batch.min(candidates.len()));
    while picks.len() < batch {
        let coin = epsilon > 0.0 && rng.random::<f64>() < epsilon;
        let (first, second) = if coin {
            (&random_order, &order)
        } else {
            (&order, &random_order)
        };
        let available = |list: &[usize], taken: &[bool], per_entity: &_| {
            list.iter()
                .copied()
                .find(|&i| !taken[i] && fits(i, per_entity))
        };
        let Some(i) = available(first, &taken, &per_entity)
            .or_else(|| available(second, &taken, &per_entity))
        else {
            break;
        };
        take(
            i,
            &mut taken,
            &mut per_entity,
            candidates,
            &mut picks,
            values[i],
        );
    }
    picks
}

fn take(
    i: usize,
    taken: &mut [bool],
    per_entity: &mut std::collections::HashMap<u32, usize>,
    candidates: &[Candidate],
    picks: &mut Vec<Pick>,
    value: f64,
) {
    taken[i] = true;
    let t = candidates[i].triple;
    *per_entity.entry(t.head).or_default() += 1;
    if t.tail != t.head {
        *per_entity.entry(t.tail).or_default() += 1;
    }
    picks.push(Pick {
        index: i,
        value,
        rank: picks.len(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(h: u32, t: u32, members: &[f64]) -> Candidate {
        let k = members.len() as f64;
        let mean = members.iter().sum::<f64>() / k;
        let std = (members.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / k).sqrt();
        Candidate {
            triple: Triple::new(h, 0, t),
            mean,
            std,
            members: members.to_vec(),
            cost: 0.0,
            base: Some(mean),
        }
    }

    /// Candidate 0: members agree it is likely; 1: they disagree sharply; 2: all unsure.
    fn table() -> Vec<Candidate> {
        vec![
            cand(0, 1, &[0.9, 0.92, 0.88]),
            cand(2, 3, &[0.02, 0.98, 0.5]),
            cand(4, 5, &[0.5, 0.5, 0.5]),
            cand(6, 7, &[0.1, 0.1, 0.12]),
        ]
    }

    fn order(a: &Acquisition, c: &[Candidate]) -> Vec<usize> {
        select(a, c, c.len(), None, 7)
            .iter()
            .map(|p| p.index)
            .collect()
    }

    #[test]
    fn each_function_on_a_hand_made_table() {
        let c = table();
        assert_eq!(order(&Acquisition::Greedy, &c)[0], 0);
        assert_eq!(order(&Acquisition::Bald, &c)[0], 1, "disagreement first");
        assert_eq!(order(&Acquisition::Spread, &c)[0], 1);
        assert_eq!(
            order(&Acquisition::Uncertainty, &c)[..2]
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            [1, 2].into()
        );
        assert_eq!(
            *order(&Acquisition::Bald, &c).last().expect("last"),
            2,
            "agreed uncertainty is not informative"
        );
        // UCB with a large beta favours the spread, with beta 0 it is greedy.
        assert_eq!(
            order(&Acquisition::Ucb { beta: 0.0 }, &c),
            order(&Acquisition::Greedy, &c)
        );
        assert_eq!(order(&Acquisition::Ucb { beta: 10.0 }, &c)[0], 1);
        // Thompson draws one member per candidate: its values are member probabilities.
        let picks = select(&Acquisition::Thompson, &c, 4, None, 3);
        for p in &picks {
            assert!(c[p.index].members.contains(&p.value));
        }
    }

    #[test]
    fn cost_divides_the_value() {
        let mut c = table();
        c[0].cost = 100.0;
        assert_ne!(order(&Acquisition::Greedy, &c)[0], 0);
    }

    #[test]
    fn diversity_cap_holds() {
        let c: Vec<Candidate> = (0..20)
            .map(|i| cand(0, i + 1, &[0.9 - i as f64 * 0.01]))
            .chain((0..5).map(|i| cand(50 + i, 60 + i, &[0.1])))
            .collect();
        let picks = select(&Acquisition::Greedy, &c, 10, Some(3), 1);
        let with_zero = picks.iter().filter(|p| c[p.index].triple.head == 0).count();
        assert_eq!(with_zero, 3);
        assert_eq!(picks.len(), 8, "3 through entity 0, then the 5 others");
        assert_eq!(
            picks.iter().map(|p| p.rank).collect::<Vec<_>>(),
            (0..8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn ties_are_deterministic_per_seed() {
        let c: Vec<Candidate> = (0..50).map(|i| cand(i, i + 100, &[0.5])).collect();
        let a = select(&Acquisition::Greedy, &c, 10, None, 11);
        let b = select(&Acquisition::Greedy, &c, 10, None, 11);
        let d = select(&Acquisition::Greedy, &c, 10, None, 12);
        assert_eq!(a, b);
        assert_ne!(a, d);
    }

    #[test]
    fn epsilon_mixes_in_random_picks() {
        let c: Vec<Candidate> = (0..200)
            .map(|i| cand(i, i + 1000, &[i as f64 / 200.0]))
            .collect();
        let greedy: Vec<usize> = select(&Acquisition::Greedy, &c, 20, None, 5)
            .iter()
            .map(|p| p.index)
            .collect();
        let mixed = Acquisition::Epsilon {
            epsilon: 0.5,
            inner: Box::new(Acquisition::Greedy),
        };
        let picks: Vec<usize> = select(&mixed, &c, 20, None, 5)
            .iter()
            .map(|p| p.index)
            .collect();
        let outside = picks.iter().filter(|i| !greedy.contains(i)).count();
        assert!((3..=17).contains(&outside), "about half random: {outside}");
        assert_eq!(picks.len(), 20);
        let all_random = Acquisition::Epsilon {
            epsilon: 0.0,
            inner: Box::new(Acquisition::Greedy),
        };
        assert_eq!(
            select(&all_random, &c, 20, None, 5)
                .iter()
                .map(|p| p.index)
                .collect::<Vec<_>>(),
            greedy
        );
    }

    #[test]
    fn bald_value() {
        assert!(mutual_information(&[0.5, 0.5]).abs() < 1e-12);
        assert!(mutual_information(&[0.01, 0.99]) > 0.6);
    }
}
