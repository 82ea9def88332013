//! Every filter's ranking of one window and metric in one pass over its column: a
//! [`Best`] list per filter met (unfiltered, each section, each language, each
//! (section, language) pair), found per article through dense tables indexed by name
//! id, so an article that enters none costs a compare of counts per list. At most
//! [`MAX_FILTERS`] lists (each at most [`MAX_LIMIT`] long); past that the pass says
//! it is incomplete and which filters it ranked.
//!
//! The lists a pass made are kept with the candidates (a [`Basis`]) and brought up to
//! date by the next ranking of the same (window, metric) when only counts rose since
//! (the column's journal): only the slots that rose are offered again, to their own
//! lists. That is exact: an article that did not rise and was not in a list's top
//! still has at least as many articles before it. Anything else (a count lowered, a
//! window rolled, a section or language changed, an article left) is a new pass.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::column::{Column, Counted, Mark};
use super::names::NameId;
use super::slots::Slot;
use super::Windows;
use crate::top::{Best, Candidates, Filter, Metric, Window, MAX_FILTERS, MAX_LIMIT};

/// No list (yet) in an index.
const NONE: u32 = u32::MAX;
/// Pair tables up to this many cells are dense (a name table of up to 256 names).
const DENSE_PAIRS: usize = 1 << 16;

/// The lists of (section, lang) pairs by the pair's name ids.
#[derive(Clone)]
enum Pairs {
    /// `at[section * width + lang]`.
    Dense {
        width: usize,
        at: Vec<u32>,
    },
    Hashed(HashMap<(NameId, NameId), u32, foldhash::fast::RandomState>),
}

/// One pass's lists and the indexes that find an article's lists.
#[derive(Clone)]
struct Lists {
    best: Vec<Best<Slot>>,
    /// Each list's filter as name ids (section, lang), 0 for any.
    filters: Vec<(NameId, NameId)>,
    by_section: Vec<u32>,
    by_lang: Vec<u32>,
    by_pair: Pairs,
    max: usize,
    complete: bool,
}

impl Lists {
    /// The unfiltered list alone, with room in the indexes for `names` name ids.
    fn new(names: usize, max: usize) -> Lists {
        let by_pair = match names.checked_mul(names) {
            Some(cells) if cells <= DENSE_PAIRS => Pairs::Dense {
                width: names,
                at: vec![NONE; cells],
            },
            _ => Pairs::Hashed(HashMap::default()),
        };
        Lists {
            best: vec![Best::new(MAX_LIMIT)],
            filters: vec![(0, 0)],
            by_section: vec![NONE; names],
            by_lang: vec![NONE; names],
            by_pair,
            max: max.max(1),
            complete: true,
        }
    }

    /// The list of `filter` (a section, a language or both, never neither), made if
    /// new; `None` past the bound.
    #[inline]
    fn list(&mut self, filter: (NameId, NameId)) -> Option<usize> {
        let at = match (filter, &mut self.by_pair) {
            ((s, 0), _) => &mut self.by_section[s as usize],
            ((0, l), _) => &mut self.by_lang[l as usize],
            ((s, l), Pairs::Dense { width, at }) => &mut at[s as usize * *width + l as usize],
            ((s, l), Pairs::Hashed(map)) => map.entry((s, l)).or_insert(NONE),
        };
        if *at != NONE {
            return Some(*at as usize);
        }
        if self.best.len() >= self.max {
            self.complete = false;
            return None;
        }
        *at = self.best.len() as u32;
        self.best.push(Best::new(MAX_LIMIT));
        self.filters.push(filter);
        Some(self.best.len() - 1)
    }
}

/// The lists behind some candidates and the state of the windows they were ranked
/// at, so the next ranking of the same (window, metric) can bring them up to date.
#[derive(Clone)]
pub struct Basis {
    window: Window,
    metric: Metric,
    /// Where the column's journal of the metric stood.
    mark: Mark,
    meta_epoch: u64,
    /// The extent of the name table the indexes were sized for.
    names: usize,
    lists: Lists,
}

