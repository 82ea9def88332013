//! One window's counts (or the all-time totals) for every slot: views and the shares
//! total in dense vectors indexed by slot (8 bytes each per article, scanned in order
//! by a ranking), shares by network in one sparse map per network holding only the
//! articles that have some there (a ranking by one network reads only its map).
//!
//! Each column also keeps a [`Journal`] per metric (views, shares) of the slots whose
//! count rose since its epoch began; any other change (a count lowered or cleared)
//! starts a new epoch. A ranking computed at some point of an epoch is brought up to
//! date from the slots journaled since, instead of a pass over the whole column.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::slots::Slot;

/// A share network's index in the windows' table of network names.
pub type NetworkId = u16;

/// Slots journaled in one epoch before the journal starts a new one instead (64k
/// slots, 256 KiB): past it a pass over the column costs less than the merge.
const JOURNAL_MAX: usize = 1 << 16;

/// A new epoch number, never given before in this process (also across windows
/// rebuilt by a reload), so an epoch names one state of one column.
pub fn new_epoch() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Where a journal stood: its epoch and how many slots it held then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The epoch.
    pub epoch: u64,
    /// Slots journaled in it so far.
    pub len: usize,
}

/// The slots whose count of one metric rose in the current epoch, in order (a slot
/// may appear more than once).
#[derive(Debug)]
pub struct Journal {
    epoch: u64,
    rose: Vec<Slot>,
}

impl Default for Journal {
    fn default() -> Self {
        Journal {
            epoch: new_epoch(),
            rose: Vec::new(),
        }
    }
}

impl Journal {
    fn rose(&mut self, s: Slot) {
        if self.rose.len() >= JOURNAL_MAX {
            self.restart();
        } else {
            self.rose.push(s);
        }
    }

    /// Some count was lowered or cleared: what was journaled no longer tells the
    /// whole change.
    fn restart(&mut self) {
        self.epoch = new_epoch();
        self.rose.clear();
    }

    /// Where the journal stands now.
    pub fn mark(&self) -> Mark {
        Mark {
            epoch: self.epoch,
            len: self.rose.len(),
        }
    }

    /// The slots whose count rose since `mark` (and nothing else changed), or `None`
    /// when the epoch changed since.
    pub fn since(&self, mark: Mark) -> Option<&[Slot]> {
        (mark.epoch == self.epoch).then(|| self.rose.get(mark.len..)).flatten()
    }
}

/// Which count of a column a ranking reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Views.
    Views,
    /// Shares on every network.
    Shares,
    /// Shares on one network.
    SharesOn(NetworkId),
}

/// Counts per slot. A free or untouched slot holds zeros and nothing in `by_network`.
#[derive(Debug, Default)]
pub struct Column {
    views: Vec<u64>,
    shares: Vec<u64>,
    /// Per network (by [`NetworkId`]), the slots with shares there. Kept so that
    /// `shares[s]` is the sum of slot `s`'s entries.
    by_network: Vec<HashMap<Slot, u64, foldhash::fast::RandomState>>,
    /// Slots whose views rose.
    views_rose: Journal,
    /// Slots whose shares rose (on any network).
    shares_rose: Journal,
}

impl Column {
    /// Makes room for slots `0..len`.
    pub fn grow(&mut self, len: usize) {
        self.views.resize(len, 0);
        self.shares.resize(len, 0);
    }

    /// Adds `n` views to slot `s`.
    pub fn add_views(&mut self, s: Slot, n: u64) {
        if n == 0 {
            return;
        }
        let v = &mut self.views[s as usize];
        *v = v.saturating_add(n);
        self.views_rose.rose(s);
    }

    /// Takes `n` views from slot `s`, stopping at zero.
    pub fn sub_views(&mut self, s: Slot, n: u64) {
        if n == 0 {
            return;
        }
        let v = &mut self.views[s as usize];
        *v = v.saturating_sub(n);
        self.views_rose.restart();
    }

