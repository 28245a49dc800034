//! String interning to dense `u32` ids, the currency of every in-memory triple.

use rustc_hash::FxHashMap;

/// Maps keys to dense ids in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: FxHashMap<Box<str>, u32>,
    keys: Vec<Box<str>>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `key`, adding it if new.
    pub fn intern(&mut self, key: &str) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            return id;
        }
        let id = u32::try_from(self.keys.len()).expect("more than 4 billion distinct keys");
        self.keys.push(key.into());
        self.ids.insert(key.into(), id);
        id
    }

    pub fn get(&self, key: &str) -> Option<u32> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: u32) -> &str {
        &self.keys[id as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn into_keys(self) -> Vec<Box<str>> {
        self.keys
    }

    /// Heap bytes held, for memory budgets.
    pub fn heap_bytes(&self) -> usize {
        let strings: usize = self.keys.iter().map(|k| k.len()).sum();
        // Each key is stored twice (vector and map) plus map slots.
        2 * strings
            + self.keys.capacity() * std::mem::size_of::<Box<str>>()
            + self.ids.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
    }
}