impl fmt::Debug for Basis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Basis")
            .field("window", &self.window)
            .field("metric", &self.metric)
            .field("mark", &self.mark)
            .field("lists", &self.lists.best.len())
            .finish_non_exhaustive()
    }
}

impl Windows {
    /// Every filter's top [`MAX_LIMIT`] of `metric` in `window` (call `roll` first):
    /// one pass, whatever the number of sections and languages.
    pub fn rank_all_filters(&self, window: Window, metric: &Metric) -> Candidates {
        self.rank_filters(window, metric, MAX_FILTERS, None)
    }

    /// [`Windows::rank_all_filters`], brought up to date from `basis` (the basis of
    /// earlier candidates) when only counts rose since: no pass over the column.
    pub fn rank_all_filters_since(&self, window: Window, metric: &Metric, basis: Option<&Basis>) -> Candidates {
        self.rank_filters(window, metric, MAX_FILTERS, basis)
    }

    #[cfg(test)]
    pub(super) fn rank_filters_up_to(&self, window: Window, metric: &Metric, max: usize) -> Candidates {
        self.rank_filters(window, metric, max, None)
    }

    fn rank_filters(&self, window: Window, metric: &Metric, max: usize, basis: Option<&Basis>) -> Candidates {
        let counts: &Column = self.column(window);
        let counted = match metric {
            Metric::Views => Counted::Views,
            Metric::Shares(None) => Counted::Shares,
            Metric::Shares(Some(network)) => match self.find_network(network) {
                Some(n) => Counted::SharesOn(n),
                // No share on it yet: nothing to rank, nothing to keep.
                None => return self.candidates(&Lists::new(0, max), None),
            },
        };
        let mark = counts.journal(counted != Counted::Views).mark();
        let lists = basis
            .and_then(|b| self.brought_up_to_date(b, window, metric, max, counted))
            .unwrap_or_else(|| {
                let dense = |column: &[u64]| self.pass(column.iter().enumerate().map(|(s, c)| (s as Slot, *c)), max);
                match counted {
                    Counted::Views => dense(counts.views()),
                    Counted::Shares => dense(counts.shares()),
                    Counted::SharesOn(n) => self.pass(counts.shares_on(n), max),
                }
            });
        let candidates = self.candidates(&lists, None);
        let basis = Basis {
            window,
            metric: metric.clone(),
            mark,
            meta_epoch: self.meta_epoch,
            names: self.names.extent(),
            lists,
        };
        Candidates {
            basis: Some(Arc::new(basis)),
            ..candidates
        }
    }

    /// `basis`'s lists with the slots whose count rose since offered again, or `None`
    /// when anything else changed (or `basis` is of another ranking): a pass is due.
    fn brought_up_to_date(
        &self,
        b: &Basis,
        window: Window,
        metric: &Metric,
        max: usize,
        counted: Counted,
    ) -> Option<Lists> {
        let same = b.window == window
            && b.metric == *metric
            && b.meta_epoch == self.meta_epoch
            && b.names == self.names.extent()
            && b.lists.complete
            && b.lists.max == max.max(1);
        if !same {
            return None;
        }
        let column = self.column(window);
        let mut rose = column.journal(counted != Counted::Views).since(b.mark)?.to_vec();
        rose.sort_unstable();
        rose.dedup();
        let mut lists = b.lists.clone();
        let id = |s: Slot| self.slots.id_bytes(s);
        for s in rose {
            let c = column.count(s, counted);
            if c == 0 {
                continue;
            }
            lists.best[0].raise(s, c, id);
            for f in self.filters_of(s).into_iter().flatten() {
                if let Some(i) = lists.list(f) {
                    lists.best[i].raise(s, c, id);
                }
            }
        }
        Some(lists)
    }

