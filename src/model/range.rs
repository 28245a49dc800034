//! A relation's range: the entities a query `(h, r, ?)` may be answered with, taken as every
//! entity of the categories its training answers belong to (every Disease for "treats", not
//! only the diseases already treated). A sampled softmax draws its negatives from it, and a
//! model trained that way never saw an entity outside it as a candidate, so its scores there
//! mean nothing: scoring pushes them below every candidate ([`OUTSIDE`]).
//!
//! A relation with an answer of no category ("" on a graph without kinds), or with no answer
//! at all, ranges over every entity.

use super::context::Context;
use rand::Rng;

/// Added to the score of an entity outside a query's range: below any trained score, and
/// finite, so a calibration map of it stays finite.
pub const OUTSIDE: f32 = -1.0e4;

/// One relation id's range.
#[derive(Debug, Clone, Default)]
struct Range {
    /// Its categories, ascending; empty: every entity.
    categories: Vec<u32>,
    /// Members of `categories[..=i]`, for drawing uniformly over the union.
    cumulative: Vec<usize>,
    /// By category id: whether it is in the range.
    allowed: Vec<bool>,
}

/// The ranges of every relation id of a graph (inverses included: `r + num_relations` ranges
/// over `r`'s heads).
#[derive(Debug, Clone)]
pub struct Ranges {
    /// Each entity's category id.
    category: Vec<u32>,
    /// The entities of each category id.
    members: Vec<Vec<u32>>,
    of: Vec<Range>,
}

impl Ranges {
    /// The ranges of `context`'s graph, with its categories (one pass over its steps).
    pub fn new(context: &Context) -> Self {
        let n = context.num_entities();
        let cats = context.categories();
        let category: Vec<u32> = (0..n as u32).map(|e| cats.get(e)).collect();
        let num_cats = category
            .iter()
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(1)
            .max(cats.len());
        let mut members = vec![Vec::new(); num_cats];
        for (e, &c) in category.iter().enumerate() {
            members[c as usize].push(e as u32);
        }
        let ids = 2 * context.num_relations();
        let mut seen = vec![vec![false; num_cats]; ids];
        for e in 0..n as u32 {
            for s in context.steps(e) {
                if let (Some(row), Some(&c)) = (
                    seen.get_mut(s.relation as usize),
                    category.get(s.entity as usize),
                ) {
                    row[c as usize] = true;
                }
            }
        }
        let of = seen
            .into_iter()
            .map(|allowed| {
                if allowed[0] || !allowed.iter().any(|&a| a) {
                    return Range::default();
                }
                let categories: Vec<u32> = (0..num_cats as u32)
                    .filter(|&c| allowed[c as usize])
                    .collect();
                let cumulative = categories
                    .iter()
                    .scan(0, |acc, &c| {
                        *acc += members[c as usize].len();
                        Some(*acc)
                    })
                    .collect();
                Range {
                    categories,
                    cumulative,
                    allowed,
                }
            })
            .collect();
        Self {
            category,
            members,
            of,
        }
    }

    pub fn num_entities(&self) -> usize {
        self.category.len()
    }

    /// The constrained range of a relation id (`None`: every entity).
    fn range(&self, relation: u32) -> Option<&Range> {
        self.of
            .get(relation as usize)
            .filter(|r| !r.categories.is_empty())
    }

    /// Entities in the range of `relation`.
    pub fn size(&self, relation: u32) -> usize {
        self.range(relation)
            .and_then(|r| r.cumulative.last().copied())
            .unwrap_or(self.num_entities())
    }

    /// Whether `entity` is in the range of `relation` (an entity past the graph is not).
    pub fn contains(&self, relation: u32, entity: u32) -> bool {
        let Some(&c) = self.category.get(entity as usize) else {
            return false;
        };
        self.range(relation).is_none_or(|r| r.allowed[c as usize])
    }

    /// An entity drawn uniformly from the range of `relation`.
    pub fn sample(&self, relation: u32, rng: &mut (impl Rng + ?Sized)) -> u32 {
        match self.range(relation) {
            Some(r) => {
                let total = r.cumulative.last().copied().unwrap_or(0);
                let k = rng.random_range(0..total);
                let i = r.cumulative.partition_point(|&c| c <= k);
                let before = if i == 0 { 0 } else { r.cumulative[i - 1] };
                self.members[r.categories[i] as usize][k - before]
            }
            None => rng.random_range(0..self.num_entities() as u32),
        }
    }

