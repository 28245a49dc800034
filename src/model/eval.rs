//! Filtered link-prediction evaluation, ranked exactly as PyKEEN's "realistic" rank: the mean
//! of the optimistic and pessimistic ranks of the true entity, after removing every other
//! known true triple from the candidates.

use super::kge::Scorer;
use crate::graph::Triple;
use serde::Serialize;

/// Every known true triple, indexed both ways for the filter.
#[derive(Debug, Clone, Default)]
pub struct Known {
    by_head: Vec<Triple>,
    /// Stored as (tail, relation, head) in the fields (head, relation, tail).
    by_tail: Vec<Triple>,
}

impl Known {
    pub fn new(sets: &[&[Triple]]) -> Self {
        let mut by_head: Vec<Triple> = sets.iter().flat_map(|s| s.iter().copied()).collect();
        by_head.sort_unstable();
        by_head.dedup();
        let mut by_tail: Vec<Triple> = by_head
            .iter()
            .map(|t| Triple::new(t.tail, t.relation, t.head))
            .collect();
        by_tail.sort_unstable();
        Self { by_head, by_tail }
    }

    pub fn contains(&self, t: Triple) -> bool {
        self.by_head.binary_search(&t).is_ok()
    }

    /// Known tails of (h, r).
    pub fn tails(&self, h: u32, r: u32) -> impl Iterator<Item = u32> + '_ {
        range(&self.by_head, h, r).iter().map(|t| t.tail)
    }

    /// Known heads of (r, t).
    pub fn heads(&self, r: u32, t: u32) -> impl Iterator<Item = u32> + '_ {
        range(&self.by_tail, t, r).iter().map(|x| x.tail)
    }

    pub fn len(&self) -> usize {
        self.by_head.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_head.is_empty()
    }
}

fn range(sorted: &[Triple], a: u32, r: u32) -> &[Triple] {
    let lo = sorted.partition_point(|t| (t.head, t.relation) < (a, r));
    let hi = sorted.partition_point(|t| (t.head, t.relation) <= (a, r));
    &sorted[lo..hi]
}

/// MRR and Hits@k over a set of ranks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SideMetrics {
    pub mrr: f64,
    pub hits_at_1: f64,
    pub hits_at_3: f64,
    pub hits_at_10: f64,
    pub mean_rank: f64,
    pub count: usize,
}

impl SideMetrics {
    pub fn from_ranks(ranks: &[f64]) -> Self {
        let n = ranks.len().max(1) as f64;
        let hits = |k: f64| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
        Self {
            mrr: ranks.iter().map(|r| 1.0 / r).sum::<f64>() / n,
            hits_at_1: hits(1.0),
            hits_at_3: hits(3.0),
            hits_at_10: hits(10.0),
            mean_rank: ranks.iter().sum::<f64>() / n,
            count: ranks.len(),
        }
    }
}

/// Head, tail and both-sides metrics of one evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub both: SideMetrics,
    pub head: SideMetrics,
    pub tail: SideMetrics,
}

/// The realistic rank of `scores[truth]` among `scores`, ignoring the `filtered` candidates
/// (other known answers). NaN scores count as worse than everything.
pub fn realistic_rank(scores: &[f32], truth: usize, filtered: impl Iterator<Item = u32>) -> f64 {
    let s = scores[truth];
    if s.is_nan() {
        return scores.len() as f64;
    }
    let (mut greater, mut equal) = (0usize, 0usize);
    for &x in scores {
        if x > s {
            greater += 1;
        } else if x == s {
            equal += 1;
        }
    }
    equal -= 1; // the truth itself
    for f in filtered {
        let f = f as usize;
        if f == truth {
            continue;
        }
        let x = scores[f];
        if x > s {
            greater -= 1;
        } else if x == s {
            equal -= 1;
        }
    }
    let optimistic = 1.0 + greater as f64;
    let pessimistic = 1.0 + (greater + equal) as f64;
    (optimistic + pessimistic) / 2.0
}

/// The one interface every trained model answers to: score triples, and score every entity
/// as the missing tail or head of a batch of queries. Implemented by a single model's
/// [`Scorer`] and by an ensemble's members together.
pub trait LinkPredictor {
    fn num_entities(&self) -> usize;
    /// The score of each triple.
    fn triples(&self, triples: &[Triple]) -> Vec<f32>;
    /// `queries.len() x n` scores of every entity as the tail of `(head, relation)`.
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32>;
    /// `queries.len() x n` scores of every entity as the head of `(relation, tail)`.
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32>;
}

impl LinkPredictor for Scorer<'_> {
    fn num_entities(&self) -> usize {
        Scorer::num_entities(self)
    }
    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        Scorer::triples(self, triples)
    }
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        Scorer::tails(self, queries)
    }
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        Scorer::heads(self, queries)
    }
}

/// An ensemble ranks by the mean of its members' scores.
impl<P: LinkPredictor> LinkPredictor for [P] {
    fn num_entities(&self) -> usize {
        self.first().map_or(0, |s| s.num_entities())
    }
    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        mean_of(self.iter().map(|s| s.triples(triples)))
    }
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        mean_of(self.iter().map(|s| s.tails(queries)))
    }
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        mean_of(self.iter().map(|s| s.heads(queries)))
    }
}

fn mean_of(parts: impl Iterator<Item = Vec<f32>>) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    let mut k = 0.0f32;
    for p in parts {
        if sum.is_empty() {
            sum = p;
        } else {
            sum.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        k += 1.0;
    }
    sum.iter_mut().for_each(|x| *x /= k.max(1.0));
    sum
}

