//! Every filter's ranking of one (window, metric) at once: the union of each section,
//! language and (section, language) pair's top [`MAX_LIMIT`] as one list, count
//! descending, ties by article id ascending, and for each filter the positions of its
//! own top in that list. Any filter's top N is its first N positions: the first N
//! candidates that match it, since its whole top [`MAX_LIMIT`] is in the union.

use std::collections::HashMap;
use std::sync::Arc;

use super::{TopEntry, TopQuery, MAX_LIMIT};
use crate::store::windows::Basis;

/// Most filters one pass keeps a ranking for: a flood of invented sections and
/// languages cannot make a pass hold more than this many lists of [`MAX_LIMIT`].
pub const MAX_FILTERS: usize = 1_024;

/// The section and language filters of a `/v1/top` query (`None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Only this section.
    pub section: Option<String>,
    /// Only this language.
    pub lang: Option<String>,
}

impl Filter {
    /// The filters of `q`.
    pub fn of(q: &TopQuery) -> Filter {
        Filter {
            section: q.section.clone(),
            lang: q.lang.clone(),
        }
    }
}

/// The rankings of every filter of one (window, metric).
#[derive(Debug, Clone)]
pub struct Candidates {
    /// The union of every filter's top [`MAX_LIMIT`], count descending, ties by
    /// article id ascending.
    pub articles: Vec<TopEntry>,
    /// For each filter some article matches, the positions in `articles` of its top
    /// [`MAX_LIMIT`], best first.
    pub filters: HashMap<Filter, Vec<u32>>,
    /// False when the pass met more than [`MAX_FILTERS`] filters and kept the first
    /// ones only: a filter missing from `filters` may then match articles.
    pub complete: bool,
    /// What the windows need to bring these candidates up to date without a pass
    /// ([`crate::store::windows::Windows::rank_all_filters_since`]); `None` when
    /// there is nothing to keep.
    pub basis: Option<Arc<Basis>>,
}

impl Candidates {
    /// The top `limit` of `filter`; `None` when the pass did not rank it (it met too
    /// many filters), so the caller ranks it on its own.
    pub fn ranking(&self, filter: &Filter, limit: usize) -> Option<Vec<TopEntry>> {
        match self.filters.get(filter) {
            Some(at) => Some(
                at.iter()
                    .take(limit.min(MAX_LIMIT))
                    .map(|&i| self.articles[i as usize].clone())
                    .collect(),
            ),
            // Every filter met was ranked: this one matches no article.
            None if self.complete => Some(Vec::new()),
            None => None,
        }
    }
}
