//! Ranking a window: the top `limit` articles of its counts, count descending, ties
//! by article id ascending, kept in a small sorted vector during one pass.

use serde::Serialize;

/// One row of a ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopEntry {
    /// The article.
    pub article: String,
    /// Its count for the metric in the window.
    pub count: u64,
    /// Its section, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// Its language, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Its title, if known (read from the store per entry, never held in the rankings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Box<str>>,
    /// Its url, if known (as the title).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Box<str>>,
}

/// The best `limit` of `counts` (key, count): count descending, then `id(key)`
/// ascending; zero counts and keys `keep` refuses are left out. One pass: `keep` (a
/// filter, which may read other memory) is asked only of a key that would enter the
/// best so far, and `id` only to break a tie.
pub fn top_n<'a, K: Copy>(
    counts: impl Iterator<Item = (K, u64)>,
    limit: usize,
    keep: impl Fn(K) -> bool,
    id: impl Fn(K) -> &'a [u8],
) -> Vec<(K, u64)> {
    let mut best = Best::new(limit);
    for (k, c) in counts {
        if c == 0 || best.refuses(k, c, &id) || !keep(k) {
            continue;
        }
        best.insert(k, c, &id);
    }
    best.into_rows()
}

/// The best `limit` keys offered so far, count descending then id ascending: a
/// sorted vector of at most 100 (a heap would need the ids inside its order).
#[derive(Debug, Clone)]
pub struct Best<K> {
    rows: Vec<(K, u64)>,
    limit: usize,
}

impl<K: Copy> Best<K> {
    /// An empty list of at most `limit` (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Best {
            rows: Vec::with_capacity(limit + 1),
            limit,
        }
    }

    /// True when `(k, c)` cannot enter: the list is full and its last ranks before it.
    /// Costs one compare of counts unless they tie.
    #[inline]
    pub fn refuses<'a>(&self, k: K, c: u64, id: impl Fn(K) -> &'a [u8]) -> bool {
        self.rows.len() == self.limit && ranks_before(self.rows[self.limit - 1], k, c, id)
    }

    /// Puts `(k, c)` in its place, dropping the last if the list was full (call when
    /// [`Best::refuses`] said no).
    pub fn insert<'a>(&mut self, k: K, c: u64, id: impl Fn(K) -> &'a [u8]) {
        let at = self.rows.partition_point(|b| ranks_before(*b, k, c, &id));
        self.rows.insert(at, (k, c));
        self.rows.truncate(self.limit);
    }

    /// Offers `(k, c)` where `k` may be in the list already with a lower count (its
    /// count rose): its old row leaves first.
    pub fn raise<'a>(&mut self, k: K, c: u64, id: impl Fn(K) -> &'a [u8])
    where
        K: PartialEq,
    {
        if let Some(at) = self.rows.iter().position(|(kept, _)| *kept == k) {
            self.rows.remove(at);
        }
        if !self.refuses(k, c, &id) {
            self.insert(k, c, id);
        }
    }

    /// The keys kept, best first.
    pub fn rows(&self) -> &[(K, u64)] {
        &self.rows
    }

    /// The keys kept, best first.
    pub fn into_rows(self) -> Vec<(K, u64)> {
        self.rows
    }
}

/// True when `(bk, bc)` ranks before `(k, c)`: more counted, or as many with a
/// smaller id.
#[inline]
fn ranks_before<'a, K: Copy>((bk, bc): (K, u64), k: K, c: u64, id: impl Fn(K) -> &'a [u8]) -> bool {
    bc > c || (bc == c && id(bk) < id(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(rows: &[(&'static str, u64)], limit: usize) -> Vec<(&'static str, u64)> {
        top_n(rows.iter().copied(), limit, |_| true, |k: &str| k.as_bytes())
    }

    #[test]
    fn ranking_orders_by_count_then_id() {
        let rows = [("b", 5), ("a", 5), ("c", 9), ("d", 1), ("e", 0)];
        assert_eq!(ranked(&rows, 3), [("c", 9), ("a", 5), ("b", 5)]);
        assert_eq!(ranked(&rows, 100).len(), 4, "zero counts are left out");
    }

    proptest::proptest! {
        #[test]
        fn ranking_equals_sorting_everything(
            rows in proptest::collection::btree_map(0u32..300, (0u64..6, 0u8..3), 0..200),
            limit in 1usize..20,
            section in proptest::option::of(0u8..3),
        ) {
            let ids: Vec<String> = (0..300).map(|a| format!("a{a}")).collect();
            let keep = |a: u32| section.is_none_or(|s| rows[&a].1 == s);
            let mut expected: Vec<(u32, u64)> =
                rows.iter().map(|(a, (v, _))| (*a, *v)).filter(|(a, v)| *v > 0 && keep(*a)).collect();
            expected.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| ids[a.0 as usize].cmp(&ids[b.0 as usize])));
            expected.truncate(limit);
            let got = top_n(rows.iter().map(|(a, (v, _))| (*a, *v)), limit, keep, |a| ids[a as usize].as_bytes());
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