    /// An entity drawn uniformly from `entity`'s own category (every entity when it has
    /// none): the negatives of "which entity is this?".
    pub fn sample_like(&self, entity: u32, rng: &mut (impl Rng + ?Sized)) -> u32 {
        match self.category.get(entity as usize) {
            Some(&c) if c != 0 => {
                let m = &self.members[c as usize];
                m[rng.random_range(0..m.len())]
            }
            _ => rng.random_range(0..self.num_entities() as u32),
        }
    }

    /// Adds [`OUTSIDE`] to the scores (one per entity, by id) of the entities outside the
    /// range of `relation`.
    pub fn mask(&self, relation: u32, scores: &mut [f32]) {
        let Some(r) = self.range(relation) else {
            return;
        };
        for (s, &c) in scores.iter_mut().zip(&self.category) {
            if !r.allowed[c as usize] {
                *s += OUTSIDE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Triple;
    use crate::model::context::Categories;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// Compounds 0-2, diseases 3-5, genes 6-9, and 10 of no category; relation 0 treats
    /// (compound -> disease), relation 1 binds (compound -> gene), relation 2 links 10.
    fn context() -> Context {
        let mut names = vec!["Compound"; 3];
        names.extend(["Disease"; 3]);
        names.extend(["Gene"; 4]);
        names.push("");
        let t = |head, relation, tail| Triple {
            head,
            relation,
            tail,
        };
        let triples = [t(0, 0, 3), t(1, 0, 3), t(0, 1, 6), t(2, 1, 7), t(10, 2, 0)];
        Context::new(11, 4, &triples, Categories::from_names(names))
    }

    #[test]
    fn a_range_is_every_entity_of_its_answers_categories() {
        let ranges = Ranges::new(&context());
        // treats: every disease, though only disease 3 is treated; its inverse: compounds.
        assert_eq!(ranges.size(0), 3);
        assert!((3..6).all(|e| ranges.contains(0, e)));
        assert!(!ranges.contains(0, 0) && !ranges.contains(0, 6) && !ranges.contains(0, 10));
        assert_eq!(ranges.size(4), 3);
        assert!((0..3).all(|e| ranges.contains(4, e)));
        assert_eq!(ranges.size(1), 4);
        // An answer of no category (10, the head of relation 2) opens the range to all.
        assert_eq!(ranges.size(6), 11);
        assert!(ranges.contains(6, 5));
        // A relation without answers ranges over every entity.
        assert_eq!(ranges.size(3), 11);
        assert!(!ranges.contains(0, 11), "past the graph");
    }

    #[test]
    fn draws_stay_in_range_and_cover_it() {
        let ranges = Ranges::new(&context());
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = [0usize; 11];
        for _ in 0..3_000 {
            let e = ranges.sample(1, &mut rng);
            assert!(ranges.contains(1, e), "{e} outside binds' range");
            seen[e as usize] += 1;
        }
        // Uniform over the four genes.
        assert!(
            seen[6..10].iter().all(|&c| (600..900).contains(&c)),
            "{seen:?}"
        );
        for _ in 0..200 {
            let e = ranges.sample_like(4, &mut rng);
            assert!((3..6).contains(&e), "{e} is not a disease");
        }
        let all: std::collections::BTreeSet<u32> =
            (0..500).map(|_| ranges.sample(3, &mut rng)).collect();
        assert_eq!(all.len(), 11, "an open range draws from every entity");
    }

    #[test]
    fn masking_sinks_only_the_entities_outside() {
        let ranges = Ranges::new(&context());
        let mut scores = vec![1.0f32; 11];
        ranges.mask(0, &mut scores);
        for (e, s) in scores.iter().enumerate() {
            if (3..6).contains(&e) {
                assert_eq!(*s, 1.0, "disease {e}");
            } else {
                assert!(*s < -1_000.0, "entity {e} scored {s}");
            }
        }
        let mut open = vec![1.0f32; 11];
        ranges.mask(6, &mut open);
        assert!(open.iter().all(|&s| s == 1.0));
    }
}
