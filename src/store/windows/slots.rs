//! The articles the rankings track, each interned once: its id gets a `u32` slot that
//! indexes every per-article column, and the id's bytes sit back to back in one
//! buffer (no allocation, no pointer per article). A freed slot is reused; the bytes
//! of freed ids are reclaimed by compacting the buffer once they are half of it.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// An article's index in every per-article column.
pub type Slot = u32;

/// Where a slot's id lies in the buffer; `len == 0` marks a free slot (ids are never
/// empty).
#[derive(Debug, Clone, Copy, Default)]
struct IdRef {
    off: u32,
    len: u32,
}

/// The interned article ids.
#[derive(Debug, Default)]
pub struct Slots {
    bytes: Vec<u8>,
    refs: Vec<IdRef>,
    /// Slots by id: the table holds only the slot (4 bytes); the id it is hashed and
    /// compared by is read from `bytes`.
    index: HashTable<Slot>,
    hasher: foldhash::fast::RandomState,
    free: Vec<Slot>,
    /// Bytes of freed ids still in `bytes`.
    garbage: usize,
}

fn id_of<'a>(bytes: &'a [u8], refs: &[IdRef], s: Slot) -> &'a [u8] {
    let r = refs[s as usize];
    &bytes[r.off as usize..(r.off + r.len) as usize]
}

impl Slots {
    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The slot of `id`, if tracked.
    pub fn find(&self, id: &str) -> Option<Slot> {
        let (bytes, refs) = (&self.bytes, &self.refs);
        self.index
            .find(self.hash(id.as_bytes()), |&s| id_of(bytes, refs, s) == id.as_bytes())
            .copied()
    }

    /// The slot of `id`, interning it if new (then `true`): a freed slot if there is
    /// one, else the next (`extent()` grows by one).
    pub fn intern(&mut self, id: &str) -> (Slot, bool) {
        if let Some(s) = self.find(id) {
            return (s, false);
        }
        let off = u32::try_from(self.bytes.len()).expect("article ids stay under 4 GiB (the cap bounds them)");
        self.bytes.extend_from_slice(id.as_bytes());
        let r = IdRef {
            off,
            len: id.len() as u32,
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.refs[s as usize] = r;
                s
            }
            None => {
                self.refs.push(r);
                (self.refs.len() - 1) as Slot
            }
        };
        let hash = self.hash(id.as_bytes());
        let (bytes, refs, hasher) = (&self.bytes, &self.refs, &self.hasher);
        self.index
            .insert_unique(hash, s, |&x| hasher.hash_one(id_of(bytes, refs, x)));
        (s, true)
    }

    /// Frees a tracked slot for reuse.
    pub fn free(&mut self, s: Slot) {
        let id = id_of(&self.bytes, &self.refs, s);
        let hash = self.hash(id);
        if let Ok(entry) = self.index.find_entry(hash, |&x| x == s) {
            entry.remove();
        }
        self.garbage += self.refs[s as usize].len as usize;
        self.refs[s as usize] = IdRef::default();
        self.free.push(s);
        if self.garbage > 4096 && self.garbage * 2 > self.bytes.len() {
            self.compact();
        }
    }

    /// Copies the live ids into a new buffer, so freed ids cost nothing: O(live bytes),
    /// run once the freed bytes are as many as the live ones, so amortised O(1).
    fn compact(&mut self) {
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.garbage);
        for r in self.refs.iter_mut().filter(|r| r.len > 0) {
            let off = bytes.len() as u32;
            bytes.extend_from_slice(&self.bytes[r.off as usize..(r.off + r.len) as usize]);
            r.off = off;
        }
        self.bytes = bytes;
        self.garbage = 0;
    }

    /// The id of a tracked slot.
    pub fn id(&self, s: Slot) -> &str {
        std::str::from_utf8(self.id_bytes(s)).expect("article ids are ASCII")
    }

    /// The id of a tracked slot as bytes (ordered as the ids are).
    pub fn id_bytes(&self, s: Slot) -> &[u8] {
        id_of(&self.bytes, &self.refs, s)
    }

    /// True when `s` holds an article.
    pub fn is_live(&self, s: Slot) -> bool {
        self.refs.get(s as usize).is_some_and(|r| r.len > 0)
    }

    /// Slots ever handed out (live or free): the length of every per-article column.
    pub fn extent(&self) -> usize {
        self.refs.len()
    }

    /// Articles tracked.
    pub fn live(&self) -> usize {
        self.refs.len() - self.free.len()
    }

    /// Every tracked slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        (0..self.refs.len() as Slot).filter(|&s| self.is_live(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_interned_twice_keeps_its_slot() {
        let mut slots = Slots::default();
        let (a, new_a) = slots.intern("a");
        let (b, _) = slots.intern("bb");
        assert_eq!(slots.intern("a"), (a, false));
        assert!(new_a && a != b);
        assert_eq!((slots.id(a), slots.id(b)), ("a", "bb"));
        assert_eq!((slots.find("bb"), slots.find("c")), (Some(b), None));
    }

    #[test]
    fn a_freed_slot_is_reused_by_the_next_new_id() {
        let mut slots = Slots::default();
        let (a, _) = slots.intern("a");
        slots.intern("b");
        slots.free(a);
        assert_eq!((slots.find("a"), slots.live(), slots.is_live(a)), (None, 1, false));
        let (c, new) = slots.intern("c");
        assert_eq!((c, new, slots.extent()), (a, true, 2));
        assert_eq!(slots.id(c), "c");
    }

    #[test]
    fn compaction_keeps_every_live_id_findable() {
        let mut slots = Slots::default();
        let ids: Vec<String> = (0..5_000).map(|i| format!("article-{i}")).collect();
        for id in &ids {
            slots.intern(id);
        }
        let total: usize = ids.iter().map(|id| id.len()).sum();
        for id in ids.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, id)| id) {
            let s = slots.find(id).unwrap();
            slots.free(s);
        }
        assert!(slots.bytes.len() < total, "freed ids were reclaimed");
        for (i, id) in ids.iter().enumerate() {
            let found = slots.find(id);
            assert_eq!(found.is_some(), i % 3 == 0, "{id}");
            if let Some(s) = found {
                assert_eq!(slots.id(s), id);
            }
        }
    }
}
