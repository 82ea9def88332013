//! The configured share networks (`--share-networks`): an event names one, and the
//! counter map stores its index.

use std::sync::Arc;

use super::EventError;

/// The configured share networks; an event's network is an index into this list.
#[derive(Debug, Clone)]
pub struct Networks(Arc<[Box<str>]>);

/// The contract's default share networks.
pub const DEFAULT_NETWORKS: &str =
    "facebook,twitter,x,telegram,whatsapp,vk,linkedin,reddit,email,copy_link,print,other";

/// At most this many networks can be configured (each one takes a one-byte counter tag).
pub const MAX_NETWORKS: usize = 64;

impl Networks {
    /// Builds the list; names are 1-32 characters of `a-z 0-9 _ -`, no duplicates.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(names: I) -> Result<Self, String> {
        let mut list: Vec<Box<str>> = Vec::new();
        for name in names {
            let name = name.as_ref().trim();
            let valid = (1..=32).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
            if !valid {
                return Err(format!("invalid share network name {name:?}"));
            }
            if list.iter().any(|n| &**n == name) {
                return Err(format!("share network {name:?} listed twice"));
            }
            list.push(name.into());
        }
        if list.is_empty() || list.len() > MAX_NETWORKS {
            return Err(format!("between 1 and {MAX_NETWORKS} share networks are needed"));
        }
        Ok(Networks(list.into()))
    }

    /// The index of a configured network, matched case-insensitively (`Telegram` is
    /// `telegram`).
    pub fn find(&self, name: &str) -> Result<u8, EventError> {
        let name = name.trim();
        self.0
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| i as u8)
            .ok_or(EventError::InvalidNetwork)
    }

    /// The name of network `i`.
    pub fn name(&self, i: u8) -> &str {
        &self.0[i as usize]
    }

    /// All names, in configured order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }

    /// How many networks are configured.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a list built by [`Networks::new`].
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Networks {
    fn default() -> Self {
        Networks::new(DEFAULT_NETWORKS.split(',')).expect("default networks are valid")
    }
}
