//! The in-memory graph the models read: dense ids, a compact triple array, and two sorted
//! copies of it (by head and by tail) with offset tables, so lookups are binary searches
//! inside one entity's slice.

use std::collections::HashMap;

/// A triple of dense ids. Ordered by (head, relation, tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Triple {
    pub head: u32,
    pub relation: u32,
    pub tail: u32,
}

impl Triple {
    pub const fn new(head: u32, relation: u32, tail: u32) -> Self {
        Self {
            head,
            relation,
            tail,
        }
    }
}

/// A graph version loaded for computation.
///
/// Invariants: `by_head` is sorted by (head, relation, tail) without duplicates; `by_tail`
/// holds the same triples sorted by (tail, relation, head); `head_offsets[e]..head_offsets[e+1]`
/// is entity `e`'s slice of `by_head` (likewise for tails).
#[derive(Debug, Clone)]
pub struct Graph {
    entity_keys: Vec<Box<str>>,
    entity_category: Vec<u32>,
    categories: Vec<Box<str>>,
    relation_keys: Vec<Box<str>>,
    entity_ids: HashMap<Box<str>, u32>,
    relation_ids: HashMap<Box<str>, u32>,
    by_head: Vec<Triple>,
    head_offsets: Vec<u32>,
    by_tail: Vec<Triple>,
    tail_offsets: Vec<u32>,
}

/// Why a graph could not be assembled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GraphError {
    #[error("triple {0:?} names an id outside the entity or relation tables")]
    IdOutOfRange(Triple),
    #[error("entity key `{0}` appears twice")]
    DuplicateEntity(String),
    #[error("relation key `{0}` appears twice")]
    DuplicateRelation(String),
}

impl Graph {
    /// Builds the view. `entities` are `(key, category)` indexed by dense id; duplicate triples
    /// are dropped.
    pub fn new(
        entities: Vec<(Box<str>, Box<str>)>,
        relations: Vec<Box<str>>,
        mut triples: Vec<Triple>,
    ) -> Result<Self, GraphError> {
        let n = entities.len();
        let mut categories: Vec<Box<str>> = Vec::new();
        let mut category_ids: HashMap<Box<str>, u32> = HashMap::new();
        let mut entity_keys = Vec::with_capacity(n);
        let mut entity_category = Vec::with_capacity(n);
        let mut entity_ids = HashMap::with_capacity(n);
        for (i, (key, category)) in entities.into_iter().enumerate() {
            let c = *category_ids.entry(category.clone()).or_insert_with(|| {
                categories.push(category);
                (categories.len() - 1) as u32
            });
            if entity_ids.insert(key.clone(), i as u32).is_some() {
                return Err(GraphError::DuplicateEntity(key.into()));
            }
            entity_keys.push(key);
            entity_category.push(c);
        }
        let mut relation_ids = HashMap::with_capacity(relations.len());
        for (i, key) in relations.iter().enumerate() {
            if relation_ids.insert(key.clone(), i as u32).is_some() {
                return Err(GraphError::DuplicateRelation(key.to_string()));
            }
        }
        if let Some(bad) = triples.iter().find(|t| {
            t.head as usize >= n || t.tail as usize >= n || t.relation as usize >= relations.len()
        }) {
            return Err(GraphError::IdOutOfRange(*bad));
        }
        triples.sort_unstable();
        triples.dedup();
        triples.shrink_to_fit();
        let head_offsets = offsets(&triples, n, |t| t.head);
        let mut by_tail = triples.clone();
        by_tail.sort_unstable_by_key(|t| (t.tail, t.relation, t.head));
        let tail_offsets = offsets(&by_tail, n, |t| t.tail);
        Ok(Self {
            entity_keys,
            entity_category,
            categories,
            relation_keys: relations,
            entity_ids,
            relation_ids,
            by_head: triples,
            head_offsets,
            by_tail,
            tail_offsets,
        })
    }

    pub fn num_entities(&self) -> usize {
        self.entity_keys.len()
    }

    pub fn num_relations(&self) -> usize {
        self.relation_keys.len()
    }

    pub fn num_triples(&self) -> usize {
        self.by_head.len()
    }

    /// All triples, sorted by (head, relation, tail).
    pub fn triples(&self) -> &[Triple] {
        &self.by_head
    }

    pub fn entity_id(&self, key: &str) -> Option<u32> {
        self.entity_ids.get(key).copied()
    }

    pub fn relation_id(&self, key: &str) -> Option<u32> {
        self.relation_ids.get(key).copied()
    }

    pub fn entity_key(&self, id: u32) -> &str {
        &self.entity_keys[id as usize]
    }

    pub fn relation_key(&self, id: u32) -> &str {
        &self.relation_keys[id as usize]
    }

    /// The category of an entity (`""` when the source had none).
    pub fn category(&self, id: u32) -> &str {
        &self.categories[self.entity_category[id as usize] as usize]
    }

    pub fn contains(&self, t: Triple) -> bool {
        self.head_slice(t.head, t.relation)
            .binary_search_by_key(&t.tail, |x| x.tail)
            .is_ok()
    }

