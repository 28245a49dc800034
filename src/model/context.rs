//! The graph a model may read while it scores: every live edge of an entity in both directions
//! (an inverse relation is its own id, `r + num_relations`) and each entity's category. Shallow
//! models score by ids alone and ignore it; a model that reads context (`model::walks`) samples
//! its context walks from it, so the same model answers differently once the graph has grown.

use crate::graph::{Graph, Triple};

/// Each entity's category as a small id; id 0 is "no category" (the empty string).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Categories {
    /// Category names by id; `names[0]` is always `""`.
    pub names: Vec<String>,
    /// The category id of each entity, by dense entity id.
    pub of: Vec<u32>,
    /// Feature vectors of the entities that have them, for models that read them.
    #[serde(skip)]
    pub features: EntityFeatures,
}

/// Vectors of one layout: a category's features of one kind (`featurize`), one width.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureGroup {
    pub category: String,
    pub kind: String,
    pub width: usize,
}

/// Each entity's feature vector (at most one: the first group it appears in), by group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityFeatures {
    pub groups: Vec<FeatureGroup>,
    of: rustc_hash::FxHashMap<u32, (usize, Vec<f32>)>,
}

impl EntityFeatures {
    /// From vectors grouped by (category, kind); within a group every vector has the group's
    /// width (others are dropped). An entity in several groups keeps its first.
    pub fn from_groups<'a>(
        groups: impl IntoIterator<Item = (&'a str, &'a str, &'a [(u32, Vec<f32>)])>,
    ) -> Self {
        let mut out = Self::default();
        for (category, kind, rows) in groups {
            let Some(width) = rows.first().map(|r| r.1.len()) else {
                continue;
            };
            let g = out.groups.len();
            out.groups.push(FeatureGroup {
                category: category.to_owned(),
                kind: kind.to_owned(),
                width,
            });
            for (id, x) in rows {
                if x.len() == width {
                    out.of.entry(*id).or_insert_with(|| (g, x.clone()));
                }
            }
        }
        out
    }

    /// An entity's group and vector.
    pub fn get(&self, entity: u32) -> Option<(usize, &[f32])> {
        self.of.get(&entity).map(|(g, x)| (*g, x.as_slice()))
    }

    /// The group of a category's features of one kind.
    pub fn group(&self, category: &str, kind: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.category == category && g.kind == kind)
    }

    pub fn len(&self) -> usize {
        self.of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.of.is_empty()
    }
}

impl Categories {
    /// `n` entities without a category.
    pub fn none(n: usize) -> Self {
        Self {
            names: vec![String::new()],
            of: vec![0; n],
            features: EntityFeatures::default(),
        }
    }

    /// Categories from each entity's category name, in dense id order.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::none(0);
        for name in names {
            let id = out.id_or_insert(name);
            out.of.push(id);
        }
        out
    }

    pub fn of_graph(graph: &Graph) -> Self {
        Self::from_names((0..graph.num_entities() as u32).map(|e| graph.category(e)))
    }

    /// The id of a category name, if known.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    fn id_or_insert(&mut self, name: &str) -> u32 {
        match self.id(name) {
            Some(id) => id,
            None => {
                self.names.push(name.to_owned());
                (self.names.len() - 1) as u32
            }
        }
    }

    /// The category of an entity (0 for one beyond the table: an entity this graph lacks).
    pub fn get(&self, entity: u32) -> u32 {
        self.of.get(entity as usize).copied().unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.len() <= 1
    }
}

/// One neighbour of an entity: the relation as read from the entity (an inverse relation for
/// an incoming edge) and the entity at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Step {
    pub relation: u32,
    pub entity: u32,
}

/// The graph as adjacency lists over dense ids.
#[derive(Debug, Clone)]
pub struct Context {
    num_entities: usize,
    num_relations: usize,
    offsets: Vec<usize>,
    steps: Vec<Step>,
    categories: Categories,
    /// The graph's answer counts, when a model blends them into its scores
    /// ([`super::popularity::PopularityWeights`]).
    popularity: Option<std::sync::Arc<super::popularity::Popularity>>,
}

impl Context {
    /// Adjacency of `triples` in both directions, each entity's steps sorted by (relation,
    /// entity). Triples naming an id at or beyond `num_entities`/`num_relations` are ignored.
    pub fn new(
        num_entities: usize,
        num_relations: usize,
        triples: &[Triple],
        categories: Categories,
    ) -> Self {
        let r = num_relations as u32;
        let n = num_entities as u32;
        let valid = |t: &&Triple| t.head < n && t.tail < n && t.relation < r;
        let mut degree = vec![0usize; num_entities + 1];
        for t in triples.iter().filter(valid) {
            degree[t.head as usize + 1] += 1;
            degree[t.tail as usize + 1] += 1;
        }
        for i in 1..degree.len() {
            degree[i] += degree[i - 1];
        }
        let offsets = degree;
        let mut fill = offsets.clone();
        let mut steps = vec![
            Step {
                relation: 0,
                entity: 0
            };
            offsets[num_entities]
        ];
        for t in triples.iter().filter(valid) {
            steps[fill[t.head as usize]] = Step {
                relation: t.relation,
                entity: t.tail,
            };
            fill[t.head as usize] += 1;
            steps[fill[t.tail as usize]] = Step {
                relation: t.relation + r,
                entity: t.head,
            };
            fill[t.tail as usize] += 1;
        }
        for e in 0..num_entities {
            let s = &mut steps[offsets[e]..offsets[e + 1]];
            s.sort_unstable();
        }
        Self {
            num_entities,
            num_relations,
            offsets,
            steps,
            categories,
            popularity: None,
        }
    }

