//! The popularity baseline: rank a relation's candidates by how often each is that relation's
//! answer in the training graph (as the tail of `(h, r, ?)`, or as the head of `(?, r, t)`).
//! It knows nothing of the query's own entity, so it is what a model must beat to show that it
//! learned anything beyond "hub genes are everybody's answer": every model figure stands beside
//! it on the same filtered protocol.

use super::eval::LinkPredictor;
use crate::graph::Triple;

/// Per relation, how often each entity answers it on each side (sparse: a relation's answers
/// are a sliver of all entities).
#[derive(Debug, Clone, Default)]
pub struct Popularity {
    num_entities: usize,
    /// `as_tail[r]`: (entity, count as a tail of r), sorted by entity.
    as_tail: Vec<Vec<(u32, f32)>>,
    /// `as_head[r]`: (entity, count as a head of r), sorted by entity.
    as_head: Vec<Vec<(u32, f32)>>,
}

impl Popularity {
    /// Counts over `triples` (the training graph: never valid, test or held-out truth).
    pub fn new(num_entities: usize, num_relations: usize, triples: &[Triple]) -> Self {
        let mut tails: Vec<Vec<u32>> = vec![Vec::new(); num_relations];
        let mut heads: Vec<Vec<u32>> = vec![Vec::new(); num_relations];
        for t in triples {
            if let (Some(ts), Some(hs)) = (
                tails.get_mut(t.relation as usize),
                heads.get_mut(t.relation as usize),
            ) {
                ts.push(t.tail);
                hs.push(t.head);
            }
        }
        Self {
            num_entities,
            as_tail: tails.into_iter().map(count).collect(),
            as_head: heads.into_iter().map(count).collect(),
        }
    }

    /// How often `entity` answers `relation` as its tail (`tail = true`) or its head.
    pub fn count(&self, relation: u32, entity: u32, tail: bool) -> f32 {
        let side = if tail { &self.as_tail } else { &self.as_head };
        side.get(relation as usize)
            .and_then(|row| {
                row.binary_search_by_key(&entity, |&(e, _)| e)
                    .ok()
                    .map(|i| row[i].1)
            })
            .unwrap_or(0.0)
    }

    fn side(&self, tail: bool) -> &[Vec<(u32, f32)>] {
        if tail { &self.as_tail } else { &self.as_head }
    }

    /// `ln(1 + count)` of every entity for one relation and side.
    pub fn log_row(&self, relation: u32, tail: bool, n: usize) -> Vec<f32> {
        let mut row = vec![0.0f32; n];
        for &(e, c) in self
            .side(tail)
            .get(relation as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(x) = row.get_mut(e as usize) {
                *x = c.ln_1p();
            }
        }
        row
    }

    fn rows(&self, relations: impl Iterator<Item = u32>, tail: bool) -> Vec<f32> {
        let n = self.num_entities;
        let side = if tail { &self.as_tail } else { &self.as_head };
        let mut out = Vec::new();
        for r in relations {
            let start = out.len();
            out.resize(start + n, 0.0);
            for &(e, c) in side.get(r as usize).map(Vec::as_slice).unwrap_or(&[]) {
                if let Some(x) = out.get_mut(start + e as usize) {
                    *x = c;
                }
            }
        }
        out
    }
}

fn count(mut entities: Vec<u32>) -> Vec<(u32, f32)> {
    entities.sort_unstable();
    let mut out: Vec<(u32, f32)> = Vec::new();
    for e in entities {
        match out.last_mut() {
            Some((last, c)) if *last == e => *c += 1.0,
            _ => out.push((e, 1.0)),
        }
    }
    out
}

impl LinkPredictor for Popularity {
    fn num_entities(&self) -> usize {
        self.num_entities
    }
    /// A triple's score is its tail's popularity for the relation (what ranks tails).
    fn triples(&self, triples: &[Triple]) -> Vec<f32> {
        triples
            .iter()
            .map(|t| self.count(t.relation, t.tail, true))
            .collect()
    }
    fn tails(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        self.rows(queries.iter().map(|&(_, r)| r), true)
    }
    fn heads(&self, queries: &[(u32, u32)]) -> Vec<f32> {
        self.rows(queries.iter().map(|&(r, _)| r), false)
    }
}

/// How much of the popularity baseline a model's scores carry, per relation and side: the
/// score of `e` as the tail of `(h, r, ?)` becomes `s + tail[r] * ln(1 + count of e as r's
/// tail)`, and likewise for heads. Chosen on validation triples, so a model starts from what
/// counting knows and is judged on what it adds; a relation where counting does not help gets
/// weight 0 (the model alone).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PopularityWeights {
    pub tail: Vec<f32>,
    pub head: Vec<f32>,
}

/// The weights tried for each relation and side.
pub const BLEND_GRID: [f32; 9] = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0];

/// Fewest validation queries of a relation's side to choose its own weight; fewer take the
/// weight that is best over all relations.
pub const BLEND_MIN_QUERIES: usize = 20;