    /// Known tails of `(head, relation)`, ascending.
    pub fn tails(&self, head: u32, relation: u32) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.head_slice(head, relation).iter().map(|t| t.tail)
    }

    /// Known heads of `(relation, tail)`, ascending.
    pub fn heads(&self, relation: u32, tail: u32) -> impl ExactSizeIterator<Item = u32> + '_ {
        let all = slice(&self.by_tail, &self.tail_offsets, tail);
        let lo = all.partition_point(|t| t.relation < relation);
        let hi = all.partition_point(|t| t.relation <= relation);
        all[lo..hi].iter().map(|t| t.head)
    }

    /// The categories `relation`'s heads (its domain) and tails (its range) have: what
    /// candidate generation, calibration negatives and `ask` keep predictions inside.
    pub fn domain_range(
        &self,
        relation: u32,
    ) -> (
        std::collections::BTreeSet<&str>,
        std::collections::BTreeSet<&str>,
    ) {
        let mut domain = std::collections::BTreeSet::new();
        let mut range = std::collections::BTreeSet::new();
        for t in self.by_head.iter().filter(|t| t.relation == relation) {
            domain.insert(self.category(t.head));
            range.insert(self.category(t.tail));
        }
        (domain, range)
    }

    /// Every edge with `entity` as head, by relation then tail.
    pub fn out_edges(&self, entity: u32) -> &[Triple] {
        if entity as usize >= self.entity_keys.len() {
            return &[];
        }
        slice(&self.by_head, &self.head_offsets, entity)
    }

    /// Every edge with `entity` as tail, by relation then head.
    pub fn in_edges(&self, entity: u32) -> &[Triple] {
        if entity as usize >= self.entity_keys.len() {
            return &[];
        }
        slice(&self.by_tail, &self.tail_offsets, entity)
    }

    /// Out-degree plus in-degree.
    pub fn degree(&self, entity: u32) -> usize {
        let e = entity as usize;
        (self.head_offsets[e + 1] - self.head_offsets[e]) as usize
            + (self.tail_offsets[e + 1] - self.tail_offsets[e]) as usize
    }

    fn head_slice(&self, head: u32, relation: u32) -> &[Triple] {
        if head as usize >= self.entity_keys.len() {
            return &[];
        }
        let all = slice(&self.by_head, &self.head_offsets, head);
        let lo = all.partition_point(|t| t.relation < relation);
        let hi = all.partition_point(|t| t.relation <= relation);
        &all[lo..hi]
    }

    /// Heap bytes held, for the memory-per-triple budget.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let keys = |v: &[Box<str>]| {
            v.iter()
                .map(|k| k.len() + size_of::<Box<str>>())
                .sum::<usize>()
        };
        let map = |m: &HashMap<Box<str>, u32>| {
            m.capacity() * (size_of::<(Box<str>, u32)>() + 1)
                + m.keys().map(|k| k.len()).sum::<usize>()
        };
        (self.by_head.capacity() + self.by_tail.capacity()) * size_of::<Triple>()
            + (self.head_offsets.capacity() + self.tail_offsets.capacity()) * 4
            + self.entity_category.capacity() * 4
            + keys(&self.entity_keys)
            + keys(&self.relation_keys)
            + keys(&self.categories)
            + map(&self.entity_ids)
            + map(&self.relation_ids)
    }
}

fn slice<'a>(sorted: &'a [Triple], offsets: &[u32], entity: u32) -> &'a [Triple] {
    let e = entity as usize;
    if e + 1 >= offsets.len() {
        return &[];
    }
    &sorted[offsets[e] as usize..offsets[e + 1] as usize]
}

/// CSR offsets: `out[e]..out[e+1]` is the run of `sorted` whose `key` is `e`.
fn offsets(sorted: &[Triple], n: usize, key: impl Fn(&Triple) -> u32) -> Vec<u32> {
    let mut out = vec![0u32; n + 1];
    for t in sorted {
        out[key(t) as usize + 1] += 1;
    }
    for i in 0..n {
        out[i + 1] += out[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(triples: &[(u32, u32, u32)]) -> Graph {
        let entities = (0..5)
            .map(|i| (format!("e{i}").into(), "C".into()))
            .collect();
        let relations = vec!["r0".into(), "r1".into()];
        let triples = triples
            .iter()
            .map(|&(h, r, t)| Triple::new(h, r, t))
            .collect();
        Graph::new(entities, relations, triples).expect("valid graph")
    }

    #[test]
    fn lookups_match_brute_force() {
        let list = [
            (0, 0, 1),
            (0, 0, 2),
            (0, 1, 2),
            (3, 0, 2),
            (2, 1, 0),
            (0, 0, 1),
        ];
        let g = graph(&list);
        assert_eq!(g.num_triples(), 5);
        for h in 0..5 {
            for r in 0..2 {
                for t in 0..5 {
                    let want = list.contains(&(h, r, t));
                    assert_eq!(g.contains(Triple::new(h, r, t)), want, "{h} {r} {t}");
                }
                let tails: Vec<u32> = g.tails(h, r).collect();
                let mut want: Vec<u32> = list
                    .iter()
                    .filter(|x| x.0 == h && x.1 == r)
                    .map(|x| x.2)
                    .collect();
                want.sort();
                want.dedup();
                assert_eq!(tails, want);
                let heads: Vec<u32> = g.heads(r, h).collect();
                let mut want: Vec<u32> = list
                    .iter()
                    .filter(|x| x.2 == h && x.1 == r)
                    .map(|x| x.0)
                    .collect();
                want.sort();
                want.dedup();
                assert_eq!(heads, want);
            }
        }
        assert_eq!(g.degree(2), 4);
        assert_eq!(g.entity_id("e3"), Some(3));
        assert_eq!(g.category(3), "C");
    }

    #[test]
    fn rejects_out_of_range_ids() {
        let entities = vec![("a".into(), "".into())];
        let err = Graph::new(entities, vec!["r".into()], vec![Triple::new(0, 0, 1)]);
        assert_eq!(
            err.err(),
            Some(GraphError::IdOutOfRange(Triple::new(0, 0, 1)))
        );
    }
}