    /// This context with the answer counts of `graph` (what a blended model adds to its
    /// scores), counted from the same graph the question is asked about.
    pub fn with_popularity_of(self, graph: &Graph) -> Self {
        self.with_popularity(std::sync::Arc::new(super::popularity::Popularity::new(
            graph.num_entities(),
            graph.num_relations(),
            graph.triples(),
        )))
    }

    /// This context with answer counts already made (of the same graph).
    pub fn with_popularity(
        mut self,
        counts: std::sync::Arc<super::popularity::Popularity>,
    ) -> Self {
        self.popularity = Some(counts);
        self
    }

    /// The answer counts, when they were attached.
    pub fn popularity(&self) -> Option<&super::popularity::Popularity> {
        self.popularity.as_deref()
    }

    /// Every live edge of a graph, with its categories.
    pub fn of_graph(graph: &Graph) -> Self {
        Self::new(
            graph.num_entities(),
            graph.num_relations(),
            graph.triples(),
            Categories::of_graph(graph),
        )
    }

    /// The graph's context when the model reads it, else an empty one (building the
    /// adjacency of a large graph is not free).
    pub fn of_graph_if(reads: bool, graph: &Graph) -> Self {
        if reads {
            Self::of_graph(graph)
        } else {
            Self::empty(graph.num_entities(), graph.num_relations())
        }
    }

    /// No edges: what a model that reads no context is handed.
    pub fn empty(num_entities: usize, num_relations: usize) -> Self {
        Self::new(
            num_entities,
            num_relations,
            &[],
            Categories::none(num_entities),
        )
    }

    pub fn num_entities(&self) -> usize {
        self.num_entities
    }

    pub fn num_relations(&self) -> usize {
        self.num_relations
    }

    /// An entity's steps, outgoing and incoming (empty for an entity beyond the table).
    pub fn steps(&self, entity: u32) -> &[Step] {
        let e = entity as usize;
        if e >= self.num_entities {
            return &[];
        }
        &self.steps[self.offsets[e]..self.offsets[e + 1]]
    }

    pub fn degree(&self, entity: u32) -> usize {
        self.steps(entity).len()
    }

    /// Whether `(entity, relation, other)` is an edge as read from `entity` (relation may be an
    /// inverse id).
    pub fn has(&self, entity: u32, relation: u32, other: u32) -> bool {
        self.steps(entity)
            .binary_search(&Step {
                relation,
                entity: other,
            })
            .is_ok()
    }

    pub fn categories(&self) -> &Categories {
        &self.categories
    }

    /// Number of stored steps (twice the edges).
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_keep_one_width_per_group_and_the_first_group() {
        let a = [(0, vec![1.0, 2.0]), (1, vec![3.0]), (2, vec![4.0, 5.0])];
        let b = [(0, vec![9.0; 3]), (3, vec![1.0; 3])];
        let f = EntityFeatures::from_groups([
            ("Compound", "vector", &a[..]),
            ("Compound", "smiles", &b[..]),
            ("Gene", "vector", &[][..]),
        ]);
        assert_eq!(f.groups.len(), 2);
        assert_eq!(f.get(0), Some((0, &[1.0, 2.0][..])));
        assert_eq!(f.get(1), None, "wrong width");
        assert_eq!(f.get(3), Some((1, &[1.0; 3][..])));
        assert_eq!(f.group("Compound", "smiles"), Some(1));
        assert_eq!(f.group("Gene", "vector"), None);
        assert_eq!(f.len(), 3);
    }

    #[test]
    fn both_directions_with_inverse_ids() {
        let t = [
            Triple::new(0, 1, 2),
            Triple::new(2, 0, 1),
            Triple::new(0, 0, 1),
            Triple::new(9, 0, 1), // out of range: ignored
        ];
        let c = Context::new(3, 2, &t, Categories::from_names(["a", "", "a"]));
        assert_eq!(
            c.steps(0),
            &[
                Step {
                    relation: 0,
                    entity: 1
                },
                Step {
                    relation: 1,
                    entity: 2
                }
            ]
        );
        // Entity 1: incoming 2 -0-> 1 and 0 -0-> 1, as inverse relation 2.
        assert_eq!(
            c.steps(1),
            &[
                Step {
                    relation: 2,
                    entity: 0
                },
                Step {
                    relation: 2,
                    entity: 2
                }
            ]
        );
        assert!(c.has(2, 3, 0));
        assert!(!c.has(2, 1, 0));
        assert_eq!(c.len(), 6);
        assert!(c.steps(7).is_empty());
        assert_eq!(c.categories().get(2), c.categories().id("a").unwrap_or(99));
        assert_eq!(c.categories().get(1), 0);
        assert_eq!(c.categories().names, vec!["".to_string(), "a".to_string()]);
    }
}
