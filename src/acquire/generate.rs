//! Candidate generation: every (head, tail) pair a relation's observed domain and range allow,
//! minus known and refuted triples, scored in batches and kept in a bounded top-k heap per
//! relation, so the full cross product (4.4e8 pairs for Gene-interacts-Gene) never exists.

use crate::graph::{Graph, Triple};
use crate::model::LinkPredictor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashSet};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    /// Relations to propose edges for (all when empty).
    pub relations: Vec<u32>,
    /// Candidates kept per relation, best scores first.
    pub top_k: usize,
    /// When a relation allows more pairs than this, score a uniform random sample of this
    /// many pairs instead of all of them.
    pub max_candidates: Option<usize>,
    /// Queries scored per batch.
    pub batch: usize,
    pub seed: u64,
}

/// A generated candidate and its model score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub triple: Triple,
    pub score: f32,
}

/// Heap entry ordered by score (ties by triple, for determinism).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry(f32, Triple);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

/// Keeps the `k` best entries seen.
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Entry>>,
}

impl TopK {
    /// Room for `k`, but never more than the `pairs` that can come: a huge `k` (a typo, a
    /// config from elsewhere) costs nothing up front instead of aborting the allocation.
    fn new(k: usize, pairs: u64) -> Self {
        let room = usize::try_from(pairs).unwrap_or(usize::MAX).min(k);
        Self {
            k,
            heap: BinaryHeap::with_capacity(room.saturating_add(1)),
        }
    }

    fn push(&mut self, score: f32, t: Triple) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        let e = Entry(score, t);
        if self.heap.len() < self.k {
            self.heap.push(Reverse(e));
        } else if self.heap.peek().is_some_and(|Reverse(min)| e > *min) {
            self.heap.pop();
            self.heap.push(Reverse(e));
        }
    }

    fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Entry> = self.heap.into_iter().map(|Reverse(e)| e).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter()
            .map(|Entry(score, triple)| Scored { triple, score })
            .collect()
    }
}

/// The entities a relation's observed domain and range allow as heads and tails.
fn endpoints(graph: &Graph, relation: u32) -> (Vec<u32>, Vec<u32>) {
    let (domain, range) = graph.domain_range(relation);
    let n = graph.num_entities() as u32;
    let heads = (0..n)
        .filter(|&e| domain.contains(graph.category(e)))
        .collect();
    let tails = (0..n)
        .filter(|&e| range.contains(graph.category(e)))
        .collect();
    (heads, tails)
}

fn all_relations(graph: &Graph, relations: &[u32]) -> Vec<u32> {
    if relations.is_empty() {
        (0..graph.num_relations() as u32).collect()
    } else {
        relations.to_vec()
    }
}

/// Up to `n` distinct triples drawn uniformly from every allowed (unknown, unrefuted,
/// category-matching) triple of `relations` (all when empty): the honest `random` baseline,
/// what an unguided experimenter would test. Relations are weighted by their pair counts.
pub fn sample_uniform(
    graph: &Graph,
    refuted: &HashSet<Triple>,
    relations: &[u32],
    n: usize,
    seed: u64,
) -> Vec<Triple> {
    let per_relation: Vec<(u32, Vec<u32>, Vec<u32>)> = all_relations(graph, relations)
        .into_iter()
        .map(|r| {
            let (h, t) = endpoints(graph, r);
            (r, h, t)
        })
        .filter(|(_, h, t)| !h.is_empty() && !t.is_empty())
        .collect();
    let weights: Vec<f64> = per_relation
        .iter()
        .map(|(_, h, t)| h.len() as f64 * t.len() as f64)
        .collect();
    let total: f64 = weights.iter().sum();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    // Rejection sampling; the attempt cap ends it on graphs with few allowed pairs left.
    let mut attempts = 0usize;
    while out.len() < n && attempts < n.saturating_mul(1000).max(10_000) && total > 0.0 {
        attempts += 1;
        let mut x = rng.random::<f64>() * total;
        let mut pick = per_relation.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                pick = i;
                break;
            }
            x -= w;
        }
        let (r, heads, tails) = &per_relation[pick];
        let h = heads[rng.random_range(0..heads.len())];
        let t = tails[rng.random_range(0..tails.len())];
        let triple = Triple::new(h, *r, t);
        if h != t && !graph.contains(triple) && !refuted.contains(&triple) && seen.insert(triple) {
            out.push(triple);
        }
    }
    out
}