/// Ranks every triple of `test` on both sides against all entities.
pub fn evaluate<S: LinkPredictor + ?Sized>(
    scorer: &S,
    test: &[Triple],
    known: &Known,
    batch: usize,
) -> Metrics {
    rank_all(scorer, test, known, batch).metrics()
}

/// The filtered ranks of each test triple, in the order of the test triples: what overall and
/// per-relation metrics are both made of (one scoring pass for both).
#[derive(Debug, Clone, Default)]
pub struct Ranks {
    /// Rank of the true head of `(?, r, t)`.
    pub head: Vec<f64>,
    /// Rank of the true tail of `(h, r, ?)`.
    pub tail: Vec<f64>,
}

impl Ranks {
    pub fn metrics(&self) -> Metrics {
        metrics_of(&self.head, &self.tail)
    }

    /// Metrics per relation of `test` (the triples these ranks were computed for), by
    /// relation id.
    pub fn by_relation(&self, test: &[Triple]) -> Vec<(u32, Metrics)> {
        let mut groups: std::collections::BTreeMap<u32, (Vec<f64>, Vec<f64>)> =
            std::collections::BTreeMap::new();
        for ((t, &h), &tl) in test.iter().zip(&self.head).zip(&self.tail) {
            let g = groups.entry(t.relation).or_default();
            g.0.push(h);
            g.1.push(tl);
        }
        groups
            .into_iter()
            .map(|(r, (h, t))| (r, metrics_of(&h, &t)))
            .collect()
    }
}

fn metrics_of(head: &[f64], tail: &[f64]) -> Metrics {
    let mut both = head.to_vec();
    both.extend_from_slice(tail);
    Metrics {
        both: SideMetrics::from_ranks(&both),
        head: SideMetrics::from_ranks(head),
        tail: SideMetrics::from_ranks(tail),
    }
}

/// Ranks every triple of `test` on both sides against all entities, `batch` queries a pass.
pub fn rank_all<S: LinkPredictor + ?Sized>(
    scorer: &S,
    test: &[Triple],
    known: &Known,
    batch: usize,
) -> Ranks {
    let n = scorer.num_entities();
    let mut head_ranks = Vec::with_capacity(test.len());
    let mut tail_ranks = Vec::with_capacity(test.len());
    for chunk in test.chunks(batch.max(1)) {
        let q: Vec<(u32, u32)> = chunk.iter().map(|t| (t.head, t.relation)).collect();
        let scores = scorer.tails(&q);
        for (i, t) in chunk.iter().enumerate() {
            let row = &scores[i * n..(i + 1) * n];
            tail_ranks.push(realistic_rank(
                row,
                t.tail as usize,
                known.tails(t.head, t.relation),
            ));
        }
        let q: Vec<(u32, u32)> = chunk.iter().map(|t| (t.relation, t.tail)).collect();
        let scores = scorer.heads(&q);
        for (i, t) in chunk.iter().enumerate() {
            let row = &scores[i * n..(i + 1) * n];
            head_ranks.push(realistic_rank(
                row,
                t.head as usize,
                known.heads(t.relation, t.tail),
            ));
        }
    }
    Ranks {
        head: head_ranks,
        tail: tail_ranks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: sort the unfiltered candidates and average the tie positions.
    fn brute(scores: &[f32], truth: usize, filtered: &[u32]) -> f64 {
        let keep: Vec<f32> = (0..scores.len())
            .filter(|&i| i == truth || !filtered.contains(&(i as u32)))
            .map(|i| scores[i])
            .collect();
        let s = scores[truth];
        let best = keep.iter().filter(|&&x| x > s).count() + 1;
        let worst = keep.iter().filter(|&&x| x >= s).count();
        (best + worst) as f64 / 2.0
    }

    #[test]
    fn realistic_rank_matches_brute_force() {
        let scores = [0.5, 0.9, 0.5, 0.1, 0.7, 0.5, 0.9];
        let cases: [(usize, &[u32]); 5] = [
            (0, &[]),
            (0, &[1, 2]),
            (3, &[0, 6]),
            (1, &[6, 1]),
            (5, &[0, 2, 4]),
        ];
        for (truth, filtered) in cases {
            let got = realistic_rank(&scores, truth, filtered.iter().copied());
            assert_eq!(
                got,
                brute(&scores, truth, filtered),
                "truth {truth} filter {filtered:?}"
            );
        }
    }

    #[test]
    fn known_lookups() {
        let k = Known::new(&[
            &[Triple::new(0, 1, 2), Triple::new(0, 1, 3)],
            &[Triple::new(4, 1, 2)],
        ]);
        assert_eq!(k.tails(0, 1).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(k.heads(1, 2).collect::<Vec<_>>(), vec![0, 4]);
        assert!(k.contains(Triple::new(4, 1, 2)));
        assert!(!k.contains(Triple::new(2, 1, 4)));
    }

    #[test]
    fn metrics_from_ranks() {
        let m = SideMetrics::from_ranks(&[1.0, 2.0, 4.0, 20.0]);
        assert!((m.mrr - (1.0 + 0.5 + 0.25 + 0.05) / 4.0).abs() < 1e-12);
        assert_eq!((m.hits_at_1, m.hits_at_3, m.hits_at_10), (0.25, 0.5, 0.75));
    }
}
