//! The key of the pending maps, held inline when short (most article ids are): a lookup
//! compares the bytes in the map's own slot instead of following a pointer to a heap
//! copy, which on a busy machine is a cache miss per map per event.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes a key holds inline; longer keys live on the heap.
const INLINE: usize = 30;

/// A map key (ASCII: a validated article id, with a counter's tag in front for the
/// counts). Hashes and compares as its bytes, so maps keyed by it are searched with a
/// borrowed `&[u8]`.
#[derive(Debug, Clone)]
pub(super) enum Key {
    /// Up to [`INLINE`] bytes, in place.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Longer keys.
    Heap(Box<[u8]>),
}

impl Key {
    /// A key holding a copy of `bytes`.
    pub(super) fn new(bytes: &[u8]) -> Key {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Key::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Key::Heap(bytes.into())
        }
    }

    /// The key's bytes.
    pub(super) fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Key::Heap(bytes) => bytes,
        }
    }

    /// The key as text (keys are ASCII: built from validated ids).
    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

// As `[u8]` hashes, which `Borrow<[u8]>` requires.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn short_keys_are_inline_and_long_ones_on_the_heap() {
        assert!(matches!(Key::new(b"a1234"), Key::Inline { .. }));
        assert!(matches!(Key::new(&[b'a'; INLINE]), Key::Inline { .. }));
        assert!(matches!(Key::new(&[b'a'; INLINE + 1]), Key::Heap(_)));
    }

    #[test]
    fn a_key_hashes_and_compares_as_its_bytes() {
        let hasher = foldhash::fast::RandomState::default();
        for text in ["a", "article-0000001", &"x".repeat(64)] {
            let key = Key::new(text.as_bytes());
            assert_eq!(key.as_str(), text);
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(text.as_bytes()));
            assert_eq!(key, Key::new(text.as_bytes()));
        }
        assert_ne!(Key::new(b"ab"), Key::new(b"abc"));
    }
}