/// What fitting the weights found on validation: MRR (both sides) of the model alone and with
/// the chosen weights.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BlendReport {
    pub valid_mrr_model: f64,
    pub valid_mrr_blended: f64,
    pub valid_queries: usize,
}

impl PopularityWeights {
    /// The weights that maximise each relation's validation MRR per side, over [`BLEND_GRID`].
    /// `scorer` is the model alone; `known` every true triple to filter (train and valid).
    pub fn fit<S: LinkPredictor + ?Sized>(
        scorer: &S,
        counts: &Popularity,
        num_relations: usize,
        valid: &[Triple],
        known: &super::eval::Known,
    ) -> (Self, BlendReport) {
        let g = BLEND_GRID.len();
        // Sum of reciprocal ranks per (relation, side, weight) and query counts per (relation, side).
        let mut rr = vec![0.0f64; num_relations * 2 * g];
        let mut queries = vec![0usize; num_relations * 2];
        let n = scorer.num_entities();
        for chunk in valid.chunks(256) {
            for tail in [true, false] {
                let q: Vec<(u32, u32)> = chunk
                    .iter()
                    .map(|t| {
                        if tail {
                            (t.head, t.relation)
                        } else {
                            (t.relation, t.tail)
                        }
                    })
                    .collect();
                let scores = if tail {
                    scorer.tails(&q)
                } else {
                    scorer.heads(&q)
                };
                let per_query: Vec<Vec<f64>> = {
                    use rayon::prelude::*;
                    chunk
                        .par_iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let row = &scores[i * n..(i + 1) * n];
                            let (truth, filtered): (u32, Vec<u32>) = if tail {
                                (t.tail, known.tails(t.head, t.relation).collect())
                            } else {
                                (t.head, known.heads(t.relation, t.tail).collect())
                            };
                            let logc = counts.log_row(t.relation, tail, n);
                            BLEND_GRID
                                .iter()
                                .map(|&w| {
                                    1.0 / blended_rank(row, &logc, w, truth as usize, &filtered)
                                })
                                .collect()
                        })
                        .collect()
                };
                for (t, rrs) in chunk.iter().zip(per_query) {
                    let rs = t.relation as usize * 2 + usize::from(!tail);
                    if rs / 2 >= num_relations {
                        continue;
                    }
                    queries[rs] += 1;
                    for (k, x) in rrs.into_iter().enumerate() {
                        rr[rs * g + k] += x;
                    }
                }
            }
        }
        let total: usize = queries.iter().sum();
        let global: Vec<f64> = (0..g)
            .map(|k| (0..num_relations * 2).map(|rs| rr[rs * g + k]).sum())
            .collect();
        let global_best = argmax(&global);
        let mut weights = Self {
            tail: vec![BLEND_GRID[global_best]; num_relations],
            head: vec![BLEND_GRID[global_best]; num_relations],
        };
        let mut blended = 0.0;
        for rs in 0..num_relations * 2 {
            let k = if queries[rs] >= BLEND_MIN_QUERIES {
                argmax(&rr[rs * g..(rs + 1) * g])
            } else {
                global_best
            };
            blended += rr[rs * g + k];
            let side = if rs % 2 == 0 {
                &mut weights.tail
            } else {
                &mut weights.head
            };
            side[rs / 2] = BLEND_GRID[k];
        }
        let denom = total.max(1) as f64;
        let report = BlendReport {
            valid_mrr_model: global[0] / denom,
            valid_mrr_blended: blended / denom,
            valid_queries: total,
        };
        (weights, report)
    }

    /// The weight of `relation`'s counts on one side (0 for a relation it does not know).
    fn weight(&self, relation: u32, tail: bool) -> f32 {
        let side = if tail { &self.tail } else { &self.head };
        side.get(relation as usize).copied().unwrap_or(0.0)
    }

    /// Adds the weighted log counts to rows of scores of every entity, one row per relation in
    /// `relations`, on one side.
    pub fn add_to_rows(
        &self,
        counts: &Popularity,
        rows: &mut [f32],
        relations: impl Iterator<Item = u32>,
        tail: bool,
    ) {
        let n = counts.num_entities;
        for (i, r) in relations.enumerate() {
            let w = self.weight(r, tail);
            if w == 0.0 {
                continue;
            }
            let Some(row) = rows.get_mut(i * n..(i + 1) * n) else {
                break;
            };
            for &(e, c) in counts
                .side(tail)
                .get(r as usize)
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if let Some(x) = row.get_mut(e as usize) {
                    *x += w * c.ln_1p();
                }
            }
        }
    }

    /// The prior's part of a triple's score: both of its ends' terms.
    pub fn triple_term(&self, counts: &Popularity, t: Triple) -> f32 {
        self.end_term(counts, t.relation, t.tail, true)
            + self.end_term(counts, t.relation, t.head, false)
    }

    /// One end's term: what `entity` gains as `relation`'s tail (or head) for how often it is.
    pub fn end_term(&self, counts: &Popularity, relation: u32, entity: u32, tail: bool) -> f32 {
        self.weight(relation, tail) * counts.count(relation, entity, tail).ln_1p()
    }
}