/// For each positive, `per_positive` distinct pairs of the same relation drawn uniformly from
/// its allowed domain x range, never known to `graph`, never in `exclude`, never a self-loop:
/// negatives of the kind candidate generation proposes, so a calibrator fitted on them speaks
/// about the pairs reviewers are shown (a uniform corruption is mostly an absurd pair a
/// model rejects easily, which makes probabilities look better calibrated than they are).
/// Fewer come back for a relation whose allowed pairs run out.
pub fn sample_like_candidates(
    graph: &Graph,
    exclude: &HashSet<Triple>,
    positives: &[Triple],
    per_positive: usize,
    seed: u64,
) -> Vec<Vec<Triple>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cache: std::collections::HashMap<u32, (Vec<u32>, Vec<u32>)> =
        std::collections::HashMap::new();
    positives
        .iter()
        .map(|p| {
            let (heads, tails) = cache
                .entry(p.relation)
                .or_insert_with(|| endpoints(graph, p.relation));
            let mut out: Vec<Triple> = Vec::with_capacity(per_positive);
            if heads.is_empty() || tails.is_empty() {
                return out;
            }
            let mut attempts = 0usize;
            while out.len() < per_positive && attempts < per_positive.saturating_mul(200).max(1000)
            {
                attempts += 1;
                let h = heads[rng.random_range(0..heads.len())];
                let t = tails[rng.random_range(0..tails.len())];
                let c = Triple::new(h, p.relation, t);
                if h != t && !graph.contains(c) && !exclude.contains(&c) && !out.contains(&c) {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

/// Generates the best-scored unknown, unrefuted triples of each relation in `spec`.
pub fn generate<P: LinkPredictor + ?Sized>(
    graph: &Graph,
    refuted: &HashSet<Triple>,
    predictor: &P,
    spec: &GenerateSpec,
) -> Vec<Scored> {
    generate_reporting(graph, refuted, predictor, spec, &mut |_, _| {})
}

/// [`generate`], reporting `(done, total)` pairs scored after each batch of queries (a query
/// of every entity counts the number of entities).
pub fn generate_reporting<P: LinkPredictor + ?Sized>(
    graph: &Graph,
    refuted: &HashSet<Triple>,
    predictor: &P,
    spec: &GenerateSpec,
    progress: &mut dyn FnMut(u64, u64),
) -> Vec<Scored> {
    let n = graph.num_entities() as u32;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let relations = all_relations(graph, &spec.relations);
    // Pairs each relation scores: a sample of at most `max_candidates`, or every head's row.
    // (Endpoints are listed again below rather than kept: one relation's at a time.)
    let work = |r: u32| -> u64 {
        let (heads, tails) = endpoints(graph, r);
        let pairs = (heads.len() as u64).saturating_mul(tails.len() as u64);
        match spec.max_candidates {
            Some(max) if pairs > max as u64 => max as u64,
            _ => (heads.len() as u64).saturating_mul(u64::from(n)),
        }
    };
    let total: u64 = relations.iter().map(|&r| work(r)).sum();
    let mut done = 0u64;
    for r in relations {
        let (heads, tails) = endpoints(graph, r);
        let mut in_range = vec![false; n as usize];
        for &t in &tails {
            in_range[t as usize] = true;
        }
        let allowed = |t: Triple| t.head != t.tail && !graph.contains(t) && !refuted.contains(&t);
        let pairs = (heads.len() as u64).saturating_mul(tails.len() as u64);
        let mut top = TopK::new(spec.top_k, pairs);
        match spec.max_candidates {
            Some(max) if pairs > max as u64 => {
                let sample: Vec<Triple> = (0..max)
                    .map(|_| {
                        let h = heads[rng.random_range(0..heads.len())];
                        let t = tails[rng.random_range(0..tails.len())];
                        Triple::new(h, r, t)
                    })
                    .filter(|&t| allowed(t))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                for chunk in sample.chunks(spec.batch.max(1) * 64) {
                    for (t, s) in chunk.iter().zip(predictor.triples(chunk)) {
                        top.push(s, *t);
                    }
                    done += chunk.len() as u64;
                    progress(done, total);
                }
                // Drawn pairs that were not allowed were never scored: count them done.
                done += (max as u64).saturating_sub(sample.len() as u64);
                progress(done, total);
            }
            _ => {
                for chunk in heads.chunks(spec.batch.max(1)) {
                    let queries: Vec<(u32, u32)> = chunk.iter().map(|&h| (h, r)).collect();
                    let scores = predictor.tails(&queries);
                    for (i, &h) in chunk.iter().enumerate() {
                        let row = &scores[i * n as usize..(i + 1) * n as usize];
                        for (t, &s) in row.iter().enumerate() {
                            let triple = Triple::new(h, r, t as u32);
                            if in_range[t] && allowed(triple) {
                                top.push(s, triple);
                            }
                        }
                    }
                    done += chunk.len() as u64 * u64::from(n);
                    progress(done, total);
                }
            }
        }
        out.extend(top.into_sorted());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores every triple by a fixed formula, so the expected top-k is computable by hand.
    struct Formula(usize);

    impl LinkPredictor for Formula {
        fn num_entities(&self) -> usize {
            self.0
        }
        fn triples(&self, triples: &[Triple]) -> Vec<f32> {
            triples
                .iter()
                .map(|t| (t.head * 7 + t.tail * 3 % 11) as f32)
                .collect()
        }
        fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
            let n = self.0 as u32;
            queries
                .iter()
                .flat_map(|&(h, r)| (0..n).map(move |t| Triple::new(h, r, t)))
                .map(|t| (t.head * 7 + t.tail * 3 % 11) as f32)
                .collect()
        }
        fn heads(&self, _: &[(u32, u32)]) -> Vec<f32> {
            unreachable!("generation scores tails")
        }
    }

    /// Drugs d0..d3 treat diseases x0..x2; genes g0..g1 only interact with genes.
    fn graph() -> Graph {
        let ents: Vec<(Box<str>, Box<str>)> = [
            ("d0", "Drug"),
            ("d1", "Drug"),
            ("d2", "Drug"),
            ("d3", "Drug"),
            ("x0", "Disease"),
            ("x1", "Disease"),
            ("x2", "Disease"),
            ("g0", "Gene"),
            ("g1", "Gene"),
        ]
        .iter()
        .map(|(k, c)| ((*k).into(), (*c).into()))
        .collect();
        let triples = vec![
            Triple::new(0, 0, 4),
            Triple::new(1, 0, 5),
            Triple::new(7, 1, 8),
        ];
        Graph::new(ents, vec!["treats".into(), "interacts".into()], triples).expect("graph")
    }

    #[test]
    fn respects_categories_known_and_refuted() {
        let g = graph();
        let refuted: HashSet<Triple> = [Triple::new(2, 0, 6)].into();
        let spec = GenerateSpec {
            relations: vec![0],
            top_k: 100,
            max_candidates: None,
            batch: 2,
            seed: 1,
        };
        let got = generate(&g, &refuted, &Formula(9), &spec);
        // 4 drugs x 3 diseases = 12 pairs, minus 2 known, minus 1 refuted.
        assert_eq!(got.len(), 9);
        for s in &got {
            assert_eq!(g.category(s.triple.head), "Drug");
            assert_eq!(g.category(s.triple.tail), "Disease");
            assert!(!g.contains(s.triple) && !refuted.contains(&s.triple));
        }
        assert!(
            got.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
    }

    #[test]
    fn top_k_equals_the_brute_force_best() {
        let g = graph();
        let spec = GenerateSpec {
            relations: vec![],
            top_k: 3,
            max_candidates: None,
            batch: 1,
            seed: 1,
        };
        let got = generate(&g, &HashSet::new(), &Formula(9), &spec);
        let mut all: Vec<Triple> = (0..4)
            .flat_map(|h| (4..7).map(move |t| Triple::new(h, 0, t)))
            .filter(|t| !g.contains(*t))
            .collect();
        all.sort_by(|a, b| {
            Formula(9).triples(&[*b])[0]
                .total_cmp(&Formula(9).triples(&[*a])[0])
                .then(a.cmp(b))
        });
        let treats: Vec<Triple> = got
            .iter()
            .filter(|s| s.triple.relation == 0)
            .map(|s| s.triple)
            .collect();
        assert_eq!(treats, all[..3].to_vec());
        // Gene-interacts-Gene: g0->g1 is known and self-loops are never proposed.
        let interacts: Vec<Triple> = got
            .iter()
            .filter(|s| s.triple.relation == 1)
            .map(|s| s.triple)
            .collect();
        assert_eq!(interacts, vec![Triple::new(8, 1, 7)]);
    }

    #[test]
    fn sampling_bounds_the_work() {
        let g = graph();
        let spec = GenerateSpec {
            relations: vec![0],
            top_k: 100,
            max_candidates: Some(5),
            batch: 4,
            seed: 3,
        };
        let got = generate(&g, &HashSet::new(), &Formula(9), &spec);
        assert!(got.len() <= 5 && !got.is_empty());
        assert!(
            got.iter()
                .all(|s| !g.contains(s.triple) && g.category(s.triple.tail) == "Disease")
        );
        let again = generate(&g, &HashSet::new(), &Formula(9), &spec);
        assert_eq!(got, again, "seeded");
    }

    /// Progress climbs to its total, exhaustive and sampled relations alike, and reporting
    /// changes nothing of the result.
    #[test]
    fn progress_reaches_its_total() {
        let g = graph();
        for max_candidates in [None, Some(5)] {
            let spec = GenerateSpec {
                relations: vec![],
                top_k: 3,
                max_candidates,
                batch: 2,
                seed: 1,
            };
            let mut seen: Vec<(u64, u64)> = Vec::new();
            let got = generate_reporting(&g, &HashSet::new(), &Formula(9), &spec, &mut |d, t| {
                seen.push((d, t))
            });
            assert_eq!(got, generate(&g, &HashSet::new(), &Formula(9), &spec));
            let &(done, total) = seen.last().expect("reports");
            assert!(total > 0 && done == total, "{max_candidates:?}: {seen:?}");
            assert!(
                seen.windows(2)
                    .all(|w| w[0].0 <= w[1].0 && w[0].1 == w[1].1)
            );
        }
    }

    #[test]
    fn a_huge_top_k_costs_nothing_up_front() {
        // Room for 2^64 - 1 entries (or a wrap to 0) would abort; only the pairs can come.
        let spec = GenerateSpec {
            relations: vec![0],
            top_k: usize::MAX,
            max_candidates: None,
            batch: 2,
            seed: 1,
        };
        let got = generate(&graph(), &HashSet::new(), &Formula(9), &spec);
        assert_eq!(got.len(), 10, "4 drugs x 3 diseases, minus 2 known");
    }

    #[test]
    fn uniform_samples_cover_every_allowed_pair_and_nothing_else() {
        let g = graph();
        let refuted: HashSet<Triple> = [Triple::new(2, 0, 6)].into();
        // Allowed: 9 treats pairs + 1 interacts pair (g1 -> g0).
        let got = sample_uniform(&g, &refuted, &[], 100, 7);
        assert_eq!(got.len(), 10, "every allowed triple once, then it stops");
        let distinct: HashSet<Triple> = got.iter().copied().collect();
        assert_eq!(distinct.len(), 10);
        for t in &got {
            assert!(!g.contains(*t) && !refuted.contains(t) && t.head != t.tail);
            let (h, tl) = (g.category(t.head), g.category(t.tail));
            assert!(
                (t.relation == 0 && h == "Drug" && tl == "Disease")
                    || (t.relation == 1 && h == "Gene" && tl == "Gene")
            );
        }
        assert_eq!(sample_uniform(&g, &refuted, &[0], 4, 7).len(), 4);
        // The seed decides the draw: one seed always draws the same, and the seeds do not
        // all draw alike (5 of 10 pairs: 252 possible samples).
        let draws: Vec<Vec<Triple>> = (1..=8)
            .map(|seed| sample_uniform(&g, &refuted, &[], 5, seed))
            .collect();
        assert_eq!(sample_uniform(&g, &refuted, &[], 5, 3), draws[2], "seeded");
        assert!(draws.iter().any(|d| *d != draws[0]), "{draws:?}");
    }

    #[test]
    fn negatives_like_candidates_stay_in_domain_and_range() {
        let g = graph();
        let exclude: HashSet<Triple> = g.triples().iter().take(1).copied().collect();
        let positives: Vec<Triple> = g.triples().to_vec();
        let negs = sample_like_candidates(&g, &exclude, &positives, 3, 5);
        assert_eq!(negs.len(), positives.len());
        for (p, ns) in positives.iter().zip(&negs) {
            let (domain, range) = g.domain_range(p.relation);
            assert!(!ns.is_empty());
            for n in ns {
                assert_eq!(n.relation, p.relation);
                assert!(domain.contains(g.category(n.head)), "{n:?}");
                assert!(range.contains(g.category(n.tail)), "{n:?}");
                assert!(!g.contains(*n) && !exclude.contains(n) && n.head != n.tail);
            }
        }
        assert_eq!(negs, sample_like_candidates(&g, &exclude, &positives, 3, 5));
    }
}