    /// The filters slot `s` is in besides the unfiltered one: its section, its
    /// language, the pair.
    #[inline]
    fn filters_of(&self, s: Slot) -> [Option<(NameId, NameId)>; 3] {
        let r = self.records[s as usize];
        let (section, lang) = (r.section, r.lang);
        [
            (section != 0).then_some((section, 0)),
            (lang != 0).then_some((0, lang)),
            (section != 0 && lang != 0).then_some((section, lang)),
        ]
    }

    fn pass(&self, counts: impl Iterator<Item = (Slot, u64)>, max: usize) -> Lists {
        let mut lists = Lists::new(self.names.extent(), max);
        let id = |s: Slot| self.slots.id_bytes(s);
        let offer = |lists: &mut Lists, i: usize, s: Slot, c: u64| {
            let best = &mut lists.best[i];
            if !best.refuses(s, c, id) {
                best.insert(s, c, id);
            }
        };
        for (s, c) in counts {
            if c == 0 {
                continue;
            }
            offer(&mut lists, 0, s, c);
            for f in self.filters_of(s).into_iter().flatten() {
                if let Some(i) = lists.list(f) {
                    offer(&mut lists, i, s, c);
                }
            }
        }
        lists
    }

    /// The union of the lists, each list as positions in it, ids and names resolved.
    fn candidates(&self, lists: &Lists, basis: Option<Arc<Basis>>) -> Candidates {
        let id = |s: Slot| self.slots.id_bytes(s);
        let mut union: Vec<(Slot, u64)> = lists.best.iter().flat_map(|b| b.rows().iter().copied()).collect();
        union.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| id(a.0).cmp(id(b.0))));
        // One slot has one count: its copies from several lists are neighbours.
        union.dedup_by_key(|r| r.0);
        let position: HashMap<Slot, u32, foldhash::fast::RandomState> =
            union.iter().enumerate().map(|(i, (s, _))| (*s, i as u32)).collect();
        let name = |n: NameId| self.names.name(n).map(String::from);
        let filters = lists
            .filters
            .iter()
            .zip(&lists.best)
            .map(|(&(section, lang), best)| {
                let filter = Filter {
                    section: name(section),
                    lang: name(lang),
                };
                (filter, best.rows().iter().map(|(s, _)| position[s]).collect())
            })
            .collect();
        Candidates {
            articles: union.iter().map(|&(s, c)| self.entry(s, c)).collect(),
            filters,
            complete: lists.complete,
            basis,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::Counts;
    use crate::event::{ArticleId, Meta};
    use crate::store::windows::BucketSource;
    use crate::store::{ArticleDelta, Batch, BatchId, StoreError};
    use crate::top::{Granularity, TopEntry, TopQuery};

    const NOW: u64 = 1_790_000_000_000;
    const SECTIONS: [Option<&str>; 6] = [None, Some("s0"), Some("s1"), Some("s2"), Some("s3"), Some("nowhere")];
    const LANGS: [Option<&str>; 4] = [None, Some("en"), Some("ru"), Some("nowhere")];

    struct NoBuckets;

    impl BucketSource for NoBuckets {
        fn bucket_rows(&self, _: Granularity, _: u64) -> Result<Vec<ArticleDelta>, StoreError> {
            Ok(Vec::new())
        }
    }

    /// Windows holding one batch of `(views, x shares, y shares, section, lang)` rows.
    fn windows(rows: &[(u64, u64, u64, usize, usize)]) -> Windows {
        let mut w = Windows::load(&NoBuckets, NOW, None, None).unwrap();
        add(&mut w, rows, 0);
        w
    }

    /// Applies a batch of rows, the `i`th for article `a{i + first}`.
    fn add(w: &mut Windows, rows: &[(u64, u64, u64, usize, usize)], first: usize) {
        let articles = rows
            .iter()
            .enumerate()
            .map(|(i, &(views, x, y, section, lang))| ArticleDelta {
                article: ArticleId::parse(&format!("a{:03}", i + first)).unwrap(),
                counts: Counts::new(views, [("x", x), ("y", y)]),
                meta: Meta {
                    section: SECTIONS[section % 5].map(Into::into),
                    lang: LANGS[lang % 3].map(Into::into),
                    ..Meta::default()
                },
                visitors: Vec::new(),
            })
            .collect();
        w.apply(&Batch {
            id: BatchId {
                instance: "test".into(),
                epoch_ms: 1,
                seq: 1 + first as u64,
                chunk: 0,
            },
            flushed_at_ms: NOW,
            articles,
        });
    }

    fn metrics() -> [Metric; 4] {
        [
            Metric::Views,
            Metric::Shares(None),
            Metric::Shares(Some("x".into())),
            Metric::Shares(Some("unseen".into())),
        ]
    }

    fn every_filter() -> impl Iterator<Item = Filter> {
        SECTIONS.into_iter().flat_map(|section| {
            LANGS.into_iter().map(move |lang| Filter {
                section: section.map(String::from),
                lang: lang.map(String::from),
            })
        })
    }

    fn query(window: Window, metric: &Metric, filter: &Filter, limit: usize) -> TopQuery {
        TopQuery {
            metric: metric.clone(),
            window,
            limit,
            section: filter.section.clone(),
            lang: filter.lang.clone(),
        }
    }

    /// The first `limit` candidates matching `filter`.
    fn first_matching(c: &Candidates, filter: &Filter, limit: usize) -> Vec<TopEntry> {
        let matches = |want: &Option<String>, has: &Option<String>| want.is_none() || want == has;
        c.articles
            .iter()
            .filter(|e| matches(&filter.section, &e.section) && matches(&filter.lang, &e.lang))
            .take(limit)
            .cloned()
            .collect()
    }

    #[test]
    fn a_pass_past_its_bound_ranks_the_first_filters_and_says_it_left_some_out() {
        let rows: Vec<_> = (0..40).map(|i| (1 + i % 7, 0, 0, i as usize, i as usize)).collect();
        let w = windows(&rows);
        let c = w.rank_filters_up_to(Window::H24, &Metric::Views, 3);
        assert!(!c.complete);
        assert_eq!(c.filters.len(), 3, "the unfiltered list and the first two filters met");
        for filter in every_filter() {
            let q = query(Window::H24, &Metric::Views, &filter, 100);
            match c.ranking(&filter, 100) {
                Some(ranked) => assert_eq!(ranked, w.top(&q), "{filter:?}"),
                None => assert!(!c.filters.contains_key(&filter)),
            }
        }
        let all = w.rank_all_filters(Window::H24, &Metric::Views);
        assert!(all.complete);
        assert_eq!(
            all.filters.len(),
            1 + 4 + 2 + 4 * 2,
            "every filter met: sections, langs, pairs"
        );
    }

    /// A filter's list as positions in the union.
    type Listed = (Filter, Vec<u32>);

    /// Each candidates' union and lists, to compare two rankings.
    fn shown(c: &Candidates) -> (Vec<TopEntry>, Vec<Listed>, bool) {
        let mut filters: Vec<_> = c.filters.clone().into_iter().collect();
        filters.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        (c.articles.clone(), filters, c.complete)
    }

    #[test]
    fn a_count_lowered_or_a_section_changed_since_the_basis_means_a_new_pass() {
        let mut w = windows(&[(5, 1, 0, 1, 1), (3, 0, 0, 2, 1)]);
        let basis = |w: &Windows| w.rank_all_filters(Window::All, &Metric::Views).basis.unwrap();
        let up_to_date = |w: &Windows, b: &Basis, metric: &Metric, counted| {
            w.brought_up_to_date(b, Window::All, metric, MAX_FILTERS, counted)
                .is_some()
        };

        let b = basis(&w);
        add(&mut w, &[(4, 0, 0, 2, 1)], 1);
        assert!(up_to_date(&w, &b, &Metric::Views, Counted::Views), "a rise alone");
        let shares = w.rank_all_filters(Window::All, &Metric::Shares(None)).basis.unwrap();
        assert!(
            !up_to_date(&w, &b, &Metric::Shares(None), Counted::Shares),
            "another metric's basis"
        );
        assert!(up_to_date(&w, &shares, &Metric::Shares(None), Counted::Shares));

        let b = basis(&w);
        w.admin_change(
            &ArticleId::parse("a000").unwrap(),
            &Default::default(),
            &Counts::of_views(1),
            false,
        );
        assert!(!up_to_date(&w, &b, &Metric::Views, Counted::Views), "a count lowered");

        let b = basis(&w);
        add(&mut w, &[(1, 0, 0, 3, 1)], 1);
        assert!(!up_to_date(&w, &b, &Metric::Views, Counted::Views), "a section changed");

        let b = basis(&w);
        add(&mut w, &[(1, 0, 0, 1, 1)], 7);
        assert!(
            up_to_date(&w, &b, &Metric::Views, Counted::Views),
            "a new article with a known section"
        );
    }

    proptest::proptest! {
        #[test]
        fn candidates_brought_up_to_date_equal_a_new_pass_and_each_filter_s_own_ranking(
            rows in proptest::collection::vec((0u64..12, 0u64..4, 0u64..3, 0usize..5, 0usize..3), 0..200),
            rises in proptest::collection::vec(
                proptest::collection::vec((0usize..260, 0u64..12, 0u64..4, 0u64..3), 0..40),
                1..4,
            ),
            limit in 1usize..=100,
        ) {
            let mut w = windows(&rows);
            let section_lang = |a: usize| rows.get(a).map_or((a, a), |r| (r.3, r.4));
            for window in [Window::M15, Window::All] {
                let mut kept: Vec<Candidates> = metrics().iter().map(|m| w.rank_all_filters(window, m)).collect();
                for rise in &rises {
                    for &(a, views, x, y) in rise {
                        // Same section and language as before (a new article: its own).
                        let (section, lang) = section_lang(a);
                        add(&mut w, &[(views, x, y, section, lang)], a);
                    }
                    for (metric, kept) in metrics().iter().zip(kept.iter_mut()) {
                        let since = w.rank_all_filters_since(window, metric, kept.basis.as_deref());
                        let new = w.rank_all_filters(window, metric);
                        proptest::prop_assert_eq!(shown(&since), shown(&new), "{:?} {:?}", window, metric);
                        for filter in every_filter() {
                            let expected = w.top(&query(window, metric, &filter, limit));
                            proptest::prop_assert_eq!(since.ranking(&filter, limit), Some(expected));
                        }
                        *kept = since;
                    }
                }
            }
        }

        #[test]
        fn every_filter_ranked_from_the_union_equals_its_own_ranking(
            rows in proptest::collection::vec((0u64..12, 0u64..4, 0u64..3, 0usize..5, 0usize..3), 0..300),
            limit in 1usize..=100,
            max in 1usize..30,
        ) {
            let w = windows(&rows);
            for window in [Window::M15, Window::All] {
                for metric in metrics() {
                    let all = w.rank_all_filters(window, &metric);
                    let capped = w.rank_filters_up_to(window, &metric, max);
                    proptest::prop_assert!(all.complete);
                    for filter in every_filter() {
                        let expected = w.top(&query(window, &metric, &filter, limit));
                        proptest::prop_assert_eq!(all.ranking(&filter, limit), Some(expected.clone()));
                        proptest::prop_assert_eq!(&first_matching(&all, &filter, limit), &expected);
                        match capped.ranking(&filter, limit) {
                            Some(ranked) => proptest::prop_assert_eq!(ranked, expected),
                            None => proptest::prop_assert!(!capped.complete),
                        }
                    }
                }
            }
        }
    }
}
