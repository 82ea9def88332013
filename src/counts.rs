//! An article's counts: the one type every layer exchanges — what the counter holds
//! pending, what a drained batch carries, what a store holds, what an admin sets, what
//! the rankings add up. Networks are named here; the counter's key keeps a network as
//! its index, and the API shows shares as a JSON object — those are the edges.

use serde::{Deserialize, Serialize};

/// Views, and shares by network name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Views.
    pub views: u64,
    /// Shares by network name: sorted by name, distinct, none at zero.
    #[serde(default)]
    pub shares: Vec<(Box<str>, u64)>,
}

impl Counts {
    /// `views` views and no shares.
    pub fn of_views(views: u64) -> Counts {
        Counts {
            views,
            shares: Vec::new(),
        }
    }

    /// Counts from views and `(network, shares)` pairs in any order (repeated networks add up).
    pub fn new<'a>(views: u64, shares: impl IntoIterator<Item = (&'a str, u64)>) -> Counts {
        let mut c = Counts::of_views(views);
        for (network, n) in shares {
            c.add_share(network, n);
        }
        c
    }

    /// True when every count is zero.
    pub fn is_zero(&self) -> bool {
        self.views == 0 && self.shares.is_empty()
    }

    /// Shares on `network`.
    pub fn share(&self, network: &str) -> u64 {
        self.position(network).map_or(0, |i| self.shares[i].1)
    }

    /// Shares on every network.
    pub fn shares_total(&self) -> u64 {
        self.shares.iter().fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// Views and shares together: the events these counts stand for.
    pub fn events(&self) -> u64 {
        self.views.saturating_add(self.shares_total())
    }

    /// Adds `n` shares on `network` (saturating).
    pub fn add_share(&mut self, network: &str, n: u64) {
        if n == 0 {
            return;
        }
        match self.position(network) {
            Ok(i) => self.shares[i].1 = self.shares[i].1.saturating_add(n),
            Err(i) => self.shares.insert(i, (network.into(), n)),
        }
    }

    /// Adds `other`, count by count (saturating).
    pub fn add(&mut self, other: &Counts) {
        self.views = self.views.saturating_add(other.views);
        for (network, n) in &other.shares {
            self.add_share(network, *n);
        }
    }

    /// Takes `other` away, each count stopping at zero; a network left at zero goes.
    pub fn sub(&mut self, other: &Counts) {
        self.views = self.views.saturating_sub(other.views);
        for (network, n) in &other.shares {
            if let Ok(i) = self.position(network) {
                self.shares[i].1 = self.shares[i].1.saturating_sub(*n);
            }
        }
        self.shares.retain(|(_, n)| *n > 0);
    }

    fn position(&self, network: &str) -> Result<usize, usize> {
        self.shares.binary_search_by(|(name, _)| (**name).cmp(network))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_stay_sorted_distinct_and_never_zero() {
        let c = Counts::new(1, [("x", 2), ("a", 1), ("x", 3), ("m", 0)]);
        assert_eq!(c.shares, vec![("a".into(), 1), ("x".into(), 5)]);
        assert_eq!((c.share("x"), c.share("m"), c.shares_total(), c.events()), (5, 0, 6, 7));
    }

    #[test]
    fn subtracting_stops_at_zero_and_drops_empty_networks() {
        let mut c = Counts::of_views(2);
        c.add(&Counts::new(0, [("x", 3), ("y", 4)]));
        c.sub(&Counts::new(1, [("x", 1)]));
        c.sub(&Counts::new(5, [("y", 9), ("z", 1)]));
        assert_eq!((c.views, &c.shares), (0, &vec![("x".into(), 2)]));
        c.sub(&Counts::new(0, [("x", 2)]));
        assert!(c.is_zero());
    }

    #[test]
    fn adding_saturates() {
        let mut c = Counts::new(u64::MAX, [("x", u64::MAX)]);
        c.add(&Counts::new(1, [("x", 1)]));
        assert_eq!((c.views, c.share("x")), (u64::MAX, u64::MAX));
    }

    #[test]
    fn it_reads_and_writes_the_journal_shape() {
        let c: Counts = serde_json::from_str(r#"{"views":3,"shares":[["x",1]]}"#).unwrap();
        assert_eq!(c, Counts::new(3, [("x", 1)]));
        assert_eq!(serde_json::to_string(&c).unwrap(), r#"{"views":3,"shares":[["x",1]]}"#);
    }
}