    /// Adds `n` shares on `network` to slot `s`.
    pub fn add_shares(&mut self, s: Slot, network: NetworkId, n: u64) {
        if n == 0 {
            return;
        }
        let i = network as usize;
        if self.by_network.len() <= i {
            self.by_network.resize_with(i + 1, HashMap::default);
        }
        let c = self.by_network[i].entry(s).or_default();
        *c = c.saturating_add(n);
        let t = &mut self.shares[s as usize];
        *t = t.saturating_add(n);
        self.shares_rose.rose(s);
    }

    /// Takes `n` shares on `network` from slot `s`, stopping at zero.
    pub fn sub_shares(&mut self, s: Slot, network: NetworkId, n: u64) {
        let Some(map) = self.by_network.get_mut(network as usize) else {
            return;
        };
        let Some(c) = map.get_mut(&s) else {
            return;
        };
        let taken = n.min(*c);
        *c -= taken;
        if *c == 0 {
            map.remove(&s);
        }
        self.shares[s as usize] -= taken;
        if taken > 0 {
            self.shares_rose.restart();
        }
    }

    /// Zeroes slot `s`.
    pub fn clear_slot(&mut self, s: Slot) {
        if std::mem::take(&mut self.views[s as usize]) > 0 {
            self.views_rose.restart();
        }
        if std::mem::take(&mut self.shares[s as usize]) > 0 {
            self.by_network.iter_mut().for_each(|map| {
                map.remove(&s);
            });
            self.shares_rose.restart();
        }
    }

    /// Zeroes every slot.
    pub fn clear(&mut self) {
        self.views.fill(0);
        self.shares.fill(0);
        self.by_network = Vec::new();
        self.views_rose.restart();
        self.shares_rose.restart();
    }

    /// The journal of the views (`shares` false) or shares.
    pub fn journal(&self, shares: bool) -> &Journal {
        if shares {
            &self.shares_rose
        } else {
            &self.views_rose
        }
    }

    /// Slot `s`'s count of views, shares, or shares on one network.
    pub fn count(&self, s: Slot, metric: Counted) -> u64 {
        match metric {
            Counted::Views => self.views[s as usize],
            Counted::Shares => self.shares[s as usize],
            Counted::SharesOn(n) => self
                .by_network
                .get(n as usize)
                .and_then(|m| m.get(&s))
                .copied()
                .unwrap_or(0),
        }
    }

    /// Views per slot.
    pub fn views(&self) -> &[u64] {
        &self.views
    }

    /// Shares on every network per slot.
    pub fn shares(&self) -> &[u64] {
        &self.shares
    }

    /// Shares on `network`, of the slots that have some.
    pub fn shares_on(&self, network: NetworkId) -> impl Iterator<Item = (Slot, u64)> + '_ {
        self.by_network
            .get(network as usize)
            .into_iter()
            .flat_map(|map| map.iter().map(|(s, c)| (*s, *c)))
    }

    /// Slot `s`'s shares by network.
    #[cfg(test)]
    pub fn shares_of(&self, s: Slot) -> impl Iterator<Item = (NetworkId, u64)> + '_ {
        self.by_network
            .iter()
            .enumerate()
            .filter_map(move |(n, map)| map.get(&s).map(|c| (n as NetworkId, *c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracting_stops_at_zero_and_keeps_the_total_in_step() {
        let mut c = Column::default();
        c.grow(2);
        c.add_views(1, 5);
        c.add_shares(1, 0, 3);
        c.add_shares(1, 2, 4);
        c.sub_views(1, 9);
        c.sub_shares(1, 0, 10);
        c.sub_shares(1, 1, 10);
        assert_eq!((c.views()[1], c.shares()[1]), (0, 4));
        assert_eq!(c.shares_of(1).collect::<Vec<_>>(), [(2, 4)]);
        assert_eq!(c.shares_on(0).count(), 0, "a network at zero leaves the map");
    }

    #[test]
    fn a_cleared_slot_holds_nothing() {
        let mut c = Column::default();
        c.grow(3);
        c.add_views(2, 1);
        c.add_shares(2, 1, 1);
        c.add_shares(0, 1, 7);
        c.clear_slot(2);
        assert_eq!((c.views()[2], c.shares()[2]), (0, 0));
        assert_eq!(c.shares_on(1).collect::<Vec<_>>(), [(0, 7)]);
    }
}
