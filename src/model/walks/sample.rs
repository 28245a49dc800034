//! Relation-typed random walks over a [`Context`], drawn one at a time from a seeded rng (no
//! corpus is ever materialised). At each entity the next relation is drawn with probability
//! proportional to (its edges there) x count(r)^-alpha, then a neighbour uniformly among that
//! relation's: alpha = 0 is the plain random walk, alpha = 1 gives each relation present about
//! the same chance however frequent it is graph-wide, so rare relations are not drowned.

use crate::model::context::{Context, Step};
use rand::Rng;

/// One run of an entity's steps sharing a relation (the context sorts steps by relation).
#[derive(Debug, Clone, Copy)]
struct Run {
    relation: u32,
    start: u32,
    end: u32,
}

/// A directed step a walk may not take: `(from, step)`.
pub type Forbidden = (u32, Step);

/// Walks over one context. Built once per context (one pass over its steps).
#[derive(Debug)]
pub struct Sampler<'a> {
    context: &'a Context,
    run_offsets: Vec<usize>,
    runs: Vec<Run>,
    /// count(r)^-alpha by relation id (inverse ids included).
    weight: Vec<f64>,
}

impl<'a> Sampler<'a> {
    pub fn new(context: &'a Context, alpha: f64) -> Self {
        let n = context.num_entities();
        let mut run_offsets = Vec::with_capacity(n + 1);
        let mut runs = Vec::new();
        let mut count = vec![0usize; 2 * context.num_relations()];
        run_offsets.push(0);
        for e in 0..n as u32 {
            for run in runs_of(context.steps(e)) {
                if let Some(c) = count.get_mut(run.relation as usize) {
                    *c += (run.end - run.start) as usize;
                }
                runs.push(run);
            }
            run_offsets.push(runs.len());
        }
        let weight = count
            .iter()
            .map(|&c| if c == 0 { 1.0 } else { (c as f64).powf(-alpha) })
            .collect();
        Self {
            context,
            run_offsets,
            runs,
            weight,
        }
    }

    pub fn context(&self) -> &'a Context {
        self.context
    }

    fn weight(&self, relation: u32) -> f64 {
        self.weight.get(relation as usize).copied().unwrap_or(1.0)
    }

    /// A walk of up to `len` steps from `start` appended to `out` (shorter at a dead end).
    /// `first`: the start entity's steps when it is not in the context (a new entity's
    /// claims, sorted). No step in `forbidden` is taken, and a walk never steps straight
    /// back along the edge it came by.
    pub fn walk(
        &self,
        start: u32,
        first: Option<&[Step]>,
        len: usize,
        forbidden: &[Forbidden],
        rng: &mut impl Rng,
        out: &mut Vec<Step>,
    ) {
        let mut at = start;
        let mut back: Option<Forbidden> = None;
        let mut scratch: Vec<Run>;
        for i in 0..len {
            let (steps, runs): (&[Step], &[Run]) = match (i, first) {
                (0, Some(claims)) => {
                    scratch = runs_of(claims);
                    (claims, &scratch)
                }
                _ => (
                    self.context.steps(at),
                    self.run_offsets
                        .get(at as usize..at as usize + 2)
                        .map_or(&[][..], |o| &self.runs[o[0]..o[1]]),
                ),
            };
            let blocked = |run: &Run| -> Vec<u32> {
                let mut b: Vec<u32> = forbidden
                    .iter()
                    .chain(back.as_ref())
                    .filter(|(from, s)| *from == at && s.relation == run.relation)
                    .filter_map(|(_, s)| {
                        steps[run.start as usize..run.end as usize]
                            .binary_search(s)
                            .ok()
                            .map(|p| p as u32)
                    })
                    .collect();
                b.sort_unstable();
                b.dedup();
                b
            };
            let total: f64 = runs
                .iter()
                .map(|run| {
                    let open = (run.end - run.start) as usize - blocked(run).len();
                    open as f64 * self.weight(run.relation)
                })
                .sum();
            if total <= 0.0 {
                return;
            }
            let mut x = rng.random::<f64>() * total;
            let mut chosen = None;
            for run in runs {
                let b = blocked(run);
                let open = (run.end - run.start) as usize - b.len();
                let w = open as f64 * self.weight(run.relation);
                if w <= 0.0 {
                    continue;
                }
                chosen = Some((run, b, open));
                if x < w {
                    break;
                }
                x -= w;
            }
            let Some((run, blocked, open)) = chosen else {
                return;
            };
            // The k-th open position of the run, skipping the blocked ones.
            let mut k = rng.random_range(0..open) as u32;
            for &p in &blocked {
                if p <= k {
                    k += 1;
                }
            }
            let step = steps[(run.start + k) as usize];
            out.push(step);
            back = Some((
                step.entity,
                Step {
                    relation: self.inverse(step.relation),
                    entity: at,
                },
            ));
            at = step.entity;
        }
    }

    /// The inverse of a relation id (forward `r` <-> `r + R`).
    pub fn inverse(&self, relation: u32) -> u32 {
        let r = self.context.num_relations() as u32;
        if relation >= r {
            relation - r
        } else {
            relation + r
        }
    }

    /// The steps a training sequence for `(head, relation, tail)` may not take: the target
    /// edge read from either end.
    pub fn target_edge(&self, head: u32, relation: u32, tail: u32) -> [Forbidden; 2] {
        [
            (
                head,
                Step {
                    relation,
                    entity: tail,
                },
            ),
            (
                tail,
                Step {
                    relation: self.inverse(relation),
                    entity: head,
                },
            ),
        ]
    }
}