fn argmax(v: &[f64]) -> usize {
    // Ties go to the smaller weight (the earlier entry): the model alone unless counting helps.
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] + 1e-12 {
            best = i;
        }
    }
    best
}

/// The realistic rank of `truth` under `row + w * logc`, ignoring `filtered`.
fn blended_rank(row: &[f32], logc: &[f32], w: f32, truth: usize, filtered: &[u32]) -> f64 {
    let s = row[truth] + w * logc[truth];
    if s.is_nan() {
        return row.len() as f64;
    }
    let (mut greater, mut equal) = (0usize, 0usize);
    for (x, l) in row.iter().zip(logc) {
        let x = x + w * l;
        if x > s {
            greater += 1;
        } else if x == s {
            equal += 1;
        }
    }
    equal = equal.saturating_sub(1);
    for &f in filtered {
        let f = f as usize;
        if f == truth || f >= row.len() {
            continue;
        }
        let x = row[f] + w * logc[f];
        if x > s {
            greater -= 1;
        } else if x == s {
            equal = equal.saturating_sub(1);
        }
    }
    1.0 + greater as f64 + equal as f64 / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::eval::{Known, evaluate};

    fn t(h: u32, r: u32, tail: u32) -> Triple {
        Triple::new(h, r, tail)
    }

    #[test]
    fn counts_each_side_per_relation() {
        let train = [t(0, 0, 3), t(1, 0, 3), t(2, 0, 4), t(0, 1, 4)];
        let p = Popularity::new(5, 2, &train);
        assert_eq!(p.count(0, 3, true), 2.0);
        assert_eq!(p.count(0, 4, true), 1.0);
        assert_eq!(p.count(1, 3, true), 0.0, "relations are counted apart");
        assert_eq!(p.count(0, 0, false), 1.0);
        assert_eq!(p.count(1, 0, false), 1.0);
        assert_eq!(p.tails(&[(2, 0)]), vec![0.0, 0.0, 0.0, 2.0, 1.0]);
        assert_eq!(p.heads(&[(1, 4)]), vec![1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(
            p.count(7, 3, true),
            0.0,
            "an unseen relation answers nothing"
        );
    }

    #[test]
    fn ranks_the_popular_answer_first_and_ties_the_rest() {
        // Entity 3 is r0's usual tail; the test asks (4, r0, ?) with truth 3, then with truth 2
        // (never a tail: tied with the other four unseen entities).
        let train = [t(0, 0, 3), t(1, 0, 3), t(2, 0, 1)];
        let p = Popularity::new(6, 1, &train);
        let known = Known::new(&[&train]);
        let m = evaluate(&p, &[t(4, 0, 3)], &known, 8);
        assert_eq!(m.tail.mrr, 1.0);
        let m = evaluate(&p, &[t(4, 0, 2)], &known, 8);
        // 3 and 1 score above; 0, 2, 4, 5 tie at zero: realistic rank (3 + 6) / 2.
        assert_eq!(m.tail.mean_rank, 4.5);
    }

    /// A model that knows nothing (all scores equal) gains counting's ranking from the blend;
    /// a model that is already right keeps weight 0 where counting would only hurt.
    #[test]
    fn blend_weights_follow_validation() {
        struct Flat(usize);
        impl LinkPredictor for Flat {
            fn num_entities(&self) -> usize {
                self.0
            }
            fn triples(&self, t: &[Triple]) -> Vec<f32> {
                vec![0.0; t.len()]
            }
            fn tails(&self, q: &[(u32, u32)]) -> Vec<f32> {
                vec![0.0; q.len() * self.0]
            }
            fn heads(&self, q: &[(u32, u32)]) -> Vec<f32> {
                vec![0.0; q.len() * self.0]
            }
        }
        // Relation 0: everybody's tail is 9 (popular); relation 1: tail = head + 1.
        let n = 40u32;
        let mut train = Vec::new();
        for h in 0..30 {
            train.push(t(h, 0, 39));
            train.push(t(h, 1, h + 1));
        }
        let valid: Vec<Triple> = (30..38).map(|h| t(h, 0, 39)).collect();
        let counts = Popularity::new(n as usize, 2, &train);
        let known = Known::new(&[&train, &valid]);
        let (w, report) = PopularityWeights::fit(&Flat(n as usize), &counts, 2, &valid, &known);
        assert!(w.tail[0] > 0.0, "{w:?}");
        assert!(
            report.valid_mrr_blended > report.valid_mrr_model,
            "{report:?}"
        );
        let mut rows = vec![0.0f32; n as usize];
        w.add_to_rows(&counts, &mut rows, [0u32].into_iter(), true);
        assert_eq!(
            rows.iter().cloned().fold(f32::MIN, f32::max),
            rows[39],
            "the popular tail leads after the blend"
        );
        assert!(w.triple_term(&counts, t(0, 0, 39)) > w.triple_term(&counts, t(0, 0, 5)));
    }
}
