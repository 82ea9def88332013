//! Ranking a window: the top `limit` articles of its tallies, count descending, ties
//! by article id ascending, with a bounded heap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;

use serde::Serialize;

use super::{Tally, TopQuery};
use crate::event::{ArticleId, Meta};

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

fn matches(meta: Option<&Meta>, q: &TopQuery) -> bool {
    let field_ok = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    field_ok(&q.section, meta.and_then(|m| m.section.as_deref()))
        && field_ok(&q.lang, meta.and_then(|m| m.lang.as_deref()))
}

/// The top `q.limit` articles of `tallies` (count descending, id ascending), keeping a
/// bounded heap so a window of 100,000 articles costs one pass. Metadata is looked up
/// only for an article that would enter the heap, so filters cost little.
pub fn rank<S: BuildHasher>(
    tallies: &HashMap<ArticleId, Tally, S>,
    meta: &HashMap<ArticleId, Meta, S>,
    q: &TopQuery,
) -> Vec<TopEntry> {
    let filtered = q.section.is_some() || q.lang.is_some();
    // Heap of the best so far, worst on top: (Reverse(count), id) orders so.
    let mut heap: BinaryHeap<(Reverse<u64>, &ArticleId)> = BinaryHeap::with_capacity(q.limit + 1);
    for (id, tally) in tallies {
        let count = tally.count(&q.metric);
        if count == 0 {
            continue;
        }
        if heap.len() == q.limit {
            let (Reverse(worst), worst_id) = heap.peek().expect("heap is full");
            if count < *worst || (count == *worst && id > *worst_id) {
                continue;
            }
        }
        if filtered && !matches(meta.get(id), q) {
            continue;
        }
        heap.push((Reverse(count), id));
        if heap.len() > q.limit {
            heap.pop();
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|(Reverse(count), id)| {
            let m = meta.get(id);
            TopEntry {
                article: id.to_string(),
                count,
                section: m.and_then(|m| m.section.as_deref()).map(String::from),
                lang: m.and_then(|m| m.lang.as_deref()).map(String::from),
                title: None,
                url: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Networks;
    use crate::top::BadTopQuery;

    fn q(query: &str) -> Result<TopQuery, BadTopQuery> {
        TopQuery::parse(query, &Networks::default())
    }

    fn tallies(rows: &[(&str, u64)]) -> HashMap<ArticleId, Tally> {
        rows.iter()
            .map(|(a, v)| (ArticleId::parse(a).unwrap(), Tally::of_views(*v)))
            .collect()
    }

    #[test]
    fn ranking_orders_by_count_then_id() {
        let t = tallies(&[("b", 5), ("a", 5), ("c", 9), ("d", 1), ("e", 0)]);
        let got = rank(&t, &HashMap::new(), &q("limit=3").unwrap());
        let ids: Vec<(&str, u64)> = got.iter().map(|e| (e.article.as_str(), e.count)).collect();
        assert_eq!(ids, [("c", 9), ("a", 5), ("b", 5)]);
        let all = rank(&t, &HashMap::new(), &q("limit=100").unwrap());
        assert_eq!(all.len(), 4, "zero counts are left out");
    }

    proptest::proptest! {
        #[test]
        fn ranking_equals_sorting_everything(
            rows in proptest::collection::vec((0u32..300, 0u64..6, 0u8..3), 0..200),
            limit in 1usize..20,
            section in proptest::option::of(0u8..3),
        ) {
            let mut tallies = HashMap::new();
            let mut meta = HashMap::new();
            for (a, views, s) in &rows {
                let id = ArticleId::parse(&format!("a{a}")).unwrap();
                tallies.insert(id.clone(), Tally::of_views(*views));
                meta.insert(id, Meta { section: Some(format!("s{s}").into()), ..Meta::default() });
            }
            let query = match section {
                Some(s) => format!("limit={limit}&section=s{s}"),
                None => format!("limit={limit}"),
            };
            let q = q(&query).unwrap();
            let mut expected: Vec<(u64, String)> = tallies
                .iter()
                .filter(|(id, t)| t.views > 0 && section.is_none_or(|s| meta[*id].section.as_deref() == Some(&*format!("s{s}"))))
                .map(|(id, t)| (t.views, id.to_string()))
                .collect();
            expected.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            expected.truncate(limit);
            let got: Vec<(u64, String)> = rank(&tallies, &meta, &q).into_iter().map(|e| (e.count, e.article)).collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