fn runs_of(steps: &[Step]) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < steps.len() {
        let r = steps[i].relation;
        let mut j = i + 1;
        while j < steps.len() && steps[j].relation == r {
            j += 1;
        }
        runs.push(Run {
            relation: r,
            start: i as u32,
            end: j as u32,
        });
        i = j;
    }
    runs
}

/// The seed of a query's context walks: from the model's seed and the query alone, so a query
/// scores the same in any batch, after a restart, and after the model grew more relations
/// (an inverse id `r + num_relations` enters as `r` with a flag bit).
pub fn query_seed(seed: u64, entity: u32, relation: u32, num_relations: u32) -> u64 {
    let key = if relation >= num_relations {
        (relation - num_relations) | 1 << 31
    } else {
        relation
    };
    let mut x = seed ^ (u64::from(entity) << 32 | u64::from(key));
    // splitmix64's finaliser.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Triple;
    use crate::model::context::Categories;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ring(n: u32) -> Context {
        // Relation 0 along a ring, relation 1 from every entity to entity 0, relation 2 once.
        let mut t: Vec<Triple> = (0..n).map(|i| Triple::new(i, 0, (i + 1) % n)).collect();
        t.extend((1..n).map(|i| Triple::new(i, 1, 0)));
        t.push(Triple::new(3, 2, 7));
        Context::new(n as usize, 3, &t, Categories::none(n as usize))
    }

    fn walks(s: &Sampler<'_>, seed: u64, forbidden: &[Forbidden]) -> Vec<Vec<Step>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..200)
            .map(|i| {
                let mut out = Vec::new();
                s.walk(i % 10, None, 4, forbidden, &mut rng, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn walks_are_deterministic_per_seed_and_follow_edges() {
        let c = ring(10);
        let s = Sampler::new(&c, 0.5);
        let a = walks(&s, 1, &[]);
        assert_eq!(a, walks(&s, 1, &[]));
        assert_ne!(a, walks(&s, 2, &[]));
        for (i, w) in a.iter().enumerate() {
            let mut at = (i % 10) as u32;
            assert!(!w.is_empty());
            for st in w {
                assert!(c.has(at, st.relation, st.entity), "{at} {st:?}");
                at = st.entity;
            }
        }
        // Pinned: a query's seed is the same in every run and on every machine (a change
        // here changes every stored walk model's scores).
        assert_eq!(query_seed(42, 3, 1, 5), 0x9194_fbf3_7862_b41e);
        assert_ne!(query_seed(42, 3, 1, 5), query_seed(42, 1, 3, 5));
        // An inverse keeps its seed when relations are added.
        assert_eq!(query_seed(42, 3, 6, 5), query_seed(42, 3, 7, 6));
        assert_ne!(query_seed(42, 3, 6, 5), query_seed(42, 3, 1, 5));
    }

    #[test]
    fn the_target_edge_never_appears_in_its_own_context() {
        let c = ring(10);
        let s = Sampler::new(&c, 0.5);
        // (3, 2, 7) is entity 3's only relation-2 edge; ban it both ways.
        let f = s.target_edge(3, 2, 7);
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..2000 {
            let mut out = Vec::new();
            s.walk(3, None, 4, &f, &mut rng, &mut out);
            let mut at = 3;
            for st in &out {
                assert!(!(at == 3 && st.relation == 2 && st.entity == 7));
                assert!(!(at == 7 && st.relation == 5 && st.entity == 3));
                at = st.entity;
            }
        }
        // Without the ban it is taken.
        let seen = (0..200).any(|_| {
            let mut out = Vec::new();
            s.walk(3, None, 1, &[], &mut rng, &mut out);
            out[0].relation == 2
        });
        assert!(seen);
        // An entity whose only edge is forbidden has no walk.
        let lone = Context::new(2, 1, &[Triple::new(0, 0, 1)], Categories::none(2));
        let s = Sampler::new(&lone, 0.5);
        let mut out = Vec::new();
        s.walk(0, None, 3, &s.target_edge(0, 0, 1), &mut rng, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn rare_relations_are_drawn_more_often_with_alpha() {
        // Entity 0 of a star: 50 edges of relation 0, 1 of relation 1.
        let mut t: Vec<Triple> = (1..=50).map(|i| Triple::new(0, 0, i)).collect();
        t.push(Triple::new(0, 1, 51));
        let c = Context::new(52, 2, &t, Categories::none(52));
        let share = |alpha: f64| {
            let s = Sampler::new(&c, alpha);
            let mut rng = StdRng::seed_from_u64(3);
            let rare = (0..4000)
                .filter(|_| {
                    let mut out = Vec::new();
                    s.walk(0, None, 1, &[], &mut rng, &mut out);
                    out[0].relation == 1
                })
                .count();
            rare as f64 / 4000.0
        };
        let (plain, balanced) = (share(0.0), share(1.0));
        assert!((plain - 1.0 / 51.0).abs() < 0.015, "{plain}");
        assert!((balanced - 0.5).abs() < 0.05, "{balanced}");
    }

    #[test]
    fn a_new_entity_walks_from_its_claims() {
        let c = ring(10);
        let s = Sampler::new(&c, 0.5);
        let claims = [Step {
            relation: 0,
            entity: 4,
        }];
        let mut rng = StdRng::seed_from_u64(9);
        let mut out = Vec::new();
        s.walk(99, Some(&claims), 3, &[], &mut rng, &mut out);
        assert_eq!(out[0], claims[0]);
        assert_eq!(out.len(), 3);
        assert!(c.has(4, out[1].relation, out[1].entity));
    }
}
