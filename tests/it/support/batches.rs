//! Batches built by hand, for tests that apply them to a store directly.

use viewcounter::counts::Counts;
use viewcounter::event::{ArticleId, Meta};
use viewcounter::store::{ArticleDelta, Batch, BatchId};

/// Views (article, n, section), language `en`.
pub fn views(rows: &[(&str, u64, &str)]) -> Vec<ArticleDelta> {
    rows.iter()
        .map(|(a, n, section)| ArticleDelta {
            article: ArticleId::parse(a).unwrap(),
            counts: Counts::of_views(*n),
            meta: Meta {
                section: Some((*section).into()),
                lang: Some("en".into()),
                ..Meta::default()
            },
            visitors: Vec::new(),
        })
        .collect()
}

/// Shares of one article by network.
pub fn shares(article: &str, shares: &[(&str, u64)]) -> ArticleDelta {
    ArticleDelta {
        article: ArticleId::parse(article).unwrap(),
        counts: Counts::new(0, shares.iter().copied()),
        meta: Meta::default(),
        visitors: Vec::new(),
    }
}

/// Batch `seq` of a test run, flushed at `flushed_at_ms`, articles sorted as a drain sorts them.
pub fn batch(seq: u64, flushed_at_ms: u64, mut articles: Vec<ArticleDelta>) -> Batch {
    articles.sort_by(|a, b| a.article.cmp(&b.article));
    Batch {
        id: BatchId {
            instance: "t".into(),
            epoch_ms: 1,
            seq,
            chunk: 0,
        },
        flushed_at_ms,
        articles,
    }
}
