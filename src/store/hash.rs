//! The hash chain: each version's hash covers its parent's hash, its metadata and its delta
//! in a canonical order, so `graph verify` can prove that history was not altered.

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
}

impl CanonicalDelta<'_> {
    /// Sorts the delta and hashes it after `parent`. Fields are length-prefixed so that no
    /// choice of keys can make two different deltas serialize alike.
    pub fn hash(mut self, parent: &str) -> String {
        self.entities.sort_unstable();
        self.added.sort_unstable();
        self.removed.sort_unstable();
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
        field(b"hypograph-version-2");
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
        for list in [&self.added, &self.removed] {
            field(&(list.len() as u64).to_le_bytes());
            for t in list {
                for part in t {
                    field(part.as_bytes());
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
        let ha = a.hash(ROOT);
        assert_eq!(ha, b.hash(ROOT));
        assert_ne!(ha, c.hash(ROOT));
        assert_ne!(ha, d.hash(ROOT));
        let e = CanonicalDelta {
            added: vec![["a", "r", "b"], ["c", "r", "d"]],
            ..Default::default()
        };
        assert_ne!(ha, e.hash("ff"));
    }
}
