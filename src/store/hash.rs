//! The hash chain: each version's hash covers its parent's hash, its metadata and its delta
//! in a canonical order, so `graph verify` can prove that history was not altered.

/// The hash format new versions are written with. Format 2 covers metadata, new entities and
/// added/removed edges; format 3 also covers the refutations a version added and removed;
/// format 4 also the entity features it set and removed; format 5 also the edge sources it
/// added and removed. Each version stores its format, so chains written in an earlier one
/// still verify.
pub(crate) const FORMAT: i64 = 5;

/// A feature in a delta: entity key, kind and the value's canonical bytes (UTF-8 text, or a
/// vector's `f32` little-endian bytes).
pub(crate) type FeatureKey<'a> = (&'a str, &'a str, &'a [u8]);

/// An edge source in a delta: the triple's keys and the source's name.
pub(crate) type SourceKey<'a> = ([&'a str; 3], &'a str);

/// The hash of the empty history, parent of the first version.
pub(crate) const ROOT: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A version's content in the terms its hash is defined over: keys, never database ids.
/// The wall-clock time is deliberately left out, so that replaying the same history (a
/// resumed round, a rerun with the same seeds) yields the same hashes.
#[derive(Debug, Default)]
pub(crate) struct CanonicalDelta<'a> {
    pub message: &'a str,
    pub source: &'a str,
    pub round_id: Option<i64>,
    /// `(key, category)` of entities first seen in this version.
    pub entities: Vec<(&'a str, &'a str)>,
    pub added: Vec<[&'a str; 3]>,
    pub removed: Vec<[&'a str; 3]>,
    /// Refutations recorded in this version (format 3).
    pub refuted: Vec<[&'a str; 3]>,
    /// Refutations withdrawn in this version (format 3).
    pub unrefuted: Vec<[&'a str; 3]>,
    /// Feature values set in this version, new or replacing one (format 4).
    pub features: Vec<FeatureKey<'a>>,
    /// Feature values removed in this version, replaced ones included (format 4).
    pub features_removed: Vec<FeatureKey<'a>>,
    /// Edge sources added in this version (format 5).
    pub sources: Vec<SourceKey<'a>>,
    /// Edge sources removed in this version (format 5).
    pub sources_removed: Vec<SourceKey<'a>>,
}

impl CanonicalDelta<'_> {
    /// Sorts the delta and hashes it after `parent` in hash format `format` (2 to 5). Fields
    /// are length-prefixed so that no choice of keys can make two different deltas serialize
    /// alike.
    pub fn hash(mut self, parent: &str, format: i64) -> String {
        self.entities.sort_unstable();
        self.added.sort_unstable();
        self.removed.sort_unstable();
        self.refuted.sort_unstable();
        self.unrefuted.sort_unstable();
        self.features.sort_unstable();
        self.features_removed.sort_unstable();
        self.sources.sort_unstable();
        self.sources_removed.sort_unstable();
        let mut h = blake3::Hasher::new();
        // Small updates are slow in blake3; feed it 64 KiB at a time.
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut field = |s: &[u8]| {
            buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
            buf.extend_from_slice(s);
            if buf.len() >= 1 << 16 {
                h.update(&buf);
                buf.clear();
            }
        };
        let tag = format!("hypograph-version-{}", format.max(2));
        field(tag.as_bytes());
        field(parent.as_bytes());
        field(self.message.as_bytes());
        field(self.source.as_bytes());
        field(
            self.round_id
                .map(|r| r.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        field(&(self.entities.len() as u64).to_le_bytes());
        for (key, category) in &self.entities {
            field(key.as_bytes());
            field(category.as_bytes());
        }
        let lists: &[&Vec<[&str; 3]>] = if format >= 3 {
            &[&self.added, &self.removed, &self.refuted, &self.unrefuted]
        } else {
            &[&self.added, &self.removed]
        };
        for list in lists {
            field(&(list.len() as u64).to_le_bytes());
            for t in list.iter() {
                for part in t {
                    field(part.as_bytes());
                }
            }
        }
        if format >= 4 {
            for list in [&self.features, &self.features_removed] {
                field(&(list.len() as u64).to_le_bytes());
                for (key, kind, value) in list {
                    field(key.as_bytes());
                    field(kind.as_bytes());
                    field(value);
                }
            }
        }
        if format >= 5 {
            for list in [&self.sources, &self.sources_removed] {
                field(&(list.len() as u64).to_le_bytes());
                for (triple, source) in list {
                    for part in triple {
                        field(part.as_bytes());
                    }
                    field(source.as_bytes());
                }
            }
        }
        h.update(&buf);
        h.finalize().to_hex().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{added: [a r b]}` after ROOT, as format 2 hashed it before format 3 existed.
    const FORMAT_2_PINNED: &str =
        "f99f4c406beef0b282d7b12d3b6d063fc0b5c427994c3cfda6a7e907ce825319";

    /// A delta with an entity, edges and refutations after ROOT, as format 3 hashed it before
    /// format 4 existed.
    const FORMAT_3_PINNED: &str =
        "f618ddee61dda014e388d458e1dc36a98ce41954255762187e5959c2610c9396";

    /// Every field up to format 4 after ROOT, as format 4 hashed it before format 5 existed.
    const FORMAT_4_PINNED: &str =
        "c2fe37196083f0ad03a7081c6519197d44be69e4d8bd9c8379bbbfaf06faa984";

    fn every_format_4_field<'a>() -> CanonicalDelta<'a> {
        CanonicalDelta {
            features: vec![("a", "smiles", b"CCO")],
            features_removed: vec![("b", "vector", &[0, 0, 128, 63])],
            ..every_format_3_field()
        }
    }

    #[test]
    fn format_4_is_pinned() {
        assert_eq!(every_format_4_field().hash(ROOT, 4), FORMAT_4_PINNED);
        // Sources are not part of format 4: a format-4 version never had any.
        let with_sources = CanonicalDelta {
            sources: vec![(["a", "r", "b"], "infores:x")],
            ..every_format_4_field()
        };
        assert_eq!(with_sources.hash(ROOT, 4), FORMAT_4_PINNED);
    }

    #[test]
    fn format_5_covers_sources_added_and_removed() {
        fn delta<'a>(added: Vec<SourceKey<'a>>, removed: Vec<SourceKey<'a>>) -> CanonicalDelta<'a> {
            CanonicalDelta {
                sources: added,
                sources_removed: removed,
                ..every_format_4_field()
            }
        }
        let ab = ["a", "r", "b"];
        let base = delta(vec![], vec![]).hash(ROOT, 5);
        assert_ne!(base, FORMAT_4_PINNED, "the format is part of the hash");
        let one = delta(vec![(ab, "x")], vec![]).hash(ROOT, 5);
        assert_ne!(one, base, "a source added changes the hash");
        assert_ne!(one, delta(vec![(ab, "y")], vec![]).hash(ROOT, 5));
        assert_ne!(
            one,
            delta(vec![(["a", "r", "c"], "x")], vec![]).hash(ROOT, 5)
        );
        assert_ne!(one, delta(vec![], vec![(ab, "x")]).hash(ROOT, 5));
        // Order-independent, and no name can spill into the next field.
        assert_eq!(
            delta(vec![(ab, "x"), (ab, "y")], vec![]).hash(ROOT, 5),
            delta(vec![(ab, "y"), (ab, "x")], vec![]).hash(ROOT, 5),
        );
        assert_ne!(
            delta(vec![(["a", "r", "bx"], "")], vec![]).hash(ROOT, 5),
            delta(vec![(ab, "x")], vec![]).hash(ROOT, 5),
        );
    }

    fn every_format_3_field<'a>() -> CanonicalDelta<'a> {
        CanonicalDelta {
            message: "m",
            source: r#"{"kind":"import"}"#,
            round_id: Some(4),
            entities: vec![("a", "Gene"), ("b", "")],
            added: vec![["a", "r", "b"]],
            removed: vec![["b", "r", "a"]],
            refuted: vec![["a", "s", "b"]],
            unrefuted: vec![["b", "s", "a"]],
            ..Default::default()
        }
    }

    #[test]
    fn format_3_is_pinned() {
        assert_eq!(every_format_3_field().hash(ROOT, 3), FORMAT_3_PINNED);
        // Features are not part of format 3: a format-3 version never had any.
        let with_features = CanonicalDelta {
            features: vec![("a", "smiles", b"CCO")],
            ..every_format_3_field()
        };
        assert_eq!(with_features.hash(ROOT, 3), FORMAT_3_PINNED);
    }

    #[test]
    fn format_4_covers_features_set_and_removed() {
        fn delta<'a>(set: Vec<FeatureKey<'a>>, removed: Vec<FeatureKey<'a>>) -> CanonicalDelta<'a> {
            CanonicalDelta {
                features: set,
                features_removed: removed,
                ..every_format_3_field()
            }
        }
        let one = &[1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat()[..];
        let other = &[1.0f32.to_le_bytes(), 2.5f32.to_le_bytes()].concat()[..];
        let base = delta(vec![], vec![]).hash(ROOT, 4);
        assert_ne!(base, FORMAT_3_PINNED, "the format is part of the hash");
        let set = delta(vec![("a", "vector", one)], vec![]).hash(ROOT, 4);
        assert_ne!(set, base);
        assert_ne!(
            set,
            delta(vec![("a", "vector", other)], vec![]).hash(ROOT, 4)
        );
        assert_ne!(set, delta(vec![("b", "vector", one)], vec![]).hash(ROOT, 4));
        assert_ne!(set, delta(vec![], vec![("a", "vector", one)]).hash(ROOT, 4));
        assert_ne!(
            delta(vec![("a", "smiles", b"CC")], vec![]).hash(ROOT, 4),
            delta(vec![("a", "sequence", b"CC")], vec![]).hash(ROOT, 4),
        );
        // Order-independent, and no value can spill into the next field.
        assert_eq!(
            delta(vec![("a", "smiles", b"C"), ("b", "smiles", b"N")], vec![]).hash(ROOT, 4),
            delta(vec![("b", "smiles", b"N"), ("a", "smiles", b"C")], vec![]).hash(ROOT, 4),
        );
        assert_ne!(
            delta(vec![("a", "smiles", b"CCb")], vec![]).hash(ROOT, 4),
            delta(vec![("a", "smiles", b"CC"), ("b", "smiles", b"")], vec![]).hash(ROOT, 4),
        );
    }

    #[test]
    fn order_independent_and_content_sensitive() {
        let a = CanonicalDelta {
            added: vec![["a", "r", "b"], ["c", "r", "d"]],
            ..Default::default()
        };
        let b = CanonicalDelta {
            added: vec![["c", "r", "d"], ["a", "r", "b"]],
            ..Default::default()
        };
        let c = CanonicalDelta {
            added: vec![["a", "r", "b"], ["c", "r", "e"]],
            ..Default::default()
        };
        let d = CanonicalDelta {
            removed: vec![["a", "r", "b"], ["c", "r", "d"]],
            ..Default::default()
        };
        let ha = a.hash(ROOT, FORMAT);
        assert_eq!(ha, b.hash(ROOT, FORMAT));
        assert_ne!(ha, c.hash(ROOT, FORMAT));
        assert_ne!(ha, d.hash(ROOT, FORMAT));
        let e = CanonicalDelta {
            added: vec![["a", "r", "b"], ["c", "r", "d"]],
            ..Default::default()
        };
        assert_ne!(ha, e.hash("ff", FORMAT));
    }

    #[test]
    fn format_3_covers_refutations_and_format_2_is_unchanged() {
        let edges = || CanonicalDelta {
            added: vec![["a", "r", "b"]],
            ..Default::default()
        };
        let refuting = || CanonicalDelta {
            refuted: vec![["a", "r", "c"]],
            ..edges()
        };
        let unrefuting = || CanonicalDelta {
            unrefuted: vec![["a", "r", "c"]],
            ..edges()
        };
        let h3 = edges().hash(ROOT, 3);
        assert_ne!(h3, refuting().hash(ROOT, 3));
        assert_ne!(h3, unrefuting().hash(ROOT, 3));
        assert_ne!(refuting().hash(ROOT, 3), unrefuting().hash(ROOT, 3));
        // Format 2 is what older chains were written with: refutations are not part of it,
        // and its value is pinned so that old databases keep verifying.
        assert_eq!(edges().hash(ROOT, 2), refuting().hash(ROOT, 2));
        assert_ne!(edges().hash(ROOT, 2), h3);
        assert_eq!(edges().hash(ROOT, 2), FORMAT_2_PINNED);
    }
}
